"""Translated and cluttered MNIST: the digit is at its box, seeds reproduce."""

import numpy as np
import pytest

from keras_attention_vision.datasets import make_cluttered_mnist, make_translated_mnist


def _digits(n=12, seed=0):
    rng = np.random.default_rng(seed)
    digits = np.zeros((n, 28, 28), "uint8")
    digits[:, 4:24, 8:20] = rng.integers(1, 256, (n, 20, 12))
    return digits


def test_translated_places_the_digit_in_its_box_on_black():
    digits = _digits()
    canvases, boxes = make_translated_mnist(digits, canvas_size=60, seed=1)
    assert canvases.shape == (12, 60, 60, 1) and canvases.dtype == np.float32
    assert boxes.shape == (12, 4) and boxes.dtype == np.int32
    for canvas, box, digit in zip(canvases[..., 0], boxes, digits):
        y0, x0, y1, x1 = box
        assert y1 - y0 == 28 and x1 - x0 == 28 and y0 >= 0 and x0 >= 0
        assert y1 <= 60 and x1 <= 60
        np.testing.assert_allclose(canvas[y0:y1, x0:x1], digit / 255.0, atol=1e-7)
        outside = canvas.copy()
        outside[y0:y1, x0:x1] = 0
        assert not outside.any()


def test_positions_cover_the_canvas():
    _, boxes = make_translated_mnist(_digits(200), canvas_size=60, seed=2)
    assert boxes[:, 0].min() <= 3 and boxes[:, 0].max() >= 29
    assert boxes[:, 1].min() <= 3 and boxes[:, 1].max() >= 29


def test_cluttered_keeps_the_digit_and_adds_distractors():
    digits = _digits(20)
    canvases, boxes = make_cluttered_mnist(digits, 100, num_distractors=8,
                                           distractor_size=8, seed=3)
    assert canvases.shape == (20, 100, 100, 1)
    assert canvases.min() >= 0 and canvases.max() <= 1
    with_clutter = 0
    for canvas, box, digit in zip(canvases[..., 0], boxes, digits):
        y0, x0, y1, x1 = box
        # Pixels combine by maximum: the digit is never hidden.
        assert np.all(canvas[y0:y1, x0:x1] >= digit / 255.0 - 1e-7)
        outside = canvas.copy()
        outside[y0:y1, x0:x1] = 0
        with_clutter += bool(outside.any())
    assert with_clutter >= 15


def test_seed_reproduces_and_uint8_equals_float():
    digits = _digits()
    a, box_a = make_cluttered_mnist(digits, 60, 4, seed=4)
    b, box_b = make_cluttered_mnist(digits.astype("float32") / 255.0, 60, 4, seed=4)
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_array_equal(box_a, box_b)
    c, box_c = make_cluttered_mnist(digits, 60, 4, seed=5)
    assert not np.array_equal(box_a, box_c)


@pytest.mark.parametrize("kwargs, quoted", [
    ({"canvas_size": 20}, "canvas_size=20"),
    ({"num_distractors": -1}, "num_distractors=-1"),
    ({"distractor_size": 0}, "distractor_size=0"),
    ({"distractor_size": 29}, "distractor_size=29"),
])
def test_bad_arguments_are_quoted(kwargs, quoted):
    with pytest.raises(ValueError, match=quoted):
        make_cluttered_mnist(_digits(2), **{"canvas_size": 60, **kwargs})


def test_bad_image_shape_is_quoted():
    with pytest.raises(ValueError, match=r"images.shape=\(2, 28, 27\)"):
        make_translated_mnist(np.zeros((2, 28, 27)))
