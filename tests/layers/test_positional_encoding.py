"""PositionalEncoding2D against the sinusoids written out in NumPy."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_attention_vision.layers import PositionalEncoding2D
from tests import testing


def _sinusoid_reference(height, width, channels, base=10000.0):
    """Row in the first half of the channels, column in the second, one loop each."""
    d = channels // 2
    out = np.zeros((height, width, channels))
    for r in range(height):
        for c in range(width):
            for k in range(d // 2):
                w = base ** (2 * k / d)
                out[r, c, 2 * k], out[r, c, 2 * k + 1] = np.sin(r / w), np.cos(r / w)
                out[r, c, d + 2 * k], out[r, c, d + 2 * k + 1] = np.sin(c / w), np.cos(c / w)
    return out


def _input(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


@pytest.mark.parametrize("height,width,channels", [(3, 5, 8), (7, 2, 12), (1, 1, 4)])
def test_sinusoids_match_numpy(height, width, channels):
    x = _input((2, height, width, channels))
    out = PositionalEncoding2D(data_format="channels_last")(x)
    np.testing.assert_allclose(testing.to_numpy(out) - x,
                               np.broadcast_to(_sinusoid_reference(height, width, channels),
                                               x.shape), atol=2e-6)


def test_learned_adds_row_and_column_embeddings():
    x = _input((2, 3, 4, 6))
    layer = PositionalEncoding2D(learned=True, data_format="channels_last")
    layer(x)
    rows = _input((3, 3), seed=1)
    cols = _input((4, 3), seed=2)
    layer.row_embeddings.assign(rows)
    layer.column_embeddings.assign(cols)
    expected = x.copy()
    expected[..., :3] += rows[None, :, None, :]
    expected[..., 3:] += cols[None, None, :, :]
    np.testing.assert_allclose(testing.to_numpy(layer(x)), expected, atol=1e-6)


def test_unknown_sizes_for_sinusoids():
    inputs = keras.Input((None, None, 8))
    model = keras.Model(inputs, PositionalEncoding2D(data_format="channels_last")(inputs))
    for h, w in ((3, 4), (5, 2)):
        x = _input((1, h, w, 8))
        np.testing.assert_allclose(testing.to_numpy(model(x))[0] - x[0],
                                   _sinusoid_reference(h, w, 8), atol=2e-6)


class PositionalEncoding2DTest(testing.TestCase):
    def test_harness(self):
        # The sinusoids have no weights: no fit step to check.
        self.run_layer_test(PositionalEncoding2D, {"max_wavelength": 100.0},
                            _input((2, 3, 5, 8)), run_fit=False)
        self.run_layer_test(PositionalEncoding2D, {"learned": True},
                            _input((2, 3, 5, 6)))

    def test_channels_first_matches_last(self):
        for learned in (False, True):
            self.assert_channels_first_matches_last(PositionalEncoding2D,
                                                    {"learned": learned},
                                                    _input((2, 3, 5, 8)))

    def test_mixed_float16_on_large_images(self):
        out = PositionalEncoding2D(dtype="mixed_float16")(
            ops.ones((1, 64, 64, 16)))
        self.assertEqual(keras.backend.standardize_dtype(out.dtype), "float16")
        self.assertTrue(np.all(np.isfinite(testing.to_numpy(out).astype("float32"))))


@pytest.mark.parametrize("kwargs,shape,message", [
    ({}, (2, 3, 3, 6), "channels=6"),
    ({"learned": True}, (2, 3, 3, 5), "channels=5"),
    ({}, (2, 3, 6), r"input_shape=\(2, 3, 6\)"),
])
def test_bad_shapes_are_quoted(kwargs, shape, message):
    with pytest.raises(ValueError, match=f"Received: {message}"):
        PositionalEncoding2D(data_format="channels_last", **kwargs)(
            np.zeros(shape, "float32"))


def test_learned_needs_known_sizes():
    with pytest.raises(ValueError, match="needs known H and W"):
        PositionalEncoding2D(learned=True, data_format="channels_last")(
            keras.Input((None, 4, 8)))


@pytest.mark.parametrize("kwargs,message", [
    ({"learned": "yes"}, "learned='yes'"),
    ({"max_wavelength": 1.0}, "max_wavelength=1.0"),
    ({"data_format": "NHWC"}, "data_format='NHWC'"),
])
def test_bad_arguments_are_quoted(kwargs, message):
    with pytest.raises(ValueError, match=f"Received: {message}"):
        PositionalEncoding2D(**kwargs)
