"""Loss reduction shared by the models' `compute_loss` overrides."""

import inspect

import numpy as np
from keras import ops

from keras_attention_vision.distribution import replica_scaled


def weighted_mean(values, sample_weight=None):
    """Reduces per-example losses as Keras's losses do by default.

    `sum(values * sample_weight) / batch_size`: Keras's
    `"sum_over_batch_size"` reduction, so a model's own `compute_loss` gives
    the number `keras.losses.Loss` would for the same weights (a weight of 0
    removes an example's term without renormalising the others).

    Like Keras's losses, inside a `tf.distribute` replica step the mean is
    divided by the number of replicas (`distribution.replica_scaled`): the
    replicas' gradients are summed, so the step follows the mean over the
    global batch. Outside such a step (and on JAX, whose distributed step
    sees the global batch) nothing is scaled.

    Args:
        values: float tensor `(batch,)` of per-example losses.
        sample_weight: `None`, or weights broadcastable to `(batch,)` (a
            `(batch, 1)` column from `fit(sample_weight=...)` included).

    Returns:
        A float32 scalar.
    """
    values = ops.cast(values, "float32")
    if sample_weight is None:
        return replica_scaled(ops.mean(values))
    sample_weight = ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
    return replica_scaled(ops.mean(values * sample_weight))


class InputsOnlyFitMixin:
    """`fit` / `evaluate` that keep `sample_weight` for models trained on `x` alone.

    Keras pairs `sample_weight` with the targets and drops it, silently, when
    `y` is None (`fit(images, sample_weight=w)`). A model whose loss reads no
    targets (a GAN, an autoregressive image model) mixes this in before
    `keras.Model`: when weights come without `y`, the inputs are passed as
    `y` (never read) to carry them. `class_weight` needs class targets, so
    without `y` it is refused. `_check_fit_inputs(x)` is called first; models
    override it to validate concrete inputs. Arrays and tensors get the
    placeholder targets; a dataset or generator must yield
    `(x, anything, sample_weight)` itself.
    """

    def _check_fit_inputs(self, x):
        """Hook: validate the `x` given to `fit` / `evaluate` (default: nothing)."""

    def _inputs_as_targets(self, method, args, kwargs):
        bound = inspect.signature(method).bind(*args, **kwargs)
        arguments = bound.arguments
        x = arguments.get("x")
        self._check_fit_inputs(x)
        if arguments.get("class_weight") is not None and arguments.get("y") is None:
            raise ValueError(
                f"{type(self).__name__} is trained on its inputs alone, so Keras has no "
                "class targets to apply `class_weight` to; pass per-example "
                "`sample_weight` instead. "
                f"Received: class_weight={arguments['class_weight']!r}"
            )
        if arguments.get("y") is None and arguments.get("sample_weight") is not None \
                and (isinstance(x, (np.ndarray, list, tuple)) or ops.is_tensor(x)):
            arguments["y"] = x[0] if isinstance(x, (list, tuple)) else x
        return bound.args, bound.kwargs

    def fit(self, *args, **kwargs):
        args, kwargs = self._inputs_as_targets(super().fit, args, kwargs)
        return super().fit(*args, **kwargs)

    def evaluate(self, *args, **kwargs):
        args, kwargs = self._inputs_as_targets(super().evaluate, args, kwargs)
        return super().evaluate(*args, **kwargs)
