"""VisualSearchAgent: rewards and loss vs NumPy, gradients, fit, saving, errors."""

import os
import tempfile

import keras
import numpy as np
import pytest

from keras_attention_vision.applications import VisualSearchAgent
from keras_attention_vision.applications.visual_search_agent import (
    raster_fixations,
    returns_to_go,
    search_metrics,
    search_rewards,
)
from keras_attention_vision.distributions import UnsupportedBackendError
from tests import testing
from tests.reinforce_testing import gradients, needs_tfp

SIZE = 24
TINY = dict(input_shape=(SIZE, SIZE, 1), classes=3, num_fixations=3, patch_size=4,
            num_scales=2, glimpse_hidden=8, glimpse_units=8, core_units=8, std=0.2,
            initial_found_probability=0.3, fixation_cost=0.05, false_found_penalty=0.7,
            found_reward=1.5, hit_reward=0.3, entropy_weight=0.1, recognition_weight=0.5,
            fixation_weight=0.8)


def _data(n=8, seed=0):
    """Scenes with one bright 8x8 square per class slot; the target is a slot."""
    rng = np.random.default_rng(seed)
    scenes = rng.uniform(0, 0.1, (n, SIZE, SIZE, 1)).astype("float32")
    targets = rng.integers(0, 3, n).astype("int32")
    boxes = np.zeros((n, 4), "int32")
    for i, target in enumerate(targets):
        if i % 4 == 3:  # absent
            continue
        y, x = rng.integers(0, SIZE - 8, 2)
        scenes[i, y:y + 8, x:x + 8] = (target + 1) / 3.0
        boxes[i] = (y, x, y + 8, x + 8)
    return scenes, targets, boxes


# NumPy references written from the formulation -----------------------------------


def _np_rewards(locations, found, boxes, size, found_reward, cost, penalty, hit_reward):
    """Episode by episode: pay per fixation until the first "found"; score that one;
    the first fixation on the target earns `hit_reward`."""
    b, k = found.shape
    rewards, alive, hits = np.zeros((b, k)), np.zeros((b, k)), np.zeros((b, k))
    for i in range(b):
        y0, x0, y1, x1 = boxes[i]
        for t in range(k):
            py = (locations[i, t, 0] + 1) / 2 * size
            px = (locations[i, t, 1] + 1) / 2 * size
            hits[i, t] = float(y0 <= py < y1 and x0 <= px < x1)
        seen = False
        for t in range(k):
            alive[i, t] = 1.0
            rewards[i, t] = -cost
            if hits[i, t] and not seen:
                rewards[i, t] += hit_reward
                seen = True
            if found[i, t]:
                rewards[i, t] += found_reward if hits[i, t] else -penalty
                break
    return rewards, alive, hits


def _np_softplus(z):
    return np.logaddexp(0.0, z)


def _np_bce(logits, labels):
    p = 1 / (1 + np.exp(-logits))
    return -(labels * np.log(p) + (1 - labels) * np.log(1 - p))


def _np_loss(o, boxes, config, probes, weights=None):
    b = len(boxes)
    weights = np.ones(b) if weights is None else np.asarray(weights, "float64").ravel()
    rewards, alive, hits = _np_rewards(o["locations"], o["found"], boxes, SIZE,
                                       config["found_reward"], config["fixation_cost"],
                                       config["false_found_penalty"], config["hit_reward"])
    returns = np.cumsum(rewards[:, ::-1], 1)[:, ::-1]
    std = config["std"]
    log_gauss = (-0.5 * ((o["locations"] - o["means"]) / std) ** 2 - np.log(std)
                 - 0.5 * np.log(2 * np.pi)).sum(-1)
    z, f = o["found_logits"], o["found"]
    log_bern = -f * _np_softplus(-z) - (1 - f) * _np_softplus(z)
    log_pi = alive * (config["fixation_weight"] * log_gauss + log_bern)
    if config.get("fixation_reward", "return") == "return":
        policy = -np.sum((returns - o["baselines"]) * log_pi, 1)
    else:  # fixations: first hit and fixation cost only, their own baseline
        first = np.zeros_like(hits)
        for i in range(b):
            hit_steps = np.flatnonzero(hits[i])
            if len(hit_steps):
                first[i, hit_steps[0]] = 1.0
        fixation_rewards = alive * (config["hit_reward"] * first - config["fixation_cost"])
        fixation_returns = np.cumsum(fixation_rewards[:, ::-1], 1)[:, ::-1]
        fb = o["fixation_baselines"]
        policy = (-np.sum((fixation_returns - fb) * alive * config["fixation_weight"]
                          * log_gauss, 1)
                  - np.sum((returns - o["baselines"]) * alive * log_bern, 1)
                  + np.mean((alive * fb - alive * fixation_returns) ** 2, 1))
    value = np.mean((alive * o["baselines"] - alive * returns) ** 2, 1)
    p = 1 / (1 + np.exp(-z))
    entropy = np.sum(alive * -(p * np.log(p) + (1 - p) * np.log(1 - p)), 1)
    present = (boxes[:, 2] > boxes[:, 0]).astype("float64")
    positive, negative = probes
    recognition = (np.sum(alive * _np_bce(z, hits), 1) / alive.sum(1)
                   + present * (_np_bce(positive, 1.0) + _np_bce(negative, 0.0)))
    per_episode = (policy + value - config["entropy_weight"] * entropy
                   + config["recognition_weight"] * recognition)
    return np.mean(weights * per_episode)


# Tests ------------------------------------------------------------------------------


@needs_tfp
class VisualSearchAgentTest(testing.TestCase):
    def test_rewards_match_numpy_on_a_fixed_rollout(self):
        boxes = np.array([[0, 0, 12, 12], [12, 12, 24, 24], [0, 0, 0, 0], [0, 12, 12, 24]])
        locations = np.array([  # (y, x) in [-1, 1]; pixel = (l + 1) * 12
            [[-0.5, -0.5], [0.5, 0.5], [0.0, 0.0]],    # on the target, says found
            [[-0.5, -0.5], [0.5, 0.5], [0.5, 0.5]],    # found on the second
            [[0.0, 0.0], [0.2, 0.2], [0.3, -0.3]],     # absent: wrong found at 3
            [[-0.5, 0.5], [0.9, 0.9], [0.0, 0.0]],     # on target, gives up
        ], "float32")
        found = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0]], "float32")
        rewards, alive, hits = search_rewards(locations, found, boxes, (SIZE, SIZE),
                                              1.5, 0.05, 0.7, 0.3)
        expected = _np_rewards(locations, found, boxes, SIZE, 1.5, 0.05, 0.7, 0.3)
        for actual, want in zip((rewards, alive, hits), expected):
            self.assertAllClose(actual, want, atol=1e-6)
        # By hand: episode 1 says a wrong "found" at its first fixation; episode
        # 3 lands on the target at its first fixation (hit reward) and gives up.
        self.assertAllClose(testing.to_numpy(rewards)[1], [-0.75, 0.0, 0.0], atol=1e-6)
        self.assertAllClose(testing.to_numpy(rewards)[3], [0.25, -0.05, -0.05], atol=1e-6)
        self.assertAllClose(testing.to_numpy(rewards)[0], [1.75, 0.0, 0.0], atol=1e-6)
        self.assertAllClose(returns_to_go(rewards),
                            np.cumsum(expected[0][:, ::-1], 1)[:, ::-1], atol=1e-6)

    def test_loss_matches_numpy_and_weights_every_term(self):
        scenes, targets, boxes = _data(8)
        model = VisualSearchAgent(**TINY, seed=1)
        model((scenes, targets))
        testing.perturb_weights(model)
        out = model((scenes, targets), training=True)
        o = {k: np.asarray(v, "float64") for k, v in testing.to_numpy(out).items()}
        self.assertGreater(o["found"].sum(), 0)
        # Fixed probe logits: the loss formula is checked on a fixed rollout.
        probes = (np.linspace(-2, 2, 8), np.linspace(1, -1, 8))
        model.recognition_probes = lambda *args: (
            keras.ops.convert_to_tensor(probes[0], "float32"),
            keras.ops.convert_to_tensor(probes[1], "float32"), None, None)
        loss = float(model.compute_loss((scenes, targets), boxes, out))
        self.assertAllClose(loss, _np_loss(o, boxes, TINY, probes), atol=1e-4, rtol=1e-4)
        weights = np.array([1, 0, 2, 0, 1, 1, 0, 0.5], "float32")
        expected = _np_loss(o, boxes, TINY, probes, weights)
        for w in (weights, weights[:, None]):
            weighted = float(model.compute_loss((scenes, targets), boxes, out,
                                                sample_weight=w))
            self.assertAllClose(weighted, expected, atol=1e-4, rtol=1e-4)

    def test_loss_with_hit_rewarded_fixations_matches_numpy(self):
        scenes, targets, boxes = _data(8)
        config = {**TINY, "fixation_reward": "hits", "hit_reward": 0.6}
        model = VisualSearchAgent(**config, seed=8)
        model((scenes, targets))
        testing.perturb_weights(model)
        out = model((scenes, targets), training=True)
        o = {k: np.asarray(v, "float64") for k, v in testing.to_numpy(out).items()}
        probes = (np.linspace(-1, 1, 8), np.linspace(2, -2, 8))
        model.recognition_probes = lambda *args: (
            keras.ops.convert_to_tensor(probes[0], "float32"),
            keras.ops.convert_to_tensor(probes[1], "float32"), None, None)
        weights = np.array([1, 2, 0, 1, 1, 0.5, 1, 1], "float32")
        loss = float(model.compute_loss((scenes, targets), boxes, out, sample_weight=weights))
        self.assertAllClose(loss, _np_loss(o, boxes, config, probes, weights), atol=1e-4,
                            rtol=1e-4)

    def test_recognition_probes_look_inside_the_target_box(self):
        scenes, targets, boxes = _data(8)
        model = VisualSearchAgent(**TINY, seed=7)
        model((scenes, targets))
        testing.perturb_weights(model)
        positive, negative, locations, others = testing.to_numpy(
            model.recognition_probes(scenes, targets, boxes))
        pixels = (locations + 1) / 2 * SIZE
        present = boxes[:, 2] > boxes[:, 0]
        inside = ((pixels[:, 0] >= boxes[:, 0]) & (pixels[:, 0] < boxes[:, 2])
                  & (pixels[:, 1] >= boxes[:, 1]) & (pixels[:, 1] < boxes[:, 3]))
        self.assertTrue(np.all(inside[present]))
        self.assertTrue(np.all(others != targets) and np.all((others >= 0) & (others < 3)))
        # The probes are the logits a search fixating there would have.
        fixed = np.repeat(locations[:, None], 3, axis=1)
        for logits, classes in ((positive, targets), (negative, others)):
            step = model.rollout(scenes, classes, locations=fixed)["found_logits"][:, 0]
            self.assertAllClose(logits, step, atol=1e-5)

    def test_reinforce_gradient_reaches_fixation_and_found_policies(self):
        scenes, targets, boxes = _data(8)
        config = {**TINY, "entropy_weight": 0.0, "recognition_weight": 0.0}
        model = VisualSearchAgent(**config, seed=2)
        model((scenes, targets))
        testing.perturb_weights(model)
        fixation = [model.location_policy.dense.kernel, model.location_policy.dense.bias]
        found = [model.found_policy.dense.kernel, model.found_policy.dense.bias]

        def loss():
            return model.compute_loss((scenes, targets), boxes,
                                      model((scenes, targets), training=True))

        _, grads = gradients(fixation + found, loss)
        for g in grads:
            self.assertIsNotNone(g)
            self.assertGreater(np.abs(g).max(), 0)

    def test_fit_reduces_the_loss(self):
        # The loss `evaluate` reports is the negative return of the greedy
        # search; at the start the agent says "found" at its first fixation
        # (P(found) = 0.6), mostly wrongly.
        scenes, targets, boxes = _data(32)
        keras.utils.set_random_seed(3)
        model = VisualSearchAgent(**{**TINY, "initial_found_probability": 0.6}, seed=3)
        model.compile(optimizer=keras.optimizers.Adam(3e-2))
        data = ((scenes, targets), boxes)
        before = model.evaluate(*data, verbose=0, return_dict=True)
        history = model.fit(*data, epochs=5, batch_size=8, verbose=0)
        after = model.evaluate(*data, verbose=0, return_dict=True)
        self.assertLess(after["loss"], before["loss"] - 0.05)
        self.assertAllClose(after["loss"], -after["reward"], atol=1e-6)
        self.assertIn("success", history.history)

    def test_save_and_load_round_trip(self):
        scenes, targets, boxes = _data(6)
        model = VisualSearchAgent(**TINY, seed=4)
        model((scenes, targets), training=True)  # moves the generators' states on
        model.recognition_probes(scenes, targets, boxes)
        testing.perturb_weights(model)
        before = testing.to_numpy(model((scenes, targets)))
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "agent.keras")
            model.save(path)
            loaded = keras.saving.load_model(path, safe_mode=True)
        self.assertIsInstance(loaded, VisualSearchAgent)
        self.assertEqual(loaded.get_config(), model.get_config())
        after = testing.to_numpy(loaded((scenes, targets)))
        for key in before:
            self.assertAllClose(after[key], before[key], atol=1e-6)
        for name in ("location_policy", "found_policy", None):
            if name is None:  # the agent's own generator (recognition probes)
                self.assertAllClose(loaded.seed_generator.state.value,
                                    model.seed_generator.state.value)
                continue
            self.assertAllClose(getattr(loaded, name).seed_generator.state.value,
                                getattr(model, name).seed_generator.state.value)
        sampled = [testing.to_numpy(m((scenes, targets), training=True))
                   for m in (model, loaded)]
        for key in ("locations", "found"):
            self.assertAllClose(sampled[0][key], sampled[1][key], atol=1e-6)
        probes = [testing.to_numpy(m.recognition_probes(scenes, targets, boxes))
                  for m in (model, loaded)]
        self.assertAllClose(probes[0][2], probes[1][2], atol=1e-6)

    def test_search_and_its_baselines(self):
        scenes, targets, boxes = _data(10)
        model = VisualSearchAgent(**TINY, seed=5)
        for strategy in ("policy", "random", "raster"):
            out = model.search(scenes, targets, boxes, strategy=strategy, batch_size=4,
                               return_paths=True)
            self.assertEqual(out["locations"].shape, (10, 3, 2))
            present = boxes[:, 2] > boxes[:, 0]
            again = search_metrics(out["found"], out["hits"], present)
            self.assertEqual(again["success_within_k"], out["success_within_k"])
        raster = model.search(scenes, targets, boxes, strategy="raster",
                              return_paths=True)["locations"]
        self.assertAllClose(raster[0], raster_fixations(SIZE, SIZE, 28, 3), atol=1e-6)
        with pytest.raises(ValueError, match="strategy='spiral'"):
            model.search(scenes, targets, boxes, strategy="spiral")

    def test_bad_inputs_are_quoted(self):
        scenes, targets, boxes = _data(4)
        model = VisualSearchAgent(**TINY, seed=6)
        bad = np.array([0, 1, 3, 2])
        with pytest.raises(ValueError, match=r"Received: targets containing \[3\]"):
            model((scenes, bad))
        model.compile(optimizer="adam")
        with pytest.raises(ValueError, match=r"\[-1\]"):
            model.fit((scenes, np.array([0, -1, 1, 2])), boxes, verbose=0)
        with pytest.raises(ValueError, match=r"\[3\]"):
            model.search(scenes, bad, boxes)
        with pytest.raises(ValueError, match=r"scenes.shape=\(4, 24, 24\)"):
            model((scenes[..., 0], targets))


def test_search_metrics_by_hand():
    found = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0], [0, 0, 1], [0, 0, 0]])
    hits = np.array([[0, 1, 0], [0, 1, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0]])
    present = np.array([True, True, True, False, False])
    m = search_metrics(found, hits, present)
    # successes: scene 0 (found at 2), scene 4 (absent, gave up)
    assert m["success_within_k"] == pytest.approx(2 / 5)
    assert m["found_rate_present"] == pytest.approx(1 / 3)
    assert m["mean_fixations_to_find"] == pytest.approx(2.0)
    assert m["mean_fixations_present"] == pytest.approx((2 + 3 + 3) / 3)
    assert m["false_found_rate"] == pytest.approx(2 / 5)
    assert m["give_up_rate_absent"] == pytest.approx(1 / 2)
    # within 1 fixation only the two absent scenes are right (no "found" said)
    assert search_metrics(found, hits, present, num_fixations=1)["success_within_k"] \
        == pytest.approx(2 / 5)


def test_raster_scan_fixates_every_digit_of_a_100x100_scene():
    grid = raster_fixations(100, 100, 28, 9)
    pixels = (grid + 1) / 2 * 100
    assert len(np.unique(grid, axis=0)) == 9
    corners = np.arange(0, 73)
    for axis in (0, 1):
        inside = (pixels[None, :, axis] >= corners[:, None]) & (
            pixels[None, :, axis] < corners[:, None] + 28)
        assert inside.any(1).all()


@needs_tfp
@pytest.mark.parametrize("kwargs, quoted", [
    ({"num_fixations": 0}, "num_fixations=0"),
    ({"classes": -2}, "classes=-2"),
    ({"input_shape": (28, 28)}, r"input_shape=\(28, 28\)"),
    ({"fixation_cost": -0.1}, "fixation_cost=-0.1"),
    ({"initial_found_probability": 1.0}, "initial_found_probability=1.0"),
    ({"fixation_reward": "found"}, "fixation_reward='found'"),
])
def test_bad_arguments(kwargs, quoted):
    with pytest.raises(ValueError, match=quoted):
        VisualSearchAgent(**{**TINY, **kwargs})


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch only")
def test_torch_raises_the_clear_reinforce_error():
    with pytest.raises(UnsupportedBackendError, match="tensorflow and jax"):
        VisualSearchAgent(**TINY)


@needs_tfp
def test_bernoulli_policy_samples_and_scores_as_numpy():
    from keras_attention_vision.reinforce import BernoulliPolicy

    policy = BernoulliPolicy(initial_probability=0.2, kernel_initializer="ones", seed=0)
    h = np.linspace(-1, 1, 4000, dtype="float32").reshape(1000, 4)
    logits, greedy = testing.to_numpy(policy(h))
    np.testing.assert_allclose(logits, h.sum(1) + np.log(0.2 / 0.8), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(greedy, (logits > 0).astype("float32"))
    _, sampled = testing.to_numpy(policy(h, training=True))
    p = 1 / (1 + np.exp(-logits))
    assert abs(sampled.mean() - p.mean()) < 0.04
    log_prob = testing.to_numpy(policy.log_prob(logits, sampled))
    np.testing.assert_allclose(log_prob, np.where(sampled > 0, np.log(p), np.log(1 - p)),
                               rtol=1e-4, atol=1e-5)
    config = policy.get_config()
    assert config["initial_probability"] == 0.2
    assert BernoulliPolicy.from_config(config).initial_probability == 0.2
    with pytest.raises(ValueError, match="initial_probability=0"):
        BernoulliPolicy(initial_probability=0)
