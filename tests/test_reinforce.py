"""REINFORCE pieces against NumPy: log-densities, surrogate loss and its gradient."""

import math
import os
import tempfile

import keras
import numpy as np
import pytest
from keras import ops

from keras_attention_vision import reinforce
from keras_attention_vision.distributions import UnsupportedBackendError
from tests import testing
from tests.reinforce_testing import gradients, needs_tfp, np_normalized_advantage


def np_normal_log_prob(mean, std, x):
    return -0.5 * ((x - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)


@needs_tfp
class ReinforceTest(testing.TestCase):
    def test_gaussian_log_prob_and_entropy_match_numpy(self):
        rng = np.random.default_rng(0)
        mean = rng.uniform(-1, 1, (5, 3, 2)).astype("float32")
        actions = (mean + rng.normal(0, 0.2, mean.shape)).astype("float32")
        got = reinforce.gaussian_log_prob(mean, 0.2, actions)
        self.assertAllClose(got, np_normal_log_prob(mean, 0.2, actions).sum(-1), atol=1e-5)
        entropy = 2 * (0.5 + 0.5 * math.log(2 * math.pi) + math.log(0.2))
        self.assertAllClose(reinforce.gaussian_entropy(mean, 0.2),
                            np.full((5, 3), entropy), atol=1e-5)

    def test_surrogate_loss_matches_numpy(self):
        rng = np.random.default_rng(1)
        rewards = rng.integers(0, 2, 8).astype("float32")
        baselines = rng.uniform(0, 1, (8, 6)).astype("float32")
        log_probs = rng.normal(size=(8, 6)).astype("float32")
        expected = -np.mean(np.sum((rewards[:, None] - baselines) * log_probs, axis=1))
        self.assertAllClose(reinforce.reinforce_loss(rewards, log_probs, baselines),
                            expected, atol=1e-5)
        self.assertAllClose(reinforce.reinforce_loss(rewards, log_probs),
                            -np.mean(np.sum(rewards[:, None] * log_probs, 1)), atol=1e-5)
        self.assertAllClose(reinforce.baseline_loss(rewards, baselines),
                            np.mean((baselines - rewards[:, None]) ** 2), atol=1e-6)

    def test_gradient_reaches_the_policy_mean(self):
        # d/dW of -(R - b) log N(l; tanh(hW + c), s) with l held fixed, from the
        # Gaussian score (l - mu) / s^2 and tanh' = 1 - mu^2, in NumPy.
        rng = np.random.default_rng(2)
        h = rng.normal(size=(6, 5)).astype("float32")
        rewards = rng.integers(0, 2, 6).astype("float32")
        baselines = rng.uniform(0, 1, (6, 1)).astype("float32")
        std = 0.3
        policy = reinforce.GaussianLocationPolicy(std=std, seed=3)
        policy.build((None, 5))
        testing.perturb_weights(policy)
        _, sampled = policy(h, training=True)
        sampled = testing.to_numpy(sampled)

        def loss_fn():
            mean, _ = policy(h, sample=False)
            log_probs = policy.log_prob(mean, sampled)[:, None]
            return reinforce.reinforce_loss(rewards, log_probs, baselines)

        kernel, bias = policy.dense.kernel, policy.dense.bias
        _, (g_kernel, g_bias) = gradients([kernel, bias], loss_fn)
        mu = np.tanh(h @ testing.to_numpy(kernel) + testing.to_numpy(bias))
        advantage = (rewards[:, None] - baselines)
        d_mu = -advantage * (sampled - mu) / std**2 * (1 - mu**2) / len(h)
        self.assertAllClose(g_kernel, h.T @ d_mu, atol=1e-4, rtol=1e-4)
        self.assertAllClose(g_bias, d_mu.sum(0), atol=1e-4, rtol=1e-4)
        self.assertGreater(np.abs(g_kernel).max(), 0.0)

    def test_no_gradient_through_baseline_or_action(self):
        baselines = keras.Variable(np.full((4, 2), 0.5, "float32"))
        actions = keras.Variable(np.zeros((4, 2), "float32"))
        log_probs_of = lambda: reinforce.gaussian_log_prob(  # noqa: E731
            np.full((4, 2), 0.1, "float32"), 0.2, actions)[:, None] * ops.ones((4, 2))
        _, grads = gradients([baselines, actions], lambda: reinforce.reinforce_loss(
            np.ones(4, "float32"), log_probs_of(), baselines))
        for g in grads:
            assert g is None or not np.any(g)

    def test_policy_samples_around_the_mean_with_the_fixed_std(self):
        h = np.random.default_rng(4).normal(size=(4000, 3)).astype("float32")
        policy = reinforce.GaussianLocationPolicy(std=0.2, seed=5)
        mean, location = testing.to_numpy(policy(h, training=True))
        noise = location - mean
        self.assertLess(abs(noise.mean()), 0.02)
        self.assertLess(abs(noise.std() - 0.2), 0.01)
        self.assertTrue(np.all(np.abs(mean) <= 1))
        mean_eval, location_eval = testing.to_numpy(policy(h, training=False))
        self.assertAllClose(mean_eval, location_eval)
        again = reinforce.GaussianLocationPolicy(std=0.2, seed=5)
        again.build((None, 3))
        again.set_weights(policy.get_weights())
        self.assertAllClose(testing.to_numpy(again(h, training=True))[1], location)

    def test_clip_mean(self):
        policy = reinforce.GaussianLocationPolicy(mean_activation="clip")
        policy.build((None, 2))
        policy.dense.kernel.assign(np.eye(2, dtype="float32") * 5)
        mean, _ = policy(np.array([[1.0, -0.1]], "float32"))
        self.assertAllClose(mean, [[1.0, -0.5]])

    def test_hidden_layer_mean_matches_numpy(self):
        # mu = tanh(ReLU(h W1 + b1) W2 + b2); the option survives get_config.
        policy = reinforce.GaussianLocationPolicy(std=0.1, hidden_units=5, seed=2)
        policy.build((None, 3))
        testing.perturb_weights(policy)
        w1, b1, w2, b2 = policy.get_weights()
        h = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
        mean, location = testing.to_numpy(policy(h))
        self.assertAllClose(mean, np.tanh(np.maximum(h @ w1 + b1, 0) @ w2 + b2),
                            atol=1e-6)
        self.assertAllClose(location, mean)
        again = reinforce.GaussianLocationPolicy.from_config(policy.get_config())
        self.assertEqual(again.hidden_units, 5)

    def test_moving_average_baseline(self):
        layer = reinforce.MovingAverageBaseline(momentum=0.8)
        value = 0.0
        for rewards in ([1, 0, 1, 1], [0, 0, 1, 0]):
            rewards = np.array(rewards, "float32")
            out = layer(rewards, training=True)
            self.assertAllClose(out, np.full(4, value), atol=1e-6)
            value = 0.8 * value + 0.2 * rewards.mean()
        self.assertAllClose(layer.value, value, atol=1e-6)
        layer(np.ones(4, "float32"), training=False)
        self.assertAllClose(layer.value, value, atol=1e-6)

    def test_moving_average_baseline_weighted_update(self):
        layer = reinforce.MovingAverageBaseline(momentum=0.5)
        rewards = np.array([1, 0, 1, 0], "float32")
        weights = np.array([3, 1, 0, 0], "float32")
        layer(rewards, training=True, sample_weight=weights)
        self.assertAllClose(layer.value, 0.5 * (3 * 1 + 1 * 0) / 4, atol=1e-6)
        layer(rewards, training=True, sample_weight=np.zeros(4, "float32"))
        self.assertAllClose(layer.value, 0.375, atol=1e-6)  # all weights 0: kept

    def test_weighted_losses_match_numpy(self):
        rng = np.random.default_rng(0)
        rewards = (rng.uniform(size=5) > 0.5).astype("float32")
        log_probs = rng.normal(size=(5, 3)).astype("float32")
        baselines = rng.uniform(size=(5, 3)).astype("float32")
        weights = np.array([0, 1, 2, 0.5, 0], "float32")
        per_episode = -np.sum((rewards[:, None] - baselines) * log_probs, 1)
        self.assertAllClose(
            reinforce.reinforce_loss(rewards, log_probs, baselines, weights),
            np.mean(weights * per_episode), rtol=1e-5)
        mse = np.mean((baselines - rewards[:, None]) ** 2, axis=1)
        self.assertAllClose(reinforce.baseline_loss(rewards, baselines, weights),
                            np.mean(weights * mse), rtol=1e-5)

    def test_normalized_advantage_matches_numpy(self):
        # A = R - b, standardised over all B x T entries (weighted by the
        # episodes' weights), then the weighted surrogate -mean_b w_b sum_t A log pi.
        rng = np.random.default_rng(4)
        rewards = (rng.uniform(size=6) > 0.4).astype("float32")
        log_probs = rng.normal(size=(6, 3)).astype("float32")
        baselines = rng.uniform(size=(6, 3)).astype("float32")
        weights = np.array([0, 1, 2, 0.5, 0, 1], "float32")
        advantage = rewards[:, None] - baselines
        for w in (None, weights):
            expected = np_normalized_advantage(advantage, w)
            self.assertAllClose(reinforce.normalized_advantage(advantage, w), expected,
                                atol=1e-5)
            per_episode = -np.sum(expected * log_probs, 1)
            self.assertAllClose(
                reinforce.reinforce_loss(rewards, log_probs, baselines, w,
                                         normalize_advantage=True),
                np.mean(per_episode if w is None else w * per_episode), rtol=1e-5)
        # episodes of weight 0 do not enter the moments
        kept = weights > 0
        self.assertAllClose(
            testing.to_numpy(reinforce.normalized_advantage(advantage, weights))[kept],
            np_normalized_advantage(advantage[kept], weights[kept]), atol=1e-5)
        # one reward per episode and no baseline: the moments of the B rewards
        self.assertAllClose(
            reinforce.reinforce_loss(rewards, log_probs, normalize_advantage=True),
            -np.mean(np.sum(np_normalized_advantage(rewards[:, None]) * log_probs, 1)),
            rtol=1e-5)
        # equal advantages: all zero, no NaN
        self.assertAllClose(reinforce.normalized_advantage(np.ones((4, 2), "float32")),
                            np.zeros((4, 2)), atol=1e-6)
        # the default is the plain estimator
        self.assertAllClose(reinforce.reinforce_loss(rewards, log_probs, baselines),
                            -np.mean(np.sum(advantage * log_probs, 1)), rtol=1e-5)

    def test_policy_seed_state_survives_saving(self):
        policy = reinforce.GaussianLocationPolicy(std=0.3, seed=3)
        model = keras.Sequential([keras.Input((4,)), policy])
        h = np.ones((2, 4), "float32")
        first = testing.to_numpy(policy(h, training=True))[1]
        policy(h, training=True)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "policy.keras")
            model.save(path)
            loaded = keras.saving.load_model(path).layers[0]
        # the loaded policy continues from the saved state (a fresh generator
        # would repeat the first draw)
        after = testing.to_numpy(loaded(h, training=True))[1]
        self.assertAllClose(after, testing.to_numpy(policy(h, training=True))[1])
        self.assertGreater(np.abs(after - first).max(), 1e-3)

    def test_learned_baseline_stops_gradient_into_state(self):
        h = keras.Variable(np.ones((3, 4), "float32"))
        layer = reinforce.LearnedBaseline()
        layer.build((None, 4))
        _, grads = gradients([h, layer.dense.kernel], lambda: reinforce.baseline_loss(
            np.ones(3, "float32"), layer(h)[:, None]))
        assert grads[0] is None or not np.any(grads[0])
        assert np.any(grads[1])


@pytest.mark.parametrize("kwargs, quoted", [
    ({"std": 0.0}, "std=0.0"),
    ({"std": -1}, "std=-1"),
    ({"mean_activation": "relu"}, "mean_activation='relu'"),
    ({"units": 0}, "units=0"),
    ({"hidden_units": -1}, "hidden_units=-1"),
    ({"hidden_units": 2.5}, "hidden_units=2.5"),
])
def test_policy_bad_arguments(kwargs, quoted):
    with pytest.raises(ValueError, match=quoted):
        reinforce.GaussianLocationPolicy(**kwargs)


def test_moving_average_bad_momentum():
    with pytest.raises(ValueError, match="momentum=1.5"):
        reinforce.MovingAverageBaseline(momentum=1.5)


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch only")
def test_torch_gets_the_clear_error():
    with pytest.raises(UnsupportedBackendError, match="tensorflow and jax"):
        reinforce.gaussian_log_prob(np.zeros((1, 2)), 0.1, np.zeros((1, 2)))
    with pytest.raises(UnsupportedBackendError, match="KERAS_BACKEND='torch'"):
        reinforce.require_reinforce_backend()
