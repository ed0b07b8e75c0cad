"""GlimpseSensor (one batched gather) against per-sample Python loops of crops.

Claim: on 3 scales of 12x12 from 100x100 images, batch 256, the vectorised
sensor is at least 10x faster than a per-sample loop of crops, the way many
public RAM retinas are written. Both baselines are measured in the same run:

- `loop (keras ops)`: for each sample and scale, pad, slice and block-average
  with `keras.ops`, eagerly (what a per-sample retina costs in a framework);
- `loop (NumPy)`: the same loop in NumPy (no framework overhead at all).

Run: `KERAS_BACKEND=tensorflow python benchmarks/glimpse_sensor_vs_loop.py`
(also jax, torch).
"""

import math

import keras
import numpy as np
from _timing import describe, paired_ratio
from keras import ops

from keras_attention_vision.layers import GlimpseSensor

BATCH, SIZE, PATCH, SCALES, FACTOR = 256, 100, 12, 3, 2


def loop_keras(images, locations):
    out = []
    for b in range(images.shape[0]):
        per_scale = []
        for k in range(SCALES):
            f = FACTOR**k
            side = PATCH * f
            pad = side
            padded = ops.pad(images[b], ((pad, pad), (pad, pad), (0, 0)))
            top = math.floor((float(locations[b, 0]) + 1) / 2 * SIZE - side / 2 + 0.5)
            left = math.floor((float(locations[b, 1]) + 1) / 2 * SIZE - side / 2 + 0.5)
            crop = ops.slice(padded, (pad + top, pad + left, 0), (side, side, 1))
            crop = ops.reshape(crop, (PATCH, f, PATCH, f, 1))
            per_scale.append(ops.mean(crop, axis=(1, 3)))
        out.append(ops.stack(per_scale))
    return ops.stack(out)


def loop_numpy(images, locations):
    out = np.zeros((images.shape[0], SCALES, PATCH, PATCH, 1), "float32")
    for b in range(images.shape[0]):
        for k in range(SCALES):
            f = FACTOR**k
            side = PATCH * f
            padded = np.pad(images[b], ((side, side), (side, side), (0, 0)))
            top = math.floor((locations[b, 0] + 1) / 2 * SIZE - side / 2 + 0.5)
            left = math.floor((locations[b, 1] + 1) / 2 * SIZE - side / 2 + 0.5)
            crop = padded[side + top:side + top + side, side + left:side + left + side]
            out[b, k] = crop.reshape(PATCH, f, PATCH, f, 1).mean(axis=(1, 3))
    return out


def compiled(sensor):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(lambda x, loc: sensor([x, loc]), jit_compile=True)
    if backend == "jax":
        import jax

        return jax.jit(lambda x, loc: sensor([x, loc]))
    return lambda x, loc: sensor([x, loc])  # torch: eager


def _synced(fn):
    """`fn` followed by a host copy of its result (waits for async backends)."""
    def step():
        result = fn()
        return result if isinstance(result, np.ndarray) else ops.convert_to_numpy(result)
    return step


def main():
    rng = np.random.default_rng(0)
    images_np = rng.uniform(size=(BATCH, SIZE, SIZE, 1)).astype("float32")
    locations_np = rng.uniform(-1, 1, (BATCH, 2)).astype("float32")
    images, locations = ops.convert_to_tensor(images_np), ops.convert_to_tensor(locations_np)
    sensor = GlimpseSensor(PATCH, SCALES, FACTOR)
    fast = compiled(sensor)
    ours = ops.convert_to_numpy(fast(images, locations))
    np.testing.assert_allclose(ours, loop_numpy(images_np, locations_np), atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(loop_keras(images, locations_np)),
                               ours, atol=1e-5)
    ours_step = _synced(lambda: fast(images, locations))
    # Each baseline against the compiled sensor in alternating rounds: ratio
    # baseline / ours, median of the per-round ratios with their range.
    rounds = {
        "GlimpseSensor eager    ": paired_ratio(_synced(lambda: sensor([images, locations])),
                                                ours_step, rounds=5, warmup=1),
        "loop (keras ops, eager)": paired_ratio(
            _synced(lambda: loop_keras(images, locations_np)), ours_step, rounds=3,
            warmup=1),
        "loop (NumPy)           ": paired_ratio(
            lambda: loop_numpy(images_np, locations_np), ours_step, rounds=3, warmup=1),
    }
    print(f"backend {keras.backend.backend()}: batch {BATCH}, {SCALES} scales of "
          f"{PATCH}x{PATCH} on {SIZE}x{SIZE}")
    t_ours = rounds["loop (keras ops, eager)"]["b"]
    print(f"  GlimpseSensor compiled : {1e3 * t_ours:8.2f} ms")
    for name, result in rounds.items():
        print(f"  {name}: {1e3 * result['a']:8.2f} ms  -> ratio {describe(result)}")
    loop_ratio = rounds["loop (keras ops, eager)"]["ratio"]
    print(f"  claim >= 10x vs the per-sample keras loop: "
          f"{'holds' if loop_ratio >= 10 else 'FAILS'}")

if __name__ == "__main__":
    main()
