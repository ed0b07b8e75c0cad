"""Timing shared by the benchmark scripts: paired, alternating rounds.

The machines are shared and noisy, so a claim is a ratio of two sides timed
in the same run: each round times both sides (in alternating order), and the
figure is the median of the per-round ratios, with their range. A slow spell
of the machine hits both sides of a round alike and cancels in its ratio.
Not a public module: scripts import it as `_timing` (`kav benchmark` puts this
folder on `sys.path`).
"""

import statistics
import time

import keras


def one_layer_model(layer, shape, loss="mse"):
    """A compiled model `Input(shape) -> layer`, trained by SGD on `loss`."""
    inputs = keras.Input(shape)
    model = keras.Model(inputs, layer(inputs))
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss=loss)
    return model


def train_step_times(model, x, y, steps):
    """Wall times in seconds of `steps` calls of `model.train_on_batch(x, y)`."""
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    return times


def paired_ratio(step_a, step_b, rounds, steps=1, warmup=2):
    """Times two step functions in alternating rounds; returns the ratio a / b.

    Args:
        step_a, step_b: callables of no argument, one step each.
        rounds: number of rounds; side `b` goes first in even rounds.
        steps: steps of each side per round (its median is the round's time).
        warmup: untimed steps of each side first (compilation, caches).

    Returns:
        A dict: `ratio` (median of the per-round ratios), `low` and `high`
        (their range), `ratios`, and `a` / `b` (median step times in seconds).
    """
    for _ in range(warmup):
        step_a()
        step_b()
    times = {"a": [], "b": []}
    ratios = []

    def timed(step):
        samples = []
        for _ in range(steps):
            start = time.perf_counter()
            step()
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)

    for r in range(rounds):
        order = (("b", step_b), ("a", step_a)) if r % 2 == 0 else \
            (("a", step_a), ("b", step_b))
        for side, step in order:
            times[side].append(timed(step))
        ratios.append(times["a"][-1] / times["b"][-1])
    return {"ratio": statistics.median(ratios), "low": min(ratios), "high": max(ratios),
            "ratios": ratios, "a": statistics.median(times["a"]),
            "b": statistics.median(times["b"])}


def first_and_warm(fn, repeats):
    """Calls `fn` once cold, then `repeats` times warm.

    Returns:
        `(output of the first call, its seconds (tracing and compiling
        included), median seconds of the warm calls)`; with `repeats=0` the
        warm time is the first call's.
    """
    start = time.perf_counter()
    out = fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return out, first, statistics.median(times) if times else first


def describe(result):
    """`'0.912 (median of 5 rounds, range 0.85-1.02)'` for a `paired_ratio` result."""
    return (f"{result['ratio']:.3f} (median of {len(result['ratios'])} rounds, "
            f"range {result['low']:.3f}-{result['high']:.3f})")


def malloc_in_use():
    """`"tcmalloc"` or `"jemalloc"` when preloaded into this process, else `"glibc"`."""
    try:
        with open("/proc/self/maps") as maps:
            text = maps.read()
    except OSError:
        return "unknown"
    for name in ("tcmalloc", "jemalloc"):
        if name in text:
            return name
    return "glibc"
