"""Sampling speed of the Image Transformer: cached fast sampler against the naive loop.

Claim checked, timed in this one run on the same machine: sampling 28x28 grey
images, the fast sampler (keys and values cached, one position per layer per
sub-pixel; compiled with tf.function + XLA on TensorFlow, jax.jit on JAX,
eager under torch.no_grad with one intra-op thread on PyTorch) is faster
than the naive loop that runs the whole model eagerly for every sub-pixel,
and gives the same samples for the same seed.

The naive loop takes long on 784 sub-pixels, so it is timed over the first
`--naive-pixels` sub-pixels only (the rest kept, i.e. `complete` with all
other sub-pixels known) and scaled to 784: each of its steps runs the same
whole-image network, so its time per step does not depend on the step. The
fast sampler is timed on the whole image, warm (after a first, compiling
call, reported on its own). The samples are compared on the sub-pixels both
fill. (The naive loop skips the sub-pixels known in every image.) A second
baseline is the same compiled loop recomputing the whole model per
sub-pixel (`sample_full`), which isolates what the cache saves from what
compiling saves (`--skip-full` leaves it out).

    KERAS_BACKEND=jax python benchmarks/image_transformer_sampling.py
"""

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _timing import first_and_warm as timed  # noqa: E402

from keras_attention_vision.applications import ImageTransformer  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--num-images", type=int, default=4)
    parser.add_argument("--attention", choices=("1d", "2d"), default="2d")
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--hidden-size", type=int, default=32)
    parser.add_argument("--naive-pixels", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--skip-full", action="store_true")
    args = parser.parse_args()
    n, backend = args.num_images, keras.backend.backend()
    keras.utils.set_random_seed(0)  # the same weights on every run and backend
    model = ImageTransformer(input_shape=(28, 28, 1), attention=args.attention,
                             num_layers=args.num_layers, hidden_size=args.hidden_size,
                             num_heads=4, query_shape=(7, 7), memory_flange=(7, 7),
                             query_length=49, memory_length=98)
    rng = np.random.default_rng(0)
    model.set_weights([w + 0.3 * rng.normal(size=w.shape).astype("float32")
                       for w in model.get_weights()])
    total = 28 * 28
    print(f"backend: {backend}; {n} 28x28 grey images, 256 levels; ImageTransformer "
          f"{args.attention}: {args.num_layers} layers x {args.hidden_size}, "
          f"{model.count_params():,} parameters")

    fast, fast_first, fast_t = timed(lambda: model.sample(n, seed=1), args.repeats)
    print(f"fast sampler (cached keys/values): first call {fast_first:.2f} s, "
          f"warm {fast_t:.2f} s")
    # teacher-forced check of the fast samples: the whole model's logits on them,
    # drawn with the same uniform numbers (the sampler's: NumPy, same seed), must
    # give them back, except where float rounding moves a CDF boundary over u
    u = np.random.default_rng(1).uniform(size=fast.shape).astype("float32")
    logits = keras.ops.convert_to_numpy(model(fast)).astype("float64")
    prob = np.exp(logits - logits.max(-1, keepdims=True))
    cdf = np.cumsum(prob / prob.sum(-1, keepdims=True), -1)
    redrawn = np.minimum((cdf < u[..., None]).sum(-1), 255)
    off = redrawn != fast
    margin = np.abs(cdf - u[..., None]).min(-1)
    print(f"teacher-forced: the whole model's draws give back {int((~off).sum())} of "
          f"{fast.size} fast sub-pixels; where not, |u - CDF| <= "
          f"{margin[off].max() if off.any() else 0:.1e} (float rounding)")

    # naive loop on the first k sub-pixels of the generation order, the others kept
    k = min(args.naive_pixels, total)
    order = model.sampling_order()
    mask = np.ones((28, 28, 1), bool).reshape(-1)
    mask[order[:k]] = False
    mask = mask.reshape(28, 28, 1)
    images = np.where(mask, fast, 0.0)  # the fast samples where kept
    naive, naive_k, _ = timed(
        lambda: model.complete(images, mask, seed=1, naive=True), 0)
    naive_t = naive_k * total / k
    print(f"naive loop (whole model per sub-pixel, eager): {naive_k:.2f} s for {k} "
          f"sub-pixels, {naive_t:.1f} s scaled to {total}")
    # the same seed draws the same uniform number per sub-pixel, and the kept
    # ones are the fast samples: the first k must be the fast sampler's
    same = np.array_equal(naive, fast)
    print(f"identical samples on the {k} sub-pixels both drew: {same} "
          f"({int((naive != fast).sum())} differ)")
    print(f"RATIO naive / fast (warm): {naive_t / fast_t:.1f}x")
    print(f"RATIO naive / fast (first call, compile included): "
          f"{naive_t / fast_first:.1f}x")

    if args.skip_full:
        return
    # the same compiled loop, recomputing the whole model per sub-pixel
    # (AutoregressiveSampler.sample_full) instead of the cached window
    model._sample_loop, model._samplers = model.sample_full, {}
    full, full_first, full_t = timed(lambda: model.sample(n, seed=1), args.repeats)
    print(f"compiled loop recomputing the whole model per sub-pixel: first call "
          f"{full_first:.2f} s, warm {full_t:.2f} s; same samples as the fast "
          f"sampler: {np.array_equal(full, fast)} ({int((full != fast).sum())} of "
          f"{fast.size} differ)")
    print(f"RATIO compiled whole-model loop / fast (warm): {full_t / fast_t:.1f}x")


if __name__ == "__main__":
    main()
