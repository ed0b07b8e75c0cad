"""ImageTransformer: causal in its order (gradients), fast sampler = naive loop, bits/dim."""

import os
import tempfile
import warnings

import keras
import numpy as np
import pytest
from keras import ops

from keras_attention_vision.applications import ImageTransformer
from keras_attention_vision.layers.local_self_attention import generation_order
from tests import testing
from tests.applications.bits_per_dim_reference import LN2, categorical_bits_per_dim
from tests.layers.input_gradients import input_gradient, randomize_weights


def _tiny(**kwargs):
    config = dict(input_shape=(4, 4, 1), num_layers=2, hidden_size=8, num_heads=2,
                  query_shape=(2, 2), memory_flange=(1, 1))
    config.update(kwargs)
    return ImageTransformer(**config)


def _shake(model, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    model.set_weights([w + scale * rng.normal(size=w.shape).astype("float32")
                       for w in model.get_weights()])


def _images(n, shape=(4, 4, 1), seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n,) + shape).astype("float32")


class ImageTransformerTest(testing.TestCase):
    def test_causal_in_the_documented_order_by_gradients(self):
        cases = [
            # grey 2D: blocks of 2x2 in raster order; a flange of (1, 2)
            # reaches every earlier pixel of a 4x4 image within two layers
            (dict(memory_flange=(1, 2)), (4, 4, 1), True),
            # RGB 2D: sub-pixels side by side on a (3, 6) grid, blocks (2, 3)
            (dict(input_shape=(3, 2, 3), query_shape=(2, 3), memory_flange=(1, 2)),
             (3, 2, 3), False),
            # 1D: raster order over the sub-pixels
            (dict(input_shape=(3, 2, 2), attention="1d", query_length=3,
                  memory_length=4), (3, 2, 2), False),
        ]
        for kwargs, shape, reaches_all in cases:
            model = _tiny(**kwargs)
            randomize_weights(model)
            order = model.sampling_order()
            if kwargs.get("attention") == "1d":
                np.testing.assert_array_equal(order, np.arange(order.size))
            else:
                rows, cols, channels = shape
                np.testing.assert_array_equal(
                    order, generation_order(rows, cols * channels, model.query_shape))
            rank = np.argsort(order)
            embedded = np.random.default_rng(1).normal(size=(1, order.size, 8))
            # t = 2 and 5 are where block order and raster order part (grey 2D)
            for t in (2, 5, order.size - 1):
                p = order[t]
                grad = input_gradient(
                    lambda e, p=p, m=model, size=order.size: ops.sum(ops.reshape(
                        m._decode(e, (None, None)), (size, 256))[p]),
                    embedded)[0]
                reach = np.abs(grad).sum(-1) != 0
                # the input at p is the embedding of o(t - 1): it may depend on
                # the sub-pixels generated before p, never on p or later ones
                self.assertFalse(reach[rank >= t].any(), msg=f"{kwargs}: t={t} leaks")
                if reaches_all:
                    self.assertTrue(reach[rank < t].all(), msg=f"{kwargs}: t={t} blind")
        # the 2D order is not raster order: pixel (1, 0) comes before (0, 2)
        self.assertLess(list(generation_order(4, 4, (2, 2))).index(4),
                        list(generation_order(4, 4, (2, 2))).index(2))

    def test_fast_sampler_equals_naive_loop(self):
        for kwargs in (dict(), dict(input_shape=(3, 2, 3), query_shape=(2, 3),
                                    memory_flange=(1, 2)),
                       dict(input_shape=(3, 3, 1), attention="1d", query_length=2,
                            memory_length=3)):
            model = _tiny(**kwargs)
            _shake(model, seed=3)
            fast = model.sample(2, seed=7)
            self.assertEqual(fast.shape, (2,) + model.image_shape)
            self.assertGreater(len(np.unique(fast)), 1)
            np.testing.assert_array_equal(fast, model.sample(2, seed=7, naive=True),
                                          err_msg=str(kwargs))
            self.assertFalse(np.array_equal(fast, model.sample(2, seed=8)))
            # completion keeps the known sub-pixels wherever they lie in the order
            images = _images(2, model.image_shape, seed=4)
            mask = np.zeros(images.shape, bool)
            mask[:, 1:, :1] = True
            done = model.complete(images, mask, seed=0)
            np.testing.assert_array_equal(done[mask], images[mask])
            np.testing.assert_array_equal(done, model.complete(images, mask, seed=0,
                                                                naive=True))

    def test_fit_reports_bits_per_dim_and_sample_weight_like_keras(self):
        x = _images(8)
        model = _tiny(dropout=0.1)
        model.compile(optimizer=keras.optimizers.Adam(3e-3))
        history = model.fit(x, batch_size=8, epochs=3, verbose=0)
        self.assertLess(history.history["loss"][-1], history.history["loss"][0])
        logits = testing.to_numpy(model(x))
        self.assertEqual(logits.shape, (8, 4, 4, 1, 256))
        bpd = categorical_bits_per_dim(x, logits)
        results = model.evaluate(x, batch_size=8, verbose=0, return_dict=True)
        self.assertAllClose(results["bits_per_dim"], bpd.mean(), rtol=1e-4)
        self.assertAllClose(model.bits_per_dim(x), bpd.mean(), rtol=1e-4)
        weights = np.array([1, 1, 0, 0, 0, 0, 0, 0], "float32")
        loss = model.compute_loss(x=ops.convert_to_tensor(x), y_pred=model(x),
                                  sample_weight=ops.convert_to_tensor(weights))
        self.assertAllClose(loss, bpd[:2].sum() * LN2 / 8, rtol=1e-4)
        results = model.evaluate(x, sample_weight=weights, batch_size=8, verbose=0,
                                 return_dict=True)
        self.assertAllClose(results["bits_per_dim"], bpd[:2].mean(), rtol=1e-4)

    def test_class_conditional_and_super_resolution(self):
        x, labels = _images(4), np.array([0, 1, 0, 1])
        model = _tiny(num_classes=2)
        _shake(model, seed=1, scale=0.5)
        self.assertGreater(np.abs(testing.to_numpy(
            model([x, labels]) - model([x, 1 - labels]))).max(), 1e-4)
        np.testing.assert_array_equal(
            model.sample(2, seed=0, class_labels=[0, 1]),
            model.sample(2, seed=0, class_labels=[0, 1], naive=True))
        with pytest.raises(ValueError, match="class_labels=None"):
            model.sample(1)
        # super-resolution: 2x2 -> 4x4, an encoder and cross-attention
        low = x[:, ::2, ::2]
        sr = _tiny(low_resolution_shape=(2, 2, 1), encoder_layers=1)
        sr.compile(optimizer="adam")
        start = {w.path: testing.to_numpy(w).copy() for w in sr.weights}
        sr.fit([x, low], batch_size=4, epochs=1, verbose=0)
        moved = [w.path for w in sr.weights
                 if np.abs(testing.to_numpy(w) - start[w.path]).max() > 0]
        # the encoder is trained through the decoder's cross-attention
        self.assertTrue(any("encoder" in path for path in moved), msg=str(moved))
        _shake(sr, seed=2)
        self.assertGreater(np.abs(testing.to_numpy(sr([x, low]) - sr([x, low[::-1]])))
                           .max(), 1e-4)
        high = sr.super_resolve(low[:2], seed=3)
        self.assertEqual(high.shape, (2, 4, 4, 1))
        np.testing.assert_array_equal(high, sr.super_resolve(low[:2], seed=3,
                                                             naive=True))
        with pytest.raises(ValueError, match=r"low_resolution.shape=\(2, 4, 4, 1\)"):
            sr.super_resolve(x[:2])

    def test_channels_last_inside_and_keras_round_trip(self):
        model = _tiny(num_classes=3, input_shape=(4, 2, 3), query_shape=(2, 3),
                      memory_flange=(1, 3), learned_positions=True)
        testing.perturb_weights(model)
        x, labels = _images(2, (4, 2, 3)), np.array([0, 2])
        before = testing.to_numpy(model([x, labels]))
        previous = keras.config.image_data_format()
        keras.config.set_image_data_format("channels_first")
        try:
            first = _tiny(num_classes=3, input_shape=(4, 2, 3), query_shape=(2, 3),
                          memory_flange=(1, 3), learned_positions=True)
            first.set_weights(model.get_weights())
            self.assertAllClose(first([x, labels]), before, atol=1e-5)
            with pytest.raises(ValueError, match=r"images.shape=\(2, 3, 4, 2\)"):
                first([np.moveaxis(x, -1, 1), labels])
        finally:
            keras.config.set_image_data_format(previous)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "it.keras")
            model.save(path)
            loaded = keras.saving.load_model(path, safe_mode=True)
            self.assertAllClose(loaded([x, labels]), before, atol=1e-5)
            self.assertEqual(loaded.get_config(), model.get_config())
            weights = os.path.join(folder, "it.weights.h5")
            model.save_weights(weights)
            again = _tiny(num_classes=3, input_shape=(4, 2, 3), query_shape=(2, 3),
                          memory_flange=(1, 3), learned_positions=True, weights=weights)
            self.assertAllClose(again([x, labels]), before, atol=1e-5)


@pytest.mark.parametrize("learned", [False, True])
@pytest.mark.parametrize("shape, low_shape, factor", [
    ((6, 6, 1), (2, 2, 1), 3),
    ((6, 9, 3), (2, 3, 3), 3),
])
def test_aligned_encoder_positions_are_the_decoders_at_block_centres(
        learned, shape, low_shape, factor):
    # With an odd factor the centre of the area under low-resolution pixel
    # (i, j) is the high-resolution pixel (f * i + f // 2, f * j + f // 2):
    # its encoding is the decoder's there (sub-pixel column (.) * C + c).
    model = ImageTransformer(input_shape=shape, num_layers=1, hidden_size=8,
                             num_heads=2, query_shape=(3, 3), memory_flange=(0, 0),
                             low_resolution_shape=low_shape, encoder_layers=1,
                             learned_positions=learned)
    _shake(model, seed=4)
    channels = shape[-1]
    decoder = testing.to_numpy(model.positions(
        ops.zeros((1, shape[0], shape[1] * channels, 8))))[0]
    aligned = testing.to_numpy(model._aligned_low_positions())
    assert aligned.shape == (low_shape[0], low_shape[1] * channels, 8)
    # 1D: the decoder grid is one row of sub-pixels in raster order
    one_d = ImageTransformer(input_shape=shape, attention="1d", num_layers=1,
                             hidden_size=8, num_heads=2, query_length=4, memory_length=4,
                             low_resolution_shape=low_shape, encoder_layers=1,
                             learned_positions=learned)
    _shake(one_d, seed=5)
    decoder_1d = testing.to_numpy(one_d.positions(
        ops.zeros((1, 1, int(np.prod(shape)), 8))))[0, 0]
    aligned_1d = testing.to_numpy(one_d._aligned_low_positions())
    for i in range(low_shape[0]):
        for j in range(low_shape[1]):
            for c in range(channels):
                r, x = factor * i + factor // 2, factor * j + factor // 2
                np.testing.assert_allclose(aligned[i, j * channels + c],
                                           decoder[r, x * channels + c], atol=1e-5)
                np.testing.assert_allclose(aligned_1d[i, j * channels + c],
                                           decoder_1d[(r * shape[1] + x) * channels + c],
                                           atol=1e-5)
    # "grid": the encoder's own layer at the grid's indices, not aligned
    grid = ImageTransformer(input_shape=shape, num_layers=1, hidden_size=8, num_heads=2,
                            query_shape=(3, 3), memory_flange=(0, 0),
                            low_resolution_shape=low_shape, encoder_layers=1,
                            low_resolution_positions="grid")
    assert grid.get_config()["low_resolution_positions"] == "grid"
    x, low = _images(2, shape), _images(2, low_shape, seed=1)
    assert np.abs(testing.to_numpy(model([x, low])) - testing.to_numpy(
        model([x, low[::-1]]))).max() > 1e-4


def test_cross_attention_radius_limits_what_a_position_reads():
    # 8x8 from 2x2 (each low pixel covers 4x4): radius 0 -> the one under it.
    model = ImageTransformer(input_shape=(8, 8, 1), num_layers=1, hidden_size=8,
                             num_heads=2, query_shape=(2, 2), memory_flange=(0, 0),
                             low_resolution_shape=(2, 2, 1), encoder_layers=1,
                             cross_attention_radius=0)
    mask = model._cross_mask()[0]
    assert mask.shape == (64, 4)
    np.testing.assert_array_equal(np.flatnonzero(mask[5 * 8 + 2]), [2])  # low (1, 0)
    np.testing.assert_array_equal(np.flatnonzero(mask[3 * 8 + 7]), [1])  # low (0, 1)
    model.cross_attention_radius = 1
    assert model._cross_mask()[0].all()  # every low pixel is a neighbour
    # the mask reaches the cross-attention: masked encoder positions do not matter
    tail = model.tails[0]
    rng = np.random.default_rng(0)
    h = rng.normal(size=(1, 8, 8, 8)).astype("float32")
    encoded = rng.normal(size=(1, 4, 8)).astype("float32")
    cross = ops.convert_to_tensor(mask[None])
    base = testing.to_numpy(tail(h, h, encoded, cross_mask=cross))
    moved = encoded.copy()
    moved[:, 3] += 5.0  # low (1, 1): read only by the lower-right quarter
    out = testing.to_numpy(tail(h, h, moved, cross_mask=cross))
    changed = np.abs(out - base).max(axis=-1)[0] > 1e-5
    expected = np.zeros((8, 8), bool)
    expected[4:, 4:] = True
    np.testing.assert_array_equal(changed, expected)


@pytest.mark.parametrize("kwargs, quoted", [
    ({"attention": "3d"}, "attention='3d'"),
    ({"low_resolution_shape": (2, 2, 1), "low_resolution_positions": "own"},
     "low_resolution_positions='own'"),
    ({"low_resolution_shape": (2, 2, 1), "cross_attention_radius": -1},
     "cross_attention_radius=-1"),
    ({"hidden_size": 6}, "hidden_size=6"),
    ({"query_shape": (0, 2)}, r"query_shape=\(0, 2\)"),
    ({"memory_flange": (-1, 2)}, r"memory_flange=\(-1, 2\)"),
    ({"input_shape": (4, 4)}, r"input_shape=\(4, 4\)"),
    ({"low_resolution_shape": (2, 2, 3)}, r"low_resolution_shape=\(2, 2, 3\)"),
    ({"dropout": 1.0}, "dropout=1.0"),
    ({"weights": "/nonexistent.weights.h5"}, "nonexistent"),
])
def test_bad_arguments(kwargs, quoted):
    with pytest.raises(ValueError, match=quoted):
        _tiny(**kwargs)


@pytest.mark.parametrize("positions", ["aligned", "grid"])
def test_super_resolution_model_is_built_whole_without_a_warning(positions):
    # With aligned positions the encoder reads the decoder's encoding: no
    # encoder positional layer is left unbuilt (Keras warned "build() was
    # called ... unbuilt state" on every construction).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = ImageTransformer(input_shape=(6, 6, 1), num_layers=1, hidden_size=8,
                                 num_heads=2, query_shape=(3, 3), memory_flange=(0, 0),
                                 low_resolution_shape=(2, 2, 1), encoder_layers=1,
                                 low_resolution_positions=positions,
                                 learned_positions=True)
    assert not [w for w in caught if "unbuilt state" in str(w.message)]
    unbuilt = [layer.name for layer in model._flatten_layers(include_self=False)
               if not layer.built]
    assert unbuilt == []
    assert hasattr(model, "low_positions") == (positions == "grid")
