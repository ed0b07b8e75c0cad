"""Seconds per training epoch of the 28x28 RAM preset on the 4,000 embedded digits.

The peer figure is not measured in this run (that code is not part of this
project), so it is cited with its source: the public PyTorch RAM
(kevinzakka/recurrent-visual-attention, its default settings) took 1.6-3.2 s
per epoch on the same 4,000 embedded digits on the project's 2-core AMD EPYC
machine (the range of the runs reported in the project's issue 14, where our
recipe took 0.6-1.1 s per epoch on the same machine). Printed here: our
seconds per epoch with `fit()` (the median of `--epochs` timed epochs after one
warm-up epoch; the warm-up, which includes compilation, is reported apart)
for batch 64 (the recipe) and 128, and the ratio to each end of the peer's
range. Compare on the same kind of machine only.

Run: `KERAS_BACKEND=tensorflow python benchmarks/ram_epoch.py` (or jax).
"""

import argparse
import statistics
import time

import keras

from keras_attention_vision.applications import RecurrentAttentionModel
from keras_attention_vision.datasets import load_mnist

#: Seconds per epoch of the public PyTorch RAM on these 4,000 digits, 2-core
#: AMD EPYC (issue 14 of this project): (fastest, slowest) of the reported runs.
PEER_SECONDS = (1.6, 3.2)


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
    return statistics.median(times), warmup


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per setting")
    args = parser.parse_args()
    (x, y), _ = load_mnist("embedded", verbose=False)
    x = x[..., None].astype("float32") / 255.0
    backend = keras.backend.backend()
    configs = [(64, "auto", 1), (128, "auto", 1), (64, "auto", 16), (128, "auto", 16)]
    if backend == "tensorflow":  # "auto" means no XLA on a CPU-only TensorFlow
        configs += [(64, True, 1), (64, True, 16), (128, True, 16)]
    print(f"backend {backend}: one epoch of the mnist preset (6 glimpses, 8x8, RNN 256) "
          "on 4,000 digits")
    for batch_size, jit, steps in configs:
        seconds, warmup = epoch_seconds(x, y, batch_size, jit, epochs=args.epochs,
                                        steps_per_execution=steps)
        print(f"  batch {batch_size:3d}, steps_per_execution={steps:2d}, "
              f"jit_compile={jit!s:4}: "
              f"{seconds:6.2f} s/epoch "
              f"(first epoch incl. compilation {warmup:5.1f} s); "
              f"ratio to the public PyTorch RAM (cited, {PEER_SECONDS[0]}-"
              f"{PEER_SECONDS[1]} s): {seconds / PEER_SECONDS[1]:4.2f}-"
              f"{seconds / PEER_SECONDS[0]:4.2f}x")


if __name__ == "__main__":
    main()
