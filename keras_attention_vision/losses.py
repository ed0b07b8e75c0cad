"""Loss reduction shared by the models' `compute_loss` overrides."""

from keras import ops


def weighted_mean(values, sample_weight=None):
    """Reduces per-example losses as Keras's losses do by default.

    `sum(values * sample_weight) / batch_size`: Keras's
    `"sum_over_batch_size"` reduction, so a model's own `compute_loss` gives
    the number `keras.losses.Loss` would for the same weights (a weight of 0
    removes an example's term without renormalising the others).

    Args:
        values: float tensor `(batch,)` of per-example losses.
        sample_weight: `None`, or weights broadcastable to `(batch,)` (a
            `(batch, 1)` column from `fit(sample_weight=...)` included).

    Returns:
        A float32 scalar.
    """
    values = ops.cast(values, "float32")
    if sample_weight is None:
        return ops.mean(values)
    sample_weight = ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
    return ops.mean(values * sample_weight)
