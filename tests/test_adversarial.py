"""FGSM against hand-computed perturbations of linear models, on the active backend."""

import keras
import numpy as np
import pytest

from keras_attention_vision.adversarial import fgsm, fgsm_error, input_gradient


def _linear(weights, bias, activation="softmax"):
    model = keras.Sequential([keras.Input((weights.shape[0],)),
                              keras.layers.Dense(weights.shape[1], activation=activation)])
    model.layers[-1].set_weights([weights.astype("float32"), bias.astype("float32")])
    return model


def test_input_gradient_of_a_quadratic():
    x = np.array([1.0, -2.0, 3.0], "float32")
    grad = input_gradient(lambda t: keras.ops.sum(t ** 2), x)
    np.testing.assert_allclose(grad, 2 * x)


def test_two_class_linear_model_moves_along_sign_of_weight_difference():
    # CE of class 0 for logits z = x W + b: dL/dx = W (p - e_0) = p_1 (W[:, 1] - W[:, 0]),
    # so the FGSM step is eps * sign(W[:, 1] - W[:, 0]) whatever x is.
    w = np.array([[1.0, -1.0], [0.5, 2.0], [-3.0, 1.0], [0.0, 0.0]])
    model = _linear(w, np.zeros(2))
    x = np.full((2, 4), 0.5, "float32")
    x[1] = [0.1, 0.9, 0.3, 0.6]
    adversarial = fgsm(model, x, [0, 0], epsilon=0.1, clip_range=None)
    expected = 0.1 * np.sign(w[:, 1] - w[:, 0])
    np.testing.assert_allclose(adversarial - x, np.stack([expected, expected]), atol=1e-6)
    # for class 1 the step is the opposite
    adversarial = fgsm(model, x, [1, 1], epsilon=0.1, clip_range=None)
    np.testing.assert_allclose(adversarial - x, -np.stack([expected, expected]), atol=1e-6)


def test_three_class_linear_model_matches_numpy():
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(5, 3)), rng.normal(size=3)
    x = rng.uniform(size=(4, 5)).astype("float32")
    y = np.array([0, 1, 2, 1])
    z = x @ w + b
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    grad = (p - np.eye(3)[y]) @ w.T
    adversarial = fgsm(_linear(w, b), x, y, epsilon=0.05)
    np.testing.assert_allclose(adversarial, np.clip(x + 0.05 * np.sign(grad), 0, 1), atol=1e-6)


def test_confident_prediction_is_still_perturbed():
    # logits differ by 40: p_0 rounds to 1 in float32, p_1 = exp(-40) does not, and the
    # step keeps the sign of W[:, 1] - W[:, 0] = (-40, 0) on the first input.
    w = np.array([[20.0, -20.0], [0.0, 0.0]])
    model = _linear(w, np.zeros(2))
    x = np.array([[1.0, 0.5]], "float32")
    assert float(keras.ops.convert_to_numpy(model(x))[0, 0]) == 1.0
    np.testing.assert_allclose(fgsm(model, x, [0], 0.1, clip_range=None), [[0.9, 0.5]],
                               atol=1e-6)
    # with logits the same model gives the same step
    logits = _linear(w, np.zeros(2), activation=None)
    np.testing.assert_allclose(fgsm(logits, x, [0], 0.1, from_logits=True, clip_range=None),
                               [[0.9, 0.5]], atol=1e-6)


def test_fgsm_error_counts_flipped_predictions():
    # one input feature, logits (x, 0.5): class 0 when x > 0.5. Images at 0.55 and 0.8 of
    # class 0; eps 0.1 flips the first only, eps 0.4 both; eps 0 is the clean error.
    w, b = np.array([[1.0, 0.0]]), np.array([0.0, 0.5])
    model = _linear(w, b)
    x = np.array([[0.55], [0.8]], "float32")
    errors = fgsm_error(model, x, [0, 0], [0.0, 0.1, 0.4], batch_size=1)
    assert errors == {0.0: 0.0, 0.1: 0.5, 0.4: 1.0}


@pytest.mark.parametrize("epsilon", [-0.1, "0.1", True])
def test_bad_epsilon_is_quoted(epsilon):
    model = _linear(np.ones((2, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="epsilon="):
        fgsm(model, np.zeros((1, 2)), [0], epsilon)


def test_label_count_mismatch_is_quoted():
    model = _linear(np.ones((2, 2)), np.zeros(2))
    with pytest.raises(ValueError, match=r"labels.shape=\(2,\)"):
        fgsm(model, np.zeros((1, 2)), [0, 1], 0.1)


def test_fgsm_on_attention_vgg_steps_by_epsilon_within_the_image_range():
    from keras_attention_vision.applications import AttentionVGG

    model = AttentionVGG(input_shape=(16, 16, 1), classes=3, width_multiplier=1 / 16)
    x = np.random.default_rng(0).uniform(size=(2, 16, 16, 1)).astype("float32")
    adversarial = fgsm(model, x, [0, 2], epsilon=0.05)
    assert adversarial.shape == x.shape
    step = np.abs(adversarial - x)
    inside = (x > 0.05) & (x < 0.95)  # not clipped: moved by exactly epsilon
    assert np.all(step <= 0.05 + 1e-6)
    np.testing.assert_allclose(step[inside], 0.05, atol=1e-6)
    assert adversarial.min() >= 0.0 and adversarial.max() <= 1.0
