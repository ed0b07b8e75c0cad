"""Training on many devices with the engines that exist: `tf.distribute` and `keras.distribution`.

Nothing here distributes anything by itself. TensorFlow's
`tf.distribute.MirroredStrategy` / `TPUStrategy` and Keras's
`keras.distribution.DataParallel` / `ModelParallel` (JAX) do the work; this
module holds what our models need to be correct under them, and two helpers
for users:

- Under `tf.distribute` every replica runs `compute_loss` on its own slice of
  the global batch, and the gradients are *summed* over the replicas. Keras's
  own losses divide by the number of replicas; `replica_scaled` does the same
  for our losses (`losses.weighted_mean` calls it), so the REINFORCE
  surrogate, the baseline MSE and the likelihoods are means over the global
  batch. `cross_replica_sum` gives the global sums that the moving-average
  baselines need, and `global_batch_draw` gives each replica its own rows of
  one draw for the global batch, so replicas do not all sample the same
  locations or latent vectors.
- Under `keras.distribution` (JAX) the train step is one `jax.jit` program over
  the global batch (GSPMD), so these helpers are the identity there.
- `default_layout_map(model_or_name, device_mesh)` returns a
  `keras.distribution.LayoutMap` that shards the attention and feed-forward
  kernels of `NonLocalResNet50`, `ImageTransformer` and `SAGAN` over the
  mesh's `"model"` axis, for `keras.distribution.ModelParallel`.
- `pick_engine()` chooses the engine for the active backend and the devices
  present (what `kav train APP --distribute` uses).
"""

import contextlib
import dataclasses
import os

import keras
from keras import ops

from keras_attention_vision.api_export import kav_export

# ----------------------------------------------------------------------------------
# Replica arithmetic for tf.distribute (the identity everywhere else)
# ----------------------------------------------------------------------------------


def _tf_replica_context():
    """The TF replica context of a multi-replica step, or `None`."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        return None
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def replicas_in_sync():
    """Number of replicas that run the current step together.

    Returns:
        `num_replicas_in_sync` inside a `tf.distribute` replica function with
        more than one replica; 1 otherwise (eager code, one device, and JAX,
        whose distributed step is one program over the global batch).
    """
    context = _tf_replica_context()
    return 1 if context is None else int(context.num_replicas_in_sync)


def replica_scaled(value):
    """`value / replicas_in_sync()`: a per-replica mean made a share of the global mean.

    Each `tf.distribute` replica computes its loss on `B / R` examples and the
    gradients of the `R` replicas are summed, so a loss that is a mean over
    the replica's examples must be divided by `R` (what Keras's own losses do)
    for the step to follow the mean over the global batch of `B`. The
    identity outside a multi-replica step.

    Args:
        value: a float tensor (a loss).

    Returns:
        The scaled tensor, same dtype.
    """
    replicas = replicas_in_sync()
    if replicas == 1:
        return value
    return value * ops.cast(1.0 / replicas, value.dtype)


def cross_replica_sum(value):
    """Sums `value` over the replicas of a `tf.distribute` step (the identity elsewhere).

    Under JAX's `keras.distribution` a reduction over the batch axis is
    already global, so nothing is needed there.

    Args:
        value: a tensor with the same shape on every replica.

    Returns:
        The sum over replicas (every replica receives it).
    """
    context = _tf_replica_context()
    if context is None:
        return value
    import tensorflow as tf

    # Through merge_call, like Keras's gradient aggregation: collectives issued
    # from the replica threads directly can be launched in a different order
    # than the gradients' on another device (a "shape mismatch in the
    # collective instance" error).
    def reduce(strategy, per_replica):
        return strategy.extended.reduce_to(tf.distribute.ReduceOp.SUM, per_replica,
                                           destinations=per_replica)

    return context.merge_call(reduce, args=(value,))


def global_batch_draw(draw, shape):
    """Draws random numbers for the global batch; returns this replica's rows.

    Each `tf.distribute` replica holds a copy of a layer's `SeedGenerator`, so
    a plain `keras.random.normal((B_local, ...), seed=generator)` gives every
    replica the *same* numbers. Here each replica draws the array for the
    global batch (`R * B_local` rows, same seed on every replica) and keeps
    rows `[r * B_local, (r + 1) * B_local)`: the replicas' samples are
    independent, and together they are the very draw one device makes for
    the global batch. One call of `draw` per step, as before, so the
    generator's state advances as on one device.

    Args:
        draw: a function of a shape, e.g.
            `lambda s: keras.random.normal(s, seed=self.seed_generator)`.
        shape: the local shape, batch first.

    Returns:
        The local tensor of shape `shape`.
    """
    context = _tf_replica_context()
    if context is None:
        return draw(shape)
    import tensorflow as tf

    replicas = context.num_replicas_in_sync
    local = shape[0]
    full = draw((local * replicas,) + tuple(shape[1:]))
    replica = tf.cast(context.replica_id_in_sync_group, "int32")
    start = replica * tf.cast(local, "int32")
    return tf.gather(full, tf.range(start, start + tf.cast(local, "int32")))


def global_batch_apply(fn, tensor):
    """Applies a random `fn` to the global batch; returns this replica's rows.

    For samplers that take a per-example tensor (e.g. TFP's
    `Categorical(logits).sample(seed=...)`): under `tf.distribute` the
    replicas' `tensor`s are gathered along the batch axis, every replica
    applies `fn` (same seed) to the global batch and keeps its own rows, so
    the samples are those one device would draw for the global batch.
    Elsewhere this is `fn(tensor)`.

    Args:
        fn: a function of a batch-first tensor that returns a batch-first
            tensor with as many rows.
        tensor: this replica's rows, batch first.

    Returns:
        `fn` of the global batch, this replica's rows.
    """
    context = _tf_replica_context()
    if context is None:
        return fn(tensor)
    import tensorflow as tf

    local = tf.shape(tensor)[0]
    full = fn(context.merge_call(lambda strategy, t: strategy.gather(t, axis=0),
                                 args=(tensor,)))
    start = tf.cast(context.replica_id_in_sync_group, "int32") * local
    return tf.gather(full, tf.range(start, start + local))


def synchronize_batch_normalization(model):
    """Makes every `BatchNormalization` layer of `model` use global batch statistics.

    Under `tf.distribute` a batch-norm layer normalises each replica's slice
    with that slice's mean and variance, so a step on 2 replicas differs from
    the same step on one device. Keras's `synchronized=True` all-reduces the
    moments instead. Only TensorFlow needs this: under JAX's
    `keras.distribution` the moments are over the global batch already, so
    this function then changes nothing.

    Args:
        model: a Keras model or layer.

    Returns:
        The number of batch-norm layers switched (0 on backends other than
        TensorFlow).
    """
    if keras.backend.backend() != "tensorflow":
        return 0
    count = 0
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
            count += 1
    return count


class DistributedPredictMixin:
    """`predict` under `keras.distribution` (JAX) whatever the output shapes.

    Mix in before `keras.Model`. Keras's JAX predict step is
    `jax.jit(step, donate_argnums=0)` with the outputs first and the state
    (the trainable and non-trainable variables, donated) after them. With
    more than one device, JAX 0.4 pairs each donated buffer with the *first*
    output of the same global shape and dtype, before the shardings are
    known: when a batch-sharded output has the global shape of a replicated
    variable (the RAM's `(B, classes)` probabilities and its classifier
    kernel `(core_units, classes)` at `B = core_units`; the visual search
    agent's `(B, K)` "found" outputs and a `(B, K)` kernel) the variable is
    aliased to the output, and XLA refuses the program ("Expected aliased
    input ... and output ... to have the same size"), after the variables'
    buffers were donated, so the model is unusable afterwards. A plain
    Keras model with such shapes fails the same way.

    Here the state comes first among the jitted step's outputs, so each
    donated variable pairs with its own output (the same buffer, no copy),
    and the outputs with none. Elsewhere (one device, TensorFlow, eager or
    not jit-compiled) Keras's own predict function is used.
    """

    def make_predict_function(self, force=False):
        if (keras.backend.backend() != "jax" or keras.distribution.distribution() is None
                or self.run_eagerly or not self.jit_compile):
            return super().make_predict_function(force)
        if self.predict_function is not None and not force:
            return self.predict_function
        from keras.src.backend.jax import trainer as jax_trainer

        def state_first_step(state, data):
            outputs, non_trainable_variables = self.predict_step(state, data)
            return (state[0], non_trainable_variables), outputs

        trainable, non_trainable, _, _ = self._get_state_sharding_spec()
        jitted = jax_trainer.jit(state_first_step, donate_argnums=0,
                                 out_shardings=((trainable, non_trainable), None))

        def predict_step(state, data):
            state, outputs = jitted(state, data)
            return outputs, state

        self.predict_function = self._make_function(predict_step,
                                                    concatenate_outputs=True)
        return self.predict_function


# ----------------------------------------------------------------------------------
# Model parallelism (keras.distribution.ModelParallel, JAX)
# ----------------------------------------------------------------------------------

#: Regexes on variable paths -> the axes of the kernel to put on the "model"
#: mesh axis ("model") or to replicate (None). `LayoutMap` matches a path with
#: `re.fullmatch`, hence the leading `.*` (the model's name, if any).
_LAYOUT_RULES = {
    # Image Transformer: per-head projections (hidden, heads, head_dim) are split
    # by head; the output projection (heads, head_dim, hidden) on its head axis;
    # the feed-forward network Megatron-style; the 256-way head by class.
    "image_transformer": (
        (r".*attention_\d+/(query|key|value)/kernel", (None, "model", None)),
        (r".*attention_\d+/(query|key|value)/bias", ("model", None)),
        (r".*attention_\d+/attention_output/kernel", ("model", None, None)),
        (r".*(layer|encoder_layer)_\d+/ffn_hidden/kernel", (None, "model")),
        (r".*(layer|encoder_layer)_\d+/ffn_hidden/bias", ("model",)),
        (r".*(layer|encoder_layer)_\d+/ffn_output/kernel", ("model", None)),
    ),
    # Non-local ResNet-50: theta, phi, g (C -> C/2) by output channel, W_z
    # (C/2 -> C) by input channel; ResNet's 3x3 convolutions by output channel.
    "non_local_resnet50": (
        (r".*_nonlocal/(theta|phi|g)/kernel", (None, "model")),
        (r".*_nonlocal/(theta|phi|g)/bias", ("model",)),
        (r".*_nonlocal/w_z/kernel", ("model", None)),
        (r".*conv\d_block\d+_2_conv/kernel", (None, None, None, "model")),
    ),
    # SAGAN (generator and discriminator alike): query, key, value by output
    # channel, the output projection by input channel.
    "sagan": (
        (r".*self_attention/(query|key|value)_sn/(query|key|value)/kernel", (None, "model")),
        (r".*self_attention/output_sn/output/kernel", ("model", None)),
    ),
}

#: The model names `default_layout_map` knows (a model's `.name`, or these).
LAYOUT_MODELS = tuple(_LAYOUT_RULES)


def _layout_key(model_or_name):
    name = model_or_name if isinstance(model_or_name, str) else getattr(
        model_or_name, "name", None)
    if isinstance(name, str):
        key = name.lower()
        for known in LAYOUT_MODELS:
            if key == known or key.startswith(known):
                return known
        class_name = type(model_or_name).__name__.lower()
        if not isinstance(model_or_name, str) and class_name in LAYOUT_MODELS:
            return class_name
    raise ValueError(
        "`model_or_name` must be one of the models with a default layout map, "
        f"{LAYOUT_MODELS}, by name or as a model whose name starts with one. "
        f"Received: model_or_name={model_or_name!r}"
    )


@kav_export("keras_attention_vision.distribution.default_layout_map")
def default_layout_map(model_or_name, device_mesh, model_axis="model"):
    """A `keras.distribution.LayoutMap` that shards a large model's attention kernels.

    For `keras.distribution.ModelParallel` (JAX). The map shards, over the
    mesh's `model_axis`:

    - `"image_transformer"`: the query/key/value kernels by head, the
      attention output projection by head, the feed-forward network
      (first kernel by column, second by row);
    - `"non_local_resnet50"`: the non-local blocks' theta/phi/g kernels by
      output channel and W_z by input channel, and ResNet's 3x3 convolution
      kernels by output channel;
    - `"sagan"`: the self-attention query/key/value kernels by output
      channel, its output projection by input channel, in the generator and
      the discriminator.

    Every other variable is replicated. The sharded dimension must be
    divisible by the size of `model_axis` (heads, channels), as JAX requires.
    Build the model inside the distribution's scope, so its variables are
    created with these layouts.

    Args:
        model_or_name: a model (its `name` is used) or one of
            `"image_transformer"`, `"non_local_resnet50"`, `"sagan"`.
        device_mesh: a `keras.distribution.DeviceMesh` with an axis named
            `model_axis` (and usually a `"batch"` axis).
        model_axis: the name of the mesh axis the kernels are split over.

    Returns:
        A `keras.distribution.LayoutMap`.

    Raises:
        ValueError: for a model without a default map, or a mesh that has
            no `model_axis`.

    Example:

    ```python
    devices = keras.distribution.list_devices()          # e.g. 8 devices
    mesh = keras.distribution.DeviceMesh((2, 4), ["batch", "model"], devices)
    layout_map = default_layout_map("image_transformer", mesh)
    distribution = keras.distribution.ModelParallel(
        layout_map=layout_map, batch_dim_name="batch")
    with distribution.scope():
        model = ImageTransformer(hidden_size=256, num_heads=8)
        model.compile(optimizer="adam")
        model.fit(images, epochs=10, batch_size=64)
    ```
    """
    key = _layout_key(model_or_name)
    axis_names = tuple(getattr(device_mesh, "axis_names", ()))
    if model_axis not in axis_names:
        raise ValueError(
            f"`device_mesh` must have an axis named {model_axis!r} to shard the kernels "
            f"over. Received: axis_names={axis_names!r}"
        )
    layout_map = keras.distribution.LayoutMap(device_mesh)
    for pattern, axes in _LAYOUT_RULES[key]:
        layout_map[pattern] = tuple(model_axis if a == "model" else a for a in axes)
    return layout_map


# ----------------------------------------------------------------------------------
# Choosing the engine (kav train --distribute)
# ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Engine:
    """The distribution engine chosen by `pick_engine`.

    Attributes:
        name: `"MirroredStrategy"`, `"TPUStrategy"`, `"DataParallel"` or
            `"default"` (one device, nothing to distribute).
        backend: the Keras backend.
        devices: the device names the engine uses.
        strategy: the `tf.distribute.Strategy` (TensorFlow) or the
            `keras.distribution.Distribution` (JAX); `None` for `"default"`.
    """

    name: str
    backend: str
    devices: tuple
    strategy: object = None

    @property
    def num_replicas(self):
        """How many replicas share each global batch."""
        return max(len(self.devices), 1) if self.strategy is not None else 1

    def describe(self):
        """One line for logs: the engine and its devices."""
        return (f"{self.name} on {self.num_replicas} replica(s) "
                f"({self.backend}: {', '.join(self.devices) or 'one device'})")

    @contextlib.contextmanager
    def scope(self):
        """Builds, compiles and fits models on this engine inside the block."""
        if self.strategy is None:
            yield self
        else:
            with self.strategy.scope():
                yield self


def _tf_engine(devices):
    import tensorflow as tf

    if devices is None:
        tpus = tf.config.list_logical_devices("TPU")
        tpu_name = os.environ.get("TPU_NAME")
        if tpus or tpu_name:
            # TPU cores become visible once the TPU system is initialised
            # (TPU_NAME: the TPU's name, "local" on a Cloud TPU VM).
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_name or "")
            if not tpus:
                tf.config.experimental_connect_to_cluster(resolver)
                tf.tpu.experimental.initialize_tpu_system(resolver)
                tpus = tf.config.list_logical_devices("TPU")
            strategy = tf.distribute.TPUStrategy(resolver)
            return Engine("TPUStrategy", "tensorflow", tuple(d.name for d in tpus),
                          strategy)
        gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        devices = gpus if gpus else cpus
    devices = tuple(devices)
    if len(devices) < 2:
        return Engine("default", "tensorflow", devices)
    return Engine("MirroredStrategy", "tensorflow", devices,
                  tf.distribute.MirroredStrategy(list(devices)))


def _jax_engine(devices):
    if devices is None:
        devices = keras.distribution.list_devices()
    devices = tuple(devices)
    if len(devices) < 2:
        return Engine("default", "jax", devices)
    return Engine("DataParallel", "jax", devices,
                  keras.distribution.DataParallel(devices=list(devices)))


@kav_export("keras_attention_vision.distribution.pick_engine")
def pick_engine(devices=None):
    """Chooses the data-parallel engine for the active backend and the devices present.

    - TensorFlow: `tf.distribute.TPUStrategy` when TPU devices are visible or
      the `TPU_NAME` environment variable names a TPU (`"local"` on a Cloud
      TPU VM; not tested here, no TPU);
      otherwise `tf.distribute.MirroredStrategy` over the GPUs, or over the
      logical CPU devices when there is no GPU (several logical CPUs are
      how tests simulate devices; on one physical CPU they give no speed-up).
    - JAX: `keras.distribution.DataParallel` over `keras.distribution.list_devices()`
      (every process's devices in a multi-host job, once
      `keras.distribution.initialize()` has run).
    - One device: the `"default"` engine, whose scope changes nothing.

    Args:
        devices: `None` (discover them) or the device names to use
            (`"/gpu:0"` style on TensorFlow, `"cpu:0"` style on JAX).

    Returns:
        An `Engine`: use `with engine.scope():` around building, compiling
        and fitting the model.

    Raises:
        ValueError: on PyTorch (Keras's distribution API and `tf.distribute`
            do not drive it), or for `devices` that are not a list of names.

    Example:

    ```python
    engine = pick_engine()
    print(engine.describe())
    with engine.scope():
        model = RecurrentAttentionModel.from_preset("mnist")
        model.compile(optimizer="adam")
        model.fit(x, y, batch_size=64 * engine.num_replicas)
    ```
    """
    if devices is not None and (isinstance(devices, str) or not all(
            isinstance(d, str) for d in devices)):
        raise ValueError(f"`devices` must be None or a list of device names. "
                         f"Received: devices={devices!r}")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tf_engine(devices)
    if backend == "jax":
        return _jax_engine(devices)
    raise ValueError(
        "Training on many devices uses tf.distribute (TensorFlow) or "
        "keras.distribution (JAX); neither drives the PyTorch backend. "
        f"Received: KERAS_BACKEND={backend!r}. Set KERAS_BACKEND=tensorflow or jax."
    )


def run_distributed(step, args):
    """Runs a recipe step (`kav train RECIPE --distribute`) inside `pick_engine()`'s scope.

    The recipes build, compile and fit their models inside `step(args)`, so
    running the whole step in the engine's scope puts the models' variables
    on the engine's devices and makes `fit` split each batch over them
    (`--batch-size` is then the global batch). Without `args.distribute` the
    step runs as it is.

    Args:
        step: the recipe's function, e.g. `recipes.ram.train`.
        args: the parsed options; `args.distribute` (default `False`) asks
            for the engine.

    Returns:
        What `step(args)` returns.

    Raises:
        ValueError: with `--distribute` on a backend no engine drives
            (PyTorch).
    """
    if not getattr(args, "distribute", False):
        return step(args)
    engine = pick_engine()
    print(f"kav: training with {engine.describe()}", flush=True)
    with engine.scope():
        return step(args)


__all__ = [
    "DistributedPredictMixin",
    "Engine",
    "LAYOUT_MODELS",
    "cross_replica_sum",
    "default_layout_map",
    "global_batch_apply",
    "global_batch_draw",
    "pick_engine",
    "replica_scaled",
    "replicas_in_sync",
    "run_distributed",
    "synchronize_batch_normalization",
]
