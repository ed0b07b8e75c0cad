"""Where a trained RAM's glimpses land: on the digit, or on the clutter?

Follows the mean path (M=1) of a saved model on the recipe's test canvases
(the 1,000 embedded test digits, drawn with the recipe's seed), and prints
the share of canvases with at least one glimpse centre inside the digit's
box, the test error on those and on the others, and the share of glimpses
inside the box at each step (`metrics.glimpse_hits`). Issue 15's eighth round
read the policy of the cluttered100 runs with it.

    KERAS_BACKEND=jax python applications/ram/where_glimpses_land.py \\
        OUT/ram/ram_cluttered100.keras --preset cluttered100
"""

import argparse
import json


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a ram_PRESET.keras file of `kav train ram`")
    parser.add_argument("--preset", default="cluttered100",
                        choices=["translated", "cluttered60", "cluttered100"])
    parser.add_argument("--seed", type=int, default=0,
                        help="the run's --seed (the test canvases are drawn from it)")
    parser.add_argument("--margin", type=int, default=0,
                        help="grow the digit's 28x28 box by this many pixels per side")
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    from keras_attention_vision.datasets import load_mnist, make_cluttered_mnist
    from keras_attention_vision.metrics import glimpse_hits
    from keras_attention_vision.recipes.ram import CANVAS, TEST_SEED

    model = keras.saving.load_model(args.model)
    size, clutter = CANVAS[args.preset]
    channels_first = model.data_format == "channels_first"
    expected = (1, size, size) if channels_first else (size, size, 1)
    if tuple(model.image_shape) != expected:
        parser.error(f"{args.model} is a RAM for images of shape {model.image_shape}, "
                     f"not the {args.preset} canvases {expected}: give its --preset")
    _, (x_test, y_test) = load_mnist("embedded", verbose=False)
    # the recipe's test set (recipes.ram._data), with the digits' boxes
    canvases, boxes = make_cluttered_mnist(x_test, size, clutter, seed=TEST_SEED + args.seed)
    boxes = boxes + np.array([-1, -1, 1, 1]) * args.margin
    if channels_first:
        canvases = np.moveaxis(canvases, -1, 1)
    out = model.rollout(canvases, sample=False)
    locations = keras.ops.convert_to_numpy(out["locations"])
    wrong = keras.ops.convert_to_numpy(out["logits"]).argmax(-1) != y_test
    hits = glimpse_hits(locations, boxes, (size, size), reduction="none")
    found = hits.any(axis=1)
    figures = {
        "canvases": len(y_test),
        "test_error_m1": round(100 * wrong.mean(), 1),
        "found": round(100 * found.mean(), 1),
        "test_error_found": round(100 * wrong[found].mean(), 1) if found.any() else None,
        "test_error_not_found": (round(100 * wrong[~found].mean(), 1)
                                 if (~found).any() else None),
        "glimpses_inside_per_step": [round(100 * v, 1) for v in hits.mean(axis=0)],
    }
    print(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main()
