"""RecurrentAttentionModel: hybrid loss vs NumPy, fit, determinism, saving, errors."""

import os
import tempfile

import keras
import numpy as np
import pytest

from keras_attention_vision.applications import RecurrentAttentionModel
from keras_attention_vision.distributions import UnsupportedBackendError
from tests import testing
from tests.reinforce_testing import gradients, needs_tfp, np_normalized_advantage

TINY = dict(input_shape=(12, 12, 1), classes=3, num_glimpses=2, patch_size=4,
            num_scales=2, glimpse_hidden=8, glimpse_units=16, core_units=16, std=0.2)


def _data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = rng.uniform(0, 0.2, (n, 12, 12, 1)).astype("float32")
    for i, label in enumerate(labels):  # a bright square whose place is the class
        images[i, 4 * label:4 * label + 4, 4:8] = 1.0
    return images, labels


def _np_hybrid_terms(o, labels, std=None):
    """Per-image terms of the paper's hybrid loss in NumPy (section 3.2).

    From a rollout's outputs `o`: the classifier's cross-entropy `(B,)`, the
    0/1 reward `(B,)`, the baseline's squared error to it (mean over
    glimpses, `(B,)`) and `log pi(l_t)` of each glimpse `(B, T)`.
    """
    std = TINY["std"] if std is None else std
    ce = -_np_log_softmax(o["logits"])[np.arange(len(labels)), labels]
    reward = (o["logits"].argmax(-1) == labels).astype("float64")
    mse = np.mean((o["baselines"] - reward[:, None]) ** 2, axis=1)
    log_pi = (-0.5 * ((o["locations"] - o["means"]) / std) ** 2 - np.log(std)
              - 0.5 * np.log(2 * np.pi)).sum(-1)
    return ce, reward, mse, log_pi


def _np_hybrid_loss(o, labels, std=None):
    """The hybrid loss: cross-entropy, baseline MSE and the REINFORCE surrogate
    `-(R - b_t) log pi(l_t)` summed over glimpses, each a mean over the batch."""
    ce, reward, mse, log_pi = _np_hybrid_terms(o, labels, std)
    surrogate = -np.sum((reward[:, None] - o["baselines"]) * log_pi, 1)
    return np.mean(ce) + np.mean(mse) + np.mean(surrogate)


def _np_conv3x3_relu(x, kernel, bias):
    """A 3x3 convolution, "same" zero padding, stride 1, then ReLU, by loops."""
    b, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((b, h, w, kernel.shape[-1]))
    for i in range(h):
        for j in range(w):
            window = padded[:, i:i + 3, j:j + 3, :]  # (B, 3, 3, C_in)
            out[:, i, j] = np.einsum("bklc,klcf->bf", window, kernel) + bias
    return np.maximum(out, 0)


def _np_max_pool_same(x):
    """2x2 max-pool, stride 2; a window past an odd side's end keeps its pixels."""
    b, h, w, c = x.shape
    out = np.zeros((b, -(-h // 2), -(-w // 2), c))
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            out[:, i, j] = x[:, 2 * i:2 * i + 2, 2 * j:2 * j + 2].max(axis=(1, 2))
    return out


def _np_conv_what(glimpse, weights):
    """`Lin(h_g)` of `glimpse_encoder="conv"` from a channels_last retina output
    `(B, k, g, g, C)`: the scales as channels `(scale, channel)`, conv-pool
    twice, then the two dense layers of the "what" pathway."""
    b, k, g, _, c = glimpse.shape
    x = glimpse.transpose(0, 2, 3, 1, 4).reshape(b, g, g, k * c)
    for kernel, bias in weights["conv"]:
        x = _np_max_pool_same(_np_conv3x3_relu(x, kernel, bias))
    (w1, b1), (w2, b2) = weights["dense"]
    hidden = np.maximum(x.reshape(b, -1) @ w1 + b1, 0)
    return hidden @ w2 + b2


def _np_log_softmax(logits):
    z = logits - logits.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


@needs_tfp
class RecurrentAttentionModelTest(testing.TestCase):
    def test_hybrid_loss_matches_numpy(self):
        images, labels = _data(8)
        model = RecurrentAttentionModel(**TINY, seed=1)
        out = model(images, training=True)
        loss = float(model.compute_loss(images, labels, out))
        o = testing.to_numpy(out)
        self.assertAllClose(loss, _np_hybrid_loss(o, labels), atol=1e-4, rtol=1e-4)

    def test_sample_weight_weights_every_term(self):
        # Keras's reduction: sum(w * loss_b) / B for the cross-entropy, the
        # baseline MSE and the REINFORCE term alike.
        images, labels = _data(8)
        model = RecurrentAttentionModel(**TINY, seed=1)
        out = model(images, training=True)
        weights = np.array([1, 0, 2, 0, 1, 1, 0, 0.5], "float32")
        loss = float(model.compute_loss(images, labels, out, sample_weight=weights))
        o = testing.to_numpy(out)
        ce, reward, mse, log_pi = _np_hybrid_terms(o, labels)
        surrogate = -np.sum((reward[:, None] - o["baselines"]) * log_pi, 1)
        expected = np.mean(weights * (ce + mse + surrogate))
        self.assertAllClose(loss, expected, atol=1e-4, rtol=1e-4)
        column = float(model.compute_loss(images, labels, out,
                                          sample_weight=weights[:, None]))
        self.assertAllClose(column, expected, atol=1e-4, rtol=1e-4)

    def test_normalize_advantage_in_the_hybrid_loss(self):
        # The REINFORCE term with A = R - b_t standardised over the batch (the
        # moments weighted like the terms); CE and MSE unchanged; the option
        # survives get_config and a .keras round trip.
        images, labels = _data(8)
        model = RecurrentAttentionModel(**TINY, normalize_advantage=True, seed=1)
        model.build()
        testing.perturb_weights(model)
        out = model(images, training=True)
        o = testing.to_numpy(out)
        weights = np.array([1, 0, 2, 0, 1, 1, 0, 0.5], "float32")
        ce, reward, mse, log_pi = _np_hybrid_terms(o, labels)
        for w in (None, weights):
            advantage = np_normalized_advantage(reward[:, None] - o["baselines"], w)
            per_image = ce + mse - np.sum(advantage * log_pi, 1)
            expected = np.mean(per_image if w is None else w * per_image)
            loss = float(model.compute_loss(images, labels, out, sample_weight=w))
            self.assertAllClose(loss, expected, atol=1e-4, rtol=1e-4)
        self.assertTrue(model.get_config()["normalize_advantage"])
        self.assertFalse(RecurrentAttentionModel(**TINY).get_config()["normalize_advantage"])
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "ram.keras")
            model.save(path)
            loaded = keras.saving.load_model(path)
        self.assertTrue(loaded.normalize_advantage)
        self.assertAllClose(float(loaded.compute_loss(images, labels, out)),
                            float(model.compute_loss(images, labels, out)), atol=1e-5)

    def test_weighted_evaluate(self):
        images, labels = _data(8)
        model = RecurrentAttentionModel(**TINY, seed=1)
        model.compile(optimizer="adam")
        model(images)
        testing.perturb_weights(model)
        weights = np.array([1, 1, 1, 1, 0, 0, 0, 0], "float32")
        probabilities = model.predict(images, verbose=0)
        ce = -np.log(probabilities[np.arange(8), labels])
        unweighted = model.evaluate(images, labels, batch_size=8, verbose=0,
                                    return_dict=True)["loss"]
        weighted = model.evaluate(images, labels, sample_weight=weights, batch_size=8,
                                  verbose=0, return_dict=True)["loss"]
        self.assertAllClose(unweighted, ce.mean(), rtol=1e-4)
        self.assertAllClose(weighted, np.mean(weights * ce), rtol=1e-4)

    def test_resumed_training_equals_uninterrupted(self):
        # The location noise's SeedGenerator state, the weights and the
        # optimizer state come back from the .keras file.
        images, labels = _data(16)
        for baseline in ("learned", "moving_average"):
            keras.utils.set_random_seed(5)
            model = RecurrentAttentionModel(**TINY, baseline=baseline, seed=5)
            model.compile(optimizer=keras.optimizers.Adam(1e-2))
            model.fit(images, labels, epochs=1, batch_size=8, shuffle=False, verbose=0)
            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, "ram.keras")
                model.save(path)
                loaded = keras.saving.load_model(path)
            self.assertAllClose(loaded.policy.seed_generator.state.value,
                                model.policy.seed_generator.state.value)
            for m in (model, loaded):
                m.fit(images, labels, epochs=1, batch_size=8, shuffle=False, verbose=0)
            for a, b in zip(model.get_weights(), loaded.get_weights()):
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)

    def test_location_network_learns_from_reinforce_only(self):
        images, labels = _data(16)
        model = RecurrentAttentionModel(**TINY, seed=2)
        model(images)
        testing.perturb_weights(model)
        policy = [model.policy.dense.kernel, model.policy.dense.bias]

        def hybrid():
            return model.compute_loss(images, labels, model(images, training=True))

        def classification_only():
            out = model(images, training=True)
            return keras.ops.mean(keras.losses.sparse_categorical_crossentropy(
                labels, out["logits"], from_logits=True))

        _, grads = gradients(policy, hybrid)
        self.assertTrue(all(g is not None and np.abs(g).max() > 0 for g in grads))
        _, grads = gradients(policy, classification_only)
        self.assertTrue(all(g is None or not np.any(g) for g in grads))

    def test_fit_reduces_the_loss_and_is_deterministic(self):
        images, labels = _data(32)
        weights, losses = [], []
        for _ in range(2):
            keras.utils.set_random_seed(3)
            model = RecurrentAttentionModel(**TINY, seed=3)
            model.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=["accuracy"])
            history = model.fit(images, labels, epochs=8, batch_size=16, verbose=0)
            losses.append(history.history["loss"])
            weights.append(model.get_weights())
        self.assertLess(losses[0][-1], losses[0][0])
        for a, b in zip(weights[0], weights[1]):
            np.testing.assert_array_equal(a, b)

    def test_save_and_load_give_the_same_predictions(self):
        images, _ = _data(6)
        model = RecurrentAttentionModel(**TINY, core="lstm", seed=4)
        model(images)
        testing.perturb_weights(model)
        before = model.predict(images, verbose=0)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "ram.keras")
            model.save(path)
            loaded = keras.saving.load_model(path, safe_mode=True)
        self.assertIsInstance(loaded, RecurrentAttentionModel)
        self.assertEqual(loaded.get_config(), model.get_config())
        self.assertAllClose(loaded.predict(images, verbose=0), before, atol=1e-6)

    def test_inference_outputs(self):
        images, _ = _data(5)
        model = RecurrentAttentionModel(**TINY, seed=5)
        probs, locations = model(images, return_locations=True)
        self.assertEqual(tuple(locations.shape), (5, 2, 2))
        self.assertAllClose(np.sum(testing.to_numpy(probs), -1), np.ones(5), atol=1e-5)
        again, locations_again = model(images, return_locations=True)
        self.assertAllClose(locations_again, locations)  # the mean path
        averaged = model.predict_averaged(images, num_samples=4, batch_size=2)
        self.assertEqual(averaged.shape, (5, 3))
        self.assertAllClose(averaged.sum(-1), np.ones(5), atol=1e-5)
        self.assertAllClose(model.predict_averaged(images, num_samples=1), probs,
                            atol=1e-6)

    def test_presets_and_channels_first(self):
        model = RecurrentAttentionModel.from_preset("cluttered100", core_units=8,
                                                    glimpse_hidden=4, glimpse_units=8)
        self.assertEqual(model.sensor.num_scales, 4)
        self.assertEqual(model.image_shape, (100, 100, 1))
        first = RecurrentAttentionModel(**{**TINY, "input_shape": (1, 12, 12)},
                                        data_format="channels_first", seed=6)
        last = RecurrentAttentionModel(**TINY, data_format="channels_last", seed=6)
        images, _ = _data(3)
        last(images)
        first(np.moveaxis(images, -1, 1))
        testing.perturb_weights(last)
        first.set_weights(last.get_weights())
        self.assertAllClose(first(np.moveaxis(images, -1, 1)), last(images), atol=1e-5)

    def test_conv_glimpse_encoder_matches_numpy(self):
        # odd patch (5 -> 3 -> 2) and two image channels: the padding of the
        # pools and the (scale, channel) order of the stacked retina
        for patch_size in (4, 5):
            config = {**TINY, "input_shape": (12, 12, 2), "patch_size": patch_size,
                      "glimpse_encoder": "conv"}
            model = RecurrentAttentionModel(**config, seed=7)
            model.build()
            testing.perturb_weights(model)
            rng = np.random.default_rng(patch_size)
            glimpse = rng.uniform(0, 1, (3, 2, patch_size, patch_size, 2))
            glimpse = glimpse.astype("float32")
            weights = {
                "conv": [(np.asarray(layer.kernel), np.asarray(layer.bias))
                         for layer in model.glimpse_conv],
                "dense": [(np.asarray(layer.kernel), np.asarray(layer.bias))
                          for layer in (model.glimpse_what, model.glimpse_what_out)],
            }
            self.assertAllClose(model._what(glimpse), _np_conv_what(glimpse, weights),
                                atol=1e-4, rtol=1e-4)

    def test_conv_glimpse_encoder_channels_first_and_save(self):
        config = {**TINY, "input_shape": (12, 12, 2), "glimpse_encoder": "conv"}
        rng = np.random.default_rng(8)
        images = rng.uniform(0, 1, (3, 12, 12, 2)).astype("float32")
        last = RecurrentAttentionModel(**config, data_format="channels_last", seed=8)
        first = RecurrentAttentionModel(**{**config, "input_shape": (2, 12, 12)},
                                        data_format="channels_first", seed=8)
        last(images)
        first(np.moveaxis(images, -1, 1))
        testing.perturb_weights(last)
        first.set_weights(last.get_weights())
        expected = testing.to_numpy(last(images))
        self.assertAllClose(first(np.moveaxis(images, -1, 1)), expected, atol=1e-5)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "ram.keras")
            first.save(path)
            loaded = keras.saving.load_model(path, safe_mode=True)
        self.assertEqual(loaded.get_config()["glimpse_encoder"], "conv")
        self.assertAllClose(loaded(np.moveaxis(images, -1, 1)), expected, atol=1e-5)

    def test_presets_follow_the_global_data_format(self):
        previous = keras.config.image_data_format()
        try:
            keras.config.set_image_data_format("channels_first")
            model = RecurrentAttentionModel.from_preset("mnist", core_units=8,
                                                        glimpse_hidden=4, glimpse_units=8)
        finally:
            keras.config.set_image_data_format(previous)
        self.assertEqual(model.data_format, "channels_first")
        self.assertEqual(model.image_shape, (1, 28, 28))
        glimpses = model.rollout(np.zeros((2, 1, 28, 28), "float32"),
                                 return_glimpses=True)["glimpses"]
        self.assertEqual(tuple(glimpses.shape), (2, 6, 1, 1, 8, 8))

    def test_location_range_matches_numpy(self):
        # mu = range * tanh(h W + b) (or * clip), l = mu + std * eps: the noise
        # keeps the policy's std, only the mean is bounded.
        rng = np.random.default_rng(3)
        h = rng.normal(0, 2.0, (64, TINY["core_units"])).astype("float32")
        for activation, squash in (("tanh", np.tanh), ("clip", lambda z: np.clip(z, -1, 1))):
            full = RecurrentAttentionModel(**TINY, mean_activation=activation, seed=8)
            half = RecurrentAttentionModel(**TINY, mean_activation=activation,
                                           location_range=0.4, seed=8)
            full.build()
            half.build()
            testing.perturb_weights(full)
            half.set_weights(full.get_weights())
            kernel, bias = (testing.to_numpy(w) for w in full.policy.dense.weights)
            expected = 0.4 * squash(h @ kernel + bias)
            mean, location = testing.to_numpy(half._locate(h, sample=False))
            self.assertAllClose(mean, expected, atol=1e-5)
            self.assertAllClose(location, expected, atol=1e-5)
            full_mean, full_location = testing.to_numpy(full._locate(h, sample=True))
            mean, location = testing.to_numpy(half._locate(h, sample=True))
            self.assertAllClose(mean, expected, atol=1e-5)
            # the same draw of eps (same seed), unscaled
            self.assertAllClose(location - mean, full_location - full_mean, atol=1e-5)
            self.assertLessEqual(np.abs(mean).max(), 0.4 + 1e-6)

    def test_location_range_rollout_and_loss(self):
        images, labels = _data(8)
        model = RecurrentAttentionModel(**TINY, location_range=0.5, seed=1)
        model.build()
        testing.perturb_weights(model)
        out = testing.to_numpy(model(images, training=True))
        bias = testing.to_numpy(model.policy.dense.weights[1])
        # h_0 = 0: the first mean is range * tanh(bias)
        self.assertAllClose(out["means"][:, 0], np.broadcast_to(0.5 * np.tanh(bias),
                                                                (8, 2)), atol=1e-5)
        self.assertLessEqual(np.abs(out["means"]).max(), 0.5 + 1e-6)
        rollout = model(images, training=True)
        loss = float(model.compute_loss(images, labels, rollout))
        o = testing.to_numpy(rollout)
        self.assertAllClose(loss, _np_hybrid_loss(o, labels), atol=1e-4, rtol=1e-4)
        config = model.get_config()
        self.assertEqual(config["location_range"], 0.5)
        again = RecurrentAttentionModel.from_config(config)
        self.assertEqual(again.get_config(), config)
        self.assertEqual(RecurrentAttentionModel(**TINY).get_config()["location_range"],
                         1.0)

    def test_initialize_from_a_model_on_another_canvas(self):
        # the curriculum of `kav train ram --initial-weights`: a RAM saved on
        # 12x12 canvases starts a model on 20x20 ones with the same weights
        from keras_attention_vision.recipes.ram import initialize_from

        source = RecurrentAttentionModel(**TINY, seed=1)
        source.build()
        testing.perturb_weights(source)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "ram_small.keras")
            source.save(path)
            target = RecurrentAttentionModel(**{**TINY, "input_shape": (20, 20, 1)}, seed=2)
            target.build()
            self.assertFalse(all(np.allclose(a, b) for a, b in
                                 zip(target.get_weights(), source.get_weights())))
            initialize_from(target, path)
            for got, want in zip(target.get_weights(), source.get_weights()):
                self.assertAllClose(got, want, atol=0)
            # another architecture is refused: a model option by name, both values
            other = RecurrentAttentionModel(**{**TINY, "core_units": 8}, seed=3)
            with self.assertRaisesRegex(ValueError, "its core_units is 16, this run's 8"):
                initialize_from(other, path)
            conv = RecurrentAttentionModel(**TINY, glimpse_encoder="conv", seed=3)
            with self.assertRaisesRegex(ValueError, "glimpse_encoder is 'dense', this "
                                        "run's 'conv'"):
                initialize_from(conv, path)
            # otherwise the first weight whose shape differs, the file's and this
            # model's, each with its name
            patch = RecurrentAttentionModel(**{**TINY, "patch_size": 3}, seed=3)
            with self.assertRaisesRegex(ValueError, r"weight 0 is \S*glimpse_what/kernel "
                                        r"\(32, 8\) in the file, \S*glimpse_what/kernel "
                                        r"\(18, 8\) in this model"):
                initialize_from(patch, path)
            with self.assertRaisesRegex(ValueError, "No such model file"):
                initialize_from(target, path + ".missing")
            # another head (baseline, location network): that head keeps its
            # initialisation, every other weight is copied (the other head too),
            # and the differing options are returned
            theirs = {w.path: w.numpy() for w in source.weights}
            for options, head, layer in (
                    (dict(rollouts_per_image=2, baseline="moving_average"), "baseline",
                     "baseline"),
                    (dict(location_hidden=5), "location_hidden", "location")):
                headed = RecurrentAttentionModel(**TINY, **options, seed=3)
                headed.build()
                before = {w.path: w.numpy().copy() for w in headed.weights}
                self.assertEqual(initialize_from(headed, path), [head])
                copied = [w.path for w in headed.weights if w.path.split("/")[1] != layer]
                for w in headed.weights:
                    want = theirs[w.path] if w.path in copied else before[w.path]
                    np.testing.assert_array_equal(w.numpy(), want)
                self.assertEqual(copied, [w.path for w in source.weights
                                          if w.path.split("/")[1] != layer])
                other = "location" if layer == "baseline" else "baseline"
                self.assertTrue(any(p.split("/")[1] == other for p in copied))
            self.assertEqual(initialize_from(target, path), [])

    def test_leave_one_out_baseline_matches_numpy(self):
        # M rollouts per image, b_i = the mean reward of the image's other
        # M - 1 rollouts, every term weighted 1 / M and by the image's weight.
        m = 3
        images, labels = _data(6)
        model = RecurrentAttentionModel(**TINY, rollouts_per_image=m,
                                        baseline="leave_one_out", seed=1)
        model.build()
        testing.perturb_weights(model)
        out = model(images, training=True)
        o = testing.to_numpy(out)
        self.assertEqual(o["logits"].shape, (6 * m, 3))
        self.assertNotIn("baselines", o)
        rows = np.repeat(labels, m)
        ce = -_np_log_softmax(o["logits"])[np.arange(6 * m), rows]
        reward = (o["logits"].argmax(-1) == rows).astype("float64")
        self.assertTrue(0 < reward.mean() < 1)  # some advantages are not 0
        per_image = reward.reshape(6, m)
        others = (per_image.sum(1, keepdims=True) - per_image) / (m - 1)
        log_pi = (-0.5 * ((o["locations"] - o["means"]) / TINY["std"]) ** 2
                  - np.log(TINY["std"]) - 0.5 * np.log(2 * np.pi)).sum(-1)
        surrogate = -np.sum((reward - others.reshape(-1))[:, None] * log_pi, 1)
        weights = np.array([1, 0, 2, 0, 1, 0.5], "float32")
        for w in (None, weights):
            w_rows = np.ones(6 * m) if w is None else np.repeat(w, m)
            expected = np.mean(w_rows * (ce + surrogate))
            loss = float(model.compute_loss(images, labels, out, sample_weight=w))
            self.assertAllClose(loss, expected, atol=1e-4, rtol=1e-4)

    def test_rollouts_per_image_repeat_each_image(self):
        # Rollout i * M + j is the j-th of image i: the same rollouts as a
        # model of one rollout per image on the images repeated so, with the
        # same weights and location noise; the metrics count every rollout.
        images, labels = _data(4)
        many = RecurrentAttentionModel(**TINY, rollouts_per_image=2, seed=3)
        one = RecurrentAttentionModel(**TINY, seed=3)
        many.build()
        one.build()
        testing.perturb_weights(many)
        one.set_weights(many.get_weights())
        o_many = testing.to_numpy(many(images, training=True))
        o_one = testing.to_numpy(one(np.repeat(images, 2, axis=0), training=True))
        for key in ("logits", "locations", "baselines"):
            self.assertAllClose(o_many[key], o_one[key], atol=1e-6)
        self.assertGreater(np.abs(o_many["locations"][0] - o_many["locations"][1]).max(),
                           0.0)  # two draws for one image
        many.compile(optimizer="adam", metrics=["accuracy"])
        history = many.fit(images, labels, sample_weight=np.array([1, 1, 0, 0.5]),
                           epochs=1, batch_size=2, verbose=0).history
        self.assertTrue(np.isfinite(history["loss"][0]))
        self.assertIn("accuracy", history)

    def test_location_hidden_layer_config_and_save(self):
        # The policy's hidden layer is built, trained by REINFORCE, and comes
        # back from a .keras file.
        images, labels = _data(8)
        model = RecurrentAttentionModel(**TINY, location_hidden=6, seed=4)
        model(images)
        testing.perturb_weights(model)
        self.assertEqual(tuple(model.policy.hidden.kernel.shape), (16, 6))
        _, grads = gradients([model.policy.hidden.kernel], lambda: model.compute_loss(
            images, labels, model(images, training=True)))
        self.assertTrue(np.abs(grads[0]).max() > 0)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "ram.keras")
            model.save(path)
            loaded = keras.saving.load_model(path)
        self.assertEqual(loaded.get_config()["location_hidden"], 6)
        self.assertAllClose(loaded(images, return_locations=True)[1],
                            model(images, return_locations=True)[1], atol=1e-6)

    def test_leave_one_out_config_and_save(self):
        images, labels = _data(4)
        model = RecurrentAttentionModel(**TINY, rollouts_per_image=2,
                                        baseline="leave_one_out", seed=2)
        model(images)
        testing.perturb_weights(model)
        self.assertFalse(any("baseline" in w.path for w in model.weights))
        config = model.get_config()
        self.assertEqual((config["rollouts_per_image"], config["baseline"]),
                         (2, "leave_one_out"))
        self.assertEqual(RecurrentAttentionModel(**TINY).get_config()["rollouts_per_image"],
                         1)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "ram.keras")
            model.save(path)
            loaded = keras.saving.load_model(path)
        self.assertEqual(loaded.get_config(), config)
        self.assertAllClose(loaded.predict(images, verbose=0),
                            model.predict(images, verbose=0), atol=1e-6)

    def test_moving_average_baseline_trains(self):
        images, labels = _data(16)
        model = RecurrentAttentionModel(**TINY, baseline="moving_average", seed=7)
        model.compile(optimizer="adam")
        model.fit(images, labels, epochs=2, batch_size=8, verbose=0)
        self.assertGreater(float(model.baseline_net.value), 0.0)


@needs_tfp
@pytest.mark.parametrize("kwargs, quoted", [
    ({"core": "gru"}, "core='gru'"),
    ({"num_glimpses": 0}, "num_glimpses=0"),
    ({"input_shape": (28, 28)}, r"input_shape=\(28, 28\)"),
    ({"baseline": "none"}, "baseline='none'"),
    ({"reinforce_weight": "a"}, "reinforce_weight='a'"),
    ({"reinforce_weight": -1.0}, "reinforce_weight=-1.0"),
    ({"policy_to_core": "yes"}, "policy_to_core='yes'"),
    ({"location_range": 0.0}, "location_range=0.0"),
    ({"location_range": 1.5}, "location_range=1.5"),
    ({"location_range": "0.6"}, "location_range='0.6'"),
    ({"location_range": True}, "location_range=True"),
    ({"normalize_advantage": "yes"}, "normalize_advantage='yes'"),
    ({"glimpse_encoder": "mlp"}, "glimpse_encoder='mlp'"),
    ({"rollouts_per_image": 0}, "rollouts_per_image=0"),
    ({"location_hidden": -3}, "location_hidden=-3"),
    ({"rollouts_per_image": 2.0}, "rollouts_per_image=2.0"),
    ({"baseline": "leave_one_out"}, "rollouts_per_image=1"),
])
def test_bad_arguments(kwargs, quoted):
    with pytest.raises(ValueError, match=quoted):
        RecurrentAttentionModel(**{**TINY, **kwargs})


@needs_tfp
def test_unknown_preset():
    with pytest.raises(ValueError, match="preset='svhn'"):
        RecurrentAttentionModel.from_preset("svhn")


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch only")
def test_torch_raises_the_clear_error():
    with pytest.raises(UnsupportedBackendError, match="tensorflow and jax"):
        RecurrentAttentionModel(**TINY)
