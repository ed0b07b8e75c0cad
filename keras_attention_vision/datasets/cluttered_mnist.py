"""Translated and cluttered MNIST (Mnih et al., 2014), generated with a seed.

Both place each 28x28 digit at a random position on a larger black canvas and
return the digit's box, so attention can be scored against where the object is.
Cluttered MNIST adds distractors: random sub-patches cropped from other digits.
"""

import numpy as np

DIGIT_SIZE = 28


def check_digits(images, canvas_size):
    """Checks `(N, 28, 28)` digits and a canvas side; returns the digits as float32 in [0, 1].

    Raises:
        ValueError: quoting the shape or the canvas size when they do not fit.
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (DIGIT_SIZE, DIGIT_SIZE):
        raise ValueError(
            f"`images` must have shape (N, {DIGIT_SIZE}, {DIGIT_SIZE}). "
            f"Received: images.shape={images.shape}"
        )
    if not isinstance(canvas_size, int) or canvas_size < DIGIT_SIZE:
        raise ValueError(
            f"`canvas_size` must be an int >= {DIGIT_SIZE}. "
            f"Received: canvas_size={canvas_size!r}"
        )
    return images.astype("float32") / (255.0 if images.max() > 1 else 1.0)


def make_translated_mnist(images, canvas_size=60, seed=0):
    """Places each digit at a uniformly random position on a black canvas.

    Args:
        images: digits of shape (N, 28, 28), uint8 in [0, 255] or float in [0, 1].
        canvas_size: side of the square canvas (60 in the paper).
        seed: seed of the placement; the same seed gives the same data.

    Returns:
        `(canvases, boxes)`: float32 canvases of shape
        (N, canvas_size, canvas_size, 1) in [0, 1], and int32 boxes of shape
        (N, 4) as `(y_min, x_min, y_max, x_max)` in pixels, max exclusive.

    Example:

    ```python
    (x, y), _ = load_mnist("embedded")
    canvases, boxes = make_translated_mnist(x[:100], canvas_size=60, seed=0)
    ```
    """
    return make_cluttered_mnist(images, canvas_size, num_distractors=0, seed=seed)


def make_cluttered_mnist(
    images, canvas_size=60, num_distractors=4, distractor_size=8, seed=0
):
    """Translated MNIST plus distractor patches cut from other digits.

    Args:
        images: digits of shape (N, 28, 28), uint8 in [0, 255] or float in [0, 1].
        canvas_size: side of the square canvas: 60 (4 distractors) or 100
            (8 distractors) in the paper.
        num_distractors: how many distractor patches each canvas gets.
        distractor_size: side of each square distractor patch (8 in the paper).
        seed: seed of placement and distractors; the same seed gives the same data.

    Returns:
        `(canvases, boxes)` as in `make_translated_mnist`. The digit is drawn
        last, and pixels combine by maximum, so the digit is never hidden.

    Example:

    ```python
    canvases, boxes = make_cluttered_mnist(x[:100], 100, num_distractors=8)
    ```
    """
    digits = check_digits(images, canvas_size)
    if not isinstance(num_distractors, int) or num_distractors < 0:
        raise ValueError(
            "`num_distractors` must be a non-negative int. "
            f"Received: num_distractors={num_distractors!r}"
        )
    if not isinstance(distractor_size, int) or not 0 < distractor_size <= DIGIT_SIZE:
        raise ValueError(
            f"`distractor_size` must be an int in [1, {DIGIT_SIZE}]. "
            f"Received: distractor_size={distractor_size!r}"
        )
    rng = np.random.default_rng(seed)
    n = len(digits)
    canvases = np.zeros((n, canvas_size, canvas_size), "float32")
    span = canvas_size - DIGIT_SIZE + 1
    corners = rng.integers(0, span, size=(n, 2))
    d_span = canvas_size - distractor_size + 1
    crop_span = DIGIT_SIZE - distractor_size + 1
    for i in range(n):
        for _ in range(num_distractors):
            source = digits[rng.integers(n)]
            cy, cx = rng.integers(0, crop_span, size=2)
            py, px = rng.integers(0, d_span, size=2)
            patch = source[cy : cy + distractor_size, cx : cx + distractor_size]
            region = canvases[i, py : py + distractor_size, px : px + distractor_size]
            np.maximum(region, patch, out=region)
        y, x = corners[i]
        region = canvases[i, y : y + DIGIT_SIZE, x : x + DIGIT_SIZE]
        np.maximum(region, digits[i], out=region)
    boxes = np.concatenate([corners, corners + DIGIT_SIZE], axis=1).astype("int32")
    return canvases[..., None], boxes
