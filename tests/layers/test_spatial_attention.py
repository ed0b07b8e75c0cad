"""SpatialAttention against NumPy written from the paper's equations (section 4)."""

import os
import tempfile

import keras
import numpy as np
import pytest
from keras import ops

from keras_attention_vision.distributions import UnsupportedBackendError
from keras_attention_vision.layers import SpatialAttention
from tests import testing
from tests.reinforce_testing import gradients, needs_tfp

HARD_ON_TORCH = keras.backend.backend() == "torch"


def np_attention(layer, annotations, hidden, use_gate=True):
    """e = w^T tanh(W_a a + b + W_h h); alpha = softmax(e); z = beta * sum alpha a."""
    w_a, b_a = [testing.to_numpy(v) for v in layer.annotation_projection.weights]
    (w_h,) = [testing.to_numpy(v) for v in layer.hidden_projection.weights]
    (w,) = [testing.to_numpy(v) for v in layer.score.weights]
    a = annotations.reshape(len(annotations), -1, annotations.shape[-1]).astype("float64")
    e = np.tanh(a @ w_a + b_a + (hidden @ w_h)[:, None, :]) @ w[:, 0]
    e = e - e.max(-1, keepdims=True)
    alpha = np.exp(e) / np.exp(e).sum(-1, keepdims=True)
    z = (alpha[..., None] * a).sum(1)
    if use_gate:
        w_b, b_b = [testing.to_numpy(v) for v in layer.gate.weights]
        z = z / (1 + np.exp(-(hidden @ w_b + b_b)))  # beta: one scalar per example
    return z, alpha


def _data(shape=(3, 4, 5, 6), hidden=7, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=shape).astype("float32"),
            rng.normal(size=(shape[0], hidden)).astype("float32"))


class SpatialAttentionTest(testing.TestCase):
    def test_soft_matches_numpy(self):
        for use_gate in (True, False):
            for shape in ((3, 4, 5, 6), (3, 20, 6)):
                a, h = _data(shape)
                layer = SpatialAttention(8, use_gate=use_gate,
                                         data_format="channels_last")
                layer([a, h])
                testing.perturb_weights(layer)
                context, alpha = layer([a, h])
                z, expected_alpha = np_attention(layer, a, h, use_gate)
                self.assertAllClose(alpha, expected_alpha, atol=1e-5)
                self.assertAllClose(context, z, atol=1e-5)
                self.assertAllClose(ops.sum(alpha, -1), np.ones(3), atol=1e-5)

    def test_layer_harness_soft(self):
        a, h = _data()
        testing.run_layer_test(SpatialAttention, {"units": 8, "data_format": "channels_last"},
                               [a, h], saving_atol=1e-5)
        testing.run_layer_test(SpatialAttention, {"units": 4, "use_gate": False},
                               list(_data((2, 9, 5))), saving_atol=1e-5)

    def test_channels_first_matches_last(self):
        testing.assert_channels_first_matches_last(
            SpatialAttention, {"units": 8}, list(_data()), image_outputs=())

    def test_mixed_precision_alpha_in_float32_then_cast(self):
        a, h = _data()
        layer = SpatialAttention(8, dtype="mixed_float16")
        context, alpha = layer([a * 100, h])
        assert keras.backend.standardize_dtype(alpha.dtype) == "float16"
        assert np.all(np.isfinite(testing.to_numpy(alpha).astype("float32")))

    def test_bad_arguments_quote_the_value(self):
        for kwargs, match in (({"units": 0}, "units=0"),
                              ({"units": 4, "mode": "sharp"}, "mode='sharp'"),
                              ({"units": 4, "use_gate": 1}, "use_gate=1"),
                              ({"units": 4, "expectation_probability": 1.5},
                               "expectation_probability=1.5"),
                              ({"units": 4, "seed": "x"}, "seed='x'"),
                              ({"units": 4, "data_format": "nhwc"}, "data_format='nhwc'")):
            with pytest.raises(ValueError, match=match):
                SpatialAttention(**kwargs)

    def test_bad_shapes_name_the_layer(self):
        layer = SpatialAttention(4)
        with pytest.raises(ValueError, match="SpatialAttention.*annotations"):
            layer([np.ones((2, 3), "float32"), np.ones((2, 4), "float32")])
        with pytest.raises(ValueError, match="hidden state"):
            SpatialAttention(4)([np.ones((2, 3, 5), "float32"), np.ones((2, 4, 1), "float32")])
        with pytest.raises(ValueError, match=r"\[annotations, hidden\]"):
            SpatialAttention(4).build((2, 3, 5))

    def test_soft_mode_rejects_return_sample(self):
        with pytest.raises(ValueError, match="mode='soft'"):
            SpatialAttention(4)(list(_data()), return_sample=True)


@pytest.mark.skipif(not HARD_ON_TORCH, reason="the torch error only")
def test_hard_mode_raises_the_backend_error_on_torch():
    with pytest.raises(UnsupportedBackendError, match="KERAS_BACKEND='torch'"):
        SpatialAttention(4, mode="hard")


@needs_tfp
class HardAttentionTest(testing.TestCase):
    def test_samples_follow_alpha_and_log_prob_entropy_match_numpy(self):
        a, h = _data((2, 2, 2, 3), seed=1)
        layer = SpatialAttention(5, mode="hard", seed=0, use_gate=False)
        layer([a, h])
        testing.perturb_weights(layer)
        counts = np.zeros((2, 4))
        for _ in range(300):
            context, alpha, location, log_prob, entropy = testing.to_numpy(
                layer([a, h], training=True, return_sample=True))
            counts[np.arange(2), location] += 1
            flat = a.reshape(2, 4, 3)
            np.testing.assert_allclose(context, flat[np.arange(2), location], atol=1e-6)
            np.testing.assert_allclose(log_prob, np.log(alpha[np.arange(2), location]),
                                       atol=1e-5)
            np.testing.assert_allclose(entropy, -(alpha * np.log(alpha)).sum(-1), atol=1e-5)
        np.testing.assert_allclose(counts / 300, alpha, atol=0.1)
        # Inference: the expectation, and the location of alpha's maximum.
        context, alpha, location, _, _ = testing.to_numpy(
            layer([a, h], training=False, return_sample=True))
        np.testing.assert_allclose(context, (alpha[..., None] * a.reshape(2, 4, 3)).sum(1),
                                   atol=1e-5)
        np.testing.assert_array_equal(location, alpha.argmax(-1))

    def test_expectation_substitution(self):
        a, h = _data((64, 3, 4), seed=2)
        layer = SpatialAttention(5, mode="hard", seed=1, use_gate=False,
                                 expectation_probability=0.5)
        context, alpha, location, log_prob, _ = testing.to_numpy(
            layer([a, h], training=True, return_sample=True))
        expected = (alpha[..., None] * a).sum(1)
        substituted = np.all(np.isclose(context, expected, atol=1e-6), axis=-1)
        assert 16 < substituted.sum() < 48, substituted.sum()
        np.testing.assert_array_equal(log_prob[substituted], 0.0)
        np.testing.assert_allclose(context[~substituted],
                                   a[~substituted, location[~substituted]], atol=1e-6)

    def test_reinforce_gradient_reaches_the_attention_mlp_not_through_the_sample(self):
        a, h = _data((4, 3, 3, 5), seed=3)
        layer = SpatialAttention(6, mode="hard", seed=2)
        layer([a, h])
        testing.perturb_weights(layer)
        mlp = [layer.annotation_projection.kernel, layer.hidden_projection.kernel,
               layer.score.kernel]

        def context_loss():  # a loss of the context only: d/d(attention MLP) = 0
            z = layer([a, h], training=True)[0]
            return ops.sum(ops.square(ops.cast(z, "float32")))

        def reinforce_loss():
            out = layer([a, h], training=True, return_sample=True)
            return -ops.sum(out[3])

        _, grads = gradients(mlp, context_loss)
        for g in grads:
            assert g is None or np.all(g == 0), "gradient leaked through the sample"
        _, grads = gradients(mlp, reinforce_loss)
        for g in grads:
            assert g is not None and np.abs(g).sum() > 0

    def test_seed_state_survives_keras_files(self):
        a, h = _data((3, 6, 4), seed=4)
        inputs = [keras.Input((6, 4)), keras.Input((7,))]
        layer = SpatialAttention(5, mode="hard", seed=7)
        model = keras.Model(inputs, layer(inputs))
        layer([a, h], training=True)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model.keras")
            model.save(path)
            loaded = keras.saving.load_model(path)
        twin = loaded.layers[-1]
        for _ in range(3):
            expected = testing.to_numpy(layer([a, h], training=True, return_sample=True)[2])
            got = testing.to_numpy(twin([a, h], training=True, return_sample=True)[2])
            np.testing.assert_array_equal(got, expected)

    def test_layer_harness_hard(self):
        testing.run_layer_test(SpatialAttention, {"units": 4, "mode": "hard", "seed": 3},
                               list(_data()), saving_atol=1e-5)
