"""Gradients of a loss with respect to a layer's variables, on TF and JAX."""

import keras
import numpy as np
import pytest

TFP_BACKENDS = ("tensorflow", "jax")

needs_tfp = pytest.mark.skipif(
    keras.backend.backend() not in TFP_BACKENDS,
    reason="REINFORCE needs TFP log-probabilities; TFP has no torch substrate "
    "(the clear error is tested separately).",
)


def gradients(variables, loss_fn):
    """Returns `(loss, [d loss / d v for v in variables])` as NumPy arrays."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn()
        grads = tape.gradient(loss, [v.value for v in variables])
        return float(loss), [None if g is None else np.asarray(g) for g in grads]
    import jax

    def stateless(values):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return loss_fn()

    loss, grads = jax.value_and_grad(stateless)([v.value for v in variables])
    return float(loss), [np.asarray(g) for g in grads]


def np_normalized_advantage(advantage, weights=None, epsilon=1e-8):
    """`(A - mean(A)) / (std(A) + epsilon)` over all entries of `A` `(B, T)`, in NumPy.

    Each episode's entries are weighted by its weight `(B,)`: the weighted
    mean and the weighted population standard deviation.
    """
    advantage = np.asarray(advantage, "float64")
    w = np.ones(advantage.shape[0]) if weights is None else np.asarray(weights, "float64")
    w = np.broadcast_to(w[:, None], advantage.shape)
    mean = np.sum(w * advantage) / np.sum(w)
    std = np.sqrt(np.sum(w * (advantage - mean) ** 2) / np.sum(w))
    return (advantage - mean) / (std + epsilon)


class _Stop(Exception):
    """Raised by `resumed_and_uninterrupted` to stop a run after its first epoch."""


def resumed_and_uninterrupted(run, monkeypatch):
    """Final weights of a run stopped after epoch 1 and resumed, and of one not stopped.

    `run(name)` trains (with `args.checkpoint_dir` under a folder of its own
    per `name`) through `recipes._checkpoint.EpochCheckpoint` and returns the
    final weights. The first `run("resumed")` stops once the first epoch's
    checkpoint is written; the process's global RNGs then move on (as a new
    process's would differ) before the second resumes it.

    Returns:
        `(resumed, uninterrupted)`, lists of NumPy arrays.
    """
    from keras_attention_vision.recipes import _checkpoint

    save = _checkpoint.EpochCheckpoint.save

    def save_then_stop(self, epoch, *rest, **kwargs):
        save(self, epoch, *rest, **kwargs)
        if epoch == 0:
            raise _Stop

    with monkeypatch.context() as patch:
        patch.setattr(_checkpoint.EpochCheckpoint, "save", save_then_stop)
        with pytest.raises(_Stop):
            run("resumed")
    np.random.rand(7)
    return run("resumed"), run("uninterrupted")
