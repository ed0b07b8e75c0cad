import keras
import numpy as np
import pytest

from keras_attention_vision import distributions

BACKEND = keras.backend.backend()


@pytest.mark.skipif(BACKEND == "torch", reason="TFP has no torch substrate")
def test_normal_log_prob_matches_numpy():
    tfd = distributions.get_distributions()
    x = np.array([-1.0, 0.0, 2.5], "float32")
    log_prob = keras.ops.convert_to_numpy(tfd.Normal(loc=0.5, scale=2.0).log_prob(x))
    expected = -0.5 * ((x - 0.5) / 2.0) ** 2 - np.log(2.0) - 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(log_prob, expected, rtol=1e-6)


@pytest.mark.skipif(BACKEND == "torch", reason="TFP has no torch substrate")
def test_module_belongs_to_active_backend():
    module = distributions.get_distributions().__name__
    substrate = "substrates.jax" in module
    assert substrate == (BACKEND == "jax"), module


@pytest.mark.skipif(BACKEND != "torch", reason="the error is raised on torch only")
def test_torch_gives_clear_error():
    with pytest.raises(distributions.UnsupportedBackendError,
                       match="tensorflow and jax.*KERAS_BACKEND='torch'"):
        distributions.get_distributions()
