"""Adversarial robustness: the fast gradient sign method (FGSM), on every backend.

Goodfellow, Shlens and Szegedy, "Explaining and Harnessing Adversarial
Examples" (ICLR 2015): `x_adv = clip(x + epsilon * sign(grad_x L(f(x), y)))`,
with `L` the cross-entropy of the true label. Jetley et al. (2018) report that
attention models keep lower error under such noise than the plain network;
`fgsm_error` measures it. The input gradient is taken with the active Keras
backend's own autodiff (TensorFlow, JAX or PyTorch); the loss is written with
`keras.ops`.
"""

import keras
import numpy as np
from keras import ops


def input_gradient(fn, x):
    """The gradient of a scalar function with respect to its input, as NumPy.

    Args:
        fn: a function from a backend tensor shaped like `x` to a scalar
            tensor, written with `keras.ops` (or calling Keras models).
        x: the point, an array.

    Returns:
        `d fn(x) / dx`, a float32 NumPy array of `x`'s shape.

    Example:

    ```python
    grad = input_gradient(lambda t: keras.ops.sum(t ** 2), np.ones(3))  # [2, 2, 2]
    ```
    """
    x = np.asarray(x, "float32")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            value = fn(xt)
        return np.asarray(tape.gradient(value, xt), "float32")
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(fn)(jax.numpy.asarray(x)), "float32")
    if backend == "torch":
        import torch

        # on the device Keras uses (convert_to_tensor places it)
        xt = ops.convert_to_tensor(x).detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(fn(xt), xt)
        return grad.detach().cpu().numpy().astype("float32")
    raise NotImplementedError(
        "input_gradient supports the tensorflow, jax and torch backends. "
        f"Received: the active backend is {backend!r}.")


def fgsm(model, images, labels, epsilon, from_logits=False, clip_range=(0.0, 1.0)):
    """Fast gradient sign method: images moved by `epsilon` to raise the loss.

    `x_adv = clip(x + epsilon * sign(d CE(y, f(x)) / dx), *clip_range)`, with
    the model called in inference mode (`training=False`) and the gradient
    taken on the active backend.

    The gradient of a confident prediction is the sum of the other classes'
    probabilities times their logit gradients, so it survives a softmax that
    rounds the true class to 1 in float32; only when every other probability
    underflows to 0 (logit gaps above about 100) is the image left as it is.

    Args:
        model: a Keras model from images to class scores `(batch, classes)`.
        images: the clean inputs, e.g. `(N, H, W, C)`.
        labels: `(N,)` integer true classes.
        epsilon: the L-infinity size of the step (non-negative), in the
            units of `images` (e.g. `8 / 255` for images in `[0, 1]`).
        from_logits: whether the model outputs logits (`True`) or
            probabilities (`False`, the default, as `AttentionVGG`).
        clip_range: `(low, high)` the adversarial images are clipped to, or
            `None` for no clipping.

    Returns:
        The adversarial images, a float32 NumPy array of `images`' shape.

    Example:

    ```python
    adversarial = fgsm(model, x_test[:256], y_test[:256], epsilon=0.1)
    error = np.mean(model.predict(adversarial).argmax(-1) != y_test[:256])
    ```
    """
    if (isinstance(epsilon, bool) or not isinstance(epsilon, (int, float, np.floating))
            or not epsilon >= 0):
        raise ValueError(f"`epsilon` must be a non-negative number. Received: epsilon={epsilon!r}")
    if not isinstance(from_logits, bool):
        raise ValueError("`from_logits` must be True or False. "
                         f"Received: from_logits={from_logits!r}")
    images = np.asarray(images, "float32")
    labels = np.asarray(labels).reshape(-1).astype("int32")
    if len(labels) != len(images):
        raise ValueError("`labels` must hold one class per image. Received: "
                         f"images.shape={images.shape}, labels.shape={labels.shape}")

    def loss(x):
        scores = ops.cast(model(x, training=False), "float32")
        targets = ops.one_hot(ops.convert_to_tensor(labels), ops.shape(scores)[-1])
        if from_logits:
            log_p = ops.log_softmax(scores, axis=-1)
        else:
            log_p = ops.log(ops.clip(scores, 1e-12, 1.0))
        return -ops.sum(targets * log_p)

    if epsilon == 0:
        return images.copy()
    grad = input_gradient(loss, images)
    adversarial = images + float(epsilon) * np.sign(grad)
    if clip_range is not None:
        adversarial = np.clip(adversarial, clip_range[0], clip_range[1])
    return adversarial.astype("float32")


def fgsm_error(model, images, labels, epsilons, batch_size=128, **kwargs):
    """Classification error under FGSM at each `epsilon` (0 gives the clean error).

    Args:
        model: a Keras classifier (see `fgsm`).
        images: clean inputs `(N, ...)`.
        labels: `(N,)` integer true classes.
        epsilons: the step sizes to try.
        batch_size: images per gradient computation.
        **kwargs: passed to `fgsm` (`from_logits`, `clip_range`).

    Returns:
        `{epsilon: error}`, the fraction of adversarial images misclassified.

    Example:

    ```python
    fgsm_error(model, x_test, y_test, [0.0, 0.05, 0.1])  # {0.0: 0.12, 0.05: 0.31, ...}
    ```
    """
    labels = np.asarray(labels).reshape(-1)
    errors = {}
    for epsilon in epsilons:
        wrong = 0
        for k in range(0, len(labels), batch_size):
            x = fgsm(model, images[k:k + batch_size], labels[k:k + batch_size], epsilon,
                     **kwargs)
            pred = ops.convert_to_numpy(model(x, training=False)).argmax(-1)
            wrong += int(np.sum(pred != labels[k:k + batch_size]))
        errors[float(epsilon)] = wrong / max(len(labels), 1)
    return errors


__all__ = ["fgsm", "fgsm_error", "input_gradient"]
