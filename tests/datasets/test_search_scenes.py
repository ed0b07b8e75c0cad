"""make_search_scenes: digits placed without overlap, one target or none, seeded."""

import numpy as np
import pytest

from keras_attention_vision.datasets import make_search_scenes


def _digits(n=60, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(1, 256, (n, 28, 28)).astype("uint8")  # no black pixel
    labels = np.arange(n) % 10
    return images, labels


def test_scenes_hold_their_digits_and_one_target_or_none():
    images, labels = _digits()
    data = make_search_scenes(images, labels, 300, absent_fraction=0.3, seed=1)
    assert data["scenes"].shape == (300, 100, 100, 1)
    assert data["scenes"].dtype == np.float32
    counts = (data["labels"] >= 0).sum(1)
    assert counts.min() == 3 and counts.max() == 6
    for i in range(300):
        boxes = data["boxes"][i, :counts[i]]
        # non-overlapping: every pair differs by a digit side in y or in x
        for a in range(counts[i]):
            for b in range(a):
                assert np.any(np.abs(boxes[a, :2] - boxes[b, :2]) >= 28)
        covered = np.zeros((100, 100), bool)
        for y0, x0, y1, x1 in boxes:
            covered[y0:y1, x0:x1] = True
        scene = data["scenes"][i, ..., 0]
        assert np.all(scene[covered] > 0) and np.all(scene[~covered] == 0)
        same = data["labels"][i, :counts[i]] == data["targets"][i]
        if data["present"][i]:
            assert same.sum() == 1
            np.testing.assert_array_equal(data["target_boxes"][i], boxes[same][0])
        else:
            assert same.sum() == 0
            np.testing.assert_array_equal(data["target_boxes"][i], [0, 0, 0, 0])
    assert abs((~data["present"]).mean() - 0.3) < 0.1


def test_same_seed_same_scenes():
    images, labels = _digits()
    a = make_search_scenes(images, labels, 20, seed=3)
    b = make_search_scenes(images, labels, 20, seed=3)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("kwargs, quoted", [
    ({"absent_fraction": 1.0}, "absent_fraction=1.0"),
    ({"min_objects": 0}, "min_objects=0"),
    ({"num_scenes": 2.5}, "num_scenes=2.5"),
    ({"canvas_size": 20}, "canvas_size=20"),
    ({"min_objects": 5, "max_objects": 4}, "min_objects=5, max_objects=4"),
])
def test_bad_arguments_are_quoted(kwargs, quoted):
    images, labels = _digits()
    with pytest.raises(ValueError, match=quoted):
        make_search_scenes(images, labels, **{"num_scenes": 4, **kwargs})


def test_labels_out_of_range_are_refused():
    images, labels = _digits()
    with pytest.raises(ValueError, match="labels.shape"):
        make_search_scenes(images, labels + 5, 4)
