"""The Recurrent Attention Model (Mnih, Heess, Graves, Kavukcuoglu; NIPS 2014)."""

import keras
from keras import ops

from keras_attention_vision.api_export import kav_export
from keras_attention_vision.applications.glimpse_network import GlimpseNetworkMixin
from keras_attention_vision.distribution import DistributedPredictMixin
from keras_attention_vision.layers.validation import (
    check_bool,
    check_choice,
    check_non_negative_int,
    check_number,
    check_positive_int,
    standardize_data_format,
)
from keras_attention_vision.losses import weighted_mean
from keras_attention_vision.presets import (
    check_weights_argument,
    load_application_weights,
    preset_arguments,
)
from keras_attention_vision.reinforce import (
    GaussianLocationPolicy,
    LearnedBaseline,
    MovingAverageBaseline,
    baseline_loss,
    reinforce_loss,
    require_reinforce_backend,
)

#: The paper's configurations (glimpses as in the paper's best row per task).
PRESETS = {
    "mnist": dict(input_shape=(28, 28, 1), num_glimpses=6, patch_size=8,
                  num_scales=1, core="rnn"),
    "translated": dict(input_shape=(60, 60, 1), num_glimpses=8, patch_size=12,
                       num_scales=3, core="rnn"),
    "cluttered60": dict(input_shape=(60, 60, 1), num_glimpses=8, patch_size=12,
                        num_scales=4, core="lstm"),
    "cluttered100": dict(input_shape=(100, 100, 1), num_glimpses=8, patch_size=12,
                         num_scales=4, core="lstm"),
}


@kav_export("keras_attention_vision.applications.RecurrentAttentionModel")
class RecurrentAttentionModel(GlimpseNetworkMixin, DistributedPredictMixin, keras.Model):
    """The Recurrent Attention Model, trained with the hybrid REINFORCE loss.

    At step `t` the location network samples `l_t ~ N(mu_t, std^2)` with
    `mu_t = tanh(Lin(h_{t-1}))` (`h_0 = 0`, so the first location is learned
    too; `location_range * tanh(...)` with a `location_range` below 1); the
    retina (`GlimpseSensor`) reads `rho(x, l_t)`; the glimpse network gives
    `g_t = ReLU(Lin(ReLU(Lin(rho))) + Lin(ReLU(Lin(l_t))))`; the core updates
    `h_t = ReLU(Lin(g_t) + Lin(h_{t-1}))` (or an LSTM); the classifier reads
    `h_T`. The baseline `b_t = Lin(sg(h_{t-1}))` is a function of the
    state the action is taken in, not of the action, so it does not bias the
    gradient.

    `compute_loss` is the hybrid loss

        CE(y, logits) + MSE(b_t, R) - mean_b sum_t (R - sg(b_t)) log pi(sg(l_t) | mu_t)

    with `R = 1` when the class is right, so `compile(optimizer)` and `fit()`
    train it on TensorFlow and JAX. Every term is a per-image loss reduced as
    Keras's losses do, so `fit(sample_weight=...)`, `class_weight` and
    weighted `evaluate` weight the cross-entropy, the baseline MSE and the
    REINFORCE term alike (`sum(w * loss) / B`); the moving-average baseline
    is updated with the weighted mean reward. PyTorch has no TFP substrate: the
    constructor raises a clear error there.

    At inference the mean locations are used (`predict`); `predict_averaged`
    averages the class probabilities of `M` sampled rollouts instead.

    Args:
        input_shape: image shape (channels last or first, per `data_format`).
        classes: number of classes.
        num_glimpses: `T`, the number of glimpses (and locations).
        patch_size, num_scales, scale_factor: the retina (see `GlimpseSensor`).
        glimpse_hidden: width of the two hidden layers of the glimpse network
            (128 in the paper).
        glimpse_units: width of `g_t` (256).
        glimpse_encoder: `"dense"` (the paper's `Lin(rho)` on the raw retina)
            or `"conv"`: a small convolutional stack on the retina's scales
            stacked as channels before that `Lin` (see
            `applications.glimpse_network`; not the paper's). A ValueError
            quotes any other value.
        core: `"rnn"` (ReLU RNN, the paper's MNIST core) or `"lstm"`.
        core_units: width of `h_t` (256).
        std: the fixed standard deviation of the location policy.
        mean_activation: `"tanh"` or `"clip"` for the policy mean.
        location_range: bound of the policy mean, in `(0, 1]`: the mean is
            `location_range * tanh(Lin(h))` (or `* clip(...)`) and the sampled
            location `mean + std * eps`, so the std keeps its meaning in
            `[-1, 1]` canvas units. `1.0` (the default) is the paper's policy,
            whose mean can reach the whole canvas (Sec. 3.1 / 4); a smaller
            value keeps the mean paths where the objects can be (on the 60x60
            canvases no digit centre lies beyond `|l| = 0.53`).
        location_hidden: width of a ReLU hidden layer of the location network
            (`mu_t = tanh(Lin(ReLU(Lin(h_{t-1}))))`); `0` (the default) is the
            paper's linear `Lin(h_{t-1})`.
        baseline: `"learned"` (`Lin(h)`, trained by MSE), `"moving_average"`,
            or `"leave_one_out"`: the mean reward of the image's other
            rollouts, `b_i = (sum_j R_j - R_i) / (M - 1)` over the
            `rollouts_per_image` (`M`, at least 2) rollouts of one image, the
            same for every glimpse (the REINFORCE leave-one-out baseline of
            Kool et al., 2019; not the paper's). It compares paths on the same
            image, so the advantage no longer carries how hard the image is;
            it has no weights.
        rollouts_per_image: `M`, the number of sampled rollouts of each
            training image (independent location draws), each a term of the
            hybrid loss weighted `1 / M` (so a batch of `B` images costs `B *
            M` rollouts). `1` (the default) is the paper's training.
        policy_to_core: let the REINFORCE gradient flow into the core and the
            glimpse network, as the paper's gradient with respect to all the
            agent's parameters does (Sec. 3.2), so that `h_t` learns where the
            object is; `False` (the default, as in the public PyTorch port):
            it trains the location network only.
        reinforce_weight: weight of the REINFORCE term of the hybrid loss.
        normalize_advantage: standardise the advantage `R - sg(b_t)` over
            the batch before the REINFORCE term: `(A - mean(A)) / (std(A) +
            1e-8)` over all `B x T` entries, weighted by `sample_weight`
            (`reinforce.normalized_advantage`). `False` (the default) is the
            paper's estimator.
        classifier_activation: `"softmax"` (probabilities) or `None` (logits)
            for the inference output.
        data_format: `"channels_last"`, `"channels_first"` or `None`.
        seed: seed of the location sampling.
        name: model name.
        weights: `None` (random initialisation), a preset name (see
            `keras_attention_vision.presets.available_presets()`, e.g.
            `"ram_mnist"`: the other arguments must then match the preset's,
            or use `presets.load_preset(name)`), or the path of a
            `.weights.h5` file saved from a model of the same configuration.

    Call arguments:
        inputs: images `(B, H, W, C)` (or `(B, C, H, W)`).
        training: `True` samples locations and returns the dict of the
            rollout (used by `compute_loss`); otherwise the mean locations
            are followed and the class probabilities returned.
        return_locations: at inference, also return the locations `(B, T, 2)`.

    Example:

    ```python
    model = RecurrentAttentionModel.from_preset("mnist", seed=0)
    model.compile(optimizer="adam", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=5, batch_size=64)
    probabilities = model.predict(x_test)
    probabilities_m10 = model.predict_averaged(x_test, num_samples=10)
    ```
    """

    @preset_arguments("RecurrentAttentionModel")
    def __init__(self, input_shape=(28, 28, 1), classes=10, num_glimpses=6, patch_size=8,
                 num_scales=1, scale_factor=2, glimpse_hidden=128, glimpse_units=256,
                 glimpse_encoder="dense", core="rnn", core_units=256, std=0.1,
                 mean_activation="tanh",
                 location_range=1.0, location_hidden=0, baseline="learned", policy_to_core=False,
                 reinforce_weight=1.0, normalize_advantage=False, rollouts_per_image=1,
                 classifier_activation="softmax", data_format=None,
                 seed=None, name="recurrent_attention_model", weights=None, **kwargs):
        require_reinforce_backend()
        check_weights_argument(weights, "RecurrentAttentionModel")
        super().__init__(name=name, **kwargs)
        if len(tuple(input_shape)) != 3:
            raise ValueError(
                "`input_shape` must be (height, width, channels) or (channels, height, "
                f"width). Received: input_shape={input_shape!r}"
            )
        self.image_shape = tuple(int(s) for s in input_shape)
        self.classes = check_positive_int("classes", classes)
        self.num_glimpses = check_positive_int("num_glimpses", num_glimpses)
        self.glimpse_hidden = check_positive_int("glimpse_hidden", glimpse_hidden)
        self.glimpse_units = check_positive_int("glimpse_units", glimpse_units)
        self.core = check_choice("core", core, ("rnn", "lstm"))
        self.core_units = check_positive_int("core_units", core_units)
        self.baseline = check_choice("baseline", baseline,
                                     ("learned", "moving_average", "leave_one_out"))
        self.rollouts_per_image = check_positive_int("rollouts_per_image",
                                                     rollouts_per_image)
        if self.baseline == "leave_one_out" and self.rollouts_per_image < 2:
            raise ValueError(
                "`baseline='leave_one_out'` compares the rollouts of one image: it needs "
                "`rollouts_per_image` of at least 2. Received: "
                f"rollouts_per_image={rollouts_per_image!r}")
        if (isinstance(location_range, bool)
                or not isinstance(location_range, (int, float))
                or not 0.0 < float(location_range) <= 1.0):
            raise ValueError("`location_range` must be a number in (0, 1] (the bound of "
                             "the location policy's mean in [-1, 1] canvas units). "
                             f"Received: location_range={location_range!r}")
        self.location_range = float(location_range)
        self.policy_to_core = check_bool("policy_to_core", policy_to_core)
        self.reinforce_weight = check_number("reinforce_weight", reinforce_weight,
                                             minimum=0)
        self.normalize_advantage = check_bool("normalize_advantage", normalize_advantage)
        self.classifier_activation = check_choice(
            "classifier_activation", classifier_activation, ("softmax", None))
        self.seed = seed
        self._make_glimpse_network(patch_size, num_scales, scale_factor, data_format,
                                   glimpse_hidden, glimpse_units, glimpse_encoder)
        self.policy = GaussianLocationPolicy(
            units=2, std=std, mean_activation=mean_activation,
            stop_gradient_inputs=not self.policy_to_core, seed=seed,
            hidden_units=check_non_negative_int("location_hidden", location_hidden),
            name="location")
        dense = keras.layers.Dense
        if self.core == "rnn":
            self.core_input = dense(core_units, name="core_input")
            self.core_recurrent = dense(core_units, use_bias=False, name="core_recurrent")
        else:
            self.core_cell = keras.layers.LSTMCell(core_units, name="core_lstm")
        if self.baseline == "learned":
            self.baseline_net = LearnedBaseline(name="baseline")
        elif self.baseline == "moving_average":
            self.baseline_net = MovingAverageBaseline(name="baseline")
        self.classifier = dense(classes, name="classifier")
        self.reward_tracker = keras.metrics.Mean(name="reward")
        if weights is not None:
            self.build()
            load_application_weights(self, weights, "RecurrentAttentionModel",
                                     self.get_config())

    # Keras model plumbing -------------------------------------------------------

    @classmethod
    def from_preset(cls, preset, **kwargs):
        """Builds one of the paper's configurations: `"mnist"`, `"translated"`,
        `"cluttered60"`, `"cluttered100"`; `kwargs` override its entries.

        The presets' image shapes are `(H, W, C)`; in channels_first (the
        `data_format` argument, or the global Keras setting when it is `None`)
        they become `(C, H, W)`.

        A name of shipped trained weights (`"ram_mnist"`, see
        `keras_attention_vision.presets.available_presets("RecurrentAttentionModel")`)
        builds that preset's configuration and loads its weights."""
        from keras_attention_vision import presets

        trained = presets.available_presets("RecurrentAttentionModel")
        if preset in trained:
            return presets.load_preset(preset, **kwargs)
        if preset not in PRESETS:
            raise ValueError(f"`preset` must be one of {tuple(PRESETS)} (the paper's "
                             f"configurations) or {tuple(trained)} (trained weights). "
                             f"Received: preset={preset!r}")
        config = {**PRESETS[preset], **kwargs}
        if ("input_shape" not in kwargs and standardize_data_format(
                config.get("data_format")) == "channels_first"):
            height, width, channels = config["input_shape"]
            config["input_shape"] = (channels, height, width)
        return cls(**config)

    def get_config(self):
        return {
            "input_shape": self.image_shape,
            "classes": self.classes,
            "num_glimpses": self.num_glimpses,
            "patch_size": self.sensor.patch_size,
            "num_scales": self.sensor.num_scales,
            "scale_factor": self.sensor.scale_factor,
            "glimpse_hidden": self.glimpse_hidden,
            "glimpse_units": self.glimpse_units,
            "glimpse_encoder": self.glimpse_encoder,
            "core": self.core,
            "core_units": self.core_units,
            "std": self.policy.std,
            "mean_activation": self.policy.mean_activation,
            "location_range": self.location_range,
            "location_hidden": self.policy.hidden_units,
            "baseline": self.baseline,
            "policy_to_core": self.policy_to_core,
            "reinforce_weight": self.reinforce_weight,
            "normalize_advantage": self.normalize_advantage,
            "rollouts_per_image": self.rollouts_per_image,
            "classifier_activation": self.classifier_activation,
            "data_format": self.data_format,
            "seed": self.seed,
            "name": self.name,
        }

    def build(self, input_shape=None):
        if self.built:
            return
        self._build_glimpse_network()
        self.policy.build((None, self.core_units))
        if self.core == "rnn":
            self.core_input.build((None, self.glimpse_units))
            self.core_recurrent.build((None, self.core_units))
        else:
            self.core_cell.build((None, self.glimpse_units))
        if self.baseline == "learned":
            self.baseline_net.build((None, self.core_units))
        elif self.baseline == "moving_average":
            self.baseline_net.build()
        self.classifier.build((None, self.core_units))
        self.built = True

    def multiply_adds(self):
        """Multiply-adds of one image's forward pass (the mean path, `T` glimpses).

        Per glimpse: the glimpse network's four dense layers (retina
        `k * p * p * C -> hidden`, location `2 -> hidden`, both `hidden ->
        units`), the core (`RNN`: `units * (g + units)`; `LSTM`: 4 times
        that), the location mean (`units * 2`, or `units * hidden + hidden * 2`
        with `location_hidden`) and the learned baseline
        (`units`); once: the classifier (`units * classes`). With
        `glimpse_encoder="conv"` the retina's input is the encoder's output and
        its convolutions count `H' * W' * filters * 3 * 3 * channels_in` each
        (the max-pools are comparisons, not counted). The retina's block
        averages are additions, not counted (see `keras_attention_vision.cost`).
        """
        retina = self._retina_features()
        hidden, units, core = self.glimpse_hidden, self.glimpse_units, self.core_units
        step = (self._encoder_multiply_adds() + retina * hidden + 2 * hidden
                + 2 * hidden * units
                + (4 if self.core == "lstm" else 1) * core * (units + core)
                + self._location_multiply_adds()
                + (core if self.baseline == "learned" else 0))
        return self.num_glimpses * step + core * self.classes

    def _location_multiply_adds(self):
        hidden = self.policy.hidden_units
        return (self.core_units * hidden + hidden * 2) if hidden else 2 * self.core_units

    # The rollout ----------------------------------------------------------------

    def _core_step(self, g, state):
        if self.core == "rnn":
            h = ops.relu(self.core_input(g) + self.core_recurrent(state[0]))
            return h, [h]
        h, new_state = self.core_cell(g, state)
        return h, list(new_state)

    def _locate(self, h, sample):
        """`(mu_t, l_t)`: the policy's mean scaled by `location_range`, and the
        location `sg(mu_t + std * eps)` (`eps` the policy's own draw: its
        location minus its unscaled mean; `l_t = mu_t` without sampling)."""
        mean, location = self.policy(h, sample=sample)
        if self.location_range == 1.0:
            return mean, location
        scaled = mean * ops.cast(self.location_range, mean.dtype)
        return scaled, ops.stop_gradient(scaled + (location - mean))

    def rollout(self, images, sample=False, return_glimpses=False):
        """Runs the `T` glimpses on `images`.

        Args:
            images: the image batch.
            sample: sample the locations (training, Monte Carlo rollouts) or
                follow the policy mean.
            return_glimpses: also return the retina outputs.

        Returns:
            A dict: `logits` `(B, classes)` float32, `means` and `locations`
            `(B, T, 2)` as `(y, x)` in `[-1, 1]`, `baselines` `(B, T)`
            (`b_t` from `h_{t-1}`), and `glimpses` `(B, T, ...)` if asked.
        """
        images = ops.cast(images, self.compute_dtype)
        batch = ops.shape(images)[0]
        h = ops.zeros((batch, self.core_units), self.compute_dtype)
        state = [h] if self.core == "rnn" else [h, h]
        means, locations, baselines, glimpses = [], [], [], []
        for _ in range(self.num_glimpses):
            mean, location = self._locate(h, sample)
            if self.baseline == "learned":
                baselines.append(self.baseline_net(h))
            glimpse = self.sensor([images, location])
            if return_glimpses:
                glimpses.append(glimpse)
            g = ops.relu(self._what(glimpse) + self._where(location))  # g_t, Sec. 4
            h, state = self._core_step(g, state)
            means.append(mean)
            locations.append(location)
        out = {
            "logits": ops.cast(self.classifier(h), "float32"),
            "means": ops.stack(means, axis=1),
            "locations": ops.stack(locations, axis=1),
        }
        if baselines:
            out["baselines"] = ops.stack(baselines, axis=1)
        if return_glimpses:
            out["glimpses"] = ops.stack(glimpses, axis=1)
        return out

    def _head(self, logits):
        if self.classifier_activation == "softmax":
            return ops.softmax(logits, axis=-1)
        return logits

    def call(self, inputs, training=None, return_locations=False):
        if training:  # each image M times, rollout i * M + j its j-th
            return self.rollout(self._repeat(inputs), sample=True)
        out = self.rollout(inputs, sample=False)
        probabilities = self._head(out["logits"])
        if return_locations:
            return probabilities, out["locations"]
        return probabilities

    def compute_output_spec(self, inputs, training=None, return_locations=False):
        batch = inputs.shape[0]
        spec = keras.KerasTensor((batch, self.classes), "float32")
        if return_locations:
            return spec, keras.KerasTensor((batch, self.num_glimpses, 2), "float32")
        return spec

    # The hybrid loss -------------------------------------------------------------

    def _repeat(self, tensor):
        """`tensor` with each batch row repeated `rollouts_per_image` times
        (`None` stays `None`): the images, labels and weights of the rollouts."""
        if tensor is None or self.rollouts_per_image == 1:
            return tensor
        return ops.repeat(tensor, self.rollouts_per_image, axis=0)

    def _leave_one_out(self, rewards):
        """`(B * M,)` rewards to each rollout's mean of its image's other `M - 1`."""
        m = self.rollouts_per_image
        per_image = ops.reshape(rewards, (-1, m))
        others = ops.sum(per_image, axis=1, keepdims=True) - per_image
        return ops.reshape(others / float(m - 1), (-1,))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        labels = ops.cast(ops.reshape(y, (-1,)), "int32")
        if sample_weight is not None:
            sample_weight = ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
        if not isinstance(y_pred, dict):  # evaluate(): cross-entropy of the mean path
            y_pred = ops.cast(y_pred, "float32")
            self.reward_tracker.update_state(ops.cast(ops.equal(
                ops.cast(ops.argmax(y_pred, axis=-1), "int32"), labels), "float32"),
                sample_weight)
            return weighted_mean(keras.losses.sparse_categorical_crossentropy(
                labels, y_pred, from_logits=self.classifier_activation is None),
                sample_weight)
        labels, sample_weight = self._repeat(labels), self._repeat(sample_weight)
        logits = y_pred["logits"]
        cross_entropy = weighted_mean(keras.losses.sparse_categorical_crossentropy(
            labels, logits, from_logits=True), sample_weight)
        correct = ops.cast(ops.equal(ops.cast(ops.argmax(logits, axis=-1), "int32"),
                                     labels), "float32")
        self.reward_tracker.update_state(correct, sample_weight)
        log_probs = self.policy.log_prob(y_pred["means"], y_pred["locations"])  # (B, T)
        if self.baseline == "learned":
            baselines = y_pred["baselines"]
            value_loss = baseline_loss(correct, baselines, sample_weight)
        elif self.baseline == "leave_one_out":
            baselines, value_loss = self._leave_one_out(correct), 0.0
        else:
            baselines = self.baseline_net(correct, training=training,
                                          sample_weight=sample_weight)
            value_loss = 0.0
        policy_loss = reinforce_loss(correct, log_probs, baselines, sample_weight,
                                     normalize_advantage=self.normalize_advantage)
        return cross_entropy + value_loss + self.reinforce_weight * policy_loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y_pred, dict):  # training: the sampled rollouts
            y_pred = self._head(y_pred["logits"])
            y, sample_weight = self._repeat(y), self._repeat(sample_weight)
        return super().compute_metrics(x, y, y_pred, sample_weight)

    # Inference helpers -----------------------------------------------------------

    def predict_averaged(self, images, num_samples=10, batch_size=256):
        """Class probabilities averaged over `num_samples` sampled rollouts.

        `num_samples=1` follows the mean locations instead (as `predict`).
        Report both: averaging can hide a weak policy.

        Returns:
            NumPy array `(N, classes)`.
        """
        import numpy as np

        num_samples = check_positive_int("num_samples", num_samples)
        results = []
        for start in range(0, len(images), batch_size):
            chunk = ops.convert_to_tensor(images[start:start + batch_size])
            if num_samples == 1:
                logits = self.rollout(chunk, sample=False)["logits"]
                results.append(ops.convert_to_numpy(ops.softmax(logits, -1)))
                continue
            n = ops.shape(chunk)[0]
            tiled = ops.concatenate([chunk] * num_samples, axis=0)
            logits = self.rollout(tiled, sample=True)["logits"]
            probs = ops.reshape(ops.softmax(logits, -1), (num_samples, n, self.classes))
            results.append(ops.convert_to_numpy(ops.mean(probs, axis=0)))
        return np.concatenate(results, axis=0)


__all__ = ["PRESETS", "RecurrentAttentionModel"]
