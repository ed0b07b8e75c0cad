"""PixelCNN application: fit on images, bits/dim against NumPy, sampling, completion."""

import os
import tempfile
import warnings

import keras
import numpy as np
import pytest
from keras import ops

from keras_attention_vision.applications import PixelCNN
from tests import testing
from tests.applications.bits_per_dim_reference import (
    LN2,
    bernoulli_bits_per_dim,
    categorical_bits_per_dim,
)
from tests.layers.input_gradients import input_gradient, randomize_weights


def _binary_images(n, size=6, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(size=(n, size, size, 1)) < 0.4).astype("float32")


def _small(**kwargs):
    config = dict(input_shape=(6, 6, 1), num_layers=2, filters=4, first_kernel_size=3)
    config.update(kwargs)
    return PixelCNN(**config)


class PixelCNNTest(testing.TestCase):
    def test_fit_on_images_alone_reports_bits_per_dim_matching_numpy(self):
        x = _binary_images(32)
        model = _small()
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        history = model.fit(x, batch_size=16, epochs=4, verbose=0)
        losses = history.history["loss"]
        self.assertLess(losses[-1], losses[0])
        self.assertIn("bits_per_dim", history.history)
        logits = testing.to_numpy(model(x))
        expected = bernoulli_bits_per_dim(x, logits)
        results = model.evaluate(x, batch_size=32, verbose=0, return_dict=True)
        self.assertAllClose(results["bits_per_dim"], expected.mean(), rtol=1e-4)
        self.assertAllClose(results["loss"], expected.mean() * LN2, rtol=1e-4)
        self.assertAllClose(model.bits_per_dim(x), expected.mean(), rtol=1e-4)
        self.assertAllClose(-model.log_prob(x), expected * x[0].size * LN2, rtol=1e-4)

    def test_categorical_rgb_bits_per_dim_matches_numpy(self):
        rng = np.random.default_rng(1)
        x = rng.integers(0, 256, size=(4, 4, 4, 3)).astype("float32")
        model = PixelCNN(input_shape=(4, 4, 3), num_layers=2, filters=6,
                         first_kernel_size=3, distribution="categorical")
        model.compile(optimizer="adam")
        logits = testing.to_numpy(model(x))
        self.assertEqual(logits.shape, (4, 4, 4, 3, 256))
        results = model.evaluate(x, verbose=0, return_dict=True)
        self.assertAllClose(results["bits_per_dim"],
                            categorical_bits_per_dim(x, logits).mean(), rtol=1e-4)

    def test_whole_model_is_causal_over_subpixels(self):
        model = PixelCNN(input_shape=(4, 4, 3), num_layers=2, filters=6,
                         first_kernel_size=3, distribution="categorical")
        randomize_weights(model)
        x = np.random.default_rng(2).integers(0, 256, size=(1, 4, 4, 3))
        for i, j, c in ((0, 0, 0), (1, 2, 1), (3, 3, 2)):
            grad = input_gradient(
                lambda xt, i=i, j=j, c=c: ops.sum(model(xt)[0, i, j, c]), x)[0]
            order = (np.arange(16).reshape(4, 4)[..., None] * 3 + np.arange(3))
            later = order >= (i * 4 + j) * 3 + c
            self.assertTrue(np.all(grad[later] == 0.0), msg=f"({i},{j},{c}) leaks")
            # the earlier sub-pixels of the same pixel and the neighbours do reach it
            near = ~later
            near[:max(i - 1, 0)] = False
            near[:, :max(j - 1, 0)] = False
            self.assertTrue(np.all(grad[near] != 0.0), msg=f"({i},{j},{c}) blind")

    def test_fast_sampling_equals_naive_loop_is_seeded_and_completes(self):
        # one model per network kind, so each sampler is compiled once
        for gated in (True, False):
            model = _small(gated=gated, input_shape=(5, 5, 1))
            perturb = np.random.default_rng(3)
            model.set_weights([w + perturb.normal(size=w.shape).astype("float32")
                               for w in model.get_weights()])
            fast = model.sample(2, seed=7)
            self.assertEqual(fast.shape, (2, 5, 5, 1))
            self.assertTrue(set(np.unique(fast)) <= {0.0, 1.0})
            np.testing.assert_array_equal(fast, model.sample(2, seed=7))
            np.testing.assert_array_equal(fast, model.sample(2, seed=7, naive=True))
            self.assertFalse(np.array_equal(fast, model.sample(2, seed=8)))
            if not gated:
                continue
            # completion keeps the known pixels and matches the naive loop
            x = _binary_images(2, size=5, seed=4)
            mask = np.zeros((2, 5, 5, 1), bool)
            mask[:, :3] = True
            done = model.complete(x, mask, seed=0)
            np.testing.assert_array_equal(done[:, :3], x[:, :3])
            np.testing.assert_array_equal(done,
                                          model.complete(x, mask, seed=0, naive=True))
            # near-zero temperature: every pixel is the mode of its conditional
            cold = model.sample(2, seed=0, temperature=1e-6)
            logits = testing.to_numpy(model(cold))
            np.testing.assert_array_equal(cold, (logits > 0).astype("float32"))

    def test_lookahead_rows_give_the_naive_loop_samples(self):
        # the eager sampler's groups of d binary pixels (used on torch; run
        # here on every backend): each pixel must be drawn from the window of
        # the values actually drawn before it, including kept pixels
        model = _small(input_shape=(3, 9, 1), num_layers=3, filters=8)
        perturb = np.random.default_rng(5)
        model.set_weights([w + 2.0 * perturb.normal(size=w.shape).astype("float32")
                           for w in model.get_weights()])
        images = _binary_images(6, size=9, seed=6)[:, :3]
        keep = np.zeros(images.shape, "float32")
        keep[:, :, 1::4] = 1.0  # known pixels inside the groups
        for seed in (0, 1):
            args = model._prepare(images, keep, seed, None, 1.0)
            naive = model._naive_loop(*args)
            self.assertGreater(len(np.unique(naive.reshape(6, -1), axis=0)), 1)
            for d in (2, 3, 4):
                np.testing.assert_array_equal(
                    testing.to_numpy(model._sample_rows(*args, lookahead=d)), naive,
                    err_msg=f"lookahead={d}, seed={seed}")

    def test_class_conditional_last_block_has_no_vertical_condition(self):
        # Its vertical output feeds nothing, so a vertical conditioning there
        # would change no output and get no gradient (Keras warned every step,
        # and freezing it did not survive a trainable=False / True cycle).
        x = _binary_images(8)
        labels = np.arange(8) % 2
        model = _small(num_layers=3, num_classes=2)
        self.assertFalse(hasattr(model.blocks[-1], "vertical_condition"))
        self.assertTrue(all(hasattr(block, "vertical_condition")
                            for block in model.blocks[:-1]))
        model.trainable = False
        model.trainable = True
        model.compile(optimizer="adam")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit([x, labels], batch_size=8, epochs=1, verbose=0)
        messages = [str(w.message) for w in caught]
        self.assertFalse([m for m in messages if "Gradients do not exist" in m], messages)

    def test_class_conditional_fit_and_sample(self):
        x = _binary_images(8)
        labels = np.arange(8) % 2
        model = _small(num_classes=2)
        model.compile(optimizer="adam")
        model.fit([x, labels], batch_size=8, epochs=1, verbose=0)
        testing.perturb_weights(model)
        zeros, ones = np.zeros(8, "int32"), np.ones(8, "int32")
        self.assertGreater(
            np.abs(testing.to_numpy(model([x, zeros]) - model([x, ones]))).max(), 1e-4)
        fast = model.sample(2, seed=0, class_labels=[0, 1])
        np.testing.assert_array_equal(
            fast, model.sample(2, seed=0, class_labels=[0, 1], naive=True))
        with pytest.raises(ValueError, match="class_labels=None"):
            model.sample(1, seed=0)
        # out of range: one_hot would silently give an image of no class
        for bad in ([0, 2], [-1, 1], 5):
            with pytest.raises(ValueError, match=r"must be in \[0, 2\).*out of range"):
                model.sample(2, seed=0, class_labels=bad)
        with pytest.raises(ValueError, match=r"class_labels=array\(\[0, 7\]\)"):
            model.log_prob(x[:2], class_labels=np.array([0, 7]))
        # the inputs of fit and evaluate, [images, labels], are accepted too
        np.testing.assert_allclose(model.log_prob([x, labels]),
                                   model.log_prob(x, class_labels=labels), rtol=1e-6)
        self.assertAlmostEqual(model.bits_per_dim([x, labels]),
                               model.bits_per_dim(x, class_labels=labels), places=5)

    def test_two_channels_are_causal_over_subpixels_and_sample_exactly(self):
        # any channel count works: C colour groups, sub-pixels in channel order
        model = PixelCNN(input_shape=(4, 4, 2), num_layers=2, filters=16,
                         first_kernel_size=3, distribution="categorical")
        randomize_weights(model)
        x = np.random.default_rng(2).integers(0, 256, size=(1, 4, 4, 2))
        order = np.arange(16).reshape(4, 4)[..., None] * 2 + np.arange(2)
        for i, j, c in ((0, 0, 1), (1, 2, 0), (1, 2, 1), (3, 3, 1)):
            grad = input_gradient(
                lambda xt, i=i, j=j, c=c: ops.sum(model(xt)[0, i, j, c]), x)[0]
            later = order >= (i * 4 + j) * 2 + c
            self.assertTrue(np.all(grad[later] == 0.0), msg=f"({i},{j},{c}) leaks")
            near = ~later
            near[:max(i - 1, 0)] = False
            near[:, :max(j - 1, 0)] = False
            self.assertTrue(np.all(grad[near] != 0.0), msg=f"({i},{j},{c}) blind")
        binary = _small(input_shape=(3, 3, 2))
        testing.perturb_weights(binary)
        fast = binary.sample(2, seed=1)
        self.assertEqual(fast.shape, (2, 3, 3, 2))
        np.testing.assert_array_equal(fast, binary.sample(2, seed=1, naive=True))

    def test_channels_last_inside_under_a_global_channels_first(self):
        x = _binary_images(3)
        for gated in (True, False):
            model = _small(gated=gated, num_classes=2)
            testing.perturb_weights(model)
            labels = np.array([0, 1, 1])
            expected = testing.to_numpy(model([x, labels]))
            self.assertEqual(expected.shape, x.shape)
            previous = keras.config.image_data_format()
            keras.config.set_image_data_format("channels_first")
            try:
                first = _small(gated=gated, num_classes=2)
                first.set_weights(model.get_weights())
                self.assertAllClose(first([x, labels]), expected, atol=1e-5)
                self.assertAllClose(first.log_prob(x, labels), model.log_prob(x, labels),
                                    atol=1e-4, rtol=1e-5)
                # a channels_first batch is not silently taken as (6, 1, 6) images
                with pytest.raises(ValueError, match=r"images.shape=\(3, 1, 6, 6\)"):
                    first([np.moveaxis(x, -1, 1), labels])
            finally:
                keras.config.set_image_data_format(previous)
        with pytest.raises(ValueError, match=r"images.shape=\(3, 6, 5, 1\)"):
            model([x[:, :, :5], labels])

    def test_sample_weight_reduces_like_keras_losses(self):
        x = _binary_images(4)
        weights = np.array([1.0, 1.0, 0.0, 0.0], "float32")
        model = _small()
        testing.perturb_weights(model)
        model.compile(optimizer="sgd")
        logits = testing.to_numpy(model(x))
        nats = bernoulli_bits_per_dim(x, logits) * LN2  # nats per dimension
        # sum(loss * w) / batch_size: half the mean loss of the first two images
        expected = 0.5 * nats[:2].mean()
        loss = model.compute_loss(x=ops.convert_to_tensor(x), y_pred=model(x),
                                  sample_weight=ops.convert_to_tensor(weights))
        self.assertAllClose(loss, expected, rtol=1e-5)
        results = model.evaluate(x, sample_weight=weights, batch_size=4, verbose=0,
                                 return_dict=True)
        self.assertAllClose(results["loss"], expected, rtol=1e-5)
        # the metric averages as Keras's metrics do: sum(bpd * w) / sum(w)
        self.assertAllClose(results["bits_per_dim"], nats[:2].mean() / LN2, rtol=1e-5)
        # one SGD step on all four with weights [1, 1, 0, 0] is a step of half the
        # learning rate on the first two: the gradient is scaled by 2 / 4
        start = model.get_weights()
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        model.fit(x, sample_weight=weights, batch_size=4, epochs=1, verbose=0,
                  shuffle=False)
        reference = _small()
        reference.set_weights(start)
        reference.compile(optimizer=keras.optimizers.SGD(0.05))
        reference.fit(x[:2], batch_size=2, epochs=1, verbose=0, shuffle=False)
        moved = max(np.abs(a - b).max() for a, b in zip(model.get_weights(), start))
        self.assertGreater(moved, 1e-4)
        for a, b in zip(model.get_weights(), reference.get_weights()):
            self.assertAllClose(a, b, atol=1e-6, rtol=1e-5)
        with pytest.raises(ValueError, match=r"class_weight=\{0: 2.0\}"):
            model.fit(x, class_weight={0: 2.0}, verbose=0)

    def test_complete_broadcasts_the_mask_by_numpy_rules(self):
        model = _small(input_shape=(4, 4, 1))
        testing.perturb_weights(model)
        x = _binary_images(4, size=4, seed=9)
        full = np.zeros(x.shape, bool)
        full[:, :2] = True  # the first two rows of every image are known
        expected = model.complete(x, full, seed=0)
        np.testing.assert_array_equal(expected[:, :2], x[:, :2])
        per_pixel = np.zeros((4, 4, 1), bool)
        per_pixel[:2] = True
        for mask in (per_pixel, per_pixel[None], np.broadcast_to(per_pixel, x.shape)):
            np.testing.assert_array_equal(model.complete(x, mask, seed=0), expected,
                                          err_msg=f"mask shape {mask.shape}")
        # a mask that does not broadcast (no channel axis) is refused, quoting both
        with pytest.raises(ValueError, match=r"mask.shape=\(4, 4\), "
                                             r"images.shape=\(4, 4, 4, 1\)"):
            model.complete(x, per_pixel[..., 0], seed=0)
        with pytest.raises(ValueError, match=r"class_labels with shape \(3,\)"):
            _small(input_shape=(4, 4, 1), num_classes=2).complete(
                x, per_pixel, seed=0, class_labels=[0, 1, 1])

    def test_keras_saving_round_trip(self):
        model = _small(num_classes=3)
        testing.perturb_weights(model)
        x, labels = _binary_images(2), np.array([0, 2])
        before = testing.to_numpy(model([x, labels]))
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "pixelcnn.keras")
            model.save(path)
            loaded = keras.saving.load_model(path, safe_mode=True)
        self.assertAllClose(loaded([x, labels]), before, atol=1e-6)
        self.assertEqual(loaded.get_config(), model.get_config())


@pytest.mark.parametrize("kwargs, quoted", [
    ({"distribution": "gaussian"}, "distribution='gaussian'"),
    ({"input_shape": (6, 6, 3), "filters": 4}, "filters=4"),
    ({"kernel_size": 4}, "kernel_size=4"),
    ({"input_shape": (6, 6)}, r"input_shape=\(6, 6\)"),
    ({"gated": "yes"}, "gated='yes'"),
    ({"gated": None}, "gated=None"),
])
def test_bad_arguments(kwargs, quoted):
    with pytest.raises(ValueError, match=quoted):
        _small(**kwargs)


def test_images_outside_the_distribution_are_refused():
    binary = PixelCNN(input_shape=(4, 4, 1), num_layers=1, filters=4)
    binary.compile(optimizer="sgd")
    eight_bit = np.full((2, 4, 4, 1), 255.0, "float32")
    with pytest.raises(ValueError, match=r"values in \{0, 1\}.*\[255, 255\]"):
        binary.evaluate(eight_bit, verbose=0)
    with pytest.raises(ValueError, match="values in"):
        binary.fit(eight_bit, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="values in"):
        binary.log_prob(eight_bit)
    grey = PixelCNN(input_shape=(4, 4, 1), num_layers=1, filters=4,
                    distribution="categorical")
    with pytest.raises(ValueError, match=r"\[0, 255\]. Received: .*e.g. 300"):
        grey.log_prob(np.full((1, 4, 4, 1), 300.0, "float32"))
    assert np.isfinite(binary.log_prob(np.ones((1, 4, 4, 1), "float32"))).all()
