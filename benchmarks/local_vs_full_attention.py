"""LocalSelfAttention2D against full attention with a local mask, at 64x64.

The claim (issue 10): on 64x64 images, a forward + backward pass of
`LocalSelfAttention2D` is at least 10x faster than full multi-head attention
(`keras.layers.MultiHeadAttention` over the 4,096 flattened pixels) given the
boolean `(4096, 4096)` mask that makes it compute the same function: each
pixel sees the memory window of its query block and, when causal, only the
pixels no later in the layer's generation order. The script first checks that
the two give the same output with the same weights, then times
`train_on_batch` of the two compiled one-layer models, alternately, in one
run, on the active Keras backend, and prints the speed-up full / local: the
median over rounds of the per-round ratio (each round times both models,
the median step of each).

On a machine shared with other jobs, `--threads 1 --cpu-time` gives steadier
figures: one intra-op thread on TensorFlow and PyTorch (a parallel kernel
whose threads are descheduled by other jobs waits for the slowest), and the
process's CPU time instead of wall-clock time (JAX's XLA keeps its own
threads; its CPU time then counts all of them, on both sides alike).

Usage: `KERAS_BACKEND=jax python benchmarks/local_vs_full_attention.py [--steps 3]`
"""

import argparse
import os
import time
import types

import _timing
import keras
import numpy as np
from _timing import describe, paired_ratio

from keras_attention_vision.layers import LocalSelfAttention2D
from keras_attention_vision.layers.local_self_attention import generation_order


def local_mask(size, block, flange, causal):
    """`(N, N)` booleans from the definition: window of the block, causal order."""
    rows, cols = np.divmod(np.arange(size * size), size)
    top, left = (rows // block * block)[:, None], (cols // block * block)[:, None]
    below = 0 if causal else flange
    mask = ((rows[None] >= top - flange) & (rows[None] < top + block + below)
            & (cols[None] >= left - flange) & (cols[None] < left + block + flange))
    if causal:
        rank = np.argsort(generation_order(size, size, (block, block)))
        mask &= rank[None, :] <= rank[:, None]
    return mask


@keras.saving.register_keras_serializable(package="benchmarks")
class MaskedFullAttention(keras.layers.Layer):
    """`MultiHeadAttention` over all flattened pixels with a fixed boolean mask."""

    def __init__(self, num_heads, key_dim, mask, **kwargs):
        super().__init__(**kwargs)
        self.mha = keras.layers.MultiHeadAttention(num_heads=num_heads, key_dim=key_dim,
                                                   dtype=self.dtype_policy)
        self.mask = mask

    def build(self, input_shape):
        flat = (input_shape[0], input_shape[1] * input_shape[2], input_shape[3])
        self.mha.build(flat, flat)

    def call(self, x):
        shape = keras.ops.shape(x)
        flat = keras.ops.reshape(x, (shape[0], -1, shape[-1]))
        mask = keras.ops.convert_to_tensor(self.mask[None])
        return keras.ops.reshape(self.mha(flat, flat, attention_mask=mask), shape)


def _model(layer, shape, jit_compile="auto"):
    inputs = keras.Input(shape)
    model = keras.Model(inputs, layer(inputs))
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse",
                  jit_compile=jit_compile)
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--block", type=int, default=8)
    parser.add_argument("--flange", type=int, default=8)
    parser.add_argument("--non-causal", action="store_true")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jit-compile", choices=("auto", "true", "false"), default="auto",
                        help="Model.compile's jit_compile for both models (Keras's "
                        "'auto' means no XLA for TensorFlow on a CPU)")
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op threads of TensorFlow / PyTorch (default: theirs)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time with the process's CPU time instead of wall clock")
    args = parser.parse_args(argv)
    _set_threads(args.threads)
    if args.cpu_time:  # _timing reads time.perf_counter: give it the CPU clock
        _timing.time = types.SimpleNamespace(perf_counter=time.process_time)
    keras.utils.set_random_seed(0)
    causal = not args.non_causal
    shape = (args.size, args.size, args.channels)
    key_dim = args.channels // args.heads
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch,) + shape).astype("float32")
    y = rng.normal(size=x.shape).astype("float32")
    local = LocalSelfAttention2D(num_heads=args.heads, key_dim=key_dim,
                                 query_shape=(args.block, args.block),
                                 memory_flange=(args.flange, args.flange), causal=causal,
                                 data_format="channels_last")
    full = MaskedFullAttention(args.heads, key_dim,
                               local_mask(args.size, args.block, args.flange, causal))
    jit = {"auto": "auto", "true": True, "false": False}[args.jit_compile]
    local_model, full_model = _model(local, shape, jit), _model(full, shape, jit)
    full.mha.set_weights(local.get_weights())  # same kernel shapes and order
    gap = np.max(np.abs(local_model.predict_on_batch(x) - full_model.predict_on_batch(x)))
    if gap > 1e-4:
        raise AssertionError(f"full masked attention differs from local: {gap:.2e}")
    # Alternating rounds (load from other processes hits both sides alike).
    result = paired_ratio(lambda: full_model.train_on_batch(x, y),
                          lambda: local_model.train_on_batch(x, y),
                          rounds=args.rounds, steps=args.steps, warmup=args.warmup)
    speedup, t_full, t_local = result["ratio"], result["a"], result["b"]
    print(f"backend={keras.backend.backend()} input=({args.batch}, {args.size}, "
          f"{args.size}, {args.channels}) heads={args.heads} "
          f"query_shape=({args.block}, {args.block}) "
          f"memory_flange=({args.flange}, {args.flange}) causal={causal} "
          f"jit_compile={args.jit_compile} threads={args.threads or 'default'} "
          f"clock={'CPU time' if args.cpu_time else 'wall'} "
          f"load average={os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"same output: max |local - full| = {gap:.1e}")
    print(f"LocalSelfAttention2D           fwd+bwd step: {t_local * 1e3:9.1f} ms")
    print(f"MultiHeadAttention + local mask fwd+bwd step: {t_full * 1e3:9.1f} ms")
    print(f"speed-up full / local = {describe(result)}; "
          f"target >= 10x: {'OK' if speedup >= 10 else 'BELOW TARGET'}")
    if (keras.backend.backend() == "tensorflow" and jit == "auto"
            and not _tf_has_gpu()):
        print("note: Keras's jit_compile='auto' runs TensorFlow without XLA on a CPU, "
              "where each masked-softmax pass of the local layer is its own kernel; "
              "compile with jit_compile=True (--jit-compile true) for the XLA figure")
    return speedup


def _set_threads(threads):
    if threads is None:
        return
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def _tf_has_gpu():
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


if __name__ == "__main__":
    main()
