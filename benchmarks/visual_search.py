"""Visual search: the learned agent's inference cost against the raster scan.

Question measured: does the learned fixation policy cost more per fixation
than following a fixed raster scan with the same fovea and the same "found"
decision? The policy head is one small dense layer per fixation, but each
fixation of the agent depends on what the previous one saw, while the
raster scan's fixations are known in advance (the compiled search can read
all its glimpses at once). The cost of a search that stops at "found" is
then the time per fixation times the fixations it makes.

Measured in one run, on the active backend (TensorFlow or JAX), with paired
alternating rounds (`_timing.paired_ratio`):

1. compiled K-fixation searches of a batch of test scenes: the agent's
   fixations vs the raster scan's (time ratio per search);
2. the fixations each needs (K stops counting when "found" is said, a miss
   counts K), from the same searches, and the resulting cost ratio
   (time per fixation x fixations).

Usage: `python benchmarks/visual_search.py [path/to/visual_search_agent.keras]`
(default: `applications/visual_search/visual_search_agent.keras` when present,
otherwise an untrained agent, whose fixation counts mean nothing).
"""

import os
import sys

import _timing
import keras
import numpy as np

from keras_attention_vision.applications import VisualSearchAgent
from keras_attention_vision.applications.visual_search_agent import (
    raster_fixations,
    search_metrics,
)
from keras_attention_vision.datasets import load_mnist, make_search_scenes

DEFAULT_MODEL = os.path.join("applications", "visual_search", "visual_search_agent.keras")
BATCH = 250


def _compiled(fn):
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(fn)
    raise SystemExit("The visual search agent needs TensorFlow or JAX (REINFORCE on TFP).")


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_MODEL
    if os.path.exists(path):
        agent = keras.saving.load_model(path)
        trained = True
    else:
        agent = VisualSearchAgent(seed=0)
        trained = False
    _, (x_test, y_test) = load_mnist("embedded", verbose=False)
    data = make_search_scenes(x_test, y_test, BATCH, seed=10_000)
    scenes = keras.ops.convert_to_tensor(data["scenes"])
    targets = keras.ops.convert_to_tensor(data["targets"])
    k = agent.num_fixations
    grid = keras.ops.convert_to_tensor(raster_fixations(agent.height, agent.width, 28, k))
    agent((scenes[:1], targets[:1]))

    @_compiled
    def policy_search(scenes, targets):
        out = agent.rollout(scenes, targets)
        return out["locations"], out["found"]

    @_compiled
    def raster_search(scenes, targets):
        out = agent.rollout(scenes, targets, locations=grid)
        return out["locations"], out["found"]

    def block(out):
        return [np.asarray(keras.ops.convert_to_numpy(o)) for o in out]

    result = _timing.paired_ratio(lambda: block(policy_search(scenes, targets)),
                                  lambda: block(raster_search(scenes, targets)), rounds=7)
    present = data["target_boxes"][:, 2] > data["target_boxes"][:, 0]
    fixations = {}
    for name, fn in (("agent", policy_search), ("raster", raster_search)):
        locations, found = block(fn(scenes, targets))
        _, _, hits = agent.rewards(locations, found, data["target_boxes"])
        figures = search_metrics(found, keras.ops.convert_to_numpy(hits), present)
        said = found.any(1)
        steps = np.where(said, found.argmax(1) + 1, k)  # fixations made before stopping
        fixations[name] = (float(steps.mean()), figures)
    ratio = result["ratio"] * fixations["agent"][0] / fixations["raster"][0]
    which = f"trained agent {path}" if trained else "UNTRAINED agent"
    print(f"backend {keras.backend.backend()}, {which}, {BATCH} test scenes, K={k}")
    print(f"time of a K-fixation search, agent / raster scan: {_timing.describe(result)} "
          f"({1000 * result['a']:.1f} ms vs {1000 * result['b']:.1f} ms per batch)")
    for name, (steps, figures) in fixations.items():
        print(f"{name}: {steps:.2f} fixations made per scene (stopping at 'found'), success "
              f"within K {100 * figures['success_within_k']:.1f}%")
    print(f"cost of a search that stops at 'found', agent / raster scan: {ratio:.3f} "
          "(time ratio per K fixations x ratio of fixations made)")


if __name__ == "__main__":
    main()
