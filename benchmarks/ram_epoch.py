"""Seconds per training epoch of the 28x28 RAM preset on the 4,000 embedded digits.

The reference figure: the best public PyTorch RAM does one epoch of these 4,000
digits in about 0.6 s on this 2-core machine (measured by the lead, not in this
run: that code is not part of this project). Printed here: our seconds per
epoch with `fit()` after one warm-up epoch (compilation excluded, reported
apart), for batch 64 (the recipe) and 128, and the ratio to 0.6 s.

Run: `KERAS_BACKEND=tensorflow python benchmarks/ram_epoch.py` (or jax).
"""

import time

import keras

from keras_attention_vision.applications import RecurrentAttentionModel
from keras_attention_vision.datasets import load_mnist

PUBLIC_PYTORCH_SECONDS = 0.6


def epoch_seconds(x, y, batch_size, jit_compile="auto", epochs=2, steps_per_execution=1):
    keras.utils.set_random_seed(0)
    model = RecurrentAttentionModel.from_preset("mnist", seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit_compile,
                  steps_per_execution=steps_per_execution)
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
    warmup = time.perf_counter() - start
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
        times.append(time.perf_counter() - start)
    return min(times), warmup


def main():
    (x, y), _ = load_mnist("embedded", verbose=False)
    x = x[..., None].astype("float32") / 255.0
    backend = keras.backend.backend()
    configs = [(64, "auto", 1), (128, "auto", 1), (64, "auto", 16), (128, "auto", 16)]
    if backend == "tensorflow":  # "auto" means no XLA on a CPU-only TensorFlow
        configs += [(64, True, 1), (64, True, 16), (128, True, 16)]
    print(f"backend {backend}: one epoch of the mnist preset (6 glimpses, 8x8, RNN 256) "
          "on 4,000 digits")
    for batch_size, jit, steps in configs:
        seconds, warmup = epoch_seconds(x, y, batch_size, jit, steps_per_execution=steps)
        print(f"  batch {batch_size:3d}, steps_per_execution={steps:2d}, "
              f"jit_compile={jit!s:4}: "
              f"{seconds:6.2f} s/epoch "
              f"(first epoch incl. compilation {warmup:5.1f} s); "
              f"ratio to public PyTorch 0.6 s: {seconds / PUBLIC_PYTORCH_SECONDS:4.2f}x")


if __name__ == "__main__":
    main()
