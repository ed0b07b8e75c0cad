"""Gradients of a scalar function with respect to its input, on every backend.

Used by the causality tests: the gradient of one output pixel with respect to
the input image says which input pixels reach it.
"""

import numpy as np

# The package's own backend-agnostic input gradient (FGSM uses it too).
from keras_attention_vision.adversarial import input_gradient  # noqa: F401


def randomize_weights(layer_or_model, seed=0):
    """Sets every weight to N(0, 1) noise, masked kernel entries included."""
    rng = np.random.default_rng(seed)
    layer_or_model.set_weights(
        [rng.normal(size=w.shape).astype("float32") for w in layer_or_model.get_weights()]
    )
