"""Tests of the SAGAN application: architecture, hinge loss, training with fit."""

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
        # Every generator weight moves; the discriminator's too, except its
        # final bias, whose hinge gradient is -1 + 1 = 0 while |scores| < 1.
        self.assertTrue(all(not np.array_equal(a, b) for a, b in zip(g_before, g_after)))
        changed = [not np.array_equal(a, b) for a, b in zip(d_before, d_after)]
        self.assertGreaterEqual(sum(changed), len(changed) - 1)
        self.assertEqual(gan.generate(2, seed=1).shape, (2, 8, 8, 1))
