"""The harness must pass a sound layer and fail a layer that breaks each property."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_attention_vision.layers.validation import standardize_data_format
from tests import testing

register = keras.saving.register_keras_serializable(package="kav_tests")


@register
class ChannelMix(keras.layers.Layer):
    """A sound layer: a per-position linear map of the channels, plus a gamma."""

    def __init__(self, units, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.data_format = standardize_data_format(data_format)

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "data_format": self.data_format}

    def build(self, input_shape):
        axis = -1 if self.data_format == "channels_last" else 1
        self.kernel = self.add_weight(shape=(input_shape[axis], self.units),
                                      initializer="glorot_uniform", name="kernel")
        self.gamma = self.add_weight(shape=(), initializer="zeros", name="gamma")

    def mix(self, x):
        return ops.matmul(x, ops.cast(self.kernel, x.dtype)) * (
            1.0 + ops.cast(self.gamma, x.dtype))

    def call(self, x):
        if self.data_format == "channels_first":
            return ops.moveaxis(self.mix(ops.moveaxis(x, 1, -1)), -1, 1)
        return self.mix(x)

    def compute_output_shape(self, input_shape):
        axis = -1 if self.data_format == "channels_last" else 1
        shape = list(input_shape)
        shape[axis] = self.units
        return tuple(shape)


@register
class DropsConfig(ChannelMix):
    def get_config(self):
        config = super().get_config()
        del config["units"]
        return config


@register
class WrongShape(ChannelMix):
    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units + 1,)


@register
class UnsavedState(ChannelMix):
    """Keeps a random matrix outside the weights: lost by save/load."""

    def build(self, input_shape):
        super().build(input_shape)
        self.hidden = np.random.default_rng().normal(size=(self.units, self.units))

    def call(self, x):
        return ops.matmul(super().call(x), ops.cast(self.hidden, x.dtype))


@register
class NoGradient(ChannelMix):
    def mix(self, x):
        kernel = ops.stop_gradient(ops.cast(self.kernel, x.dtype))
        return ops.matmul(x, kernel) * ops.stop_gradient(1.0 + ops.cast(self.gamma,
                                                                      x.dtype))


@register
class OverflowsInHalf(ChannelMix):
    """Scales in the compute dtype: fine in float32, inf in float16."""

    def call(self, x):
        return super().call(x) * ops.cast(1e5, x.dtype) * ops.cast(1e5, x.dtype) / 1e10


@register
class ReshapesChannelsFirst(ChannelMix):
    """The classic bug: channels_first reshaped without a transpose."""

    def call(self, x):
        if self.data_format == "channels_first":
            shape = ops.shape(x)
            moved = ops.reshape(x, (shape[0],) + tuple(shape[2:]) + (shape[1],))
            out = self.mix(moved)
            return ops.reshape(out, (shape[0], self.units) + tuple(shape[2:]))
        return self.mix(x)


INPUT = np.random.default_rng(0).normal(size=(4, 5, 6, 3)).astype("float32")
KWARGS = {"units": 4}


def test_sound_layer_passes():
    testing.run_layer_test(ChannelMix, KWARGS, INPUT)
    testing.assert_channels_first_matches_last(ChannelMix, KWARGS, INPUT)


@pytest.mark.parametrize(
    "broken, check",
    [
        (DropsConfig, testing.assert_config_round_trip),
        (WrongShape, testing.assert_shapes_agree),
        (UnsavedState, testing.assert_saving_round_trip),
        (NoGradient, testing.assert_fit_step_trains),
        (OverflowsInHalf, testing.assert_mixed_precision),
        (ReshapesChannelsFirst, testing.assert_channels_first_matches_last),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_harness_fails_broken_layer(broken, check):
    if check is testing.assert_config_round_trip:
        args = (broken, KWARGS)
    else:
        args = (broken, KWARGS, INPUT)
    # The sound layer passes this very check...
    check(ChannelMix, *args[1:])
    # ...and the broken one fails it, and so does the full harness.
    with pytest.raises(AssertionError):
        check(*args)
    with pytest.raises(AssertionError):
        if check is testing.assert_channels_first_matches_last:
            testing.assert_channels_first_matches_last(broken, KWARGS, INPUT)
        else:
            testing.run_layer_test(broken, KWARGS, INPUT)


def test_harness_handles_multi_input_and_outputs():
    @register
    class AddAndScores(keras.layers.Layer):
        def call(self, inputs):
            a, b = inputs
            return a + b, ops.sum(a * b, axis=-1)

        def compute_output_shape(self, input_shape):
            return input_shape[0], input_shape[0][:-1]

    data = [INPUT, INPUT * 2]
    testing.assert_shapes_agree(AddAndScores, {}, data)
    testing.assert_saving_round_trip(AddAndScores, {}, data)
