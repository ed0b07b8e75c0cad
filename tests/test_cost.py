"""`cost.multiply_adds` against hand counts and against XLA's own FLOP count."""

import keras
import numpy as np
import pytest

from keras_attention_vision.cost import multiply_adds

JAX_ONLY = pytest.mark.skipif(keras.backend.backend() != "jax",
                              reason="XLA's cost analysis is read through jax.jit")


def _convolutions():
    return keras.Sequential([
        keras.Input((28, 28, 3)),
        keras.layers.Conv2D(8, 3, use_bias=False),                         # -> 26x26x8
        keras.layers.Conv2D(16, 3, strides=2, groups=2, use_bias=False),   # -> 12x12x16
        keras.layers.DepthwiseConv2D(3, use_bias=False),                   # -> 10x10x16
        keras.layers.SeparableConv2D(4, 3, use_bias=False),                # -> 8x8x4
        keras.layers.Conv2DTranspose(2, 3, strides=2, use_bias=False),     # -> 17x17x2
        keras.layers.BatchNormalization(),
        keras.layers.Flatten(),
        keras.layers.Dense(10, use_bias=False),
    ])


def test_hand_count_of_every_rule():
    hand = (26 * 26 * 9 * 3 * 8            # Conv2D: out positions * window * C_in * C_out
            + 12 * 12 * 9 * (8 // 2) * 16  # grouped: C_in / groups
            + 10 * 10 * 9 * 16             # depthwise, multiplier 1
            + 8 * 8 * 9 * 16 + 8 * 8 * 16 * 4  # separable: depthwise + 1x1
            + 8 * 8 * 9 * 4 * 2            # transpose: input positions * window * C_in * C_out
            + 17 * 17 * 2 * 10)            # Dense on the flattened map; BN counts 0
    assert multiply_adds(_convolutions()) == hand


def test_channels_first_counts_the_same():
    def net(data_format, shape):
        return keras.Sequential([keras.Input(shape),
                                 keras.layers.Conv2D(4, 3, data_format=data_format)])
    first = multiply_adds(net("channels_first", (3, 10, 12)))
    assert first == multiply_adds(net("channels_last", (10, 12, 3))) == 8 * 10 * 9 * 3 * 4


def test_shared_layer_counted_per_call_and_only_in_this_model():
    shared = keras.layers.Dense(4)
    x = keras.Input((4,))
    model = keras.Model(x, shared(shared(x)))  # two calls in this model
    other_input = keras.Input((4,))
    keras.Model(other_input, shared(other_input))  # another model's call: not ours
    assert multiply_adds(model) == 2 * 4 * 4


def test_nested_model_is_counted_through():
    inner = keras.Sequential([keras.Input((5,)), keras.layers.Dense(7)])
    x = keras.Input((5,))
    outer = keras.Model(x, keras.layers.Dense(2)(inner(x)))
    assert multiply_adds(outer) == 5 * 7 + 7 * 2


def test_recurrent_attention_model_hand_count():
    from keras_attention_vision.reinforce import require_reinforce_backend

    try:
        require_reinforce_backend()
    except Exception as error:  # torch: no TFP substrate
        pytest.skip(str(error))
    from keras_attention_vision.applications import RecurrentAttentionModel

    model = RecurrentAttentionModel(input_shape=(28, 28, 1), num_glimpses=3, patch_size=4,
                                    num_scales=2, glimpse_hidden=8, glimpse_units=16,
                                    core="lstm", core_units=12)
    retina = 2 * 4 * 4 * 1
    per_glimpse = (retina * 8 + 2 * 8 + 8 * 16 + 8 * 16   # glimpse network
                   + 4 * (16 * 12 + 12 * 12)              # LSTM core (no bias MACs)
                   + 12 * 2 + 12)                         # location mean, baseline
    assert multiply_adds(model) == 3 * per_glimpse + 12 * 10

    # the convolutional glimpse encoder: retina 4x4x2 (scales as channels),
    # conv 3x3 -> 32 at 4x4, pool to 2x2, conv 3x3 -> 64 at 2x2, pool to 1x1
    conv = RecurrentAttentionModel(input_shape=(28, 28, 1), num_glimpses=3, patch_size=4,
                                   num_scales=2, glimpse_hidden=8, glimpse_units=16,
                                   core="lstm", core_units=12, glimpse_encoder="conv")
    encoder = 4 * 4 * 32 * 9 * 2 + 2 * 2 * 64 * 9 * 32
    per_glimpse_conv = per_glimpse - retina * 8 + encoder + 64 * 8
    assert multiply_adds(conv) == 3 * per_glimpse_conv + 12 * 10

    # a hidden layer of 7 units in the location network: 12 * 7 + 7 * 2
    located = RecurrentAttentionModel(input_shape=(28, 28, 1), num_glimpses=3, patch_size=4,
                                      num_scales=2, glimpse_hidden=8, glimpse_units=16,
                                      core="lstm", core_units=12, location_hidden=7)
    per_glimpse_located = per_glimpse - 12 * 2 + 12 * 7 + 7 * 2
    assert multiply_adds(located) == 3 * per_glimpse_located + 12 * 10


def test_uncovered_layer_with_kernel_raises_with_its_name():
    class Odd(keras.layers.Layer):
        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], 2))

        def call(self, x):
            return keras.ops.matmul(x, self.kernel)

    x = keras.Input((3,))
    model = keras.Model(x, Odd(name="odd_one")(x))
    with pytest.raises(ValueError, match="odd_one"):
        multiply_adds(model)


def test_unbuilt_model_raises():
    with pytest.raises(ValueError, match="built=False"):
        multiply_adds(keras.Sequential([keras.layers.Dense(2)]))


def _xla_flops(model, x):
    import jax

    trainable = [v.value for v in model.trainable_variables]
    other = [v.value for v in model.non_trainable_variables]
    forward = jax.jit(lambda t, o, x: model.stateless_call(t, o, x, training=False)[0])
    analysis = forward.lower(trainable, other, x).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return analysis["flops"]


@JAX_ONLY
def test_xla_counts_two_flops_per_multiply_add():
    model = _convolutions()
    x = np.zeros((1, 28, 28, 3), "float32")
    # BatchNormalization adds element-wise FLOPs of its own; XLA counts those.
    without_bn = keras.Sequential([keras.Input((28, 28, 3))] + [
        layer for layer in model.layers
        if not isinstance(layer, keras.layers.BatchNormalization)])
    assert _xla_flops(without_bn, x) == 2 * multiply_adds(without_bn)


@JAX_ONLY
def test_recurrent_attention_model_within_xla_count():
    from keras_attention_vision.applications import RecurrentAttentionModel

    model = RecurrentAttentionModel.from_preset("mnist")
    model.build()
    flops = _xla_flops(model, np.zeros((1, 28, 28, 1), "float32"))
    # XLA also counts biases, activations and the retina's averages: a little more.
    assert 2 * multiply_adds(model) <= flops <= 1.05 * 2 * multiply_adds(model)
