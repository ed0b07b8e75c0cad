"""LocalSelfAttention2D: cost linear in pixels (128x128 over 64x64).

The claim (issue 10, Image Transformer section 3.2): the forward + backward
time of a local self-attention layer grows with the number of pixels, not its
square, so going from 64x64 to 128x128 (4x the pixels) costs at most 4.5x in
time and in peak memory; full self-attention would cost 16x.

Peak memory: each size runs in a fresh subprocess; a one-layer model is
compiled and run on a tiny 16x16 input first (imports, kernels and weights in
memory), then `ru_maxrss` is read, one training step at the full size runs,
and `ru_maxrss` is read again; the difference is the peak that size added
(host memory, the CPU figure; on a GPU use the backend's memory statistics
instead). Time: both models live in this process and their `train_on_batch`
steps (forward + backward, SGD update) alternate in rounds (`_timing.paired_ratio`),
so that load from other processes hits both alike; the time ratio is the
median of the per-round ratios, printed with their range. The ratios
128 / 64 are printed, in one run.

Usage: `KERAS_BACKEND=jax python benchmarks/local_attention_scaling.py [--steps 5]`
"""

import argparse
import json
import subprocess
import sys


def _child(args):
    import resource

    small = _data(args, 16)
    _model(args, 16).train_on_batch(small, small)
    model = _model(args, args.size)
    x = _data(args, args.size)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model.train_on_batch(x, x)
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024.0
    print(json.dumps({"peak_mib": peak}))


def _model(args, size):
    import keras

    from keras_attention_vision.layers import LocalSelfAttention2D

    inputs = keras.Input((size, size, args.channels))
    layer = LocalSelfAttention2D(
        num_heads=args.heads, key_dim=args.channels // args.heads,
        query_shape=(args.block, args.block),
        memory_flange=(args.flange, args.flange), causal=not args.non_causal,
        data_format="channels_last")
    model = keras.Model(inputs, layer(inputs))
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    return model


def _data(args, size):
    import numpy as np

    rng = np.random.default_rng(size)
    return rng.normal(size=(args.batch, size, size, args.channels)).astype("float32")


def _times(args):
    """Median `train_on_batch` times of the two sizes, in alternating rounds."""
    from _timing import paired_ratio

    (m128, x128), (m64, x64) = [(_model(args, size), _data(args, size))
                                for size in (128, 64)]
    return paired_ratio(lambda: m128.train_on_batch(x128, x128),
                        lambda: m64.train_on_batch(x64, x64),
                        rounds=args.steps, warmup=args.warmup)


def _measure(size, args):
    cmd = [sys.executable, __file__, "--child", "--size", str(size)] + [
        f"--{name.replace('_', '-')}={value}" for name, value in vars(args).items()
        if name not in ("child", "size", "non_causal")
    ] + (["--non-causal"] if args.non_causal else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--block", type=int, default=8)
    parser.add_argument("--flange", type=int, default=8)
    parser.add_argument("--non-causal", action="store_true")
    parser.add_argument("--steps", type=int, default=5, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=64, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args)
    import keras

    peak = {size: _measure(size, args)["peak_mib"] for size in (64, 128)}
    timed = _times(args)
    time = {128: timed["a"], 64: timed["b"]}
    print(f"backend={keras.backend.backend()} batch={args.batch} channels={args.channels} "
          f"heads={args.heads} query_shape=({args.block}, {args.block}) "
          f"memory_flange=({args.flange}, {args.flange}) causal={not args.non_causal}")
    print(f"{'size':>9} | {'fwd+bwd step':>12} | {'peak added':>10}")
    for size in (64, 128):
        print(f"{size:>4}x{size:<4} | {time[size] * 1e3:9.1f} ms | {peak[size]:6.1f} MiB")
    from _timing import describe, malloc_in_use

    allocator = malloc_in_use()
    print(f"allocator {allocator}")
    if keras.backend.backend() in ("torch", "jax") and allocator == "glibc":
        print("note: glibc's malloc gives blocks over 32 MB back to the system when they "
              "are freed, so every step page-faults them in again; at 128x128 the "
              "gathered windows and their gradients are such blocks on PyTorch, which "
              "inflates the time ratio (figures with both allocators in "
              "docs/local_attention.md); run with LD_PRELOAD=libtcmalloc_minimal.so.4")
    t_ratio, m_ratio = timed["ratio"], peak[128] / max(peak[64], 1e-9)
    print(f"ratio 128/64: time {describe(timed)}, peak memory {m_ratio:.2f} "
          f"(target <= 4.5; full attention would be 16): "
          f"{'OK' if max(t_ratio, m_ratio) <= 4.5 else 'ABOVE TARGET'}")
    return t_ratio, m_ratio


if __name__ == "__main__":
    main()
