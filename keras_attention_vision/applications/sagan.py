"""SAGAN (Zhang et al., 2019): a GAN whose generator and discriminator self-attend.

Spectral normalisation on every layer of both networks, a `SelfAttention2D`
block in each, and the hinge loss. `SAGAN(generator, discriminator)` trains
with a plain `fit(images)` on TensorFlow, JAX and PyTorch (see `SAGAN`).
"""

import keras
from keras import ops

from keras_attention_vision.api_export import kav_export
from keras_attention_vision.distribution import global_batch_draw
from keras_attention_vision.layers.self_attention_2d import SelfAttention2D
from keras_attention_vision.losses import InputsOnlyFitMixin, weighted_mean
from keras_attention_vision.presets import (
    check_weights_argument,
    load_application_weights,
    preset_arguments,
)
from keras_attention_vision.saving import SeedStateMixin

# Both networks are channels-last inside, whatever
# `keras.config.image_data_format()` says: every layer with a format is pinned.
_FORMAT = "channels_last"


def _sn(layer):
    return keras.layers.SpectralNormalization(layer, name=f"{layer.name}_sn")


def _check_image_shape(image_shape):
    image_shape = tuple(image_shape)
    if (len(image_shape) != 3 or image_shape[0] % 4 or image_shape[1] % 4
            or image_shape[0] < 4 or image_shape[1] < 4):
        raise ValueError("`image_shape` must be (H, W, C) with H and W multiples of 4. "
                         f"Received: image_shape={image_shape}")
    return image_shape


@kav_export("keras_attention_vision.applications.SAGANGenerator")
@preset_arguments("SAGANGenerator")
def SAGANGenerator(latent_dim=128, image_shape=(28, 28, 1), base_channels=32,
                   name="sagan_generator", weights=None):
    """The SAGAN generator: z -> H/4 -> H/2 (self-attention) -> H, tanh output.

    Every dense and convolution layer is spectrally normalised; batch
    normalisation and ReLU precede each upsampling block, and the
    self-attention block (with spectral normalisation) works on the H/2 maps.
    The network is channels-last inside and outputs `(batch, H, W, C)` images
    whatever the global `keras.config.image_data_format()` is.

    Args:
        latent_dim: size of the latent vector `z`.
        image_shape: `(H, W, C)` (channels last), H and W multiples of 4.
        base_channels: width of the last block (the first has 4x).
        name: the model name.
        weights: `None` (random initialisation), a preset name (e.g.
            `"sagan_generator_mnist"`, trained by `kav train sagan`; the
            arguments not passed are the preset's, the ones passed must
            agree with it), or the path of a `.weights.h5` file of a
            generator of the same configuration.

    Returns:
        A functional `keras.Model` from `(batch, latent_dim)` to images in
        `[-1, 1]`.

    Example:

    ```python
    generator = SAGANGenerator(latent_dim=64, image_shape=(28, 28, 1))
    images = generator(keras.random.normal((4, 64)))
    ```
    """
    check_weights_argument(weights, "SAGANGenerator")
    h, w, c = _check_image_shape(image_shape)
    z = keras.Input((latent_dim,), name="z")
    x = _sn(keras.layers.Dense((h // 4) * (w // 4) * 4 * base_channels,
                               name="project"))(z)
    x = keras.layers.Reshape((h // 4, w // 4, 4 * base_channels))(x)
    for i, width in enumerate((2 * base_channels, base_channels)):
        x = keras.layers.BatchNormalization(axis=-1, name=f"bn{i}")(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.UpSampling2D(data_format=_FORMAT, name=f"up{i}")(x)
        x = _sn(keras.layers.Conv2D(width, 3, padding="same", data_format=_FORMAT,
                                    name=f"conv{i}"))(x)
        if i == 0:
            x = SelfAttention2D(use_spectral_norm=True, data_format=_FORMAT,
                                name="self_attention")(x)
    x = keras.layers.BatchNormalization(axis=-1, name="bn_out")(x)
    x = keras.layers.ReLU()(x)
    x = _sn(keras.layers.Conv2D(c, 3, padding="same", data_format=_FORMAT,
                                name="to_image"))(x)
    x = keras.layers.Activation("tanh", dtype="float32")(x)
    model = keras.Model(z, x, name=name)
    config = {"latent_dim": latent_dim, "image_shape": tuple(image_shape),
              "base_channels": base_channels}
    return load_application_weights(model, weights, "SAGANGenerator", config)


@kav_export("keras_attention_vision.applications.SAGANDiscriminator")
def SAGANDiscriminator(image_shape=(28, 28, 1), base_channels=32,
                       name="sagan_discriminator"):
    """The SAGAN discriminator: H -> H/2 (self-attention) -> H/4 -> a score.

    The network is channels-last inside (its inputs are `(batch, H, W, C)`)
    whatever the global `keras.config.image_data_format()` is.

    Args:
        image_shape: `(H, W, C)` (channels last), H and W multiples of 4.
        base_channels: width of the first block.
        name: the model name.

    Returns:
        A functional `keras.Model` from images in `[-1, 1]` to one unbounded
        score per image (the hinge loss works on scores, not probabilities).

    Example:

    ```python
    discriminator = SAGANDiscriminator(image_shape=(28, 28, 1))
    ```
    """
    image_shape = _check_image_shape(image_shape)
    images = keras.Input(image_shape, name="images")
    x = _sn(keras.layers.Conv2D(base_channels, 3, strides=2, padding="same",
                                data_format=_FORMAT, name="conv0"))(images)
    x = keras.layers.LeakyReLU(0.1)(x)
    x = SelfAttention2D(use_spectral_norm=True, data_format=_FORMAT,
                        name="self_attention")(x)
    x = _sn(keras.layers.Conv2D(2 * base_channels, 3, strides=2, padding="same",
                                data_format=_FORMAT, name="conv1"))(x)
    x = keras.layers.LeakyReLU(0.1)(x)
    x = _sn(keras.layers.Conv2D(4 * base_channels, 3, padding="same",
                                data_format=_FORMAT, name="conv2"))(x)
    x = keras.layers.LeakyReLU(0.1)(x)
    x = keras.layers.Flatten(data_format=_FORMAT)(x)
    x = _sn(keras.layers.Dense(1, name="score"))(x)
    x = keras.layers.Activation("linear", dtype="float32")(x)
    return keras.Model(images, x, name=name)


def _per_example(scores):
    return ops.reshape(ops.cast(scores, "float32"), (-1,))


def hinge_discriminator_loss(real_scores, fake_scores, sample_weight=None):
    """`mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))`.

    Args:
        real_scores: `(batch,)` or `(batch, 1)` scores of real images.
        fake_scores: the scores of as many generated images.
        sample_weight: `None` or per-example weights broadcastable to
            `(batch,)`. Each mean becomes `sum(loss * w) / batch` (Keras's
            default reduction); fake example `i` takes the weight of row `i`.

    Returns:
        A float32 scalar.
    """
    return (weighted_mean(ops.relu(1.0 - _per_example(real_scores)), sample_weight)
            + weighted_mean(ops.relu(1.0 + _per_example(fake_scores)), sample_weight))


def hinge_generator_loss(fake_scores, sample_weight=None):
    """`-mean(D(G(z)))`, weighted like `hinge_discriminator_loss`."""
    return -weighted_mean(_per_example(fake_scores), sample_weight)


@kav_export("keras_attention_vision.applications.SAGAN")
class SAGAN(SeedStateMixin, InputsOnlyFitMixin, keras.Model):
    """A generator and a discriminator trained with the hinge loss by `fit`.

    `fit(images)` (images in `[-1, 1]`, no labels) performs, per batch, one
    simultaneous gradient step of both networks with one optimizer: the loss
    is

    ```
    L = L_D(D(x), D(stop_gradient(G(z)))) + L_G(D_frozen(G(z)))
    ```

    where `D_frozen` is the discriminator with its weights behind
    `stop_gradient`. So the discriminator's weights receive the gradient of
    the hinge loss `L_D` only, and the generator's the gradient of
    `L_G = -mean(D(G(z)))` only, exactly as with two losses, while the plain
    `Model.compute_loss` route keeps `fit` working on every backend (and under
    `keras.distribution` / `tf.distribute`). Compared with the paper, the two
    networks share one optimizer (Adam, beta_1 = 0, beta_2 = 0.9 in the paper),
    hence one learning rate instead of the two time-scale rule.

    Calling the model scores images with the discriminator; `generate(n)`
    samples images.

    Sample weights (`fit(images, sample_weight=w)`, weighted `evaluate`)
    weight every per-example term as Keras's losses do by default,
    `sum(loss * w) / batch_size`. The step draws one latent vector per batch
    row, so the fake terms are per generated example paired with a row: the
    `i`-th generated image's terms take row `i`'s weight (a row of weight 0
    removes its real image and its generated partner). Keras's array
    adapters drop `sample_weight` when there are no targets, so `fit` and
    `evaluate` pass the images as targets (never read) when weights come
    without them (`losses.InputsOnlyFitMixin`); a dataset must yield
    `(images, anything, weights)`.

    The state of the latent sampler is saved in `.keras` files, so training
    resumed after `keras.saving.load_model` draws the latent vectors that
    uninterrupted training would have drawn.

    Args:
        generator: a model from `(batch, latent_dim)` to images, e.g.
            `SAGANGenerator()`.
        discriminator: a model from images to `(batch, 1)` scores, e.g.
            `SAGANDiscriminator()`.
        seed: seed of the latent samples drawn during training.
        **kwargs: `keras.Model` arguments.

    Example:

    ```python
    gan = SAGAN(SAGANGenerator(64), SAGANDiscriminator())
    gan.compile(optimizer=keras.optimizers.Adam(2e-4, beta_1=0.0, beta_2=0.9))
    gan.fit(images, epochs=5, batch_size=64)   # images in [-1, 1]
    samples = gan.generate(16)
    ```
    """

    def __init__(self, generator, discriminator, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = generator.inputs[0].shape[-1]
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def get_config(self):
        return {
            **super().get_config(),
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["generator"] = keras.saving.deserialize_keras_object(config["generator"])
        config["discriminator"] = keras.saving.deserialize_keras_object(
            config["discriminator"])
        return cls(**config)

    def build(self, input_shape):
        self.built = True

    def call(self, images, training=None):
        return self.discriminator(images, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                     training=True):
        real_scores = y_pred if y_pred is not None else self(x, training=training)
        batch = ops.shape(real_scores)[0]
        z = global_batch_draw(  # each tf.distribute replica: its rows of one draw
            lambda shape: keras.random.normal(shape, seed=self.seed_generator),
            (batch, self.latent_dim))
        fake = self.generator(z, training=training)
        # The discriminator's spectral normalisation updates its kernels in
        # place on its first call of the step (the trainer's `self(x)`); the
        # calls below use training=False so they do not write them again
        # (the discriminator has no other training-dependent layer), which
        # PyTorch's autograd would reject.
        fake_scores_d = self.discriminator(ops.stop_gradient(fake), training=False)
        d_loss = hinge_discriminator_loss(real_scores, fake_scores_d, sample_weight)
        frozen = [ops.stop_gradient(v.value) for v in
                  self.discriminator.trainable_variables]
        static = [v.value for v in self.discriminator.non_trainable_variables]
        fake_scores_g, _ = self.discriminator.stateless_call(frozen, static, fake,
                                                             training=False)
        g_loss = hinge_generator_loss(fake_scores_g, sample_weight)
        return d_loss + g_loss

    if keras.backend.backend() == "jax":
        def train_step(self, state, data):
            """JAX: the spectral normalisation's kernel updates, kept as elsewhere.

            `keras.layers.SpectralNormalization` normalises its kernel (a
            trainable variable) by assigning it in place when called with
            `training=True`. TensorFlow and PyTorch keep the assignment: the
            step's gradient is taken at the normalised kernel and applied to
            it, so the stored kernel has spectral norm ~1 and the
            `training=False` calls (the discriminator's in `compute_loss`,
            `generate`, inference) use it. JAX's stateless step returns only
            the non-trainable variables, so the assignment was lost: the
            kernels were never normalised and the networks that `generate`
            ran were not the ones trained (noise, where TensorFlow gave
            digits). Here the normalisation is done first, from the step's
            state (one power iteration per layer, as the layer's own call
            does), written into the state, and the layers' call then leaves
            the kernels as they are during Keras's step.
            """
            trainable, non_trainable, optimizer_vars, metrics_vars = state
            trainable, non_trainable = list(trainable), list(non_trainable)
            where = {id(v): ("t", i) for i, v in enumerate(self.trainable_variables)}
            where.update({id(v): ("n", i)
                          for i, v in enumerate(self.non_trainable_variables)})
            values = {"t": trainable, "n": non_trainable}
            layers = [layer for layer in self._flatten_layers()
                      if isinstance(layer, keras.layers.SpectralNormalization)]
            mapping = list(zip(self.trainable_variables, trainable)) + list(
                zip(self.non_trainable_variables, non_trainable))
            updates = []
            with keras.StatelessScope(state_mapping=mapping):
                for layer in layers:  # as SpectralNormalization.call(training=True)
                    u, kernel = ops.cond(ops.all(ops.equal(layer.kernel.value, 0)),
                                         lambda la=layer: (la.vector_u.value,
                                                           la.kernel.value),
                                         layer.normalized_weights)
                    updates += [(layer.vector_u, u), (layer.kernel, kernel)]
            for variable, value in updates:
                kind, i = where[id(variable)]
                values[kind][i] = value
            state = (trainable, non_trainable, optimizer_vars, metrics_vars)
            for layer in layers:  # normalised above: the step's calls keep it
                layer.normalized_weights = (
                    lambda la=layer: (la.vector_u.value, la.kernel.value))
            try:
                return super().train_step(state, data)
            finally:
                for layer in layers:
                    del layer.normalized_weights

    def generate(self, num_images, seed=None):
        """Samples `num_images` images (NumPy, in `[-1, 1]`)."""
        z = keras.random.normal((num_images, self.latent_dim), seed=seed)
        return ops.convert_to_numpy(self.generator(z, training=False))
