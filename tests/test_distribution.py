"""Training on many devices: tf.distribute and keras.distribution on simulated devices.

Simulated devices are configured before TensorFlow or JAX initialise, so the
multi-device runs happen in `tests/distribution_worker.py`, started here in its
own process with the backend of this test run:

- TensorFlow: the CPU split into 2 logical devices, `tf.distribute.MirroredStrategy`;
- JAX: `XLA_FLAGS=--xla_force_host_platform_device_count=4`,
  `keras.distribution.DataParallel` on 2 devices and `ModelParallel` on a
  (2, 2) mesh;
- PyTorch: neither engine drives it; those tests are skipped (the helpers'
  one-device behaviour and the layout maps are tested on every backend).

The reference of the equality checks is an independent computation: the same
step of the same model on one device with the same global batch.
"""

import argparse
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_attention_vision import applications, distribution
from tests import testing

BACKEND = keras.backend.backend()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The applications in tiny configurations (`tests/distribution_worker.py`);
#: NonLocalResNet50 is the full ResNet-50 on 32x32 images (about 1.5 minutes
#: per backend on two cores, most of it compiling).
APPS = ("ram", "ram_moving_average", "show_attend_tell_hard", "sagan", "pixelcnn",
        "image_transformer", "attention_vgg", "non_local_resnet")
if hasattr(applications, "VisualSearchAgent"):
    APPS += ("visual_search",)
APPS += ("non_local_resnet50",)
LAYOUT_APPS = ("image_transformer", "sagan")
NO_ENGINE = "tf.distribute and keras.distribution drive TensorFlow and JAX only"


def run_worker(engine, apps=APPS, devices=4, timeout=900, processes=2):
    """Runs the worker on `apps` in `processes` processes at once; merges their reports.

    Most of a run is compiling, which uses one core: two processes use the
    two cores of the CI machine.
    """
    env = dict(os.environ, KERAS_BACKEND=BACKEND, TF_CPP_MIN_LOG_LEVEL="3")
    if BACKEND == "jax":
        flag = f"--xla_force_host_platform_device_count={devices}"
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flag).strip()
    groups = [apps[i::processes] for i in range(processes) if apps[i::processes]]
    running = [subprocess.Popen(
        [sys.executable, "-m", "tests.distribution_worker", "--engine", engine,
         "--apps", ",".join(group)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for group in groups]
    report = None
    for process in running:
        out, err = process.communicate(timeout=timeout)
        assert process.returncode == 0, err[-4000:]
        part = json.loads(out.strip().splitlines()[-1])
        if report is None:
            report = part
        else:
            report["apps"].update(part["apps"])
    return report


@pytest.fixture(scope="module")
def data_parallel():
    """The report of the data-parallel worker run for this backend (run once)."""
    if BACKEND == "tensorflow":
        return run_worker("mirrored")
    if BACKEND == "jax":
        report = run_worker("data_parallel")
        assert report["devices"] == 4
        return report
    pytest.skip(NO_ENGINE)


def _app(report, name):
    result = report["apps"][name]
    assert "error" not in result, result.get("error")
    return result


@pytest.mark.parametrize("name", APPS)
def test_fit_under_the_engine_lowers_the_loss(data_parallel, name):
    # The loss before and after 6 epochs under the engine. Where the training
    # loss is sampled it is a deterministic loss on the training set
    # (`_training_set_loss`); for the visual search agent the cross-entropy of
    # its "found" decision on fixed glimpses at the targets (its greedy
    # return stays at the fixation cost in so short a run). With a learning
    # rate of 0 the two are equal and this fails (checked by hand).
    result = _app(data_parallel, name)
    assert np.all(np.isfinite(result["losses"])), result["losses"]
    assert result["last"] < result["first"], result


@pytest.mark.parametrize("name", APPS)
def test_step_on_two_replicas_is_the_step_on_one_device(data_parallel, name):
    # Global batch 2B = 8 on 2 replicas against the same 8 examples on one
    # device, from the same weights, SGD: the weights after the step (and
    # the batch-norm statistics, the moving-average baseline), the logged
    # loss and the metrics (RAM's reward) agree. The step must have moved the
    # weights by far more than the tolerance, or the check says nothing.
    # NonLocalResNet50 starts with its residual branches scaled down (see
    # `tests/distribution_worker.py`): from Keras's initialisation its step
    # is so ill-conditioned that one device's float32 step is 2% away from
    # the float64 one.
    result = _app(data_parallel, name)
    assert result["max_weight_change"] > 1e-3, result
    if BACKEND == "tensorflow":  # every batch norm, nested ones included, synchronised
        assert result["synchronized"] == result["batch_norms"], result
    assert result["max_weight_diff"] < 1e-5, result
    for key, diff in result["metric_diffs"].items():
        assert diff < 1e-5, (key, result)


@pytest.mark.parametrize("name", [n for n in ("ram", "ram_moving_average", "visual_search")
                                  if n in APPS])
def test_predict_on_two_replicas_is_the_predict_on_one_device(data_parallel, name):
    # predict under the engine at a global batch 2B where an output has the
    # global shape of a variable (RAM: the probabilities (16, 3) and the
    # classifier kernel (core_units=16, classes=3); the visual search agent:
    # the "found" outputs (8, K=3) and an (8, 3) kernel), against predict on
    # one device from the same weights. On JAX Keras's predict step donated
    # the variables and JAX paired the kernel with the batch-sharded output:
    # XLA failed ("Expected aliased input ... to have the same size") and
    # the model was unusable (distribution.DistributedPredictMixin).
    result = _app(data_parallel, name)
    assert result["predict_diff"] < 1e-5, result


@pytest.mark.parametrize("name", APPS)
def test_every_application_trains_with_xla(data_parallel, name):
    # TensorFlow: the one-device model compiled with jit_compile=True takes a
    # step. JAX compiles every train step with jax.jit (the runs above).
    if BACKEND != "tensorflow":
        pytest.skip("JAX always compiles the train step with jax.jit (tested above)")
    result = _app(data_parallel, name)
    assert np.isfinite(result["xla_loss"]), result
    assert result["xla_weight_change"] > 1e-3, result


@pytest.mark.skipif(BACKEND != "jax", reason="keras.distribution.ModelParallel is JAX's")
def test_model_parallel_shards_the_attention_kernels():
    # A (batch 2, model 2) mesh and default_layout_map: read back from the
    # variables' shardings, each attention kernel is split in 2 along the
    # axis the map names, and training runs.
    report = run_worker("model_parallel", apps=LAYOUT_APPS)
    expected = {
        "image_transformer": {
            rf"image_transformer/attention_{i}/{p}/kernel": [None, "model", None]
            for i in (0, 1) for p in ("query", "key", "value")},
        "sagan": {f"self_attention/{p}_sn/{p}/kernel": [None, "model"]
                  for p in ("query", "key", "value")},
    }
    expected["image_transformer"].update({
        f"image_transformer/attention_{i}/attention_output/kernel": ["model", None, None]
        for i in (0, 1)})
    expected["sagan"]["self_attention/output_sn/output/kernel"] = ["model", None]
    for name in LAYOUT_APPS:
        result = report["apps"][name]
        assert result["finite"], result
        sharded = {}
        for path, shape, spec, shards in result["sharded"]:
            sharded.setdefault(path, []).append(spec)
            halved = [d // 2 if axis == "model" else d for d, axis in zip(shape, spec)]
            assert shards == [halved], (path, shape, spec, shards)
        for path, spec in expected[name].items():
            # SAGAN: the generator's and the discriminator's blocks alike
            copies = 2 if name == "sagan" else 1
            assert sharded.get(path) == [spec] * copies, (path, sharded)


# The helpers on one device (every backend) --------------------------------------


class OneDeviceTest(testing.TestCase):
    def test_replica_helpers_are_the_identity_outside_a_replica_step(self):
        x = np.array([1.0, 2.0, 4.0], "float32")
        self.assertEqual(distribution.replicas_in_sync(), 1)
        self.assertAllClose(distribution.replica_scaled(keras.ops.convert_to_tensor(x)), x)
        self.assertAllClose(distribution.cross_replica_sum(keras.ops.convert_to_tensor(x)),
                            x)
        shapes = []

        def draw(shape):
            shapes.append(tuple(shape))
            return keras.ops.zeros(shape)

        out = distribution.global_batch_draw(draw, (3, 2))
        self.assertEqual(shapes, [(3, 2)])
        self.assertEqual(tuple(out.shape), (3, 2))
        doubled = distribution.global_batch_apply(lambda t: 2 * t,
                                                  keras.ops.convert_to_tensor(x))
        self.assertAllClose(doubled, 2 * x)

    def test_synchronize_batch_normalization(self):
        inputs = keras.Input((4,))
        outputs = keras.layers.BatchNormalization()(
            keras.layers.Dense(3)(keras.layers.BatchNormalization()(inputs)))
        model = keras.Model(inputs, outputs)
        count = distribution.synchronize_batch_normalization(model)
        norms = [layer for layer in model.layers
                 if isinstance(layer, keras.layers.BatchNormalization)]
        if BACKEND == "tensorflow":
            self.assertEqual(count, 2)
            self.assertTrue(all(layer.synchronized for layer in norms))
        else:  # the statistics are global under keras.distribution already
            self.assertEqual(count, 0)
            self.assertFalse(any(layer.synchronized for layer in norms))

    def test_pick_engine(self):
        with self.assertRaisesRegex(ValueError, "devices=.cpu:0"):
            distribution.pick_engine(devices="cpu:0")
        if BACKEND == "torch":
            with self.assertRaisesRegex(ValueError, "KERAS_BACKEND='torch'"):
                distribution.pick_engine()
            return
        engine = distribution.pick_engine(devices=[])
        self.assertEqual((engine.name, engine.num_replicas, engine.strategy),
                         ("default", 1, None))
        with engine.scope() as active:
            self.assertIs(active, engine)
        # this test process has one device of each kind
        self.assertIn(distribution.pick_engine().name, ("default", "MirroredStrategy",
                                                        "DataParallel", "TPUStrategy"))

    def test_run_distributed(self):
        calls = []

        def step(args):
            calls.append(args.value)
            return {"figure": args.value}

        args = argparse.Namespace(value=3)
        self.assertEqual(distribution.run_distributed(step, args), {"figure": 3})
        if BACKEND != "torch":
            args = argparse.Namespace(value=4, distribute=True)
            engine = distribution.pick_engine()
            self.assertEqual(distribution.run_distributed(step, args), {"figure": 4})
            self.assertEqual(engine.backend, BACKEND)
        self.assertEqual(calls, [3, 4] if BACKEND != "torch" else [3])


class LayoutMapTest(testing.TestCase):
    def _mesh(self):
        return keras.distribution.DeviceMesh((1, 1), ["batch", "model"], ["cpu:0"])

    def test_errors_quote_the_value(self):
        with self.assertRaisesRegex(ValueError, "model_or_name='resnet'"):
            distribution.default_layout_map("resnet", self._mesh())
        mesh = keras.distribution.DeviceMesh((1,), ["batch"], ["cpu:0"])
        with self.assertRaisesRegex(ValueError, r"axis_names=\('batch',\)"):
            distribution.default_layout_map("sagan", mesh)

    def test_rules_match_the_models_kernels(self):
        # Every rule of every default map matches variables of the model (as
        # LayoutMap matches, with re.fullmatch), with
        # the variable's rank; the map is found from the model itself too.
        from keras_attention_vision.applications import (
            ImageTransformer,
            NonLocalResNet50,
            SAGANDiscriminator,
            SAGANGenerator,
        )
        from keras_attention_vision.applications.sagan import SAGAN

        models = {
            "image_transformer": ImageTransformer(
                input_shape=(4, 4, 1), num_layers=2, hidden_size=8, num_heads=2,
                query_shape=(2, 2), memory_flange=(1, 1)),
            "sagan": SAGAN(SAGANGenerator(latent_dim=8, image_shape=(8, 8, 1),
                                          base_channels=16),
                           SAGANDiscriminator(image_shape=(8, 8, 1), base_channels=16)),
            "non_local_resnet50": NonLocalResNet50(input_shape=(32, 32, 3), classes=3,
                                                   nonlocal_stages=5),
        }
        import re

        for name, model in models.items():
            layout_map = distribution.default_layout_map(
                model if name != "sagan" else name, self._mesh())
            self.assertGreater(len(layout_map), 0)
            for pattern in layout_map:
                matched = [v for v in model.weights if re.fullmatch(pattern, v.path)]
                self.assertTrue(matched, f"{name}: {pattern} matches no variable")
                for variable in matched:
                    self.assertEqual(len(layout_map[pattern].axes), len(variable.shape),
                                     (pattern, variable.path))
                    self.assertIn("model", layout_map[pattern].axes)
        self.assertEqual(distribution._layout_key(models["non_local_resnet50"]),
                         "non_local_resnet50")


def test_kav_train_takes_distribute():
    from keras_attention_vision import cli

    parser, recipes = cli.build_parser()
    for name in recipes:
        args = parser.parse_args(["train", name, "--distribute"])
        assert args.distribute is True
        assert parser.parse_args(["train", name]).distribute is False
