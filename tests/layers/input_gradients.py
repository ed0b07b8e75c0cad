"""Gradients of a scalar function with respect to its input, on every backend.

Used by the causality tests: the gradient of one output pixel with respect to
the input image says which input pixels reach it.
"""

import keras
import numpy as np


def input_gradient(fn, x):
    """Returns d fn(x) / dx as a NumPy array (`fn` returns a scalar tensor)."""
    x = np.asarray(x, dtype="float32")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = fn(xt)
        return tape.gradient(y, xt).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(fn)(jax.numpy.asarray(x)))
    if backend == "torch":
        import torch

        xt = torch.tensor(x, requires_grad=True)
        (grad,) = torch.autograd.grad(fn(xt), xt)
        return grad.detach().cpu().numpy()
    raise NotImplementedError(backend)


def randomize_weights(layer_or_model, seed=0):
    """Sets every weight to N(0, 1) noise, masked kernel entries included."""
    rng = np.random.default_rng(seed)
    layer_or_model.set_weights(
        [rng.normal(size=w.shape).astype("float32") for w in layer_or_model.get_weights()]
    )
