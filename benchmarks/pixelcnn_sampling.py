"""Sampling speed of our PixelCNN against a naive loop and tfp.distributions.PixelCNN.

Claims checked, all timed in this one run on the same machine:

1. our compiled, row-cached sampler is at least 10x faster than our own naive
   loop that calls the whole network eagerly for every pixel, and gives the
   identical samples for the same seed;
2. it is at least 20x faster than `tfp.distributions.PixelCNN` (a small
   PixelCNN++: one resnet layer, one hierarchy, 32 filters, one logistic
   component over {0, 1}) sampling the same number of 28x28 images (TensorFlow
   backend only; tfp's sampler is run inside `tf.function`, and also eagerly
   with `--tfp-eager`, and the faster is kept).

tfp's network is costlier per pass than ours (about 231k against 104k
parameters at the defaults), so the TensorFlow run also times one full 28x28
forward pass of each network (in `tf.function`, alternating rounds, median
ratio) and reports the sampling ratio per network pass: the tfp / ours
sampling ratio divided by the tfp / ours pass ratio, the speed-up a network
of equal cost would see from our sampler.

Times are the median of `--repeats` warm calls; the first call (tracing and
compiling) is reported on its own.

    KERAS_BACKEND=tensorflow python benchmarks/pixelcnn_sampling.py
"""

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _timing import describe, paired_ratio  # noqa: E402
from _timing import first_and_warm as timed  # noqa: E402

from keras_attention_vision.applications import PixelCNN  # noqa: E402


def tfp_sampler(n, filters, seed):
    import tensorflow as tf
    import tensorflow_probability as tfp

    dist = tfp.distributions.PixelCNN(
        image_shape=(28, 28, 1), num_resnet=1, num_hierarchies=1,
        num_filters=filters, num_logistic_mix=1, dropout_p=0.0,
        use_weight_norm=False, high=1, low=0)
    dist.log_prob(tf.zeros((1, 28, 28, 1)))  # builds the network
    params = sum(int(np.prod(w.shape)) for w in dist.network.weights)
    eager = lambda: dist.sample(n, seed=seed)  # noqa: E731
    graph = tf.function(lambda: dist.sample(n, seed=seed))
    return eager, graph, params, dist.network


def pass_ratio(tfp_network, model, n, rounds=5):
    """tfp / ours time of one full forward pass on `n` 28x28 images (TF)."""
    import tensorflow as tf

    x = tf.random.uniform((n, 28, 28, 1), seed=0)
    ours = tf.function(lambda: model(tf.round(x), training=False))
    theirs = tf.function(lambda: tfp_network(2.0 * tf.round(x) - 1.0, training=False))
    return paired_ratio(theirs, ours, rounds=rounds, steps=3)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--num-images", type=int, default=16)
    parser.add_argument("--num-layers", type=int, default=5)
    parser.add_argument("--filters", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-tfp", action="store_true")
    parser.add_argument("--tfp-eager", action="store_true",
                        help="also time tfp's sampler eagerly (slower than tf.function)")
    args = parser.parse_args()
    n = args.num_images
    backend = keras.backend.backend()
    print(f"backend: {backend}; {n} binarised 28x28 images; "
          f"our gated PixelCNN: {args.num_layers} blocks x {args.filters} filters")

    model = PixelCNN(input_shape=(28, 28, 1), num_layers=args.num_layers,
                     filters=args.filters, distribution="bernoulli")
    rng = np.random.default_rng(0)  # random weights, away from the zero init
    model.set_weights([w + 0.1 * rng.normal(size=w.shape).astype("float32")
                       for w in model.get_weights()])
    print(f"our parameters: {model.count_params():,}")

    fast, fast_first, fast_t = timed(lambda: model.sample(n, seed=1), args.repeats)
    print(f"ours, fast sampler (compiled on TF/JAX; eager, 3 pixels per call on torch) "
          f"with row/column "
          f"windows: first call {fast_first:.2f} s, "
          f"warm {fast_t:.2f} s")
    naive, naive_t, _ = timed(lambda: model.sample(n, seed=1, naive=True), 0)
    print(f"ours, naive loop (whole network per pixel, eager): {naive_t:.2f} s")
    same = np.array_equal(fast, naive)
    print(f"identical samples for the same seed: {same} "
          f"({int((fast != naive).sum())} of {fast.size} pixels differ)")
    print(f"RATIO naive / fast (warm): {naive_t / fast_t:.1f}x  (claim >= 10x)")
    print(f"RATIO naive / fast (first call, compile included): "
          f"{naive_t / fast_first:.1f}x")
    again = model.sample(n, seed=1)
    print(f"same seed, same samples on a second call: {np.array_equal(fast, again)}")

    if args.skip_tfp:
        return
    if backend != "tensorflow":
        print("tfp.distributions.PixelCNN comparison: TensorFlow backend only; skipped.")
        return
    eager, graph, params, network = tfp_sampler(n, args.filters, seed=1)
    print(f"tfp.distributions.PixelCNN parameters: {params:,}")
    _, graph_first, graph_t = timed(graph, 1)
    print(f"tfp PixelCNN sample in tf.function: first call {graph_first:.2f} s, "
          f"warm {graph_t:.2f} s")
    best = graph_t
    if args.tfp_eager:
        _, eager_t, _ = timed(eager, 0)
        print(f"tfp PixelCNN sample eager: {eager_t:.2f} s")
        best = min(graph_t, eager_t)
    sampling = best / fast_t
    print(f"RATIO tfp (best of tf.function / eager, warm) / ours (warm): "
          f"{sampling:.1f}x  (claim >= 20x)")
    passes = pass_ratio(network, model, n)
    print(f"one full forward pass, tfp / ours: {describe(passes)} "
          f"({passes['a'] * 1e3:.1f} ms / {passes['b'] * 1e3:.1f} ms)")
    print(f"RATIO per network pass (sampling ratio / pass ratio): "
          f"{sampling / passes['ratio']:.1f}x (range "
          f"{sampling / passes['high']:.1f}-{sampling / passes['low']:.1f}x)")


if __name__ == "__main__":
    main()
