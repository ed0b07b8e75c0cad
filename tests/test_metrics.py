"""Metrics against NumPy computations written from their definitions."""

import math

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
