"""Which image data formats the active backend's kernels can run.

TensorFlow's CPU `Conv2D` / pooling kernels take NHWC only (some oneDNN builds
also take NCHW, but not all: not on AMD CPUs, nor with
`TF_ENABLE_ONEDNN_OPTS=0`). A layer with `data_format="channels_first"` then
computes in channels_last and transposes its inputs and outputs, so it gives
the channels_last numbers on every backend and CPU.
"""

import functools

import keras
from keras import ops


@functools.cache
def _tensorflow_has_gpu():
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))


def backend_runs_channels_first():
    """Returns whether convolutions and pooling may be run in channels_first.

    True on JAX, PyTorch and NumPy, and on TensorFlow with a visible GPU.
    False on TensorFlow without one: its CPU kernels only take channels_last
    on some builds, so a channels_first layer must transpose there.

    Example:

    ```python
    if data_format == "channels_first" and not backend_runs_channels_first():
        x = to_channels_last(x)
    ```
    """
    if keras.backend.backend() != "tensorflow":
        return True
    return _tensorflow_has_gpu()


def to_channels_last(x):
    """Moves axis 1 (channels) of a channels_first tensor to the end."""
    rank = len(x.shape)
    return ops.transpose(x, (0,) + tuple(range(2, rank)) + (1,))


def to_channels_first(x):
    """Moves the last axis (channels) of a channels_last tensor to axis 1."""
    rank = len(x.shape)
    return ops.transpose(x, (0, rank - 1) + tuple(range(1, rank - 1)))
