"""MaskedConv2D against keras.layers.Conv2D of the same shape: forward + backward.

The mask is a constant multiplied with the kernel inside `call`; this measures
what that costs. Each step is one compiled training step (forward, backward,
SGD update) of a one-layer model; the two models are timed in alternating
rounds on the same batch, and the ratio is the median over rounds of the ratio
of their median step times in that round.

    KERAS_BACKEND=tensorflow python benchmarks/masked_conv2d_vs_conv2d.py
"""

import argparse
import os
from functools import partial

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _timing import describe, one_layer_model, paired_ratio  # noqa: E402

from keras_attention_vision.layers import MaskedConv2D  # noqa: E402

CASES = (
    # (batch, size, in_channels, filters, kernel, mask_type)
    (32, 28, 64, 64, 3, "B"),
    (32, 28, 1, 64, 7, "A"),
    (16, 32, 96, 96, 5, "B"),
)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    print(f"backend: {keras.backend.backend()}; {args.rounds} alternating rounds of "
          f"{args.steps} training steps (forward + backward + update) per layer; "
          "RATIO is the median of the per-round ratios")
    rng = np.random.default_rng(0)
    worst = 0.0
    for batch, size, cin, filters, kernel, mask_type in CASES:
        shape = (size, size, cin)
        x = rng.normal(size=(batch,) + shape).astype("float32")
        y = rng.normal(size=(batch, size, size, filters)).astype("float32")
        masked = one_layer_model(MaskedConv2D(filters, kernel, mask_type=mask_type), shape)
        plain = one_layer_model(keras.layers.Conv2D(filters, kernel, padding="same"),
                                shape)
        result = paired_ratio(partial(masked.train_on_batch, x, y),
                              partial(plain.train_on_batch, x, y),
                              args.rounds, steps=args.steps, warmup=3)
        worst = max(worst, result["ratio"])
        print(f"batch {batch}, {size}x{size}x{cin} -> {filters}, {kernel}x{kernel} "
              f"mask {mask_type}: MaskedConv2D {1e3 * result['a']:.2f} ms, "
              f"Conv2D {1e3 * result['b']:.2f} ms, RATIO {describe(result)}")
    print(f"RATIO worst case MaskedConv2D / Conv2D: {worst:.3f}  (claim <= 1.05)")


if __name__ == "__main__":
    main()
