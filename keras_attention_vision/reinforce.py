"""REINFORCE with TensorFlow Probability: location policy, baselines, surrogate loss.

The score-function estimator of Williams (1992), as the Recurrent Attention
Model uses it (Mnih et al., 2014). With rewards `R`, baselines `b_t` and
actions `l_t` drawn from the policy `pi(. | mu_t)`, the surrogate loss

    L = -mean_batch sum_t (R - sg(b_t)) * log pi(sg(l_t) | mu_t)

has the REINFORCE gradient. `sg` (stop-gradient) goes on the sampled action and
on the baseline, never on the policy mean `mu_t`: the mean is what REINFORCE
trains. Log-probabilities and entropies come from the TFP distributions of the
active backend (`keras_attention_vision.distributions`), so everything here runs
on TensorFlow and JAX; PyTorch has no TFP substrate and gets a clear error.
"""

import keras
from keras import ops

from keras_attention_vision.api_export import kav_export
from keras_attention_vision.distribution import cross_replica_sum, global_batch_draw
from keras_attention_vision.distributions import check_backend, get_distributions
from keras_attention_vision.layers.validation import (
    check_bool,
    check_choice,
    check_non_negative_int,
    check_positive_int,
)
from keras_attention_vision.losses import weighted_mean
from keras_attention_vision.saving import SeedStateMixin

MEAN_ACTIVATIONS = ("tanh", "clip")


def _check_std(std):
    if isinstance(std, bool) or not isinstance(std, (int, float)) or not std > 0:
        raise ValueError(f"`std` must be a positive number. Received: std={std!r}")
    return float(std)


def gaussian_log_prob(mean, std, actions):
    """Log-density of `actions` under independent Gaussians, summed over the last axis.

    The actions are treated as constants (their gradient is stopped); the
    gradient flows to `mean`. Computed in float32 with TFP's `Normal`.

    Args:
        mean: policy means, shape `(..., D)`.
        std: the fixed standard deviation (a positive float).
        actions: the sampled actions, shape `(..., D)`.

    Returns:
        float32 tensor of shape `(...)`.
    """
    tfd = get_distributions()
    std = _check_std(std)
    policy = tfd.Normal(loc=ops.cast(mean, "float32"), scale=std)
    return ops.sum(policy.log_prob(ops.stop_gradient(ops.cast(actions, "float32"))), -1)


def gaussian_entropy(mean, std):
    """Entropy of the Gaussian policy, summed over the last axis (float32, `(...)`)."""
    tfd = get_distributions()
    policy = tfd.Normal(loc=ops.cast(mean, "float32"), scale=_check_std(std))
    return ops.sum(policy.entropy(), -1)


def bernoulli_log_prob(logits, actions):
    """Log-probability of binary `actions` under `Bernoulli(sigmoid(logits))`.

    The actions are constants (their gradient is stopped); the gradient flows
    to `logits`. Computed in float32 with TFP's `Bernoulli`.

    Args:
        logits: the policy's logits, shape `(...)`.
        actions: the sampled actions in {0, 1}, shape `(...)`.

    Returns:
        float32 tensor of shape `(...)`.
    """
    tfd = get_distributions()
    policy = tfd.Bernoulli(logits=ops.cast(logits, "float32"), dtype="float32")
    return policy.log_prob(ops.stop_gradient(ops.cast(actions, "float32")))


def bernoulli_entropy(logits):
    """Entropy (nats) of `Bernoulli(sigmoid(logits))`, float32 of the shape of `logits`."""
    tfd = get_distributions()
    return tfd.Bernoulli(logits=ops.cast(logits, "float32"), dtype="float32").entropy()


def _global_weighted_means(values, sample_weight=None):
    """Weighted means of each tensor in `values` over the global batch, in one all-reduce.

    Every tensor has the shape of the first, `(B,)` or `(B, T)`; each
    episode's entries are weighted by its `sample_weight` (`None`: 1). Under
    `tf.distribute` the sums are all-reduced over the replicas.

    Returns:
        `(means, total)`: a list of float32 scalars, and the total weight (the
        means are 0 when it is 0).
    """
    weights = ops.ones_like(values[0])
    if sample_weight is not None:
        weights = ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
        if len(values[0].shape) == 2:
            weights = weights[:, None]
        weights = ops.stop_gradient(weights)
    sums = cross_replica_sum(ops.stack([ops.sum(weights * v) for v in values]
                                       + [ops.sum(weights + ops.zeros_like(values[0]))]))
    total = sums[-1]
    return [sums[i] / ops.maximum(total, 1e-12) for i in range(len(values))], total


def normalized_advantage(advantage, sample_weight=None, epsilon=1e-8):
    """Standardises advantages over the batch: `(A - mean(A)) / (std(A) + epsilon)`.

    The usual advantage normalisation of policy-gradient code (e.g. PPO in
    OpenAI Baselines and Stable-Baselines3): the mean and the (population)
    standard deviation are taken over every entry of `advantage` (all
    episodes and, for `(B, T)`, all steps), each episode's entries weighted
    by its `sample_weight` (an episode of weight 0 does not enter them).
    Under `tf.distribute` the sums are all-reduced over the replicas, so the
    moments are those of the global batch. The moments are constants (no
    gradient flows through them).

    Args:
        advantage: float tensor `(B,)` or `(B, T)`.
        sample_weight: `None` or per-episode weights `(B,)`.
        epsilon: added to the standard deviation (a batch whose advantages
            are all equal gives zeros).

    Returns:
        float32 tensor of the shape of `advantage`.
    """
    advantage = ops.stop_gradient(ops.cast(advantage, "float32"))
    (mean, mean_square), _ = _global_weighted_means([advantage, ops.square(advantage)],
                                                    sample_weight)
    variance = ops.maximum(mean_square - ops.square(mean), 0.0)
    return (advantage - mean) / (ops.sqrt(variance) + epsilon)


def reinforce_loss(rewards, log_probs, baselines=None, sample_weight=None,
                   normalize_advantage=False):
    """The REINFORCE surrogate loss `-mean_b w_b sum_t A_bt * log pi_t`.

    `A_bt = R_b - sg(b_t)` (the advantage); with `normalize_advantage` it is
    standardised over the batch first (`normalized_advantage`).

    Args:
        rewards: the return of each episode, shape `(B,)` (one reward per
            episode, as RAM's classification reward) or `(B, T)`.
        log_probs: `log pi(sg(l_t) | mu_t)` of the actions taken, shape `(B, T)`.
        baselines: `b_t`, shape `(B, T)`, `(B,)` or a scalar; `None` means 0.
            Its gradient is stopped: train it with its own loss
            (`baseline_loss`).
        sample_weight: `None` or per-episode weights `(B,)`, reduced as
            Keras's losses do (`sum(w * loss) / B`, see `losses.weighted_mean`);
            with `normalize_advantage` they also weight the batch moments.
        normalize_advantage: replace `A` by `(A - mean(A)) / (std(A) + 1e-8)`,
            the mean and std taken over all `B x T` entries of the batch
            (`False`: the plain estimator, as in Williams 1992 and Mnih et al.).

    Returns:
        A float32 scalar.
    """
    rewards = ops.cast(ops.stop_gradient(rewards), "float32")
    log_probs = ops.cast(log_probs, "float32")
    if len(rewards.shape) == 1:
        rewards = rewards[:, None]
    advantage = rewards
    if baselines is not None:
        baselines = ops.cast(ops.stop_gradient(baselines), "float32")
        if len(baselines.shape) == 1:
            baselines = baselines[:, None]
        advantage = rewards - baselines
    if normalize_advantage:
        advantage = normalized_advantage(advantage + ops.zeros_like(log_probs),
                                         sample_weight)
    return weighted_mean(-ops.sum(advantage * log_probs, axis=-1), sample_weight)


def baseline_loss(rewards, baselines, sample_weight=None):
    """Mean squared error between the baselines `b_t` and the reward `R`.

    Args:
        rewards: shape `(B,)` or `(B, T)`; its gradient is stopped.
        baselines: shape `(B, T)`.
        sample_weight: `None` or per-episode weights `(B,)`: the mean over `t`
            of each episode is weighted as Keras's losses do.

    Returns:
        A float32 scalar.
    """
    rewards = ops.cast(ops.stop_gradient(rewards), "float32")
    if len(rewards.shape) == 1:
        rewards = rewards[:, None]
    squared = ops.square(ops.cast(baselines, "float32") - rewards)
    return weighted_mean(ops.mean(squared, axis=-1), sample_weight)


@kav_export("keras_attention_vision.reinforce.GaussianLocationPolicy")
class GaussianLocationPolicy(SeedStateMixin, keras.layers.Layer):
    """A Gaussian policy over locations with a fixed standard deviation.

    `mu = tanh(W h + b)` (or `clip(W h + b, -1, 1)`; with `hidden_units`, `h`
    is first `ReLU(W' h + b')`); in training the action is
    `l = sg(mu + std * eps)`, `eps ~ N(0, I)`, otherwise `l = mu`. REINFORCE
    trains the mean through `log_prob(mean, l)`.

    Args:
        units: dimension of the action (2 for `(y, x)` locations).
        std: the fixed standard deviation (in `[-1, 1]` location units).
        mean_activation: `"tanh"` or `"clip"` (to `[-1, 1]`).
        hidden_units: width of a ReLU hidden layer before the mean; `0` (the
            default): the mean is linear in the state, as in Mnih et al.
        stop_gradient_inputs: stop the gradient from the policy into the state
            `h` (then only the location network learns from REINFORCE).
        seed: seed of the sampling noise.
        **kwargs: base layer arguments.

    Call arguments:
        inputs: the state `h`, shape `(B, features)`.
        training: sample around the mean when `True`.
        sample: overrides `training` to sample (`True`) or not (`False`).

    Returns:
        `(mean, location)`, both `(B, units)`.

    Example:

    ```python
    policy = GaussianLocationPolicy(std=0.1, seed=0)
    mean, location = policy(h, training=True)
    log_pi = policy.log_prob(mean, location)  # (B,)
    ```

    The state of the sampling noise's `SeedGenerator` is saved in `.keras`
    files, so a loaded model draws the locations the original would have.
    """

    def __init__(self, units=2, std=0.1, mean_activation="tanh",
                 stop_gradient_inputs=False, seed=None, hidden_units=0, **kwargs):
        super().__init__(**kwargs)
        self.units = check_positive_int("units", units)
        self.std = _check_std(std)
        self.mean_activation = check_choice("mean_activation", mean_activation,
                                            MEAN_ACTIVATIONS)
        self.stop_gradient_inputs = check_bool("stop_gradient_inputs",
                                               stop_gradient_inputs)
        self.hidden_units = check_non_negative_int("hidden_units", hidden_units)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def get_config(self):
        config = super().get_config()
        config.update({
            "units": self.units,
            "std": self.std,
            "mean_activation": self.mean_activation,
            "stop_gradient_inputs": self.stop_gradient_inputs,
            "seed": self.seed,
            "hidden_units": self.hidden_units,
        })
        return config

    def build(self, input_shape):
        if self.hidden_units:
            self.hidden = keras.layers.Dense(self.hidden_units, activation="relu",
                                             dtype=self.dtype_policy, name="hidden")
            self.hidden.build(input_shape)
            input_shape = tuple(input_shape[:-1]) + (self.hidden_units,)
        self.dense = keras.layers.Dense(self.units, dtype=self.dtype_policy, name="mean")
        self.dense.build(input_shape)
        self.built = True

    def call(self, inputs, training=None, sample=None):
        if self.stop_gradient_inputs:
            inputs = ops.stop_gradient(inputs)
        if self.hidden_units:
            inputs = self.hidden(inputs)
        mean = ops.cast(self.dense(inputs), "float32")
        if self.mean_activation == "tanh":
            mean = ops.tanh(mean)
        else:
            mean = ops.clip(mean, -1.0, 1.0)
        sample = bool(training) if sample is None else sample
        if sample:
            # Under tf.distribute each replica takes its own rows of one draw
            # for the global batch (distribution.global_batch_draw).
            noise = global_batch_draw(
                lambda shape: keras.random.normal(shape, seed=self.seed_generator),
                ops.shape(mean))
            location = ops.stop_gradient(mean + self.std * noise)
        else:
            location = ops.stop_gradient(mean)
        return ops.cast(mean, self.compute_dtype), ops.cast(location, self.compute_dtype)

    def log_prob(self, mean, location):
        """`log pi(sg(location) | mean)`, summed over the action dimensions."""
        return gaussian_log_prob(mean, self.std, location)

    def entropy(self, mean):
        """The entropy of the policy at `mean` (constant for a fixed std)."""
        return gaussian_entropy(mean, self.std)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape[:-1]) + (self.units,)
        return shape, shape


@kav_export("keras_attention_vision.reinforce.LearnedBaseline")
class LearnedBaseline(keras.layers.Layer):
    """A learned baseline `b = W h + c`, trained by MSE to the reward.

    Args:
        stop_gradient_inputs: stop the gradient of the baseline loss into the
            state `h` (the default: the baseline should not shape the state).
        **kwargs: base layer arguments.

    Call arguments:
        inputs: the state, shape `(B, features)`.

    Returns:
        The baseline, shape `(B,)`, float32.
    """

    def __init__(self, stop_gradient_inputs=True, **kwargs):
        super().__init__(**kwargs)
        self.stop_gradient_inputs = bool(stop_gradient_inputs)

    def get_config(self):
        config = super().get_config()
        config.update({"stop_gradient_inputs": self.stop_gradient_inputs})
        return config

    def build(self, input_shape):
        self.dense = keras.layers.Dense(1, dtype=self.dtype_policy, name="value")
        self.dense.build(input_shape)
        self.built = True

    def call(self, inputs):
        if self.stop_gradient_inputs:
            inputs = ops.stop_gradient(inputs)
        return ops.cast(self.dense(inputs)[..., 0], "float32")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1])


@kav_export("keras_attention_vision.reinforce.MovingAverageBaseline")
class MovingAverageBaseline(keras.layers.Layer):
    """A baseline that is an exponential moving average of the mean reward.

    Args:
        momentum: `b <- momentum * b + (1 - momentum) * mean(R)`.
        **kwargs: base layer arguments.

    Call arguments:
        rewards: shape `(B,)`.
        training: update the average (after reading it) when `True`.
        sample_weight: optional weights `(B,)`: the update uses the weighted
            mean reward `sum(w R) / sum(w)` (no update when all weights are 0).

    Returns:
        The baseline before the update, broadcast to `(B,)`, float32.

    Under `tf.distribute` the two sums are all-reduced over the replicas, so
    the average follows the mean reward of the global batch and stays the
    same on every replica (as one device would compute it).
    """

    def __init__(self, momentum=0.9, **kwargs):
        super().__init__(**kwargs)
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not (
            0 <= momentum < 1
        ):
            raise ValueError(
                f"`momentum` must be a number in [0, 1). Received: momentum={momentum!r}"
            )
        self.momentum = float(momentum)

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum})
        return config

    def build(self, input_shape=None):
        # Every replica computes the same update from global sums (see call),
        # so tf.distribute keeps the first replica's copy.
        self.value = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                     dtype="float32", name="value",
                                     aggregation="only_first_replica")
        self.built = True

    def call(self, rewards, training=None, sample_weight=None):
        rewards = ops.cast(ops.stop_gradient(rewards), "float32")
        out = ops.zeros_like(rewards) + ops.convert_to_tensor(self.value)
        if training:
            # The mean over the global batch: under tf.distribute the sums are
            # all-reduced over the replicas, so every replica's copy gets the
            # same value (on one device and under JAX's keras.distribution the
            # batch is global already).
            (mean,), total = _global_weighted_means([rewards], sample_weight)
            updated = self.momentum * out[0] + (1.0 - self.momentum) * mean
            self.value.assign(ops.where(total > 0, updated, out[0]))
        return out

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


@kav_export("keras_attention_vision.reinforce.BernoulliPolicy")
class BernoulliPolicy(SeedStateMixin, keras.layers.Layer):
    """A binary decision `a ~ Bernoulli(sigmoid(W h + b))` (e.g. stop, or "found").

    In training the action is sampled, `a = sg(u < sigmoid(W h + b))` with
    `u ~ U(0, 1)`; otherwise it is the most likely one, `a = (W h + b > 0)`.
    REINFORCE trains the logits through `log_prob(logits, a)`.

    Args:
        initial_probability: `sigmoid(b)` at the start (the bias is initialised
            to its logit), in `(0, 1)`: a small value starts a policy that
            seldom takes the action.
        kernel_initializer: initialiser of `W` (`"zeros"`: every state starts
            at `initial_probability`).
        stop_gradient_inputs: stop the gradient from the policy into the
            state `h`.
        seed: seed of the sampling.
        **kwargs: base layer arguments.

    Call arguments:
        inputs: the state `h`, shape `(B, features)`.
        training: sample when `True`.
        sample: overrides `training` to sample (`True`) or not (`False`).

    Returns:
        `(logits, action)`: float32 logits `(B,)` and actions `(B,)` in
        {0, 1} (float32).

    Raises:
        ValueError: when `initial_probability` is not in `(0, 1)`, quoting it.

    Example:

    ```python
    policy = BernoulliPolicy(initial_probability=0.05, seed=0)
    logits, found = policy(h, training=True)
    log_pi = policy.log_prob(logits, found)  # (B,)
    ```

    The state of the sampling's `SeedGenerator` is saved in `.keras` files.
    """

    def __init__(self, initial_probability=0.5, kernel_initializer="zeros",
                 stop_gradient_inputs=False, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(initial_probability, bool) or not isinstance(
                initial_probability, (int, float)) or not 0 < initial_probability < 1:
            raise ValueError("`initial_probability` must be a number in (0, 1). "
                             f"Received: initial_probability={initial_probability!r}")
        self.initial_probability = float(initial_probability)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.stop_gradient_inputs = check_bool("stop_gradient_inputs",
                                               stop_gradient_inputs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def get_config(self):
        config = super().get_config()
        config.update({
            "initial_probability": self.initial_probability,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "stop_gradient_inputs": self.stop_gradient_inputs,
            "seed": self.seed,
        })
        return config

    def build(self, input_shape):
        import math

        p = self.initial_probability
        self.dense = keras.layers.Dense(
            1, kernel_initializer=self.kernel_initializer,
            bias_initializer=keras.initializers.Constant(math.log(p / (1 - p))),
            dtype=self.dtype_policy, name="logit")
        self.dense.build(input_shape)
        self.built = True

    def call(self, inputs, training=None, sample=None):
        if self.stop_gradient_inputs:
            inputs = ops.stop_gradient(inputs)
        logits = ops.cast(self.dense(inputs)[..., 0], "float32")
        sample = bool(training) if sample is None else sample
        if sample:
            draw = global_batch_draw(  # tf.distribute: this replica's rows of one draw
                lambda shape: keras.random.uniform(shape, seed=self.seed_generator),
                ops.shape(logits))
            action = ops.cast(draw < ops.sigmoid(logits), "float32")
        else:
            action = ops.cast(logits > 0, "float32")
        return logits, ops.stop_gradient(action)

    def log_prob(self, logits, actions):
        """`log pi(sg(actions) | logits)`, float32 of the shape of `logits`."""
        return bernoulli_log_prob(logits, actions)

    def entropy(self, logits):
        """The entropy of the decision at `logits` (nats)."""
        return bernoulli_entropy(logits)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape[:-1])
        return shape, shape


def require_reinforce_backend():
    """Raises the clear backend error on PyTorch (no TFP substrate)."""
    return check_backend("REINFORCE models (TFP log-probabilities)")


__all__ = [
    "BernoulliPolicy",
    "GaussianLocationPolicy",
    "LearnedBaseline",
    "MovingAverageBaseline",
    "baseline_loss",
    "bernoulli_entropy",
    "bernoulli_log_prob",
    "gaussian_entropy",
    "gaussian_log_prob",
    "normalized_advantage",
    "reinforce_loss",
    "require_reinforce_backend",
]
