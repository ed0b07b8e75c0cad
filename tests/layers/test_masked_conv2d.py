"""MaskedConv2D: causality by gradients, mask A vs B, harness, bad input."""

import itertools
import os
import subprocess
import sys
import textwrap
from unittest import mock

import keras
import numpy as np
import pytest
from keras import ops

from keras_attention_vision.layers import MaskedConv2D
from tests import testing
from tests.layers.input_gradients import input_gradient, randomize_weights

SIZE = 4


def _allowed(i, j, out_group, mask_type, channels, color_channels):
    """The paper's rule, written independently: which inputs may reach (i, j, group).

    Returns a boolean (SIZE, SIZE, channels) map: every pixel before (i, j)
    in raster order, plus at (i, j) the channels of earlier colour groups
    (mask A) or of earlier groups and its own (mask B).
    """
    allowed = np.zeros((SIZE, SIZE, channels), bool)
    allowed[:i] = True
    allowed[i, :j] = True
    per_group = channels // color_channels
    for c in range(channels):
        group = c // per_group
        allowed[i, j, c] = group < out_group or (mask_type == "B" and group == out_group)
    return allowed


def _receptive_field(i, j, kernel_size, channels, dilation=(1, 1)):
    """Input pixels under the (dilated) kernel's taps around (i, j), all channels."""
    field = np.zeros((SIZE, SIZE, channels), bool)
    r = kernel_size // 2
    for a in range(-r, r + 1):
        for b in range(-r, r + 1):
            row, col = i + a * dilation[0], j + b * dilation[1]
            if 0 <= row < SIZE and 0 <= col < SIZE:
                field[row, col] = True
    return field


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_on_nhwc_only_tensorflow(script):
    """Runs `script` in a fresh TensorFlow process whose CPU kernels take NHWC only.

    Without oneDNN (`TF_ENABLE_ONEDNN_OPTS=0`, and AMD CPUs) TensorFlow's CPU
    `Conv2D` raises on NCHW; with it, NCHW works on some CPUs, which hides the
    fault. No GPU is visible, so the CPU kernels run.
    """
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_ENABLE_ONEDNN_OPTS="0",
               TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join(filter(None, [REPO,
                                                        os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


class MaskedConv2DTest(testing.TestCase):
    def _check_causal(self, mask_type, color_channels, filters, dilation=(1, 1)):
        layer = MaskedConv2D(filters, 3, mask_type=mask_type,
                             color_channels=color_channels, activation="tanh",
                             dilation_rate=dilation)
        x = np.random.default_rng(1).normal(size=(1, SIZE, SIZE, color_channels))
        layer(x.astype("float32"))
        randomize_weights(layer)  # masked entries of the stored kernel too
        per_group = filters // color_channels
        for i, j, g in itertools.product(range(SIZE), range(SIZE), range(color_channels)):
            def out(xt, i=i, j=j, g=g):
                y = layer(xt)
                return ops.sum(y[0, i, j, g * per_group:(g + 1) * per_group])

            grad = input_gradient(out, x)[0]
            allowed = _allowed(i, j, g, mask_type, color_channels, color_channels)
            # nothing after (i, j) in raster order (nor hidden groups) reaches it
            self.assertTrue(np.all(grad[~allowed] == 0.0),
                            msg=f"{mask_type} {color_channels}: ({i},{j},{g}) leaks")
            # everything allowed inside the kernel window does reach it
            expected = allowed & _receptive_field(i, j, 3, color_channels, dilation)
            self.assertTrue(np.all(grad[expected] != 0.0),
                            msg=f"{mask_type} {color_channels}: ({i},{j},{g}) is blind")

    def test_causal_mask_a_one_channel(self):
        self._check_causal("A", 1, 2)

    def test_causal_mask_b_one_channel(self):
        self._check_causal("B", 1, 2)

    def test_causal_mask_a_three_channels(self):
        self._check_causal("A", 3, 6)

    def test_causal_mask_b_three_channels(self):
        self._check_causal("B", 3, 6)

    def test_dilated_kernels_are_causal(self):
        # dilation keeps output (i, j) aligned with input (i, j): the masked
        # taps stay above and to the left, so every dilation rate is supported
        self._check_causal("A", 1, 2, dilation=(2, 2))
        self._check_causal("B", 3, 6, dilation=(1, 3))

    def test_centre_pixel_reaches_output_only_with_mask_b(self):
        x = np.random.default_rng(2).normal(size=(1, SIZE, SIZE, 1))
        for mask_type, reaches in (("A", False), ("B", True)):
            layer = MaskedConv2D(1, 3, mask_type=mask_type)
            layer(x.astype("float32"))
            randomize_weights(layer)
            grad = input_gradient(lambda xt, layer=layer: layer(xt)[0, 2, 2, 0], x)
            self.assertEqual(grad[0, 2, 2, 0] != 0.0, reaches, msg=mask_type)

    def test_stack_of_masks_stays_causal_after_training_steps(self):
        # the mask lives in call: optimizer steps cannot break causality
        inputs = keras.Input((SIZE, SIZE, 1))
        h = MaskedConv2D(4, 3, mask_type="A", activation="relu")(inputs)
        h = MaskedConv2D(1, 3, mask_type="B")(h)
        model = keras.Model(inputs, h)
        model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
        x = np.random.default_rng(3).normal(size=(4, SIZE, SIZE, 1)).astype("float32")
        model.fit(x, x, epochs=2, verbose=0)
        grad = input_gradient(lambda xt: model(xt)[0, 2, 2, 0], x[:1])[0, ..., 0]
        after = np.zeros((SIZE, SIZE), bool)
        after[2, 2:] = True
        after[3:] = True
        self.assertTrue(np.all(grad[after] == 0.0))

    def test_is_a_conv2d_and_accepts_conv2d_arguments(self):
        layer = MaskedConv2D(4, 3, strides=1, dilation_rate=2, use_bias=False,
                             kernel_regularizer="l2")
        self.assertIsInstance(layer, keras.layers.Conv2D)
        self.assertEqual(tuple(layer(np.ones((1, 7, 7, 2), "float32")).shape),
                         (1, 7, 7, 4))

    def test_harness(self):
        x = np.random.default_rng(0).normal(size=(2, 5, 5, 3)).astype("float32")
        self.run_layer_test(MaskedConv2D, {"filters": 6, "kernel_size": (3, 3),
                                           "mask_type": "A", "color_channels": 3}, x)

    def test_channels_first_matches_last(self):
        x = np.random.default_rng(0).normal(size=(2, 5, 5, 3)).astype("float32")
        kwargs = {"filters": 6, "kernel_size": (3, 5), "mask_type": "B",
                  "color_channels": 3, "dilation_rate": (1, 2)}
        self.assert_channels_first_matches_last(MaskedConv2D, kwargs, x)
        # the transposing path (what TensorFlow's CPU kernels need), on every backend
        with mock.patch("keras_attention_vision.layers.masked_conv2d."
                        "backend_runs_channels_first", return_value=False):
            self.assert_channels_first_matches_last(MaskedConv2D, kwargs, x)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="TensorFlow's CPU kernels; other backends run NCHW")
def test_channels_first_on_nhwc_only_tensorflow_cpu():
    run_on_nhwc_only_tensorflow("""
        import numpy as np
        from keras_attention_vision.layers import MaskedConv2D
        from tests import testing

        x = np.random.default_rng(0).normal(size=(2, 5, 5, 3)).astype("float32")
        testing.assert_channels_first_matches_last(
            MaskedConv2D, {"filters": 6, "kernel_size": 3, "mask_type": "A",
                           "color_channels": 3}, x)
    """)


@pytest.mark.parametrize("kwargs, quoted", [
    ({"filters": 4, "kernel_size": 4}, "kernel_size=(4, 4)"),
    ({"filters": 4, "kernel_size": (3, 2)}, "kernel_size=(3, 2)"),
    ({"filters": 4, "kernel_size": 3, "mask_type": "C"}, "mask_type='C'"),
    ({"filters": 5, "kernel_size": 3, "color_channels": 3}, "filters=5"),
    ({"filters": 6, "kernel_size": 3, "color_channels": 0}, "color_channels=0"),
    ({"filters": 4, "kernel_size": 3, "padding": "valid"}, "padding='valid'"),
    ({"filters": 4, "kernel_size": 3, "padding": "causal"}, "padding='causal'"),
    ({"filters": 4, "kernel_size": 3, "strides": 2}, "strides=2"),
    ({"filters": 4, "kernel_size": 3, "strides": (1, 2)}, "strides=(1, 2)"),
    ({"filters": 4, "kernel_size": 3, "dilation_rate": (1, 2, 3)},
     "dilation_rate=(1, 2, 3)"),
    ({"filters": 4, "kernel_size": 3, "groups": 2}, "groups=2"),
])
def test_bad_arguments(kwargs, quoted):
    with pytest.raises(ValueError, match=quoted.replace("(", r"\(").replace(")", r"\)")):
        MaskedConv2D(**kwargs)


def test_input_channels_must_divide_into_colour_groups():
    with pytest.raises(ValueError, match=r"input_shape=\(1, 5, 5, 4\)"):
        MaskedConv2D(6, 3, color_channels=3)(np.ones((1, 5, 5, 4), "float32"))
