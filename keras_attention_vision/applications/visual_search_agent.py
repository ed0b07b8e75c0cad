"""A visual search agent: reinforcement-learned fixations that find a named target.

After Minut and Mahadevan, *A reinforcement learning model of selective visual
attention* (Autonomous Agents 2001): the task is fixed (find a given object in
a scene) and reinforcement learning learns where to look next. Built from the
RAM retina (`GlimpseSensor`) and the REINFORCE pieces of
`keras_attention_vision.reinforce`.
"""

import keras
import numpy as np
from keras import ops

from keras_attention_vision.api_export import kav_export
from keras_attention_vision.applications.glimpse_network import GlimpseNetworkMixin
from keras_attention_vision.distribution import DistributedPredictMixin, global_batch_draw
from keras_attention_vision.layers.validation import (
    check_choice,
    check_number,
    check_positive_int,
)
from keras_attention_vision.losses import weighted_mean
from keras_attention_vision.presets import (
    check_weights_argument,
    load_application_weights,
    preset_arguments,
)
from keras_attention_vision.reinforce import (
    BernoulliPolicy,
    GaussianLocationPolicy,
    LearnedBaseline,
    baseline_loss,
    reinforce_loss,
    require_reinforce_backend,
)
from keras_attention_vision.saving import SeedStateMixin

STRATEGIES = ("policy", "random", "raster")


def location_to_pixel_coordinates(locations, height, width):
    """`(y, x)` in `[-1, 1]` to pixel coordinates `c = (l + 1) / 2 * size` (keras ops).

    The mapping of `GlimpseSensor` (and of
    `visualization.glimpses.location_to_pixels`, its NumPy twin)."""
    locations = ops.cast(locations, "float32")
    return ops.stack([(locations[..., 0] + 1.0) * (height / 2.0),
                      (locations[..., 1] + 1.0) * (width / 2.0)], axis=-1)


def search_rewards(locations, found, target_boxes, image_size, found_reward=1.0,
                   fixation_cost=0.02, false_found_penalty=1.0, hit_reward=0.0):
    """Per-step rewards of search episodes, and which steps were taken.

    Step `t` fixates `locations[:, t]` (it is taken when no "found" was said
    before it) and pays `fixation_cost`; if it says "found" the episode ends
    with `+found_reward` when the fixation point lies in the target's box
    (`y_min <= y < y_max`, `x_min <= x < x_max`, in pixels) and
    `-false_found_penalty` otherwise (always, when the target is absent: its
    box is empty). Never saying "found" is giving up. The first step whose
    fixation point lies in the target's box (if it is taken) also earns
    `hit_reward`: a reward for bringing the target under the fovea, whatever
    the "found" decision (0 by default).

    Args:
        locations: `(B, K, 2)` fixations `(y, x)` in `[-1, 1]`.
        found: `(B, K)` decisions in {0, 1}.
        target_boxes: `(B, 4)` pixel boxes `(y_min, x_min, y_max, x_max)`;
            all zeros for an absent target.
        image_size: `(height, width)` of the scenes in pixels.
        found_reward, fixation_cost, false_found_penalty, hit_reward: the
            reward terms.

    Returns:
        `(rewards, alive, hits)`, float32 `(B, K)` each: the reward of each
        step (0 after the episode ended), 1 for the steps taken, and 1 where
        the fixation point lies in the target's box.
    """
    height, width = image_size
    pixels = location_to_pixel_coordinates(locations, height, width)
    boxes = ops.cast(target_boxes, "float32")[:, None, :]
    hits = ops.cast((pixels[..., 0] >= boxes[..., 0]) & (pixels[..., 0] < boxes[..., 2])
                    & (pixels[..., 1] >= boxes[..., 1]) & (pixels[..., 1] < boxes[..., 3]),
                    "float32")
    found = ops.cast(found, "float32")
    # alive_t = prod_{s < t} (1 - found_s): the step is taken.
    before = ops.cumsum(found, axis=1) - found
    alive = ops.cast(before < 0.5, "float32")
    outcome = found * (hits * found_reward - (1.0 - hits) * false_found_penalty)
    first_hit = hits * ops.cast(ops.cumsum(hits, axis=1) - hits < 0.5, "float32")
    rewards = alive * (outcome - fixation_cost + hit_reward * first_hit)
    return rewards, alive, hits


def returns_to_go(rewards):
    """`G_t = sum_{s >= t} r_s` along axis 1 (float32)."""
    rewards = ops.cast(rewards, "float32")
    return ops.flip(ops.cumsum(ops.flip(rewards, axis=1), axis=1), axis=1)


def raster_fixations(height, width, spacing, num_fixations):
    """The raster scan: a row-major grid of fixations that no target can slip through.

    The rows (and columns) are `spacing` pixels apart and centred on the
    scene; there are as few as make every `spacing`-wide box that lies in the
    scene contain a grid point, so with `spacing` = the object size the scan
    fixates every object once it has run through the grid. With more than
    `num_fixations` grid points the scan is cut; with fewer it starts again.

    Args:
        height, width: the scene in pixels.
        spacing: pixels between neighbouring fixations (the object size).
        num_fixations: `K`, the length of the returned scan.

    Returns:
        float32 NumPy array `(K, 2)` of `(y, x)` in `[-1, 1]`.
    """
    spacing = check_positive_int("spacing", spacing)
    axes = []
    for size in (height, width):
        count = max(1, -(-(size - spacing + 1) // spacing))
        first = (size - (count - 1) * spacing) / 2.0
        axes.append(first + spacing * np.arange(count))
    grid = np.array([(y, x) for y in axes[0] for x in axes[1]], "float64")
    grid = grid[np.arange(num_fixations) % len(grid)]
    return np.stack([2 * grid[:, 0] / height - 1, 2 * grid[:, 1] / width - 1],
                    -1).astype("float32")


def search_metrics(found, hits, present, num_fixations=None):
    """The search figures of episodes, in NumPy.

    Args:
        found: `(N, K)` "found" decisions in {0, 1} (only the first counts).
        hits: `(N, K)` 1 where the fixation point lay in the target's box.
        present: `(N,)` whether the target is in the scene.
        num_fixations: count only the first `K'` fixations (default: all).

    Returns:
        A dict: `success_within_k` (share of scenes answered right within
        `K`: a correct "found" when the target is present, no "found" when it
        is absent), `found_rate_present` (correct "found" among scenes with
        the target), `mean_fixations_to_find` (fixations up to and including
        the correct "found", over the scenes where it was found),
        `mean_fixations_present` (the same over every scene with the target,
        a miss counting `K`), `false_found_rate` (share of all scenes with a
        "found" said away from the target), `give_up_rate_absent` (no
        "found" among the scenes without the target) and `K`.
    """
    found = np.asarray(found, "float64")
    hits = np.asarray(hits, "float64")
    present = np.asarray(present, bool)
    k = found.shape[1] if num_fixations is None else int(num_fixations)
    found, hits = found[:, :k], hits[:, :k]
    said = found.any(1)
    first = np.where(said, found.argmax(1), k)  # index of the first "found"
    correct = said & (hits[np.arange(len(found)), np.minimum(first, k - 1)] > 0)
    wrong = said & ~correct
    success = np.where(present, correct, ~said)
    steps = np.where(correct, first + 1, k).astype("float64")
    return {
        "K": k,
        "success_within_k": float(success.mean()),
        "found_rate_present": float(correct[present].mean()) if present.any() else 0.0,
        "mean_fixations_to_find": float(steps[correct].mean()) if correct.any()
        else float("nan"),
        "mean_fixations_present": float(steps[present].mean()) if present.any()
        else float("nan"),
        "false_found_rate": float(wrong.mean()),
        "give_up_rate_absent": float((~said)[~present].mean()) if (~present).any()
        else float("nan"),
    }


def oracle_found(hits):
    """The decisions of a perfect recogniser: "found" at the first fixation on the target."""
    hits = np.asarray(hits, "float64")
    first = np.cumsum(hits, axis=1) == 1
    return (first & (hits > 0)).astype("float32")


@kav_export("keras_attention_vision.applications.VisualSearchAgent")
class VisualSearchAgent(GlimpseNetworkMixin, SeedStateMixin, DistributedPredictMixin,
                        keras.Model):
    """Finds a named target in a scene with fixations learned by REINFORCE.

    The task of Minut and Mahadevan (2001): given a scene and a target class,
    make a sequence of fixations; at each one decide whether the target is
    under the fovea ("found", which ends the search) and, if not, where to
    look next. Here the fovea is the RAM retina (`GlimpseSensor`: a fine
    central patch and coarser, wider ones, the periphery). Step `t` (of at
    most `K`):

        l_t ~ N(mu_t, std^2),  mu_t = tanh(Lin(h_{t-1}))           (where to look)
        what_t = Lin(ReLU(Lin(rho(x, l_t))))
        g_t = ReLU(what_t + Lin(ReLU(Lin(l_t))) + Lin(onehot(c)))
        h_t = LSTM(g_t, h_{t-1})
        f_t ~ Bernoulli(sigmoid(s_c(what_t) + b)),  s = Lin(ReLU(.))  ("found")

    with `c` the target class: `s` gives one score per class for the glimpse
    under the fovea now, and the target's is kept. The episode ends at the
    first `f_t = 1` or after `K` fixations (giving up). Rewards
    (`search_rewards`): `-fixation_cost` per fixation, `+found_reward` for a
    "found" whose fixation point lies in the target's box,
    `-false_found_penalty` for any other "found" (always, when the target is
    absent). Both decisions are TFP distributions (`GaussianLocationPolicy`,
    `BernoulliPolicy`) trained by the REINFORCE surrogate loss with the
    returns-to-go `G_t = sum_{s>=t} r_s` and a learned baseline
    `b_t = Lin(sg(h_{t-1}))`:

        - mean_b sum_t alive_t (G_t - sg(b_t)) (w_fix log pi(l_t) + log pi(f_t))
        + mean_b mean_t (alive_t b_t - alive_t G_t)^2
        - entropy_weight * mean_b sum_t alive_t H(f_t)
        + recognition_weight * mean_b [mean_{t alive} BCE(f_t logits, hit_t)
                                       + BCE(probe+, 1) + BCE(probe-, 0)]

    `compute_loss` carries it, so `compile(optimizer)` and `fit(x=(scenes,
    targets), y=target_boxes)` train the agent on TensorFlow and JAX; every
    term is a per-episode loss reduced as Keras's losses do, so
    `sample_weight` weights them all. The last term (0 by default) is an
    optional supervised shaping of the "found" logits (see
    `recognition_loss`), as RAM's classifier is supervised; with 0 the agent
    learns from the reward alone. `w_fix` (`fixation_weight`) lets a recipe
    hold the fixation policy still while the "found" decision learns first.
    PyTorch has no TFP substrate: the constructor raises the project's clear
    error there.

    At inference (`call`, `predict`, `search`) the fixations follow the
    policy mean and "found" is said when its probability passes 0.5.
    `search(..., strategy="random" | "raster")` runs the same network on
    random fixations or on the exhaustive raster scan (`raster_fixations`),
    the baselines of the application's table.

    Args:
        input_shape: scene shape `(H, W, C)` (or `(C, H, W)` per `data_format`).
        classes: number of target classes.
        num_fixations: `K`, the most fixations per search.
        patch_size, num_scales, scale_factor: the retina (`GlimpseSensor`).
        glimpse_hidden: width of the glimpse network's hidden layers.
        glimpse_units: width of `g_t`.
        core_units: width of the LSTM state `h_t`.
        std: the fixed standard deviation of the fixation policy (in `[-1,
            1]` units).
        initial_found_probability: `P(found)` at the start of training.
        found_reward, fixation_cost, false_found_penalty: the rewards.
        hit_reward: an optional reward for the first fixation on the target
            (see `search_rewards`; 0 by default).
        entropy_weight: weight of the entropy bonus of the "found" decision.
        recognition_weight: weight of the optional supervised shaping term.
        fixation_weight: weight `w_fix` of the fixation policy's REINFORCE
            term (0 holds the fixations still).
        fixation_reward: what the fixation policy learns from: `"return"`
            (the full return, as the "found" decision) or `"hits"` (only
            `hit_reward` at the first fixation on the target and the
            fixation cost, with a baseline of its own; the "found" decision
            keeps the full return).
        data_format: `"channels_last"`, `"channels_first"` or `None`.
        seed: seed of the fixation and "found" sampling and of the probes.
        name: model name.
        weights: `None` (random initialisation), a preset name (e.g.
            `"visual_search_agent_mnist"`: the arguments not passed are the
            preset's, the ones passed must agree with it) or the path of a
            `.weights.h5` file of an agent of the same configuration.

    Call arguments:
        inputs: `(scenes, targets)`: scenes `(B, H, W, C)` (or `(B, C, H,
            W)`) and target classes `(B,)` or `(B, 1)` in `[0, classes)`.
        training: `True` samples both decisions and returns the rollout dict
            used by `compute_loss`; otherwise the greedy search.

    Returns:
        At inference a dict: `locations` `(B, K, 2)` `(y, x)` in `[-1, 1]`,
        `found_probabilities` `(B, K)` and `found` `(B, K)` (only the first
        "found" counts; later steps are not taken).

    Raises:
        ValueError: for a bad argument, a scene of the wrong rank, or a
            target class outside `[0, classes)`, quoting what it received.
        UnsupportedBackendError: on PyTorch.

    Example:

    ```python
    data = make_search_scenes(x_train, y_train, 4000, seed=0)
    agent = VisualSearchAgent(num_fixations=10, seed=0)
    agent.compile(optimizer="adam")
    agent.fit((data["scenes"], data["targets"]), data["target_boxes"], epochs=5)
    figures = agent.search(test["scenes"], test["targets"], test["target_boxes"])
    ```
    """

    @preset_arguments("VisualSearchAgent")
    def __init__(self, input_shape=(100, 100, 1), classes=10, num_fixations=10,
                 patch_size=8, num_scales=4, scale_factor=2, glimpse_hidden=128,
                 glimpse_units=128, core_units=128, std=0.15,
                 initial_found_probability=0.05, found_reward=1.0, fixation_cost=0.02,
                 false_found_penalty=1.0, hit_reward=0.0, entropy_weight=0.01,
                 recognition_weight=0.0,
                 fixation_weight=1.0, fixation_reward="return", data_format=None, seed=None,
                 name="visual_search_agent", weights=None, **kwargs):
        require_reinforce_backend()
        check_weights_argument(weights, "VisualSearchAgent")
        super().__init__(name=name, **kwargs)
        if not isinstance(input_shape, (list, tuple)) or len(tuple(input_shape)) != 3:
            raise ValueError(
                "`input_shape` must be (height, width, channels) or (channels, height, "
                f"width). Received: input_shape={input_shape!r}"
            )
        self.image_shape = tuple(int(s) for s in input_shape)
        self.classes = check_positive_int("classes", classes)
        self.num_fixations = check_positive_int("num_fixations", num_fixations)
        self.glimpse_hidden = check_positive_int("glimpse_hidden", glimpse_hidden)
        self.glimpse_units = check_positive_int("glimpse_units", glimpse_units)
        self.core_units = check_positive_int("core_units", core_units)
        self.found_reward = check_number("found_reward", found_reward, minimum=0)
        self.fixation_cost = check_number("fixation_cost", fixation_cost, minimum=0)
        self.false_found_penalty = check_number("false_found_penalty",
                                                false_found_penalty, minimum=0)
        self.hit_reward = check_number("hit_reward", hit_reward, minimum=0)
        self.entropy_weight = check_number("entropy_weight", entropy_weight, minimum=0)
        self.recognition_weight = check_number("recognition_weight", recognition_weight,
                                               minimum=0)
        self.fixation_weight = check_number("fixation_weight", fixation_weight, minimum=0)
        self.fixation_reward = check_choice("fixation_reward", fixation_reward,
                                            ("return", "hits"))
        p = initial_found_probability
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p < 1:
            raise ValueError("`initial_found_probability` must be a number in (0, 1). "
                             f"Received: initial_found_probability={p!r}")
        self.seed = seed
        self._make_glimpse_network(patch_size, num_scales, scale_factor, data_format,
                                   glimpse_hidden, glimpse_units)
        if self.data_format == "channels_last":
            self.height, self.width = self.image_shape[:2]
        else:
            self.height, self.width = self.image_shape[1:]
        seeds = (None, None) if seed is None else (seed, seed + 1)
        self.location_policy = GaussianLocationPolicy(
            units=2, std=std, seed=seeds[0], name="fixation_policy")
        self.found_policy = BernoulliPolicy(
            initial_probability=initial_found_probability, kernel_initializer="ones",
            seed=seeds[1], name="found_policy")
        dense = keras.layers.Dense
        self.target_embedding = dense(glimpse_units, use_bias=False, name="target_embedding")
        self.found_scores = dense(classes, name="found_scores")
        self.seed_generator = keras.random.SeedGenerator(None if seed is None else seed + 2)
        self.core_cell = keras.layers.LSTMCell(core_units, name="core_lstm")
        self.baseline_net = LearnedBaseline(name="baseline")
        if self.fixation_reward == "hits":
            self.fixation_baseline_net = LearnedBaseline(name="fixation_baseline")
        self.reward_tracker = keras.metrics.Mean(name="reward")
        self.success_tracker = keras.metrics.Mean(name="success")
        if weights is not None:
            self.build()
            load_application_weights(self, weights, "VisualSearchAgent", self.get_config())

    # Keras model plumbing -------------------------------------------------------

    def get_config(self):
        return {
            "input_shape": self.image_shape,
            "classes": self.classes,
            "num_fixations": self.num_fixations,
            "patch_size": self.sensor.patch_size,
            "num_scales": self.sensor.num_scales,
            "scale_factor": self.sensor.scale_factor,
            "glimpse_hidden": self.glimpse_hidden,
            "glimpse_units": self.glimpse_units,
            "core_units": self.core_units,
            "std": self.location_policy.std,
            "initial_found_probability": self.found_policy.initial_probability,
            "found_reward": self.found_reward,
            "fixation_cost": self.fixation_cost,
            "false_found_penalty": self.false_found_penalty,
            "hit_reward": self.hit_reward,
            "entropy_weight": self.entropy_weight,
            "recognition_weight": self.recognition_weight,
            "fixation_weight": self.fixation_weight,
            "fixation_reward": self.fixation_reward,
            "data_format": self.data_format,
            "seed": self.seed,
            "name": self.name,
        }

    def build(self, input_shape=None):
        if self.built:
            return
        self._build_glimpse_network()
        self.location_policy.build((None, self.core_units))
        self.found_policy.build((None, self.classes))
        self.target_embedding.build((None, self.classes))
        self.found_scores.build((None, self.glimpse_units))
        self.core_cell.build((None, self.glimpse_units))
        self.baseline_net.build((None, self.core_units))
        if self.fixation_reward == "hits":
            self.fixation_baseline_net.build((None, self.core_units))
        self.built = True

    # Input checks ----------------------------------------------------------------

    def _split_inputs(self, inputs):
        if isinstance(inputs, dict):
            inputs = (inputs.get("scenes"), inputs.get("targets"))
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(
                f"{type(self).__name__} expects inputs (scenes, targets). "
                f"Received: inputs of type {type(inputs).__name__}"
            )
        scenes, targets = inputs
        if len(scenes.shape) != 4 or tuple(scenes.shape[1:]) != self.image_shape:
            raise ValueError(
                f"{type(self).__name__} expects scenes of shape (batch,) + "
                f"{self.image_shape}. Received: scenes.shape={tuple(scenes.shape)}"
            )
        if len(targets.shape) == 2 and targets.shape[1] == 1:
            targets = ops.reshape(targets, (-1,))
        if len(targets.shape) != 1:
            raise ValueError(
                f"{type(self).__name__} expects target classes of shape (batch,) or "
                f"(batch, 1). Received: targets.shape={tuple(targets.shape)}"
            )
        self._check_target_values(targets)
        return scenes, targets

    def _check_target_values(self, targets):
        """Checks concrete target classes (NumPy or eager tensors); traced ones pass."""
        try:
            values = np.asarray(ops.convert_to_numpy(targets))
        except Exception:  # a symbolic tensor inside a compiled function
            return
        if values.size and (values.min() < 0 or values.max() >= self.classes
                            or np.any(values != np.round(values))):
            bad = values[(values < 0) | (values >= self.classes)
                         | (values != np.round(values))].ravel()[:5]
            raise ValueError(
                f"Target classes must be integers in [0, {self.classes}). "
                f"Received: targets containing {bad.tolist()}"
            )

    def _check_fit_inputs(self, x):
        if isinstance(x, (list, tuple)) and len(x) == 2:
            scenes, targets = x
            if hasattr(scenes, "shape") and hasattr(targets, "shape"):
                scenes, targets = np.asarray(scenes), np.asarray(targets)
                self._split_inputs((scenes, targets))

    def fit(self, x=None, *args, **kwargs):
        self._check_fit_inputs(x)
        return super().fit(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        self._check_fit_inputs(x)
        return super().evaluate(x, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        self._check_fit_inputs(x)
        return super().predict(x, *args, **kwargs)

    # The rollout ----------------------------------------------------------------

    def rollout(self, scenes, targets, sample=False, locations=None, return_glimpses=False):
        """Runs `K` fixations on `scenes` looking for `targets`.

        Args:
            scenes: `(B, H, W, C)` (or channels first).
            targets: `(B,)` target classes.
            sample: sample both decisions (training) or take the greedy ones.
            locations: optional `(B, K, 2)` or `(K, 2)` fixations to follow
                instead of the policy's (the baselines); the "found" decision
                is still the agent's.
            return_glimpses: also return the retina outputs.

        Returns:
            A dict: `means` and `locations` `(B, K, 2)`, `found_logits` and
            `found` `(B, K)`, `baselines` `(B, K)` (`b_t` from `h_{t-1}`),
            and `glimpses` `(B, K, ...)` if asked.
        """
        scenes = ops.cast(scenes, self.compute_dtype)
        targets = ops.cast(ops.reshape(targets, (-1,)), "int32")
        batch = ops.shape(scenes)[0]
        one_hot = ops.one_hot(targets, self.classes, dtype=self.compute_dtype)
        target_vec = self.target_embedding(one_hot)
        if locations is not None:
            locations = ops.cast(locations, self.compute_dtype)
            if len(locations.shape) == 2:
                locations = ops.broadcast_to(locations[None],
                                             (batch,) + tuple(locations.shape))
        h = ops.zeros((batch, self.core_units), self.compute_dtype)
        state = [h, h]
        out = {k: [] for k in ("means", "locations", "found_logits", "found",
                               "baselines", "fixation_baselines", "glimpses")}
        for t in range(self.num_fixations):
            mean, location = self.location_policy(h, sample=sample)
            if locations is not None:
                location = locations[:, t]
            out["baselines"].append(self.baseline_net(h))
            if self.fixation_reward == "hits":
                out["fixation_baselines"].append(self.fixation_baseline_net(h))
            glimpse = self.sensor([scenes, location])
            if return_glimpses:
                out["glimpses"].append(glimpse)
            what = self._what(glimpse)
            g = ops.relu(what + self._where(location) + target_vec)  # g_t + target
            h, state = self.core_cell(g, state)
            state = list(state)
            logits, found = self.found_policy(self._found_features(what, one_hot),
                                              sample=sample)
            out["means"].append(mean)
            out["locations"].append(location)
            out["found_logits"].append(logits)
            out["found"].append(found)
        out = {k: v for k, v in out.items() if v}
        return {k: ops.stack(v, axis=1) for k, v in out.items()}

    def call(self, inputs, training=None):
        scenes, targets = self._split_inputs(inputs)
        if training:
            return self.rollout(scenes, targets, sample=True)
        out = self.rollout(scenes, targets, sample=False)
        return {"locations": ops.cast(out["locations"], "float32"),
                "found_probabilities": ops.sigmoid(out["found_logits"]),
                "found": out["found"]}

    def compute_output_spec(self, inputs, training=None):
        scenes, _ = self._split_inputs(inputs)
        batch, k = scenes.shape[0], self.num_fixations
        return {"locations": keras.KerasTensor((batch, k, 2), "float32"),
                "found_probabilities": keras.KerasTensor((batch, k), "float32"),
                "found": keras.KerasTensor((batch, k), "float32")}

    # The loss --------------------------------------------------------------------

    def rewards(self, locations, found, target_boxes):
        """`search_rewards` with this agent's scene size and reward terms."""
        return search_rewards(locations, found, target_boxes, (self.height, self.width),
                              self.found_reward, self.fixation_cost,
                              self.false_found_penalty, self.hit_reward)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        boxes = ops.reshape(ops.cast(y, "float32"), (-1, 4))
        if sample_weight is not None:
            sample_weight = ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
        rewards, alive, hits = self.rewards(y_pred["locations"], y_pred["found"], boxes)
        episode_return = ops.sum(rewards, axis=1)
        outcome = ops.max(y_pred["found"] * alive * hits, axis=1)  # a correct "found"
        said = ops.max(y_pred["found"] * alive, axis=1)
        present = ops.cast(boxes[:, 2] > boxes[:, 0], "float32")
        success = present * outcome + (1.0 - present) * (1.0 - said)
        self.reward_tracker.update_state(episode_return, sample_weight)
        self.success_tracker.update_state(success, sample_weight)
        if "baselines" not in y_pred:  # evaluate(): the greedy search's negative return
            return weighted_mean(-episode_return, sample_weight)
        returns = returns_to_go(rewards)
        fixation_log_probs = alive * self.fixation_weight * self.location_policy.log_prob(
            y_pred["means"], y_pred["locations"])
        found_log_probs = alive * self.found_policy.log_prob(y_pred["found_logits"],
                                                             y_pred["found"])
        baselines = y_pred["baselines"]
        if self.fixation_reward == "return":
            loss = reinforce_loss(returns, fixation_log_probs + found_log_probs, baselines,
                                  sample_weight)
        else:  # the fixations learn from the hit reward and the fixation cost only
            first_hit = hits * ops.cast(ops.cumsum(hits, axis=1) - hits < 0.5, "float32")
            fixation_returns = returns_to_go(
                alive * (self.hit_reward * first_hit - self.fixation_cost))
            fixation_baselines = y_pred["fixation_baselines"]
            loss = (reinforce_loss(fixation_returns, fixation_log_probs, fixation_baselines,
                                   sample_weight)
                    + reinforce_loss(returns, found_log_probs, baselines, sample_weight)
                    + baseline_loss(fixation_returns * alive, fixation_baselines * alive,
                                    sample_weight))
        loss = loss + baseline_loss(returns * alive, baselines * alive, sample_weight)
        if self.entropy_weight:
            entropy = ops.sum(alive * self.found_policy.entropy(y_pred["found_logits"]), 1)
            loss = loss - self.entropy_weight * weighted_mean(entropy, sample_weight)
        if self.recognition_weight:
            loss = loss + self.recognition_weight * self.recognition_loss(
                x, boxes, y_pred["found_logits"], hits, alive, sample_weight)
        return loss

    def recognition_probes(self, scenes, targets, boxes):
        """The "found" logits of two probe glimpses per scene, for the shaping term.

        The positive probe fixates a point drawn uniformly within 0.4 box
        sides of the target's centre (inside the box) and asks for the true
        target; the negative probe looks at the same point but asks for
        another class, drawn uniformly. The "found" head reads only the
        current glimpse, so these are the logits a search would have there.

        Returns:
            `(positive_logits, negative_logits, locations, other_targets)`:
            `(B,)`, `(B,)`, `(B, 2)` and `(B,)`.
        """
        boxes = ops.cast(boxes, "float32")
        batch = ops.shape(boxes)[0]
        # Under tf.distribute each replica takes its rows of one global draw.
        jitter = global_batch_draw(lambda shape: keras.random.uniform(
            shape, -0.4, 0.4, seed=self.seed_generator), (batch, 2))
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2.0 + jitter * (boxes[:, 2:] - boxes[:, :2])
        locations = ops.stack([2.0 * centre[:, 0] / self.height - 1.0,
                               2.0 * centre[:, 1] / self.width - 1.0], axis=-1)
        shift = global_batch_draw(lambda shape: keras.random.randint(
            shape, 1, self.classes, seed=self.seed_generator), (batch,))
        targets = ops.cast(ops.reshape(targets, (-1,)), "int32")
        others = (targets + ops.cast(shift, "int32")) % self.classes
        return (self.found_logits_at(scenes, targets, locations),
                self.found_logits_at(scenes, others, locations), locations, others)

    def found_logits_at(self, scenes, targets, locations):
        """The "found" logits `(B,)` of one glimpse per scene at `locations` `(B, 2)`."""
        scenes = ops.cast(scenes, self.compute_dtype)
        locations = ops.cast(locations, self.compute_dtype)
        one_hot = ops.one_hot(ops.cast(ops.reshape(targets, (-1,)), "int32"), self.classes,
                              dtype=self.compute_dtype)
        glimpse = self.sensor([scenes, locations])
        what = self._what(glimpse)
        return self.found_policy(self._found_features(what, one_hot), sample=False)[0]

    def _found_features(self, what, one_hot):
        # One score per class from the current glimpse; the target's is kept.
        return self.found_scores(ops.relu(what)) * one_hot

    def recognition_loss(self, x, boxes, found_logits, hits, alive, sample_weight=None):
        """The optional supervised shaping of the "found" logits.

        Per episode, the mean binary cross-entropy of the "found" logits of the
        steps taken against whether the fixation is on the target, plus the
        cross-entropies of the two `recognition_probes` (target present only)
        against 1 and 0; reduced over episodes as Keras's losses are.
        """
        def bce(logits, labels):
            logits = ops.cast(logits, "float32")
            return (ops.maximum(logits, 0.0) - logits * labels
                    + ops.log1p(ops.exp(-ops.abs(logits))))

        scenes, targets = self._split_inputs(x)
        present = ops.cast(boxes[:, 2] > boxes[:, 0], "float32")
        positive, negative, _, _ = self.recognition_probes(scenes, targets, boxes)
        steps = ops.sum(alive * bce(found_logits, hits), 1) / ops.maximum(
            ops.sum(alive, 1), 1.0)
        probes = present * (bce(positive, 1.0) + bce(negative, 0.0))
        return weighted_mean(steps + probes, sample_weight)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return self.get_metrics_result()

    # Search and its baselines ---------------------------------------------------

    def search(self, scenes, targets, target_boxes, strategy="policy", seed=0,
               batch_size=250, return_paths=False):
        """Runs greedy searches and returns their figures (`search_metrics`).

        Args:
            scenes, targets: as in `call` (NumPy).
            target_boxes: `(N, 4)` pixel boxes, zeros for an absent target.
            strategy: `"policy"` (the learned fixations), `"random"` (fixations
                uniform over the scene) or `"raster"` (`raster_fixations` with
                the object size, 28, as spacing); the "found" decision is the
                agent's in every case.
            seed: seed of the random fixations.
            batch_size: scenes per call.
            return_paths: also return `locations`, `found` and `hits` arrays.

        Returns:
            The dict of `search_metrics` (plus `oracle_*` figures: the same
            fixations with a perfect recogniser that says "found" at the first
            fixation on the target), and the arrays if asked.
        """
        if strategy not in STRATEGIES:
            raise ValueError(f"`strategy` must be one of {STRATEGIES}. "
                             f"Received: strategy={strategy!r}")
        scenes = np.asarray(scenes)
        targets = np.asarray(targets).reshape(-1)
        self._split_inputs((scenes, targets))
        boxes = np.asarray(target_boxes, "float32").reshape(-1, 4)
        k, n = self.num_fixations, len(scenes)
        fixed = None
        if strategy == "random":
            fixed = np.random.default_rng(seed).uniform(-1, 1, (n, k, 2)).astype("float32")
        elif strategy == "raster":
            from keras_attention_vision.datasets.cluttered_mnist import DIGIT_SIZE

            fixed = np.broadcast_to(raster_fixations(self.height, self.width, DIGIT_SIZE,
                                                     k), (n, k, 2))
        paths = {"locations": [], "found": []}
        for start in range(0, n, batch_size):
            end = min(n, start + batch_size)
            chunk = None if fixed is None else ops.convert_to_tensor(
                np.ascontiguousarray(fixed[start:end]))
            out = self.rollout(ops.convert_to_tensor(scenes[start:end]),
                               ops.convert_to_tensor(targets[start:end]),
                               sample=False, locations=chunk)
            paths["locations"].append(ops.convert_to_numpy(out["locations"]))
            paths["found"].append(ops.convert_to_numpy(out["found"]))
        locations = np.concatenate(paths["locations"]).astype("float32")
        found = np.concatenate(paths["found"])
        _, _, hits = self.rewards(locations, found, boxes)
        hits = np.asarray(ops.convert_to_numpy(hits))
        present = boxes[:, 2] > boxes[:, 0]
        figures = search_metrics(found, hits, present)
        oracle = search_metrics(oracle_found(hits), hits, present)
        figures.update({f"oracle_{key}": value for key, value in oracle.items()
                        if key != "K"})
        if return_paths:
            figures.update(locations=locations, found=found, hits=hits)
        return figures


__all__ = ["VisualSearchAgent", "oracle_found", "raster_fixations", "returns_to_go",
           "search_metrics", "search_rewards"]
