"""Tests of the SAGAN application: architecture, hinge loss, training with fit."""

import os
import tempfile

import keras
import numpy as np
from keras import ops

from keras_attention_vision.applications import SAGAN, SAGANDiscriminator, SAGANGenerator
from keras_attention_vision.applications.sagan import (
    hinge_discriminator_loss,
    hinge_generator_loss,
)
from keras_attention_vision.layers import SelfAttention2D
from tests import testing


def _numpy(weights):
    return [np.array(ops.convert_to_numpy(w)) for w in weights]


def _small_gan(seed=0):
    generator = SAGANGenerator(latent_dim=8, image_shape=(8, 8, 1), base_channels=4)
    discriminator = SAGANDiscriminator(image_shape=(8, 8, 1), base_channels=4)
    return SAGAN(generator, discriminator, seed=seed)


def _images(n=8, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, 8, 8, 1)).astype("float32")


def _numpy_hinge_loss(real, fake, weights):
    """The paper's hinge losses, each mean weighted as sum(loss * w) / batch."""
    real, fake = np.ravel(real).astype("float64"), np.ravel(fake).astype("float64")
    w, n = np.ravel(weights).astype("float64"), len(real)
    d_loss = (np.sum(np.maximum(0.0, 1.0 - real) * w)
              + np.sum(np.maximum(0.0, 1.0 + fake) * w)) / n
    g_loss = -np.sum(fake * w) / n
    return d_loss + g_loss


class SAGANTest(testing.TestCase):
    def test_architecture(self):
        generator = SAGANGenerator(latent_dim=8, image_shape=(8, 12, 1), base_channels=8)
        discriminator = SAGANDiscriminator(image_shape=(8, 12, 1), base_channels=8)
        images = testing.to_numpy(generator(np.zeros((3, 8), "float32")))
        self.assertEqual(images.shape, (3, 8, 12, 1))
        self.assertTrue(np.all(np.abs(images) <= 1.0))
        self.assertEqual(tuple(discriminator(images).shape), (3, 1))
        for model in (generator, discriminator):
            attention = [la for la in model.layers if isinstance(la, SelfAttention2D)]
            self.assertEqual(len(attention), 1)
            self.assertTrue(attention[0].use_spectral_norm)
            wrapped = [la for la in model.layers
                       if isinstance(la, keras.layers.SpectralNormalization)]
            self.assertGreaterEqual(len(wrapped), 3)
        with self.assertRaisesRegex(ValueError, r"Received: image_shape=\(10, 10, 1\)"):
            SAGANGenerator(image_shape=(10, 10, 1))

    def test_hinge_losses_match_numpy(self):
        rng = np.random.default_rng(0)
        real, fake = rng.normal(size=(6, 1)), rng.normal(size=(6, 1))
        expected_d = np.mean(np.maximum(0, 1 - real)) + np.mean(np.maximum(0, 1 + fake))
        self.assertAllClose(hinge_discriminator_loss(real, fake), expected_d, atol=1e-6)
        self.assertAllClose(hinge_generator_loss(fake), -np.mean(fake), atol=1e-6)

    def test_fit_trains_both_networks(self):
        generator = SAGANGenerator(latent_dim=8, image_shape=(8, 8, 1), base_channels=4)
        discriminator = SAGANDiscriminator(image_shape=(8, 8, 1), base_channels=4)
        gan = SAGAN(generator, discriminator, seed=0)
        gan.compile(optimizer=keras.optimizers.Adam(1e-3, beta_1=0.0, beta_2=0.9))
        images = np.random.default_rng(0).uniform(-1, 1, (8, 8, 8, 1)).astype("float32")
        g_before = _numpy(generator.trainable_weights)
        d_before = _numpy(discriminator.trainable_weights)
        # Two steps: at the first, gamma = 0 hides the attention convolutions.
        history = gan.fit(images, batch_size=4, epochs=1, verbose=0)
        self.assertTrue(np.isfinite(history.history["loss"][0]))
        g_after = _numpy(generator.trainable_weights)
        d_after = _numpy(discriminator.trainable_weights)

        def moved(model, before, after):
            return {w.path: not np.array_equal(a, b)
                    for w, a, b in zip(model.trainable_weights, before, after)}

        # Every weight moves except those with an exactly zero gradient: the
        # attention's key bias (it adds q . b_k to every logit of a row, which
        # the softmax cancels; on torch's exact kernels it stays put) and the
        # discriminator's final bias (hinge gradient -1 + 1 = 0 while
        # |scores| < 1).
        for model, before, after in ((generator, g_before, g_after),
                                     (discriminator, d_before, d_after)):
            still = [p for p, m in moved(model, before, after).items() if not m]
            allowed = [p for p in still if p.endswith("key/bias") or "score" in p]
            self.assertEqual(still, allowed, f"{model.name}: {still} did not move")
        self.assertEqual(gan.generate(2, seed=1).shape, (2, 8, 8, 1))

    def test_channels_last_inside_under_global_channels_first(self):
        def build():
            return (SAGANGenerator(latent_dim=8, image_shape=(8, 12, 1), base_channels=8),
                    SAGANDiscriminator(image_shape=(8, 12, 1), base_channels=8))

        generator, discriminator = build()
        testing.perturb_weights(generator)
        testing.perturb_weights(discriminator)
        previous = keras.config.image_data_format()
        keras.config.set_image_data_format("channels_first")
        try:
            generator_cf, discriminator_cf = build()
        finally:
            keras.config.set_image_data_format(previous)
        generator_cf.set_weights(generator.get_weights())
        discriminator_cf.set_weights(discriminator.get_weights())
        self.assertEqual(tuple(generator_cf.outputs[0].shape), (None, 8, 12, 1))
        z = np.random.default_rng(0).normal(size=(3, 8)).astype("float32")
        images = testing.to_numpy(generator(z, training=False))
        self.assertAllClose(generator_cf(z, training=False), images, atol=1e-5)
        self.assertAllClose(discriminator_cf(images, training=False),
                            discriminator(images, training=False), atol=1e-5)

    def test_sample_weights_match_numpy(self):
        gan = _small_gan()
        images = _images(4)
        gan(images)
        testing.perturb_weights(gan.discriminator)
        weights = np.array([1.0, 0.0, 2.0, 0.5], "float32")
        state = ops.convert_to_numpy(gan.seed_generator.state).copy()
        losses = {}
        for key, w in (("vector", weights), ("column", weights[:, None]),
                       ("none", None)):
            gan.seed_generator.state.assign(state)
            loss = gan.compute_loss(x=images, sample_weight=w, training=False)
            losses[key] = testing.to_numpy(loss)
        gan.seed_generator.state.assign(state)
        gan.compile(optimizer="adam")
        evaluated = gan.evaluate(images, sample_weight=weights, batch_size=4, verbose=0)
        # The latent vectors the loss drew, drawn again from the same state.
        gan.seed_generator.state.assign(state)
        z = keras.random.normal((4, 8), seed=gan.seed_generator)
        fake = gan.generator(z, training=False)
        real_scores = testing.to_numpy(gan.discriminator(images, training=False))
        fake_scores = testing.to_numpy(gan.discriminator(fake, training=False))
        expected = _numpy_hinge_loss(real_scores, fake_scores, weights)
        self.assertAllClose(losses["vector"], expected, atol=1e-5, rtol=1e-5)
        self.assertAllClose(losses["column"], expected, atol=1e-5, rtol=1e-5)
        self.assertAllClose(evaluated, expected, atol=1e-5, rtol=1e-5)
        self.assertAllClose(losses["none"],
                            _numpy_hinge_loss(real_scores, fake_scores, np.ones(4)),
                            atol=1e-5, rtol=1e-5)
        self.assertAllClose(hinge_generator_loss(fake_scores, weights),
                            -np.sum(np.ravel(fake_scores) * weights) / 4, atol=1e-6)

    def test_training_resumes_identically_after_save_and_load(self):
        gan = _small_gan(seed=3)
        gan.compile(optimizer=keras.optimizers.Adam(1e-3, beta_1=0.0, beta_2=0.9))
        images = _images(8)
        gan.fit(images, batch_size=4, epochs=1, verbose=0, shuffle=False)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "sagan.keras")
            gan.save(path)
            loaded = keras.saving.load_model(path)
        # Every variable comes back: the latent sampler's state, the batch
        # norms' moving statistics and the spectral norms' u vectors included.
        np.testing.assert_array_equal(ops.convert_to_numpy(loaded.seed_generator.state),
                                      ops.convert_to_numpy(gan.seed_generator.state))
        for model, other in ((gan.generator, loaded.generator),
                             (gan.discriminator, loaded.discriminator)):
            names = [v.path for v in model.non_trainable_weights]
            self.assertTrue(any("moving_mean" in n for n in names)
                            or model is gan.discriminator)
            self.assertTrue(any("vector_u" in n for n in names), names)
            for a, b in zip(_numpy(model.weights), _numpy(other.weights)):
                np.testing.assert_array_equal(a, b)
        for model in (gan, loaded):
            model.fit(images[:4], batch_size=4, epochs=1, verbose=0, shuffle=False)
        for a, b in zip(_numpy(gan.weights), _numpy(loaded.weights)):
            np.testing.assert_allclose(b, a, atol=1e-6, rtol=1e-6)

    def test_training_step_keeps_the_spectrally_normalised_kernels(self):
        # Regression (JAX): SpectralNormalization normalises its kernel by
        # assigning it in the training call; JAX's stateless step dropped that
        # assignment, so the kernels were never normalised and generate() ran
        # other networks than the trained ones (noise). With a learning rate
        # of 0 the step must leave every kernel at one power iteration of the
        # paper's normalisation, computed here in NumPy from the state before.
        gan = _small_gan()
        images = _images(4)
        gan(images)
        gan.generator(np.zeros((1, 8), "float32"))
        gan.compile(optimizer=keras.optimizers.SGD(0.0))
        layers = [la for la in gan._flatten_layers()
                  if isinstance(la, keras.layers.SpectralNormalization)]
        self.assertEqual(len(layers), 2 * 4 + 4 + 4)  # 4 per attention block
        expected = []  # (the two networks have layers of the same name)
        for layer in layers:
            kernel = np.array(ops.convert_to_numpy(layer.kernel), "float64")
            w = kernel.reshape(-1, kernel.shape[-1])
            u = np.array(ops.convert_to_numpy(layer.vector_u), "float64")
            v = u @ w.T
            v /= np.linalg.norm(v)
            u = v @ w
            u /= np.linalg.norm(u)
            sigma = (v @ w @ u.T).item()
            expected.append((kernel / sigma, u, sigma))
        # not normalised yet: the step has something to change
        self.assertGreater(max(abs(e[2] - 1.0) for e in expected), 0.1)
        gan.fit(images, batch_size=4, epochs=1, verbose=0, shuffle=False)
        for layer, (kernel, u, _) in zip(layers, expected):
            self.assertAllClose(ops.convert_to_numpy(layer.kernel), kernel, atol=1e-5,
                                rtol=1e-4, msg=layer.path)
            self.assertAllClose(ops.convert_to_numpy(layer.vector_u), u, atol=1e-5,
                                rtol=1e-4, msg=layer.path)
