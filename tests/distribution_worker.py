"""Worker for tests/test_distribution.py: trains the applications on simulated devices.

Simulated devices must be configured before TensorFlow or JAX initialises, so
the tests run this script in its own process:

    KERAS_BACKEND=tensorflow python -m tests.distribution_worker --engine mirrored
    KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=4 \
        python -m tests.distribution_worker --engine data_parallel
    KERAS_BACKEND=jax XLA_FLAGS=... python -m tests.distribution_worker --engine model_parallel

It prints one JSON object on its last line of output. For each application
(tiny configuration, SGD):

- `max_weight_diff`: the largest absolute difference between the weights
  (trainable and not: batch-norm statistics, the moving-average baseline)
  after one step on 2 replicas with a global batch of `2B` and after the
  same step on one device with the same `2B` examples and initial weights;
  `max_weight_change` how far that step moved them; `metric_diffs`: the
  differences of the step's logged loss and metrics (RAM's reward);
- `losses`: the epoch losses of `fit` under the engine, continuing from that
  step, and `first`/`last`: the loss checked to decrease (see
  `_training_set_loss`);
- `predict_diff` (RAM, the visual search agent): the largest absolute
  difference between `predict` under the engine after `fit` and `predict`
  on one device from the same weights, at a global batch where an output
  has the global shape of a variable (`PREDICT_BATCH`);
- `xla_loss`, `xla_weight_change` (TensorFlow): a one-device step compiled
  with `jit_compile=True`, so every layer of the model goes through XLA; on
  JAX every step is `jax.jit`-compiled.

Sampled quantities (RAM's locations, the hard attention's positions, SAGAN's
latent vectors) come from the model's seeded `SeedGenerator`: on one device one
draw for the batch, on 2 replicas each replica's rows of the same draw
(`distribution.global_batch_draw`), so the two steps sample the same numbers
and are compared as they are (no sampling is replaced by the mean).
Batch-norm layers are synchronised on TensorFlow
(`distribution.synchronize_batch_normalization`); under JAX's DataParallel the
batch statistics are global already.
"""

import argparse
import json
import os
import re
import sys
import time

REPLICAS = 2


def _configure(engine):
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * REPLICAS)
    return backend


def _apps():
    import numpy as np

    from keras_attention_vision.applications import (
        SAGAN,
        AttentionVGG,
        ImageTransformer,
        NonLocalResNet,
        NonLocalResNet50,
        PixelCNN,
        RecurrentAttentionModel,
        SAGANDiscriminator,
        SAGANGenerator,
        ShowAttendTell,
    )
    from keras_attention_vision.applications.show_attend_tell import END, START

    rng = np.random.default_rng(0)

    def ram_data(n):
        labels = rng.integers(0, 3, n)
        images = rng.uniform(0, 0.2, (n, 12, 12, 1)).astype("float32")
        for i, label in enumerate(labels):
            images[i, 4 * label:4 * label + 4, 4:8] = 1.0
        return images, labels

    ram_tiny = dict(input_shape=(12, 12, 1), classes=3, num_glimpses=2, patch_size=4,
                    num_scales=2, glimpse_hidden=8, glimpse_units=16, core_units=16,
                    std=0.2, seed=0)

    def classes_data(n, shape):
        labels = rng.integers(0, 3, n)
        images = rng.uniform(0, 0.3, (n,) + shape).astype("float32")
        for i, label in enumerate(labels):
            images[i, :, 2 * label:2 * label + 3] += 0.7
        return images, labels

    def captions(n):
        images = rng.uniform(size=(n, 16, 16, 3)).astype("float32")
        words = rng.integers(4, 11, (n, 3))
        tokens = np.concatenate([np.full((n, 1), START), words, np.full((n, 1), END)],
                                axis=1).astype("int32")
        return images, tokens

    def non_local_resnet50():
        # The full ResNet-50 from scratch, its residual branches scaled down at
        # the start: the last batch norm of each branch has gamma 0.1, not 1
        # (Goyal et al. 2017 start it at 0). With gamma 1 the step is
        # ill-conditioned: the one-device float32 step itself is 2.4% away
        # from the same step in float64 (max 0.129 of a change of 5.3, JAX)
        # and reordering the batch moves it as much, so no two float32
        # computations of it agree to 1e-5. With gamma 0.1 it is 1.9e-7
        # away (change 0.053) and the comparison is meaningful.
        model = NonLocalResNet50(input_shape=(32, 32, 3), classes=3, nonlocal_stages=1)
        for layer in model.layers:
            if re.fullmatch(r"conv\d_block\d+_3_bn", layer.name):
                layer.gamma.assign(0.1 * np.ones(layer.gamma.shape))
        return model

    binary = lambda n, shape: (rng.uniform(size=(n,) + shape) < 0.3).astype("float32")  # noqa: E731

    apps = {
        "ram": (lambda: RecurrentAttentionModel(**ram_tiny), ram_data, 0.1),
        "ram_moving_average": (
            lambda: RecurrentAttentionModel(**ram_tiny, baseline="moving_average"),
            ram_data, 0.1),
        "show_attend_tell_hard": (
            lambda: ShowAttendTell(["a", "red", "blue", "circle", "square", "left", "of"],
                                   input_shape=(16, 16, 3), encoder_filters=(4, 4, 4),
                                   embedding_dim=8, units=8, attention_units=8,
                                   max_caption_length=6, attention="hard", seed=0),
            captions, 0.1),
        "sagan": (
            lambda: SAGAN(SAGANGenerator(latent_dim=8, image_shape=(8, 8, 1),
                                         base_channels=16),
                          SAGANDiscriminator(image_shape=(8, 8, 1), base_channels=16),
                          seed=0),
            lambda n: (rng.uniform(-1, 1, (n, 8, 8, 1)).astype("float32"), None), 0.05),
        "pixelcnn": (
            lambda: PixelCNN(input_shape=(6, 6, 1), num_layers=2, filters=4,
                             first_kernel_size=3),
            lambda n: (binary(n, (6, 6, 1)), None), 0.1),
        "image_transformer": (
            lambda: ImageTransformer(input_shape=(4, 4, 1), num_layers=2, hidden_size=8,
                                     num_heads=2, query_shape=(2, 2),
                                     memory_flange=(1, 1)),
            lambda n: (rng.integers(0, 256, (n, 4, 4, 1)).astype("float32"), None), 0.1),
        "attention_vgg": (
            lambda: AttentionVGG(input_shape=(16, 16, 1), classes=3,
                                 width_multiplier=1 / 16),
            lambda n: classes_data(n, (16, 16, 1)), 0.02),
        "non_local_resnet": (
            lambda: NonLocalResNet(input_shape=(16, 16, 3), classes=3, width=4),
            lambda n: classes_data(n, (16, 16, 3)), 0.02),
        "non_local_resnet50": (non_local_resnet50,
                               lambda n: classes_data(n, (32, 32, 3)), 0.01),
    }
    from keras_attention_vision import applications

    if hasattr(applications, "VisualSearchAgent"):
        def scenes(n, size=24):
            x = rng.uniform(0, 0.1, (n, size, size, 1)).astype("float32")
            targets = rng.integers(0, 3, n).astype("int32")
            boxes = np.zeros((n, 4), "int32")
            for i, target in enumerate(targets):
                if i % 4 == 3:  # target absent
                    continue
                top, left = rng.integers(0, size - 8, 2)
                x[i, top:top + 8, left:left + 8] = (target + 1) / 3.0
                boxes[i] = (top, left, top + 8, left + 8)
            return (x, targets), boxes

        apps["visual_search"] = (
            lambda: applications.VisualSearchAgent(
                input_shape=(24, 24, 1), classes=3, num_fixations=3, patch_size=4,
                num_scales=2, glimpse_hidden=8, glimpse_units=8, core_units=8, std=0.2,
                recognition_weight=1.0, seed=0),
            scenes, 0.1)
    return apps


def _compile(model, learning_rate, jit_compile="auto"):
    import keras

    loss = None
    if type(model).__name__ == "Functional":  # the classifiers; the others own their loss
        loss = "sparse_categorical_crossentropy"
    model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss=loss,
                  jit_compile=jit_compile)
    return model


def _build(builder, learning_rate, jit_compile="auto"):
    import keras

    from keras_attention_vision.distribution import synchronize_batch_normalization

    keras.utils.set_random_seed(0)
    model = builder()
    if not model.built:  # the subclassed models build their variables from their config
        model.build(None)
    synchronize_batch_normalization(model)
    return _compile(model, learning_rate, jit_compile)


def _fit(model, x, y, **kwargs):
    if y is None:
        return model.fit(x, shuffle=False, verbose=0, **kwargs)
    return model.fit(x, y, shuffle=False, verbose=0, **kwargs)


#: Models whose training loss has a sampled term; the others' loss is deterministic.
SAMPLED = ("ram", "ram_moving_average", "show_attend_tell_hard", "sagan", "visual_search")


#: `predict` under the engine at a global batch of 2B (B per replica) where an
#: output has the global shape of a variable: RAM's probabilities `(16, 3)`
#: and its classifier kernel `(core_units, classes)`; the visual search
#: agent's "found" outputs `(8, K)` and its `(8, 3)` kernel. JAX once paired
#: the donated variable with the batch-sharded output and XLA failed
#: (`distribution.DistributedPredictMixin`). Compared with the one-device
#: `predict` from the same weights.
PREDICT_BATCH = {"ram": 16, "ram_moving_average": 16, "visual_search": 8}


def _flat(outputs):
    import numpy as np

    if isinstance(outputs, dict):
        return [np.asarray(outputs[k], "float64") for k in sorted(outputs)]
    return [np.asarray(outputs, "float64")]


def _training_set_loss(name, model, x, y, fakes=None):
    """The loss on the training set whose decrease shows that `fit` trained.

    The REINFORCE models: `evaluate` (RAM: the cross-entropy of the mean
    path; hard attention: the loss of the expected attention), as the
    training loss has a sampled REINFORCE term. SAGAN: the summed loss of a
    GAN is a game's value, which need not fall; what must fall is the
    discriminator's hinge loss on the training images and on a fixed set of
    images of the initial generator (`fakes`, made on the first call). The
    visual search agent: its greedy search's return barely moves in a few
    tiny epochs, so its "found" decision on fixed glimpses
    (`_recognition_loss`).
    """
    import numpy as np

    if name == "sagan":
        from keras_attention_vision.applications.sagan import hinge_discriminator_loss

        if "images" not in fakes:
            z = np.random.default_rng(1).normal(size=(len(x), model.latent_dim))
            fakes["images"] = model.generator(z.astype("float32"), training=False)
        return float(hinge_discriminator_loss(
            model.discriminator(x, training=False),
            model.discriminator(fakes["images"], training=False)))
    if name == "visual_search":
        return _recognition_loss(model, x, y)
    logs = model.evaluate(x, y, verbose=0, return_dict=True) if y is not None else \
        model.evaluate(x, verbose=0, return_dict=True)
    return float(logs["loss"])


def _recognition_loss(model, x, boxes):
    """The visual search agent's "found" decision on fixed glimpses of its scenes.

    For each scene with its target present, one glimpse at the centre of the
    target's box: the binary cross-entropy (computed here, in NumPy) of the
    "found" logit asked for the true target against 1, and asked for another
    class against 0. A function of the weights only (nothing is sampled);
    the agent's recognition term trains it (`recognition_weight=1`).
    """
    import numpy as np

    scenes, targets = x
    present = boxes[:, 2] > boxes[:, 0]
    centres = (boxes[present, :2] + boxes[present, 2:]) / 2.0
    size = np.array(scenes.shape[1:3], "float64")
    locations = (2.0 * centres / size - 1.0).astype("float32")
    scenes, targets = scenes[present], targets[present]
    others = (targets + 1) % model.classes
    positive = np.asarray(model.found_logits_at(scenes, targets, locations), "float64")
    negative = np.asarray(model.found_logits_at(scenes, others, locations), "float64")
    bce = lambda z, label: np.logaddexp(0.0, z) - label * z  # noqa: E731
    return float(np.mean(bce(positive, 1.0) + bce(negative, 0.0)))


def _weights(model):
    import numpy as np

    return [np.asarray(w, "float64") for w in model.get_weights()]


_STRATEGIES = {}


def _engine_scope(engine):
    import contextlib

    import keras

    if engine == "mirrored":
        # One strategy for the process: the collective instance keys of a
        # second MirroredStrategy over the same devices can collide with the
        # first one's ("shape mismatch in the collective instance").
        if "mirrored" not in _STRATEGIES:
            import tensorflow as tf

            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
            assert len(devices) == REPLICAS, devices
            _STRATEGIES["mirrored"] = tf.distribute.MirroredStrategy(devices)
        return _STRATEGIES["mirrored"].scope()
    if engine == "data_parallel":
        devices = keras.distribution.list_devices()[:REPLICAS]
        return keras.distribution.DataParallel(devices=devices).scope()
    return contextlib.nullcontext()


def _max_diff(first, second):
    return max((float(abs(a - b).max()) if a.size else 0.0)
               for a, b in zip(first, second, strict=True))


def run_app(name, engine, batch=4, epochs=6, train_size=16):
    """One application: the step equality, XLA (TF), then `fit` under the engine."""
    import keras

    builder, data, learning_rate = _apps()[name]
    x, y = data(train_size)
    step_x = tuple(a[:batch * REPLICAS] for a in x) if isinstance(x, tuple) else \
        x[:batch * REPLICAS]
    step_y = None if y is None else y[:batch * REPLICAS]
    out = {}
    start = time.perf_counter()
    tensorflow = keras.backend.backend() == "tensorflow"
    if tensorflow and name in SAMPLED:
        # XLA: one step of the one-device model compiled with jit_compile=True.
        # XLA's random-number kernels draw other numbers than TensorFlow's, so
        # for the models that sample this is a separate step.
        xla = _build(builder, learning_rate, jit_compile=True)
        xla_initial = _weights(xla)
        xla_logs = _fit(xla, step_x, step_y, batch_size=batch * REPLICAS, epochs=1)
        out["xla_loss"] = float(xla_logs.history["loss"][0])
        out["xla_weight_change"] = _max_diff(_weights(xla), xla_initial)
    # One step on one device against the same step on 2 replicas. On TF the
    # one-device reference is compiled with XLA where nothing is sampled
    # (and is the XLA check); JAX always compiles with XLA.
    xla_reference = tensorflow and name not in SAMPLED
    single = _build(builder, learning_rate,
                    jit_compile=True if xla_reference else (False if tensorflow else "auto"))
    initial = _weights(single)
    single_logs = _fit(single, step_x, step_y, batch_size=batch * REPLICAS, epochs=1)
    if xla_reference:
        out["xla_loss"] = float(single_logs.history["loss"][0])
        out["xla_weight_change"] = _max_diff(_weights(single), initial)
    with _engine_scope(engine):
        multi = _build(builder, learning_rate,
                       jit_compile=False if tensorflow else "auto")
        multi.set_weights(initial)
        # every batch norm, nested ones included, counted by its statistics
        out["batch_norms"] = sum(v.path.endswith("moving_mean") for v in multi.weights)
        out["synchronized"] = sum(
            getattr(layer, "synchronized", False)
            for layer in multi._flatten_layers(include_self=True, recursive=True))
        multi_logs = _fit(multi, step_x, step_y, batch_size=batch * REPLICAS, epochs=1)
        out["max_weight_diff"] = _max_diff(_weights(single), _weights(multi))
        out["max_weight_change"] = _max_diff(_weights(single), initial)
        out["metric_diffs"] = {
            key: abs(single_logs.history[key][0] - multi_logs.history[key][0])
            for key in single_logs.history}
        out["step_seconds"] = time.perf_counter() - start
        # then fit under the engine: the loss on the training set goes down
        fakes = {}
        first = _training_set_loss(name, multi, x, y, fakes) if name in SAMPLED else None
        history = _fit(multi, x, y, batch_size=batch * REPLICAS, epochs=epochs)
        out["losses"] = [float(v) for v in history.history["loss"]]
        if name in SAMPLED:
            out["first"], out["last"] = first, _training_set_loss(name, multi, x, y, fakes)
        else:  # deterministic training loss: its first and last epochs
            out["first"], out["last"] = out["losses"][0], out["losses"][-1]
        if name in PREDICT_BATCH:
            multi_predictions = multi.predict(x, batch_size=PREDICT_BATCH[name], verbose=0)
    if name in PREDICT_BATCH:
        # the same weights on one device (outside the engine's scope)
        single.set_weights(multi.get_weights())
        out["predict_diff"] = _max_diff(
            _flat(single.predict(x, batch_size=PREDICT_BATCH[name], verbose=0)),
            _flat(multi_predictions))
    out["seconds"] = time.perf_counter() - start
    print(f"{name}: {out}", file=sys.stderr, flush=True)
    return out


def run_model_parallel(names):
    """ModelParallel on a (2, 2) mesh: the default layout maps' kernels are sharded."""
    import keras
    import numpy as np

    from keras_attention_vision.distribution import default_layout_map

    devices = keras.distribution.list_devices()
    mesh = keras.distribution.DeviceMesh((2, 2), ["batch", "model"], devices[:4])
    results = {}
    for name in names:
        builder, data, learning_rate = _apps()[name]
        x, y = data(8)
        start = time.perf_counter()
        layout_map = default_layout_map(name, mesh)
        distribution = keras.distribution.ModelParallel(layout_map=layout_map,
                                                         batch_dim_name="batch")
        with distribution.scope():
            model = _build(builder, learning_rate)
            if not model.built:
                model(x[:2])
            history = _fit(model, x, y, batch_size=4, epochs=2)
        # (path, shape, partition spec, shapes of the shards) of the sharded
        # variables (SAGAN's generator and discriminator share paths: a list)
        sharded, replicated = [], []
        for variable in model.weights:
            sharding = getattr(variable.value, "sharding", None)
            spec = getattr(sharding, "spec", None)
            if spec is not None and any(axis is not None for axis in spec):
                shards = {tuple(s.data.shape) for s in variable.value.addressable_shards}
                sharded.append([variable.path, list(variable.shape),
                                [None if a is None else str(a) for a in spec],
                                sorted(list(s) for s in shards)])
            else:
                replicated.append(variable.path)
        results[name] = {
            "losses": [float(v) for v in history.history["loss"]],
            "finite": bool(np.all(np.isfinite(history.history["loss"]))),
            "sharded": sharded,
            "num_replicated": len(replicated),
            "seconds": time.perf_counter() - start,
        }
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", required=True,
                        choices=("mirrored", "data_parallel", "model_parallel"))
    parser.add_argument("--apps", default="all")
    args = parser.parse_args(argv)
    backend = _configure(args.engine)
    import keras

    names = list(_apps()) if args.apps == "all" else args.apps.split(",")
    result = {"backend": backend, "engine": args.engine, "keras": keras.__version__}
    if backend == "jax":
        import jax

        result["devices"] = len(jax.devices())
    if args.engine == "model_parallel":
        result["apps"] = run_model_parallel(names)
    else:
        result["apps"] = {}
        for name in names:
            try:
                result["apps"][name] = run_app(name, args.engine)
            except Exception as error:  # reported, and failed, by the test
                result["apps"][name] = {"error": f"{type(error).__name__}: {error}"[:2000]}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
