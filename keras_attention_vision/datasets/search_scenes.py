"""Visual-search scenes: several MNIST digits on a canvas and a named target class.

The task of the visual search agent (after Minut & Mahadevan, 2001): find the
digit of a given class in a scene of several digits, or give up when it is
not there. Digits are placed at random, without overlap, so each box holds
exactly one digit and "the target is under the fovea" has one meaning.
"""

import numpy as np

from keras_attention_vision.datasets.cluttered_mnist import DIGIT_SIZE, check_digits


def _place(rng, count, canvas_size, tries=100):
    """Top-left corners of `count` non-overlapping digit boxes (rejection sampling).

    Two boxes overlap unless their corners differ by at least a digit side in
    `y` or in `x`. Candidates are drawn in blocks and kept greedily; a block
    that cannot hold `count` boxes is redrawn."""
    span = canvas_size - DIGIT_SIZE + 1
    for _ in range(tries):
        candidates = rng.integers(0, span, size=(8 * count, 2))
        kept = [candidates[0]]
        for corner in candidates[1:]:
            far = np.abs(np.array(kept) - corner) >= DIGIT_SIZE
            if far.any(axis=1).all():
                kept.append(corner)
                if len(kept) == count:
                    return np.array(kept)
        if count == 1:
            return np.array(kept)
    raise ValueError(  # only reachable for canvases too small for `count` digits
        f"Could not place {count} non-overlapping {DIGIT_SIZE}x{DIGIT_SIZE} digits on "
        f"a {canvas_size}x{canvas_size} canvas. Received: canvas_size={canvas_size}"
    )


def make_search_scenes(images, labels, num_scenes, canvas_size=100, min_objects=3,
                       max_objects=6, absent_fraction=0.25, seed=0):
    """Scenes of 3-6 non-overlapping digits, a target class, and the target's box.

    Each scene draws its number of digits uniformly in `[min_objects,
    max_objects]` and its target class uniformly in 0-9. With probability
    `1 - absent_fraction` exactly one digit of the target class is in the
    scene and every other digit is of another class; otherwise (the target is
    absent, the right answer is to give up) all digits are of other classes.
    Pixels are in `[0, 1]`, the background black.

    Args:
        images: digits `(N, 28, 28)`, uint8 in [0, 255] or float in [0, 1].
        labels: their classes `(N,)`, integers in 0-9.
        num_scenes: how many scenes to make.
        canvas_size: side of the square scene (100 in the issue's task).
        min_objects, max_objects: the range of the number of digits per scene.
        absent_fraction: the share of scenes without the target, in `[0, 1)`.
        seed: seed of everything drawn; the same seed gives the same scenes.

    Returns:
        A dict of NumPy arrays:
        `scenes` float32 `(num_scenes, canvas_size, canvas_size, 1)`;
        `targets` int32 `(num_scenes,)`, the class to find;
        `target_boxes` int32 `(num_scenes, 4)` as `(y_min, x_min, y_max,
        x_max)` in pixels, max exclusive, all zeros (an empty box) when the
        target is absent;
        `present` bool `(num_scenes,)`;
        `boxes` int32 `(num_scenes, max_objects, 4)` and `labels` int32
        `(num_scenes, max_objects)` of every digit (padded with zeros and -1).

    Raises:
        ValueError: quoting the argument when a count, the fraction, the
            labels or the canvas does not fit.

    Example:

    ```python
    (x, y), _ = load_mnist("embedded")
    data = make_search_scenes(x, y, 1000, seed=0)
    data["scenes"].shape, data["targets"][:3], data["target_boxes"][0]
    ```
    """
    digits = check_digits(images, canvas_size)
    labels = np.asarray(labels).reshape(-1).astype("int64")
    if len(labels) != len(digits) or labels.min() < 0 or labels.max() > 9:
        raise ValueError(
            "`labels` must hold one class in 0-9 per image. "
            f"Received: labels.shape={labels.shape}, images.shape={digits.shape}"
        )
    for name, value in (("num_scenes", num_scenes), ("min_objects", min_objects),
                        ("max_objects", max_objects)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")
    if min_objects > max_objects:
        raise ValueError("`min_objects` must be <= `max_objects`. Received: "
                         f"min_objects={min_objects}, max_objects={max_objects}")
    if isinstance(absent_fraction, bool) or not isinstance(
            absent_fraction, (int, float)) or not 0 <= absent_fraction < 1:
        raise ValueError("`absent_fraction` must be a number in [0, 1). "
                         f"Received: absent_fraction={absent_fraction!r}")
    by_class = [np.flatnonzero(labels == c) for c in range(10)]
    rng = np.random.default_rng(seed)
    scenes = np.zeros((num_scenes, canvas_size, canvas_size), "float32")
    targets = rng.integers(0, 10, num_scenes).astype("int32")
    present = rng.random(num_scenes) >= absent_fraction
    counts = rng.integers(min_objects, max_objects + 1, num_scenes)
    boxes = np.zeros((num_scenes, max_objects, 4), "int32")
    object_labels = np.full((num_scenes, max_objects), -1, "int32")
    target_boxes = np.zeros((num_scenes, 4), "int32")
    others = [np.concatenate([by_class[c] for c in range(10) if c != t]) for t in range(10)]
    for i in range(num_scenes):
        target, count = targets[i], counts[i]
        if present[i] and len(by_class[target]) == 0:
            raise ValueError(f"No digit of class {target} to use as a target. "
                             f"Received: labels with classes {np.unique(labels)}")
        chosen = rng.choice(others[target], count - int(present[i]), replace=False)
        if present[i]:
            chosen = np.concatenate([[rng.choice(by_class[target])], chosen])
        corners = _place(rng, count, canvas_size)
        for k, (index, (y, x)) in enumerate(zip(chosen, corners)):
            scenes[i, y:y + DIGIT_SIZE, x:x + DIGIT_SIZE] = digits[index]
            boxes[i, k] = (y, x, y + DIGIT_SIZE, x + DIGIT_SIZE)
            object_labels[i, k] = labels[index]
        if present[i]:
            target_boxes[i] = boxes[i, 0]
    return {"scenes": scenes[..., None], "targets": targets, "target_boxes": target_boxes,
            "present": present, "boxes": boxes, "labels": object_labels}
