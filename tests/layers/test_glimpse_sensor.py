"""GlimpseSensor against a NumPy retina: crop with padding, then block averaging."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_attention_vision.layers import GlimpseSensor
from tests import testing


def reference_glimpses(images, locations, patch_size, num_scales, scale_factor,
                       padding_value=0.0):
    """The retina written from the paper, one sample and one scale at a time.

    images (B, H, W, C), locations (B, 2) as (y, x) in [-1, 1]. Scale k is the
    square of side patch_size * scale_factor**k centred at c = (l + 1) / 2 * size
    (top-left pixel rounded half up), padded with `padding_value`, then reduced
    by block averaging.
    """
    images = np.asarray(images, "float64")
    batch, height, width, channels = images.shape
    out = np.zeros((batch, num_scales, patch_size, patch_size, channels))
    for b in range(batch):
        for k in range(num_scales):
            factor = scale_factor**k
            side = patch_size * factor
            pad = side + 2
            padded = np.full((height + 2 * pad, width + 2 * pad, channels), padding_value)
            padded[pad:pad + height, pad:pad + width] = images[b]
            y, x = np.asarray(locations[b], "float64")
            top = math.floor((y + 1) / 2 * height - side / 2 + 0.5)
            left = math.floor((x + 1) / 2 * width - side / 2 + 0.5)
            crop = padded[pad + top:pad + top + side, pad + left:pad + left + side]
            for i in range(patch_size):
                for j in range(patch_size):
                    block = crop[i * factor:(i + 1) * factor, j * factor:(j + 1) * factor]
                    out[b, k, i, j] = block.mean(axis=(0, 1))
    return out


def _images(shape, seed=0):
    return np.random.default_rng(seed).uniform(size=shape).astype("float32")


class GlimpseSensorTest(testing.TestCase):
    def _check(self, images, locations, **kwargs):
        sensor = GlimpseSensor(**kwargs)
        got = sensor([images, locations])
        expected = reference_glimpses(images, locations, kwargs.get("patch_size", 8),
                                      kwargs.get("num_scales", 1),
                                      kwargs.get("scale_factor", 2),
                                      kwargs.get("padding_value", 0.0))
        self.assertAllClose(got, expected, atol=1e-5)

    def test_integer_aligned_locations(self):
        images = _images((3, 16, 16, 1))
        # Centres on pixel edges: c = 8, 4, 12 -> exact crops, no rounding.
        locations = np.array([[0, 0], [-0.5, 0.5], [0.5, -0.5]], "float32")
        self._check(images, locations, patch_size=4, num_scales=2)

    def test_fractional_locations_three_channels(self):
        images = _images((6, 20, 24, 3), seed=1)
        locations = np.random.default_rng(2).uniform(-0.9, 0.9, (6, 2)).astype("float32")
        self._check(images, locations, patch_size=4, num_scales=3, scale_factor=2)

    def test_corners_read_padding(self):
        images = _images((4, 12, 12, 1), seed=3)
        corners = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]], "float32")
        self._check(images, corners, patch_size=4, num_scales=2)
        self._check(images, corners, patch_size=6, num_scales=1, padding_value=0.5)
        # At (-1, -1) the top-left quarter of the patch is outside: black.
        out = testing.to_numpy(GlimpseSensor(patch_size=4)([images, corners]))
        np.testing.assert_array_equal(out[0, 0, :2, :], 0.0)
        np.testing.assert_array_equal(out[0, 0, :, :2], 0.0)

    def test_scale_factor_three(self):
        images = _images((2, 27, 27, 1), seed=4)
        locations = np.array([[0.1, -0.3], [-0.7, 0.6]], "float32")
        self._check(images, locations, patch_size=3, num_scales=3, scale_factor=3)

    def test_jit_matches_eager(self):
        images = _images((3, 16, 16, 2), seed=5)
        locations = np.array([[0.2, 0.1], [-1, 0.3], [0.9, -0.9]], "float32")
        sensor = GlimpseSensor(patch_size=4, num_scales=2)
        inputs = [keras.Input((16, 16, 2)), keras.Input((2,))]
        model = keras.Model(inputs, sensor(inputs))
        compiled = model.predict([images, locations], verbose=0)  # jit on TF/JAX
        self.assertAllClose(compiled, sensor([images, locations]), atol=1e-6)

    def test_layer_harness(self):
        images = _images((2, 12, 12, 3))
        locations = np.array([[0.1, -0.2], [-0.6, 0.7]], "float32")
        # No trainable weights: the fit check is done by test_gradient_flows_to_images
        # inside a small model instead.
        self.run_layer_test(
            GlimpseSensor, {"patch_size": 4, "num_scales": 2, "scale_factor": 2},
            [images, locations], run_fit=False,
        )

    def test_channels_first_matches_last(self):
        images = _images((2, 12, 10, 3))
        locations = np.array([[0.3, -0.2], [-0.9, 0.5]], "float32")
        self.assert_channels_first_matches_last(
            GlimpseSensor, {"patch_size": 4, "num_scales": 2}, [images, locations],
            image_inputs=(0,), image_outputs=(0,),
        )

    def test_channels_first_layout(self):
        sensor = GlimpseSensor(patch_size=4, num_scales=3, data_format="channels_first")
        out = sensor([np.zeros((2, 3, 16, 16), "float32"), np.zeros((2, 2), "float32")])
        self.assertEqual(tuple(out.shape), (2, 3, 3, 4, 4))

    def test_gradient_flows_to_images(self):
        # The fit check of the harness, inside a model: a Conv2D before the sensor
        # must be trained through it.
        images = _images((4, 12, 12, 1))
        locations = np.array([[0, 0], [0.5, 0.5], [-0.5, 0.2], [1, 1]], "float32")
        image_in, loc_in = keras.Input((12, 12, 1)), keras.Input((2,))
        conv = keras.layers.Conv2D(2, 3, padding="same")
        glimpses = GlimpseSensor(patch_size=4, num_scales=2)([conv(image_in), loc_in])
        out = keras.layers.Dense(3)(keras.layers.Flatten()(glimpses))
        model = keras.Model([image_in, loc_in], out)
        before = [w.copy() for w in conv.get_weights()]
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        model.fit([images, locations], np.ones((4, 3), "float32"), epochs=1,
                  batch_size=4, verbose=0)
        changed = [not np.array_equal(b, a) for b, a in zip(before, conv.get_weights())]
        self.assertTrue(all(changed))

    def test_no_gradient_to_locations(self):
        images = _images((2, 12, 12, 1))
        grad = _gradient_wrt_locations(GlimpseSensor(patch_size=4), images,
                                       np.array([[0.1, 0.2], [0.3, -0.4]], "float32"))
        if grad is not None:
            self.assertAllClose(grad, np.zeros((2, 2)))


def _gradient_wrt_locations(sensor, images, locations):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        loc = tf.constant(locations)
        with tf.GradientTape() as tape:
            tape.watch(loc)
            total = tf.reduce_sum(sensor([images, loc]))
        grad = tape.gradient(total, loc)
        return None if grad is None else grad.numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda loc: sensor([images, loc]).sum())(locations))
    import torch

    loc = torch.tensor(locations, requires_grad=True)
    total = sensor([torch.tensor(images), loc]).sum()
    if not total.requires_grad:
        return None
    total.backward()
    return None if loc.grad is None else loc.grad.numpy()


@pytest.mark.parametrize("kwargs, name", [
    ({"patch_size": 0}, "patch_size=0"),
    ({"num_scales": -1}, "num_scales=-1"),
    ({"scale_factor": 0}, "scale_factor=0"),
    ({"patch_size": 2.5}, "patch_size=2.5"),
    ({"data_format": "nhwc"}, "data_format='nhwc'"),
    ({"padding_value": "black"}, "padding_value='black'"),
])
def test_bad_arguments_quote_the_value(kwargs, name):
    with pytest.raises(ValueError, match=name.replace("(", r"\(").replace(".", r"\.")):
        GlimpseSensor(**kwargs)


def test_locations_of_wrong_shape():
    sensor = GlimpseSensor(patch_size=4)
    with pytest.raises(ValueError, match=r"locations.shape=\(2, 3\)"):
        sensor([np.zeros((2, 12, 12, 1), "float32"), np.zeros((2, 3), "float32")])
    with pytest.raises(ValueError, match=r"locations.shape=\(2, 2, 1\)"):
        GlimpseSensor(patch_size=4)([np.zeros((2, 12, 12, 1), "float32"),
                                     np.zeros((2, 2, 1), "float32")])


def test_patch_larger_than_four_times_the_image():
    # Widest patch 8 * 2**2 = 32 > 4 * 7.
    sensor = GlimpseSensor(patch_size=8, num_scales=3)
    with pytest.raises(ValueError, match=r"images.shape=\(1, 7, 7, 1\)"):
        sensor([np.zeros((1, 7, 7, 1), "float32"), np.zeros((1, 2), "float32")])
    # 4x exactly is allowed.
    out = GlimpseSensor(patch_size=8, num_scales=3)(
        [np.ones((1, 8, 8, 1), "float32"), np.zeros((1, 2), "float32")])
    assert tuple(ops.shape(out)) == (1, 3, 8, 8, 1)
