"""NonLocalBlock against the same block built from keras.layers.MultiHeadAttention.

The claim: a forward + backward pass of an embedded-Gaussian non-local block
on 32x32x256 maps (batch 16) is no slower than the same computation built
from `keras.layers.MultiHeadAttention` (one head, key/value width 128 = C/2,
output projection back to 256 channels, the same zero-gamma batch
normalisation and residual). Both are timed as `train_on_batch` of a
compiled one-block model (same optimizer, same loss), in one run, on the
active Keras backend; the ratio ours / MHA is printed (<= 1.0: ours is no
slower).

Usage: `KERAS_BACKEND=jax python benchmarks/non_local_vs_mha.py [--steps 5]`
"""

import argparse
import statistics
import time

import keras
import numpy as np

from keras_attention_vision.layers import NonLocalBlock


@keras.saving.register_keras_serializable(package="benchmarks")
class MHANonLocal(keras.layers.Layer):
    """z = x + BN(MHA(x, x)) over flattened positions: the baseline."""

    def __init__(self, inter_channels, **kwargs):
        super().__init__(**kwargs)
        self.inter_channels = inter_channels

    def build(self, input_shape):
        channels = input_shape[-1]
        self.mha = keras.layers.MultiHeadAttention(
            num_heads=1, key_dim=self.inter_channels, value_dim=self.inter_channels,
            output_shape=channels, dtype=self.dtype_policy)
        self.bn = keras.layers.BatchNormalization(gamma_initializer="zeros",
                                                  dtype=self.dtype_policy)
        flat = (input_shape[0], input_shape[1] * input_shape[2], channels)
        self.mha.build(flat, flat)
        self.bn.build(flat)

    def call(self, x, training=None):
        shape = keras.ops.shape(x)
        flat = keras.ops.reshape(x, (shape[0], -1, shape[-1]))
        y = self.bn(self.mha(flat, flat), training=training)
        return x + keras.ops.reshape(y, shape)


def _model(block, shape):
    inputs = keras.Input(shape)
    model = keras.Model(inputs, block(inputs))
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    return model


def _time(model, x, y, steps, warmup):
    for _ in range(warmup):
        model.train_on_batch(x, y)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    shape = (args.size, args.size, args.channels)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch,) + shape).astype("float32")
    y = rng.normal(size=x.shape).astype("float32")
    inter = args.channels // 2
    ours = _model(NonLocalBlock(mode="embedded_gaussian", inter_channels=inter), shape)
    mha = _model(MHANonLocal(inter), shape)
    # Interleave the two so that load from other processes hits both alike.
    t_ours, t_mha = [], []
    for _ in range(2):
        t_mha.append(_time(mha, x, y, args.steps, args.warmup))
        t_ours.append(_time(ours, x, y, args.steps, args.warmup))
    t_ours, t_mha = min(t_ours), min(t_mha)
    print(f"backend={keras.backend.backend()} device={_device()} "
          f"input=({args.batch}, {args.size}, {args.size}, {args.channels})")
    print(f"NonLocalBlock       fwd+bwd step: {t_ours * 1e3:9.1f} ms")
    print(f"MultiHeadAttention  fwd+bwd step: {t_mha * 1e3:9.1f} ms")
    print(f"ratio ours / MHA = {t_ours / t_mha:.3f} "
          f"({'no slower' if t_ours <= t_mha else 'SLOWER'})")
    return t_ours / t_mha


def _device():
    try:
        import jax  # noqa: F401
        if keras.backend.backend() == "jax":
            return jax.devices()[0].platform
    except ImportError:
        pass
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    if keras.backend.backend() == "torch":
        import torch
        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cpu"


if __name__ == "__main__":
    main()
