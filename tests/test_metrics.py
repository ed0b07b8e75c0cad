"""Metrics against NumPy computations written from their definitions."""

import math
import re

import numpy as np
import pytest

from keras_attention_vision.metrics import (
    BitsPerDim,
    bernoulli_nll,
    bits_per_dim,
    categorical_nll,
)
from tests.testing import to_numpy


def _np_bernoulli_nll(t, logits):
    p = 1.0 / (1.0 + np.exp(-logits.astype("float64")))
    ll = t * np.log(p) + (1 - t) * np.log(1 - p)
    return -ll.reshape(len(t), -1).sum(-1)


def _np_categorical_nll(t, logits):
    z = logits.astype("float64")
    z = z - z.max(-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_p, t[..., None], axis=-1)[..., 0]
    return -picked.reshape(len(t), -1).sum(-1)


def test_bernoulli_nll_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 4, 4, 1)).astype("float32") * 3
    t = (rng.uniform(size=logits.shape) < 0.5).astype("float32")
    np.testing.assert_allclose(to_numpy(bernoulli_nll(t, logits)),
                               _np_bernoulli_nll(t, logits), rtol=1e-5)


def test_categorical_nll_matches_numpy():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 3, 3, 3, 256)).astype("float32")
    t = rng.integers(0, 256, size=(2, 3, 3, 3))
    np.testing.assert_allclose(to_numpy(categorical_nll(t, logits)),
                               _np_categorical_nll(t, logits), rtol=1e-5)


def test_bits_per_dim_formula():
    assert bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)


def test_bits_per_dim_metric_averages_over_batches_and_weights():
    rng = np.random.default_rng(2)
    metric = BitsPerDim("bernoulli")
    expected, weights = [], []
    for _ in range(2):
        logits = rng.normal(size=(4, 5, 5, 1)).astype("float32")
        t = (rng.uniform(size=logits.shape) < 0.3).astype("float32")
        w = rng.uniform(size=4).astype("float32")
        metric.update_state(t, logits, sample_weight=w)
        expected.append(_np_bernoulli_nll(t, logits) / (25 * np.log(2)))
        weights.append(w)
    expected, weights = np.concatenate(expected), np.concatenate(weights)
    np.testing.assert_allclose(float(to_numpy(metric.result())),
                               np.sum(expected * weights) / np.sum(weights), rtol=1e-5)


def test_bits_per_dim_metric_categorical_and_config():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 2, 2, 3, 256)).astype("float32")
    t = rng.integers(0, 256, size=(2, 2, 2, 3))
    metric = BitsPerDim.from_config(BitsPerDim("categorical").get_config())
    metric.update_state(t, logits)
    np.testing.assert_allclose(float(to_numpy(metric.result())),
                               np.mean(_np_categorical_nll(t, logits)) / (12 * np.log(2)),
                               rtol=1e-5)


def test_bad_distribution():
    with pytest.raises(ValueError, match="distribution='gaussian'"):
        BitsPerDim("gaussian")


# Localisation of attention maps against boxes (y_min, x_min, y_max, x_max), max exclusive.

def test_pointing_game_peak_inside_scores_one_outside_zero():
    from keras_attention_vision.metrics import pointing_game

    maps = np.zeros((2, 4, 4))
    maps[:, 1, 2] = 1.0  # cell (1, 2) of a 4x4 map on an 8x8 image: centre (3, 5)
    boxes = np.array([[2, 4, 6, 8], [0, 0, 2, 2]])
    hits = pointing_game(maps, boxes, image_shape=(8, 8), reduction="none")
    np.testing.assert_array_equal(hits, [1.0, 0.0])
    assert pointing_game(maps, boxes, image_shape=(8, 8)) == 0.5
    # The box's max is exclusive: a centre at y=3 is outside [0, 3).
    assert pointing_game(maps[:1], [[0, 4, 3, 8]], image_shape=(8, 8)) == 0.0


def test_glimpse_hits_by_hand():
    from keras_attention_vision.metrics import glimpse_hits

    # A 100x60 image (H x W): l = (-0.5, 0.5) is the pixel (25, 45); l = 0 is
    # (50, 30); l = -1 is (0, 0).
    locations = np.array([[[-0.5, 0.5], [0.0, 0.0], [-1.0, -1.0]],
                          [[0.0, 0.0], [-0.5, 0.5], [0.5, -0.5]]])
    boxes = np.array([[20, 40, 30, 50],     # holds (25, 45) only
                      [50, 30, 51, 31]])    # holds (50, 30) only
    hits = glimpse_hits(locations, boxes, (100, 60), reduction="none")
    np.testing.assert_array_equal(hits, [[1, 0, 0], [1, 0, 0]])
    assert glimpse_hits(locations, boxes, (100, 60)) == 2 / 6
    # max exclusive: (50, 30) is outside [40, 50) x [20, 30)
    assert glimpse_hits(np.zeros((1, 1, 2)), [[40, 20, 50, 30]], (100, 60)) == 0.0
    with pytest.raises(ValueError, match=r"locations.shape=\(2, 3\)"):
        glimpse_hits(locations[..., 0], boxes, (100, 60))
    for bad in (None, 60, (60, 100, 1), (True, True), (0, 5)):
        with pytest.raises(ValueError, match=re.escape(f"image_shape={bad!r}")):
            glimpse_hits(locations, boxes, bad)
    with pytest.raises(ValueError, match="at least one location"):
        glimpse_hits(np.zeros((0, 3, 2)), np.zeros((0, 4)), (10, 10))
    assert glimpse_hits(np.zeros((0, 3, 2)), np.zeros((0, 4)), (10, 10),
                        reduction="none").shape == (0, 3)


def test_attention_iou_by_hand():
    from keras_attention_vision.metrics import attention_iou

    maps = np.zeros((1, 4, 4, 1))
    maps[0, :2, :2] = 1.0  # 4 pixels above threshold
    box = [[0, 0, 2, 4]]   # 8 pixels, containing the 4
    assert attention_iou(maps, box, threshold=0.5) == pytest.approx(4 / 8)
    # Nearest upsampling x2: 16 mask pixels against a 32-pixel box.
    assert attention_iou(maps, [[0, 0, 4, 8]], image_shape=(8, 8),
                         interpolation="nearest") == pytest.approx(16 / 32)
    # A box elsewhere: no overlap.
    assert attention_iou(maps, [[2, 2, 4, 4]]) == 0.0
    # threshold 0 keeps every pixel: IoU = box area / image area.
    assert attention_iou(maps, box, threshold=0.0) == pytest.approx(8 / 16)


def test_upsample_maps_matches_keras_bilinear_resize():
    import keras

    from keras_attention_vision.metrics import upsample_maps

    maps = np.random.default_rng(0).uniform(size=(2, 3, 5)).astype("float32")
    expected = to_numpy(keras.ops.image.resize(maps[..., None], (12, 20),
                                               interpolation="bilinear", antialias=False,
                                               data_format="channels_last"))[..., 0]
    np.testing.assert_allclose(upsample_maps(maps, (12, 20)), expected, atol=1e-5)
    nearest = upsample_maps(maps, (6, 10), interpolation="nearest")
    np.testing.assert_array_equal(nearest, np.repeat(np.repeat(maps, 2, 1), 2, 2))


def test_localisation_bad_input_is_quoted():
    from keras_attention_vision.metrics import attention_iou, pointing_game

    with pytest.raises(ValueError, match=r"boxes.shape=\(3, 4\)"):
        pointing_game(np.zeros((2, 4, 4)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="threshold=1.5"):
        attention_iou(np.zeros((1, 4, 4)), [[0, 0, 1, 1]], threshold=1.5)
    with pytest.raises(ValueError, match="reduction='sum'"):
        pointing_game(np.zeros((1, 4, 4)), [[0, 0, 1, 1]], reduction="sum")
