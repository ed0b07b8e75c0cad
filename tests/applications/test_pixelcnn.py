"""PixelCNN application: fit on images, bits/dim against NumPy, sampling, completion."""

import os
import tempfile

import keras
import numpy as np
import pytest
from keras import ops

from keras_attention_vision.applications import PixelCNN
from tests import testing
from tests.layers.input_gradients import input_gradient, randomize_weights

LN2 = np.log(2.0)


def _binary_images(n, size=6, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(size=(n, size, size, 1)) < 0.4).astype("float32")


def _np_bernoulli_bits_per_dim(images, logits):
    p = 1.0 / (1.0 + np.exp(-logits.astype("float64")))
    ll = images * np.log(p) + (1 - images) * np.log(1 - p)
    return -ll.reshape(len(images), -1).sum(-1) / (images[0].size * LN2)


def _np_categorical_bits_per_dim(images, logits):
    z = logits.astype("float64")
    z = z - z.max(-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_p, images.astype("int64")[..., None], -1)[..., 0]
    return -picked.reshape(len(images), -1).sum(-1) / (images[0].size * LN2)


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
        expected = _np_bernoulli_bits_per_dim(x, logits)
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
                            _np_categorical_bits_per_dim(x, logits).mean(), rtol=1e-4)

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
            mask = np.zeros((2, 5, 5), bool)
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
])
def test_bad_arguments(kwargs, quoted):
    with pytest.raises(ValueError, match=quoted):
        _small(**kwargs)
