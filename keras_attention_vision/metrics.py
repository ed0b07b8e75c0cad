"""Metrics of the package's experiments.

- likelihood of images: `bernoulli_nll`, `categorical_nll`, `bits_per_dim` and
  the `BitsPerDim` Keras metric (bits/dim = NLL / (D ln 2), D = number of
  sub-pixels of an image).
"""

import math

import keras
from keras import ops

from keras_attention_vision.api_export import kav_export

__all__ = [
    "BitsPerDim",
    "bernoulli_nll",
    "bits_per_dim",
    "categorical_nll",
    "image_nll",
]

LN2 = math.log(2.0)
DISTRIBUTIONS = ("bernoulli", "categorical")


def _sum_over_examples(values):
    """Sums every axis but the first: one value per example."""
    return ops.sum(ops.reshape(values, (ops.shape(values)[0], -1)), axis=-1)


def bernoulli_nll(targets, logits):
    """Negative log-likelihood (nats) of binary images under Bernoulli logits.

    Args:
        targets: 0/1 values, shape `(batch, ...)`.
        logits: logits of P(x = 1), the shape of `targets`.

    Returns:
        A float32 tensor `(batch,)`: the NLL of each example, summed over all
        its dimensions.
    """
    logits = ops.cast(logits, "float32")
    targets = ops.cast(targets, "float32")
    # -[t log s(l) + (1 - t) log(1 - s(l))] = softplus(l) - t * l
    return _sum_over_examples(ops.softplus(logits) - targets * logits)


def categorical_nll(targets, logits):
    """Negative log-likelihood (nats) of integer sub-pixels under categorical logits.

    Args:
        targets: integer values in `[0, K)`, shape `(batch, ...)`.
        logits: shape `targets.shape + (K,)`.

    Returns:
        A float32 tensor `(batch,)`: the NLL of each example, summed over all
        its dimensions.
    """
    logits = ops.cast(logits, "float32")
    targets = ops.cast(targets, "int32")
    log_probs = ops.log_softmax(logits, axis=-1)
    picked = ops.take_along_axis(log_probs, ops.expand_dims(targets, -1), axis=-1)
    return -_sum_over_examples(picked)


def image_nll(targets, logits, distribution="bernoulli"):
    """`bernoulli_nll` or `categorical_nll`, by name."""
    if distribution == "bernoulli":
        return bernoulli_nll(targets, logits)
    if distribution == "categorical":
        return categorical_nll(targets, logits)
    raise ValueError(
        f"`distribution` must be one of {DISTRIBUTIONS}. Received: distribution={distribution!r}"
    )


def bits_per_dim(nll, num_dims):
    """Converts an NLL in nats to bits per dimension: `nll / (num_dims ln 2)`."""
    return nll / (num_dims * LN2)


@kav_export("keras_attention_vision.metrics.BitsPerDim")
class BitsPerDim(keras.metrics.Mean):
    """Mean bits per dimension of images under the model's output logits.

    `y_true` holds the images (0/1 for `"bernoulli"`, integers in `[0, K)` for
    `"categorical"`); `y_pred` holds the logits (same shape, plus a last axis of
    K classes for `"categorical"`). Each example's NLL is summed over its D
    dimensions and divided by `D ln 2`.

    Args:
        distribution: `"bernoulli"` or `"categorical"`.
        name: metric name.
        dtype: metric dtype.

    Example:

    ```python
    model.compile("adam", loss=..., metrics=[BitsPerDim("bernoulli")])
    ```
    """

    def __init__(self, distribution="bernoulli", name="bits_per_dim", dtype=None):
        if distribution not in DISTRIBUTIONS:
            raise ValueError(
                f"`distribution` must be one of {DISTRIBUTIONS}. "
                f"Received: distribution={distribution!r}"
            )
        super().__init__(name=name, dtype=dtype)
        self.distribution = distribution

    def update_state(self, y_true, y_pred, sample_weight=None):
        nll = image_nll(y_true, y_pred, self.distribution)
        num_dims = math.prod(y_true.shape[1:])
        return super().update_state(bits_per_dim(nll, num_dims), sample_weight)

    def get_config(self):
        config = super().get_config()
        config["distribution"] = self.distribution
        return config
