"""TensorFlow Probability distributions for the active Keras backend.

TFP ships one substrate per array library: `tfp.distributions` for TensorFlow and
`tfp.substrates.jax.distributions` for JAX. There is none for PyTorch, so models
trained with REINFORCE run on TensorFlow and JAX only.
"""

import functools

import keras

SUPPORTED_BACKENDS = ("tensorflow", "jax")


class UnsupportedBackendError(RuntimeError):
    """Raised when TFP distributions are asked for on a backend TFP lacks."""


def check_backend(feature="TensorFlow Probability distributions"):
    """Raises `UnsupportedBackendError` unless the backend has a TFP substrate.

    Args:
        feature: what the caller needs, quoted in the error.

    Returns:
        The name of the active backend.
    """
    backend = keras.backend.backend()
    if backend not in SUPPORTED_BACKENDS:
        raise UnsupportedBackendError(
            f"{feature} need a TensorFlow Probability substrate, which exists for "
            f"the {' and '.join(SUPPORTED_BACKENDS)} backends only. "
            f"Received: KERAS_BACKEND={backend!r}. Set KERAS_BACKEND=tensorflow or "
            "KERAS_BACKEND=jax before importing keras."
        )
    return backend


@functools.cache
def _distributions_for(backend):
    if backend == "tensorflow":
        import tensorflow_probability as tfp

        return tfp.distributions
    from tensorflow_probability.substrates import jax as tfp_jax

    return tfp_jax.distributions


def get_distributions():
    """Returns the TFP `distributions` module for the active Keras backend.

    Returns:
        `tfp.distributions` on TensorFlow, `tfp.substrates.jax.distributions` on
        JAX.

    Raises:
        UnsupportedBackendError: on any other backend (PyTorch has no substrate).

    Example:

    ```python
    tfd = get_distributions()
    policy = tfd.Normal(loc=mean, scale=0.1)
    log_prob = policy.log_prob(action)
    ```
    """
    return _distributions_for(check_backend())
