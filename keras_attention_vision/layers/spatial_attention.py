"""Additive (soft or hard) attention over annotation vectors: Show, Attend and Tell."""

import keras
from keras import ops

from keras_attention_vision.api_export import kav_export
from keras_attention_vision.distribution import global_batch_apply, global_batch_draw
from keras_attention_vision.layers.validation import (
    check_bool,
    check_choice,
    check_number,
    check_positive_int,
    standardize_data_format,
)
from keras_attention_vision.saving import SeedStateMixin

MODES = ("soft", "hard")


@kav_export("keras_attention_vision.layers.SpatialAttention")
class SpatialAttention(SeedStateMixin, keras.layers.Layer):
    """Additive attention of a decoder state over `L` annotation vectors.

    From "Show, Attend and Tell" (Xu et al., 2015), section 4. For annotation
    vectors `a_i` (`i = 1..L`, e.g. the positions of a CNN feature map) and
    the decoder's previous hidden state `h_{t-1}`:

    ```
    e_ti  = w^T tanh(W_a a_i + W_h h_{t-1} + b)                (section 4.1)
    alpha = softmax_i(e_t)                                      (float32)
    beta  = sigmoid(W_b h_{t-1} + b_b)                          (section 4.2.1)
    z_t   = beta * sum_i alpha_ti a_i                           (soft)
    z_t   = beta * a_{s_t},  s_t ~ Multinoulli_L(alpha_t)       (hard, section 4.1)
    ```

    The gate `beta` is one scalar per example, as in the paper (some public
    implementations use a vector, one gate per feature channel); `use_gate=False`
    leaves it out (`beta = 1`).

    `mode="hard"` is the stochastic attention of section 4.1, trained with
    REINFORCE: when sampling (`training=True`, or `sample=True`) the location
    `s_t` is drawn from a TFP `Categorical` with logits `e_t`, the sampled index
    carries no gradient, and `return_sample=True` also returns the sampled
    location, its log-probability `log alpha_{t, s_t}` (the gradient of which
    reaches `W_a`, `W_h` and `w`) and the entropy of `alpha_t`. With probability
    `expectation_probability` (per example) the sample is replaced by the
    expectation `alpha` (the paper uses 0.5); the log-probability of those
    examples is 0, since no sample was used. Without sampling (inference) the
    context is the expectation, as for soft attention, and the reported location
    is `argmax alpha`. Hard mode needs TFP, so it runs on TensorFlow and JAX; on
    PyTorch the constructor raises the project's backend error.

    The sampling's `SeedGenerator` state is saved in `.keras` files.

    Args:
        units: width of the attention MLP (`W_a`, `W_h`).
        mode: `"soft"` (default) or `"hard"`.
        use_gate: multiply the context by the gate `beta`. Defaults to `True`.
        expectation_probability: hard mode only: probability in `[0, 1]` that a
            sampled location is replaced by the expectation. Defaults to 0.
        data_format: layout of rank-4 annotations: `"channels_last"`
            (`(B, H, W, D)`), `"channels_first"` (`(B, D, H, W)`) or `None`
            (the Keras image data format). Rank-3 annotations are always
            `(B, L, D)`.
        seed: seed of the hard-attention sampling.
        kernel_initializer: initializer of the attention kernels.
        kernel_regularizer: regularizer of the same kernels.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `[annotations, hidden]`: annotations `(B, L, D)` or a feature
            map `(B, H, W, D)` / `(B, D, H, W)` (flattened row-major to
            `L = H * W`), and the decoder state `h_{t-1}` `(B, H_dim)`.
        training: hard mode samples when `True`.
        sample: overrides `training` for the sampling decision.
        return_sample: hard mode only: also return the location, its
            log-probability and the entropy.

    Returns:
        `[context, alpha]`: the context vector `z_t` `(B, D)` and the
        attention weights `(B, L)`. With `return_sample=True` (hard mode),
        `[context, alpha, location, log_prob, entropy]` with `location` int32
        `(B,)` and `log_prob`, `entropy` float32 `(B,)`.

    Example:

    ```python
    features = keras.Input((14, 14, 512))   # 196 annotation vectors
    h = keras.Input((256,))
    context, alpha = SpatialAttention(128)([features, h])   # (B, 512), (B, 196)
    hard = SpatialAttention(128, mode="hard", seed=0)
    context, alpha, s, log_prob, entropy = hard([features, h], training=True,
                                                return_sample=True)
    ```
    """

    def __init__(self, units, mode="soft", use_gate=True, expectation_probability=0.0,
                 data_format=None, seed=None, kernel_initializer="glorot_uniform",
                 kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.units = check_positive_int("units", units)
        self.mode = check_choice("mode", mode, MODES)
        self.use_gate = check_bool("use_gate", use_gate)
        self.expectation_probability = check_number(
            "expectation_probability", expectation_probability, minimum=0)
        if self.expectation_probability > 1:
            raise ValueError("`expectation_probability` must be in [0, 1]. "
                             f"Received: expectation_probability={expectation_probability!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"`seed` must be an int or None. Received: seed={seed!r}")
        if self.mode == "hard":
            from keras_attention_vision.reinforce import require_reinforce_backend

            require_reinforce_backend()
        self.data_format = standardize_data_format(data_format)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def get_config(self):
        config = super().get_config()
        config.update({
            "units": self.units,
            "mode": self.mode,
            "use_gate": self.use_gate,
            "expectation_probability": self.expectation_probability,
            "data_format": self.data_format,
            "seed": self.seed,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
        })
        return config

    # Shapes ---------------------------------------------------------------------

    def _split_shapes(self, input_shape):
        if (not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2
                or not all(isinstance(s, (list, tuple)) for s in input_shape)):
            raise ValueError(
                f"{type(self).__name__} is called on [annotations, hidden]. "
                f"Received: input_shape={input_shape!r}"
            )
        annotations, hidden = (tuple(s) for s in input_shape)
        if len(annotations) not in (3, 4):
            raise ValueError(
                f"{type(self).__name__} expects annotations (B, L, D) or a feature map "
                f"(B, H, W, D) / (B, D, H, W). Received: annotations shape={annotations}"
            )
        if len(hidden) != 2:
            raise ValueError(
                f"{type(self).__name__} expects the hidden state (B, H_dim). "
                f"Received: hidden shape={hidden}"
            )
        if len(annotations) == 4 and self.data_format == "channels_first":
            annotations = (annotations[0],) + annotations[2:] + (annotations[1],)
        if annotations[-1] is None or hidden[-1] is None:
            raise ValueError(
                f"{type(self).__name__} needs known feature sizes D and H_dim. "
                f"Received: input_shape={input_shape!r}"
            )
        locations = annotations[1]
        if len(annotations) == 4:
            locations = (None if None in annotations[1:3]
                         else annotations[1] * annotations[2])
        return annotations[0], locations, annotations[-1], hidden

    def build(self, input_shape):
        _, _, channels, hidden = self._split_shapes(input_shape)
        dense = keras.layers.Dense
        common = dict(dtype=self.dtype_policy, kernel_initializer=self.kernel_initializer,
                      kernel_regularizer=self.kernel_regularizer)
        self.annotation_projection = dense(self.units, name="w_a", **common)
        self.hidden_projection = dense(self.units, use_bias=False, name="w_h", **common)
        # A bias on `w` would shift every logit equally: softmax ignores it.
        self.score = dense(1, use_bias=False, name="w", **common)
        self.annotation_projection.build((None, None, channels))
        self.hidden_projection.build(hidden)
        self.score.build((None, None, self.units))
        if self.use_gate:
            self.gate = dense(1, name="w_beta", **common)
            self.gate.build(hidden)
        self.built = True

    def compute_output_shape(self, input_shape):
        batch, locations, channels, _ = self._split_shapes(input_shape)
        return [(batch, channels), (batch, locations)]

    # Computation ----------------------------------------------------------------

    def flatten(self, annotations):
        """Annotations `(B, L, D)` from `(B, L, D)`, `(B, H, W, D)` or `(B, D, H, W)`."""
        if len(annotations.shape) == 4:
            if self.data_format == "channels_first":
                annotations = ops.moveaxis(annotations, 1, -1)
            shape = ops.shape(annotations)
            annotations = ops.reshape(annotations, (shape[0], -1, shape[-1]))
        return annotations

    def project(self, annotations):
        """`(a, W_a a + b)`: the flattened annotations `(B, L, D)` and their
        projection `(B, L, units)`, which a decoder computes once per image and
        passes to `attend` at every step."""
        annotations = self.flatten(annotations)
        return annotations, self.annotation_projection(annotations)

    def logits(self, projected, hidden):
        """The scores `e_t = w^T tanh(W_a a + W_h h)`, float32 `(B, L)`."""
        mixed = ops.tanh(projected + ops.expand_dims(self.hidden_projection(hidden), 1))
        return ops.cast(self.score(mixed)[..., 0], "float32")

    def _sample(self, logits):
        from keras_attention_vision.distributions import get_distributions

        seed = self.seed_generator.next()
        if keras.backend.backend() == "tensorflow":
            seed = ops.cast(seed, "int32")
        # Under tf.distribute: one draw for the global batch, this replica's rows.
        location = global_batch_apply(
            lambda batch_logits: get_distributions().Categorical(
                logits=batch_logits).sample(seed=seed), logits)
        return ops.stop_gradient(ops.cast(location, "int32"))

    def attend(self, annotations, projected, hidden, training=None, sample=None,
               return_sample=False):
        """One attention step on pre-projected annotations (see `project`).

        Args:
            annotations: `(B, L, D)` flattened annotations.
            projected: `(B, L, units)`, `W_a a + b`.
            hidden: `(B, H_dim)`, the state `h_{t-1}`.
            training, sample, return_sample: as in `call`.

        Returns:
            As `call`.
        """
        logits = self.logits(projected, hidden)
        alpha = ops.softmax(logits, axis=-1)
        weights = alpha
        hard = self.mode == "hard"
        sample = bool(training) if sample is None else bool(sample)
        if hard and sample:
            location = self._sample(logits)
            one_hot = ops.one_hot(location, ops.shape(logits)[-1], dtype="float32")
            used = ops.ones_like(logits[:, 0])
            if self.expectation_probability > 0:
                draw = global_batch_draw(
                    lambda shape: keras.random.uniform(shape, seed=self.seed_generator),
                    ops.shape(used))
                used = ops.cast(draw >= self.expectation_probability, "float32")
            weights = used[:, None] * one_hot + (1.0 - used[:, None]) * alpha
        elif hard:
            location = ops.cast(ops.argmax(alpha, axis=-1), "int32")
            used = ops.ones_like(logits[:, 0])
        weights = ops.cast(weights, annotations.dtype)
        context = ops.sum(ops.expand_dims(weights, -1) * annotations, axis=1)
        if self.use_gate:
            beta = ops.sigmoid(ops.cast(self.gate(hidden), "float32"))  # (B, 1)
            context = ops.cast(beta, context.dtype) * context
        outputs = [ops.cast(context, self.compute_dtype), ops.cast(alpha, self.compute_dtype)]
        if return_sample:
            if not hard:
                raise ValueError(
                    f"{type(self).__name__}: `return_sample=True` needs mode='hard'. "
                    f"Received: mode={self.mode!r}"
                )
            from keras_attention_vision.distributions import get_distributions

            policy = get_distributions().Categorical(logits=logits)
            log_prob = ops.cast(policy.log_prob(location), "float32") * used
            outputs += [location, log_prob, ops.cast(policy.entropy(), "float32")]
        return outputs

    def call(self, inputs, training=None, sample=None, return_sample=False):
        annotations, hidden = inputs
        annotations, projected = self.project(annotations)
        return self.attend(annotations, projected, hidden, training=training,
                           sample=sample, return_sample=return_sample)

    def compute_output_spec(self, inputs, training=None, sample=None, return_sample=False):
        annotations, hidden = inputs
        batch, locations, channels, _ = self._split_shapes(
            [tuple(annotations.shape), tuple(hidden.shape)])
        specs = [keras.KerasTensor((batch, channels), self.compute_dtype),
                 keras.KerasTensor((batch, locations), self.compute_dtype)]
        if return_sample:
            specs += [keras.KerasTensor((batch,), "int32"),
                      keras.KerasTensor((batch,), "float32"),
                      keras.KerasTensor((batch,), "float32")]
        return specs
