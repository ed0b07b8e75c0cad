"""GatedPixelCNNBlock: causality and no blind spot by gradients, harness, bad input."""

import itertools

import keras
import numpy as np
import pytest
from keras import ops

from keras_attention_vision.layers import GatedPixelCNNBlock, MaskedConv2D
from tests import testing
from tests.layers.input_gradients import input_gradient, randomize_weights
from tests.layers.test_masked_conv2d import run_on_nhwc_only_tensorflow

SIZE = 6


def _gated_stack(channels, filters, num_blocks, conditional=False):
    x = keras.Input((SIZE, SIZE, channels))
    inputs = [x, x]
    extra = []
    if conditional:
        c = keras.Input((3,))
        extra = [c]
    v, h = GatedPixelCNNBlock(filters, 3, mask_type="A", color_channels=channels)(
        inputs + extra)
    for _ in range(num_blocks - 1):
        v, h = GatedPixelCNNBlock(filters, 3, color_channels=channels)([v, h] + extra)
    return keras.Model([x] + extra if conditional else x, h)


def _plain_stack(channels, filters, num_layers):
    x = keras.Input((SIZE, SIZE, channels))
    h = MaskedConv2D(filters, 3, mask_type="A", color_channels=channels,
                     activation="tanh")(x)
    for _ in range(num_layers - 1):
        h = MaskedConv2D(filters, 3, mask_type="B", color_channels=channels,
                         activation="tanh")(h)
    return keras.Model(x, h)


def _after(i, j):
    """Input pixels at or after (i, j) in raster order."""
    after = np.zeros((SIZE, SIZE), bool)
    after[i, j:] = True
    after[i + 1:] = True
    return after


def _gradient_map(model, x, i, j, group=None, per_group=None):
    def out(xt):
        y = model(xt)[0, i, j]
        if group is not None:
            y = y[group * per_group:(group + 1) * per_group]
        return ops.sum(y)

    return input_gradient(out, x)[0]


class GatedPixelCNNBlockTest(testing.TestCase):
    def test_stack_is_causal_and_has_no_blind_spot(self):
        model = _gated_stack(1, 4, num_blocks=3)
        randomize_weights(model)
        x = np.random.default_rng(0).normal(size=(1, SIZE, SIZE, 1))
        for i, j in itertools.product(range(SIZE), range(SIZE)):
            grad = _gradient_map(model, x, i, j)[..., 0]
            self.assertTrue(np.all(grad[_after(i, j)] == 0.0), msg=f"({i},{j}) leaks")
            # every earlier pixel within 3 rows above / left reaches the output,
            # including those up and to the right (the plain stack's blind spot)
            for di, dj in ((0, -1), (-1, 0), (-1, 1), (-1, 2), (-1, 3), (-2, 3)):
                a, b = i + di, j + dj
                if 0 <= a < SIZE and 0 <= b < SIZE:
                    self.assertNotEqual(grad[a, b], 0.0, msg=f"({i},{j}) blind to ({a},{b})")

    def test_plain_stack_has_the_blind_spot_the_gated_stack_fills(self):
        x = np.random.default_rng(1).normal(size=(1, SIZE, SIZE, 1))
        plain = _plain_stack(1, 4, num_layers=3)
        gated = _gated_stack(1, 4, num_blocks=3)
        randomize_weights(plain)
        randomize_weights(gated)
        i, j = 3, 1
        self.assertEqual(_gradient_map(plain, x, i, j)[i - 1, j + 2, 0], 0.0)
        self.assertNotEqual(_gradient_map(gated, x, i, j)[i - 1, j + 2, 0], 0.0)

    def test_three_colour_groups_are_causal(self):
        model = _gated_stack(3, 6, num_blocks=2)
        randomize_weights(model)
        x = np.random.default_rng(2).normal(size=(1, SIZE, SIZE, 3))
        for (i, j), g in itertools.product(((0, 0), (2, 3), (5, 5)), range(3)):
            grad = _gradient_map(model, x, i, j, group=g, per_group=2)
            after = _after(i, j)
            after[i, j] = False
            self.assertTrue(np.all(grad[after] == 0.0))
            centre = grad[i, j]
            # the first block is mask A: a group sees only earlier groups at (i, j)
            self.assertTrue(np.all(centre[g:] == 0.0), msg=f"group {g} sees itself")
            self.assertTrue(np.all(centre[:g] != 0.0), msg=f"group {g} is blind")

    def test_conditioning_changes_output_and_keeps_causality(self):
        model = _gated_stack(1, 4, num_blocks=2, conditional=True)
        randomize_weights(model)
        x = np.random.default_rng(3).normal(size=(2, SIZE, SIZE, 1)).astype("float32")
        c1 = np.eye(3, dtype="float32")[[0, 1]]
        c2 = np.eye(3, dtype="float32")[[2, 2]]
        y1 = testing.to_numpy(model([x, c1]))
        y2 = testing.to_numpy(model([x, c2]))
        self.assertGreater(np.abs(y1 - y2).max(), 1e-3)
        c = ops.convert_to_tensor(c1[:1])
        grad = input_gradient(lambda xt: ops.sum(model([xt, c])[0, 2, 2]), x[:1])
        self.assertTrue(np.all(grad[0, ..., 0][_after(2, 2)] == 0.0))

    def test_condition_vertical_false_conditions_the_horizontal_stack_only(self):
        block = GatedPixelCNNBlock(4, 3, condition_vertical=False)
        rng = np.random.default_rng(5)
        v = rng.normal(size=(2, SIZE, SIZE, 4)).astype("float32")
        c1, c2 = np.eye(2, dtype="float32"), np.eye(2, dtype="float32")[::-1]
        block([v, v, c1])
        randomize_weights(block)
        v1, h1 = (testing.to_numpy(t) for t in block([v, v, c1]))
        v2, h2 = (testing.to_numpy(t) for t in block([v, v, c2]))
        np.testing.assert_array_equal(v1, v2)
        self.assertGreater(np.abs(h1 - h2).max(), 1e-3)
        self.assertFalse(hasattr(block, "vertical_condition"))
        self.run_layer_test(GatedPixelCNNBlock, {"filters": 4, "kernel_size": 3,
                                                 "condition_vertical": False},
                            [v, v, c1])

    def test_horizontal_rows_depend_on_their_own_row_only(self):
        # what fast sampling relies on: `horizontal` run on one row gives that row
        block = GatedPixelCNNBlock(4, 3)
        rng = np.random.default_rng(4)
        v = rng.normal(size=(2, SIZE, SIZE, 4)).astype("float32")
        h = rng.normal(size=(2, SIZE, SIZE, 4)).astype("float32")
        _, full = block([v, h])
        _, link = block.vertical(v)
        row = block.horizontal(h[:, 3:4], link[:, 3:4])
        self.assertAllClose(row, full[:, 3:4], atol=1e-5)

    def test_harness(self):
        rng = np.random.default_rng(0)
        v = rng.normal(size=(2, 5, 5, 4)).astype("float32")
        self.run_layer_test(GatedPixelCNNBlock, {"filters": 4, "kernel_size": 3}, [v, v])

    def test_harness_first_block_conditional_rgb(self):
        rng = np.random.default_rng(1)
        x = rng.normal(size=(2, 5, 5, 3)).astype("float32")
        c = rng.normal(size=(2, 2)).astype("float32")
        self.run_layer_test(GatedPixelCNNBlock,
                            {"filters": 6, "kernel_size": 5, "mask_type": "A",
                             "color_channels": 3}, [x, x, c])

    def test_channels_first_matches_last(self):
        rng = np.random.default_rng(2)
        v = rng.normal(size=(2, 5, 5, 6)).astype("float32")
        c = rng.normal(size=(2, 2)).astype("float32")
        self.assert_channels_first_matches_last(
            GatedPixelCNNBlock, {"filters": 6, "color_channels": 3}, [v, v, c],
            image_inputs=(0, 1), image_outputs=(0, 1))

    def test_weights_load_across_data_formats(self):
        # kernel shapes do not depend on the format: a block saved in one
        # format loads in the other and gives the same numbers
        rng = np.random.default_rng(3)
        x = rng.normal(size=(2, 5, 5, 3)).astype("float32")
        last = GatedPixelCNNBlock(6, mask_type="A", color_channels=3,
                                  data_format="channels_last")
        last([x, x])
        testing.perturb_weights(last)
        first = GatedPixelCNNBlock(6, mask_type="A", color_channels=3,
                                   data_format="channels_first")
        x_first = np.moveaxis(x, -1, 1)
        first([x_first, x_first])
        self.assertEqual([w.shape for w in first.get_weights()],
                         [w.shape for w in last.get_weights()])
        first.set_weights(last.get_weights())
        for a, b in zip(last([x, x]), first([x_first, x_first])):
            self.assertAllClose(np.moveaxis(testing.to_numpy(b), 1, -1), a, atol=1e-5)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="TensorFlow's CPU kernels; other backends run NCHW")
def test_channels_first_on_nhwc_only_tensorflow_cpu():
    run_on_nhwc_only_tensorflow("""
        import numpy as np
        from keras_attention_vision.layers import GatedPixelCNNBlock
        from tests import testing

        rng = np.random.default_rng(2)
        v = rng.normal(size=(2, 5, 5, 6)).astype("float32")
        c = rng.normal(size=(2, 2)).astype("float32")
        testing.assert_channels_first_matches_last(
            GatedPixelCNNBlock, {"filters": 6, "color_channels": 3}, [v, v, c],
            image_inputs=(0, 1), image_outputs=(0, 1))
    """)


@pytest.mark.parametrize("kwargs, quoted", [
    ({"filters": 4, "kernel_size": 4}, "kernel_size=4"),
    ({"filters": 4, "mask_type": "C"}, "mask_type='C'"),
    ({"filters": 4, "color_channels": 3}, "filters=4"),
    ({"filters": 0}, "filters=0"),
    ({"filters": 4, "condition_vertical": "no"}, "condition_vertical='no'"),
])
def test_bad_arguments(kwargs, quoted):
    with pytest.raises(ValueError, match=quoted):
        GatedPixelCNNBlock(**kwargs)


@pytest.mark.parametrize("data_format, v_shape, h_shape", [
    ("channels_last", (1, 5, 5, 4), (1, 4, 5, 4)),
    ("channels_last", (1, 5, 5, 4), (1, 5, 6, 4)),
    ("channels_first", (1, 4, 5, 5), (1, 4, 5, 3)),
])
def test_vertical_and_horizontal_must_have_the_same_spatial_size(data_format, v_shape,
                                                                  h_shape):
    block = GatedPixelCNNBlock(4, data_format=data_format)
    quoted = (rf"vertical shape=\({', '.join(map(str, v_shape))}\), "
              rf"horizontal shape=\({', '.join(map(str, h_shape))}\)")
    with pytest.raises(ValueError, match=quoted):
        block([np.ones(v_shape, "float32"), np.ones(h_shape, "float32")])


def test_residual_needs_matching_channels():
    x = np.ones((1, 5, 5, 3), "float32")
    with pytest.raises(ValueError, match=r"input_shape="):
        GatedPixelCNNBlock(4, mask_type="B")([x, x])
