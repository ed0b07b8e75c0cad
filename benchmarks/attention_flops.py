"""Attention layers' training throughput in GFLOP/s, against NumPy's float32 matmul.

For `NonLocalBlock` (embedded Gaussian, no sub-sampling), `SelfAttention2D`
(SAGAN, its default 2x2-pooled keys and values) and `LocalSelfAttention2D`
(Image Transformer, 8x8 query blocks, 8x8 flanges), one training step
(forward and backward, SGD update) of a model `Input -> layer` is timed in
alternating rounds against a float32 NumPy matmul of `--matmul-size` cubed,
in this one run. Printed per layer: the documented
FLOP count of the step, the achieved GFLOP/s, the same run's NumPy matmul
GFLOP/s (the machine's practical float32 peak) and the fraction achieved, the
median of the per-round fractions with their range. On TensorFlow the step
is timed with and without XLA (`jit_compile`).

FLOP counts (`*_flops` below) count multiply-adds of the matmuls as 2 FLOPs
and ignore element-wise work (softmax, bias, batch norm), so a fraction is a
lower bound of the machine's use. The loss is the mean of the output, whose
cost is negligible. A training step is forward `F` plus the
weight gradients (`F` again, one matmul per matmul of the forward pass) plus
the input gradients (`F` less the input projections' input gradients: the
model input needs none).

With `--peer PATH`, a peer non-local block in plain PyTorch is timed too:
`PATH` is a Python file whose `build(channels)` returns a `torch.nn.Module`
taking channels-first `(batch, channels, H, W)` input (e.g. the formulation
of the public PyTorch implementation: 1x1 convolutions theta, phi, g to
`C / 2`, softmax of theta . phi, W + BatchNorm, `z = W y + x`). Its training
step (the same loss, `torch.optim.SGD`) is timed against `NonLocalBlock`'s
in alternating rounds, on any backend (PyTorch runs beside JAX or
TensorFlow in the same process), and the ratio ours / peer of the step
times is printed with the peer's GFLOP/s (same FLOP count: same matmuls).

Run: `KERAS_BACKEND=jax python benchmarks/attention_flops.py` (tensorflow,
torch too). `--quick` uses smaller inputs; `--layers NonLocalBlock` times
one layer only. On JAX, run it as JAX users on a CPU should run training:
`LD_PRELOAD=libtcmalloc_minimal.so.4` (Debian/Ubuntu package
`libtcmalloc-minimal4`; see docs/non_local.md); the script says which
allocator it ran with.
"""

import argparse
import importlib.util
import os
from unittest import mock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _timing import (  # noqa: E402
    describe,
    malloc_in_use,
    one_layer_model,
    paired_ratio,
)

from keras_attention_vision.layers import (  # noqa: E402
    LocalSelfAttention2D,
    NonLocalBlock,
    SelfAttention2D,
    attention_core,  # noqa: E402
)


def _step_flops(projection_in, forward_rest):
    """FLOPs of a training step from the forward FLOPs of its two parts.

    `projection_in`: the input projections (their input gradient is not
    needed); `forward_rest`: every other matmul of the forward pass.
    """
    forward = projection_in + forward_rest
    return forward + forward + forward_rest


def non_local_flops(batch, positions, channels, inner, key_positions=None):
    """Matmul FLOPs of one NonLocalBlock training step (embedded Gaussian).

    theta, phi, g: `3 * 2 B N C inner`; logits and weighted sum:
    `2 * 2 B N N_k inner`; W_z: `2 B N inner C`.
    """
    key_positions = key_positions or positions
    projections = 3 * 2 * batch * positions * channels * inner
    rest = (2 * 2 * batch * positions * key_positions * inner
            + 2 * batch * positions * inner * channels)
    return _step_flops(projections, rest)


def self_attention_2d_flops(batch, positions, channels, qk_dim, v_dim, key_positions):
    """Matmul FLOPs of one SelfAttention2D (SAGAN) training step.

    f, g (queries, keys): `2 * 2 B N C qk`; h (values): `2 B N C v`; logits
    `2 B N N_k qk`; weighted sum `2 B N N_k v`; output `2 B N v C` (keys and
    values are projected at full resolution, then max-pooled to `N_k`).
    """
    projections = 2 * batch * positions * channels * (2 * qk_dim + v_dim)
    rest = (2 * batch * positions * key_positions * (qk_dim + v_dim)
            + 2 * batch * positions * v_dim * channels)
    return _step_flops(projections, rest)


def local_attention_flops(batch, positions, channels, heads, key_dim, value_dim,
                          memory_size):
    """Matmul FLOPs of one LocalSelfAttention2D training step.

    Every query attends to the `memory_size` positions of its block's memory
    window (masked ones included: they are computed). Projections
    `2 B N C H (2 d_k + d_v)`, logits and weighted sum
    `2 B N M H (d_k + d_v)`, output `2 B N H d_v C`.
    """
    projections = 2 * batch * positions * channels * heads * (2 * key_dim + value_dim)
    rest = (2 * batch * positions * memory_size * heads * (key_dim + value_dim)
            + 2 * batch * positions * heads * value_dim * channels)
    return _step_flops(projections, rest)


def output_mean(y_true, y_pred):
    """The loss of the timed steps: the mean of the output (cheap, so the step
    is the layer's forward and backward pass, not a loss's element-wise work)."""
    del y_true
    return keras.ops.mean(y_pred)


def cases(quick):
    batch, side, channels = (4, 16, 128) if quick else (16, 32, 256)
    n = side * side
    local = LocalSelfAttention2D(num_heads=8, key_dim=channels // 8,
                                 query_shape=(8, 8), memory_flange=(8, 8))
    mh, mw = local.memory_extent
    return [
        ("NonLocalBlock", lambda: NonLocalBlock(), (side, side, channels),
         non_local_flops(batch, n, channels, channels // 2)),
        ("SelfAttention2D", lambda: SelfAttention2D(), (side, side, channels),
         self_attention_2d_flops(batch, n, channels, channels // 8, channels // 2,
                                 (-(-side // 2)) ** 2)),  # sub_sample=True: 2x2 pooled keys
        ("LocalSelfAttention2D", lambda: local, (side, side, channels),
         local_attention_flops(batch, n, channels, 8, channels // 8, channels // 8,
                               mh * mw)),
    ], batch


def matmul_step(size):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype="float32")
    b = rng.standard_normal((size, size), dtype="float32")
    return (lambda: a @ b), 2 * size**3


def peer_step(path, x, loss_fn=None):
    """The SGD training step of the peer module in `path` on `x` (channels last)."""
    import torch

    spec = importlib.util.spec_from_file_location("non_local_peer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    peer = module.build(x.shape[-1])
    peer.train()
    x_cf = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))
    optimizer = torch.optim.SGD(peer.parameters(), lr=1e-3)

    def step():
        optimizer.zero_grad(set_to_none=True)
        peer(x_cf).mean().backward()
        optimizer.step()

    return step


def low_precision_kernel(policy):
    """Whether the fused attention kernel gets low-precision inputs under `policy`."""
    compute = keras.DTypePolicy(policy).compute_dtype
    return attention_core.fused_kernel_dtype(compute) != "float32"


def compiled_model(make, shape, jit):
    """`Input(shape) -> make()`, seeded, compiled for SGD on the output's mean."""
    keras.utils.set_random_seed(0)
    model = one_layer_model(make(), shape)
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss=output_mean, jit_compile=jit)
    return model


def float32_kernel_step(make, shape, x, y, jit):
    """A training step of the same layer with the fused kernel's inputs in float32.

    What every backend did before `attention_core.fused_kernel_dtype`: the
    baseline of the low-precision kernel, timed in the same run.
    """
    model = compiled_model(make, shape, jit)

    def step():
        with mock.patch.object(attention_core, "fused_kernel_dtype",
                               lambda *args: "float32"):
            model.train_on_batch(x, y)

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3,
                        help="steps of each side per round, the round's time their "
                             "median (the first step after the other side can find "
                             "its thread pool still spinning on the 2 cores)")
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--quick", action="store_true", help="smaller inputs")
    parser.add_argument("--layers", nargs="+", default=None, metavar="NAME",
                        help="time only these layers (default: all three)")
    parser.add_argument("--dtype-policy", default="float32",
                        help="Keras dtype policy of the layers, e.g. mixed_bfloat16 "
                             "(the reference stays NumPy's float32 matmul)")
    parser.add_argument("--peer", metavar="PATH", default=None,
                        help="a file with build(channels) -> torch.nn.Module (channels "
                             "first): a peer non-local block timed against NonLocalBlock")
    args = parser.parse_args()
    keras.config.set_dtype_policy(args.dtype_policy)
    backend = keras.backend.backend()
    mm_step, mm_flops = matmul_step(args.matmul_size)
    layer_cases, batch = cases(args.quick)
    jit_options = ["auto", True] if backend == "tensorflow" else ["auto"]
    load = os.getloadavg()[0]
    if load > os.cpu_count():
        print(f"note: the machine is busy (load average {load:.1f} on {os.cpu_count()} "
              "CPUs): thread pools that spin-wait (PyTorch's, NumPy's) can then slow "
              "each other by orders of magnitude; pause the other jobs, or compare "
              "with OMP_NUM_THREADS=1")
    allocator = malloc_in_use()
    if backend == "jax" and allocator == "glibc":
        print("note: JAX on glibc's malloc: XLA's CPU runtime allocates its temporaries "
              "afresh on every step and glibc hands large blocks back to the system, so "
              "every step page-faults them in again (about 290 MB, a quarter of the "
              "NonLocalBlock step); docs/non_local.md: run with LD_PRELOAD="
              "libtcmalloc_minimal.so.4")
    print(f"backend {backend}; allocator {allocator}; dtype policy {args.dtype_policy}; "
          f"batch {batch}; "
          f"NumPy float32 matmul "
          f"{args.matmul_size}^3 as the reference rate")
    print(f"{'layer':22} {'jit':5} {'GFLOP/step':>10} {'GFLOP/s':>8} "
          f"{'NumPy GFLOP/s':>13}  fraction of NumPy (median, range)")
    for name, make, shape, flops in layer_cases:
        if args.layers and name not in args.layers:
            continue
        for jit in jit_options:
            model = compiled_model(make, shape, jit)
            x = np.random.default_rng(1).standard_normal((batch,) + shape,
                                                          dtype="float32")
            y = np.zeros_like(x)
            result = paired_ratio(
                lambda m=model, x=x, y=y: m.train_on_batch(x, y), mm_step,
                rounds=args.rounds, steps=args.steps)
            # fraction = (flops / t_layer) / (mm_flops / t_mm)
            scale = flops / mm_flops
            fractions = [scale / r for r in result["ratios"]]
            rate = flops / result["a"] / 1e9
            mm_rate = mm_flops / result["b"] / 1e9
            print(f"{name:22} {jit!s:5} {flops / 1e9:10.2f} {rate:8.1f} {mm_rate:13.1f}  "
                  f"{np.median(fractions):.2f} ({min(fractions):.2f}-{max(fractions):.2f})",
                  flush=True)
            # LocalSelfAttention2D keeps float32 kernel inputs (docs/non_local.md)
            if name != "LocalSelfAttention2D" and low_precision_kernel(args.dtype_policy):
                versus = paired_ratio(
                    lambda m=model, x=x, y=y: m.train_on_batch(x, y),
                    float32_kernel_step(make, shape, x, y, jit), rounds=args.rounds,
                    steps=args.steps)
                print(f"{'  float32 kernel':22} {'':5} {flops / 1e9:10.2f} "
                      f"{flops / versus['b'] / 1e9:8.1f}  step time, low-precision / "
                      f"float32 kernel inputs {describe(versus)}", flush=True)
            if args.peer and name == "NonLocalBlock":
                versus = paired_ratio(
                    lambda m=model, x=x, y=y: m.train_on_batch(x, y),
                    peer_step(args.peer, x), rounds=args.rounds, steps=args.steps)
                print(f"{'  peer (PyTorch)':22} {'':5} {flops / 1e9:10.2f} "
                      f"{flops / versus['b'] / 1e9:8.1f}  ours / peer time "
                      f"{describe(versus)}", flush=True)


if __name__ == "__main__":
    main()
