"""AttentionVGG, attach_attention_estimators and the maps' tooling (tiny models)."""

import os
import tempfile
import warnings

import keras
import numpy as np
import pytest

from keras_attention_vision.applications import (
    AttentionVGG,
    attach_attention_estimators,
    attention_maps_model,
)
from keras_attention_vision.layers import AttentionEstimator
from tests import testing

TINY = {"input_shape": (16, 16, 1), "classes": 3, "width_multiplier": 1 / 16}
# Channels at width 1/16: layer 7 -> 16, layers 10 and 13 -> 32.


def _images(n=4, seed=0, shape=(16, 16, 1)):
    return np.random.default_rng(seed).uniform(size=(n,) + shape).astype("float32")


class AttentionVGGTest(testing.TestCase):
    def test_concat_and_indep_heads_have_the_documented_shapes(self):
        x = _images()
        concat = AttentionVGG(**TINY)
        assert testing.to_numpy(concat(x)).shape == (4, 3)
        assert tuple(concat.get_layer("predictions").kernel.shape) == (16 + 32 + 32, 3)
        indep = AttentionVGG(**TINY, aggregation="indep")
        assert testing.to_numpy(indep(x)).shape == (4, 3)
        kernels = [tuple(indep.get_layer(f"scores_{i}").kernel.shape) for i in (1, 2, 3)]
        assert kernels == [(16, 3), (32, 3), (32, 3)]
        # indep averages the per-layer class scores, then applies the softmax.
        scores = keras.Model(indep.input, [indep.get_layer(f"scores_{i}").output
                                           for i in (1, 2, 3)])(x)
        mean = np.mean(testing.to_numpy(scores), axis=0)
        expected = np.exp(mean) / np.exp(mean).sum(-1, keepdims=True)
        self.assertAllClose(indep(x), expected, atol=1e-5)
        features = AttentionVGG(**TINY, include_top=False, attention_layers="att2")
        assert testing.to_numpy(features(x)).shape == (4, 64)

    def test_attention_maps_model(self):
        x = _images()
        maps = testing.to_numpy(attention_maps_model(AttentionVGG(**TINY))(x))
        assert [m.shape for m in maps] == [(4, 16, 16), (4, 8, 8), (4, 4, 4)]
        for m in maps:
            np.testing.assert_allclose(m.sum(axis=(1, 2)), 1.0, atol=1e-5)
        att2 = AttentionVGG(**{**TINY, "input_shape": (32, 32, 1)}, attention_layers="att2",
                            normalization="sigmoid", compatibility="dp")
        maps = testing.to_numpy(attention_maps_model(att2)(_images(shape=(32, 32, 1))))
        assert [m.shape for m in maps] == [(4, 16, 16), (4, 8, 8)]
        with pytest.raises(ValueError, match="no AttentionEstimator"):
            attention_maps_model(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))

    def test_fit_reduces_loss(self):
        x = _images(16)
        y = np.arange(16) % 3
        model = AttentionVGG(**TINY)
        model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
        history = model.fit(x, y, epochs=8, batch_size=16, verbose=0)
        losses = history.history["loss"]
        assert losses[-1] < losses[0], losses

    def test_keras_round_trip_and_weights_file(self):
        x = _images()
        model = AttentionVGG(**TINY, aggregation="indep")
        testing.perturb_weights(model)
        before = testing.to_numpy(model(x, training=False))
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model.keras")
            model.save(path)
            loaded = keras.saving.load_model(path, safe_mode=True)
            weights = os.path.join(folder, "model.weights.h5")
            model.save_weights(weights)
            from_file = AttentionVGG(**TINY, aggregation="indep", weights=weights)
        self.assertAllClose(loaded(x, training=False), before, atol=1e-6)
        self.assertAllClose(from_file(x, training=False), before, atol=1e-6)
        maps = testing.to_numpy(attention_maps_model(loaded)(x))
        assert len(maps) == 3

    def test_input_tensor(self):
        inputs = keras.Input((16, 16, 1))
        model = AttentionVGG(**{**TINY, "input_shape": None}, input_tensor=inputs)
        assert model.inputs[0] is inputs
        # A tensor that is not an Input: the model starts at its source Input.
        scaled = keras.layers.Rescaling(0.5)(inputs)
        model = AttentionVGG(**{**TINY, "input_shape": None}, input_tensor=scaled)
        assert model.inputs[0] is inputs
        self.assertAllClose(model(_images()), model(_images()), atol=0)

    def test_bad_arguments_are_quoted(self):
        for kwargs, match in (({"attention_layers": "att4"}, "attention_layers='att4'"),
                              ({"aggregation": "sum"}, "aggregation='sum'"),
                              ({"compatibility": "cos"}, "compatibility='cos'"),
                              ({"pooling": "avg"}, "pooling='avg'"),
                              ({"weights": "imagenet"}, "weights='imagenet'"),
                              ({"input_shape": (8, 8, 3)}, r"input_shape=\(8, 8, 3\)"),
                              ({"width_multiplier": 0}, "width_multiplier=0")):
            with self.subTest(**{k: str(v) for k, v in kwargs.items()}):
                with pytest.raises(ValueError, match=match):
                    AttentionVGG(**{**TINY, **kwargs})


class AttachTest(testing.TestCase):
    def _backbone(self):
        return keras.applications.VGG16(include_top=False, weights=None,
                                        input_shape=(32, 32, 3))

    def test_attach_keeps_backbone_weights(self):
        base = self._backbone()
        testing.perturb_weights(base)
        before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in base.layers}
        for aggregation in ("concat", "indep"):
            model = attach_attention_estimators(base, ["block4_conv3", "block5_conv3"],
                                                aggregation=aggregation, classes=7)
            x = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
            assert testing.to_numpy(model(x)).shape == (2, 7)
            estimators = [la for la in model.layers if isinstance(la, AttentionEstimator)]
            assert [e.name for e in estimators] == ["attention_1", "attention_2"]
            for name, weights in before.items():
                for a, b in zip(model.get_layer(name).get_weights(), weights):
                    np.testing.assert_array_equal(a, b)
            maps = testing.to_numpy(attention_maps_model(model)(x))
            assert [m.shape for m in maps] == [(2, 4, 4), (2, 2, 2)]

    def test_attach_with_global_layer_and_units(self):
        base = self._backbone()
        model = attach_attention_estimators(base, "block5_conv3", global_layer="block5_pool",
                                            global_units=16, include_top=False)
        assert tuple(model.output.shape) == (None, 512)

    def test_unknown_layer_names_are_quoted(self):
        base = self._backbone()
        with pytest.raises(ValueError, match=r"no layers \['block9_conv1'\]"):
            attach_attention_estimators(base, ["block4_conv3", "block9_conv1"])
        with pytest.raises(ValueError, match=r"'nope'"):
            attach_attention_estimators(base, ["block4_conv3"], global_layer="nope")
        with pytest.raises(ValueError, match="rank 4"):
            attach_attention_estimators(keras.Sequential(
                [keras.Input((4,)), keras.layers.Dense(3, name="d")]), ["d"])


def test_gradcam_runs_on_attention_vgg_or_says_it_needs_tensorflow():
    from keras_attention_vision.visualization.gradcam import explanation_maps

    model = AttentionVGG(**TINY)
    x = _images(2)
    if keras.backend.backend() != "tensorflow":
        with pytest.raises(RuntimeError, match="TensorFlow backend"):
            explanation_maps(model, x, [0, 1])
        pytest.skip("tf-keras-vis runs on the TensorFlow backend only "
                    "(checked above that the error says so)")
    for method in ("gradcam", "gradcam++"):
        cams = explanation_maps(model, x, [0, 1], method, penultimate_layer="block5_conv3")
        assert cams.shape == (2, 16, 16)
        assert np.all(np.isfinite(cams)) and cams.min() >= 0 and cams.max() <= 1 + 1e-6
    assert explanation_maps(model, x, [2, 2], "saliency").shape == (2, 16, 16)


def test_save_attention_overlays_writes_png():
    from keras_attention_vision.visualization.attention_maps import save_attention_overlays

    model = AttentionVGG(**TINY)
    x = _images(3)
    maps = testing.to_numpy(attention_maps_model(model)(x))
    with tempfile.TemporaryDirectory() as folder:
        path = save_attention_overlays(x, maps, os.path.join(folder, "maps.png"),
                                       map_names=["layer 7", "layer 10", "layer 13"],
                                       titles=["a", "b", "c"],
                                       boxes=[[0, 0, 8, 8], [4, 4, 12, 12], [8, 8, 16, 16]])
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="one per image"):
        save_attention_overlays(x, [maps[0][:2]], "unused.png")


def test_explanation_maps_in_batches_equal_one_call():
    from keras_attention_vision.visualization.gradcam import explanation_maps

    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf-keras-vis runs on the TensorFlow backend only")
    model = AttentionVGG(**TINY)
    x = _images(3)
    for method, layer in (("gradcam", "block5_conv3"), ("saliency", None)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            whole = explanation_maps(model, x, [0, 1, 2], method, layer)
            batched = explanation_maps(model, x, [0, 1, 2], method, layer, batch_size=2)
        np.testing.assert_allclose(batched, whole, atol=1e-5)
        # tf-keras-vis's list-of-one-input calls no longer warn the user
        assert not [w for w in caught if "structure of `inputs`" in str(w.message)]
    with pytest.raises(ValueError, match="batch_size=0"):
        explanation_maps(model, x, [0, 1, 2], batch_size=0)
    with pytest.raises(ValueError, match="2 classes"):
        explanation_maps(model, x, [0, 1])


def test_save_attention_overlays_with_suptitle(tmp_path):
    from keras_attention_vision.visualization.attention_maps import save_attention_overlays

    x = _images(2)
    maps = np.random.default_rng(0).uniform(size=(2, 4, 4))
    path = save_attention_overlays(x, [maps, maps], str(tmp_path / "m.png"),
                                   map_names=["a\n(att3)", "b"], suptitle="whole figure")
    assert os.path.getsize(path) > 1000
