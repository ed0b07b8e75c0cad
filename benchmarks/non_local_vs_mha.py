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
from functools import partial

import keras
import numpy as np
from _timing import describe, one_layer_model, paired_ratio

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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    shape = (args.size, args.size, args.channels)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch,) + shape).astype("float32")
    y = rng.normal(size=x.shape).astype("float32")
    inter = args.channels // 2
    ours = one_layer_model(NonLocalBlock(mode="embedded_gaussian", inter_channels=inter),
                           shape)
    mha = one_layer_model(MHANonLocal(inter), shape)
    result = paired_ratio(partial(ours.train_on_batch, x, y),
                          partial(mha.train_on_batch, x, y), args.rounds,
                          steps=args.steps, warmup=args.warmup)
    t_ours, t_mha = result["a"], result["b"]
    print(f"backend={keras.backend.backend()} device={_device()} "
          f"input=({args.batch}, {args.size}, {args.size}, {args.channels})")
    print(f"NonLocalBlock       fwd+bwd step: {t_ours * 1e3:9.1f} ms")
    print(f"MultiHeadAttention  fwd+bwd step: {t_mha * 1e3:9.1f} ms")
    print(f"ratio ours / MHA = {describe(result)} "
          f"({'no slower' if result['ratio'] <= 1.0 else 'SLOWER'})")
    return result["ratio"]


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
