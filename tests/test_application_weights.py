"""Every application constructor's `weights=`: presets, files, and the errors for bad ones."""

import json

import keras
import numpy as np
import pytest

from keras_attention_vision import applications, presets

REINFORCE = pytest.mark.skipif(keras.backend.backend() == "torch",
                               reason="REINFORCE models need TensorFlow or JAX (TFP)")


def _vocabulary():
    return ["a", "red", "circle", "square"]


# name -> (function building a small model with `weights`, needs REINFORCE)
BUILDERS = {
    "RecurrentAttentionModel": (lambda w: applications.RecurrentAttentionModel(
        input_shape=(16, 16, 1), num_glimpses=2, patch_size=4, glimpse_hidden=8,
        glimpse_units=8, core_units=8, data_format="channels_last", weights=w), True),
    "PixelCNN": (lambda w: applications.PixelCNN(
        input_shape=(8, 8, 1), num_layers=2, filters=4, weights=w), False),
    "ImageTransformer": (lambda w: applications.ImageTransformer(
        input_shape=(4, 4, 1), num_layers=1, hidden_size=8, num_heads=2,
        query_shape=(2, 2), memory_flange=(2, 2), weights=w), False),
    "SAGANGenerator": (lambda w: applications.SAGANGenerator(
        8, (8, 8, 1), 4, weights=w), False),
    "NonLocalResNet": (lambda w: applications.NonLocalResNet(
        input_shape=(16, 16, 1), width=4, weights=w), False),
    "AttentionVGG": (lambda w: applications.AttentionVGG(
        input_shape=(16, 16, 3), classes=3, width_multiplier=1 / 64, weights=w), False),
    "ShowAttendTell": (lambda w: applications.ShowAttendTell(
        _vocabulary(), input_shape=(16, 16, 3), encoder_filters=(4, 4, 4),
        embedding_dim=4, units=8, attention_units=4, data_format="channels_last",
        weights=w), False),
}


def _params(names=BUILDERS):
    return [pytest.param(n, marks=REINFORCE) if BUILDERS[n][1] else n for n in names]


@pytest.mark.parametrize("name", _params())
def test_weights_file_round_trip_and_clear_errors(name, tmp_path):
    build = BUILDERS[name][0]
    model = build(None)
    if not model.built:  # the subclassed models build on first call
        model.build()
    rng = np.random.default_rng(0)
    for variable in model.trainable_weights:
        variable.assign(rng.normal(size=variable.shape).astype("float32") * 0.1)
    path = str(tmp_path / "model.weights.h5")
    model.save_weights(path)
    loaded = build(path)
    for a, b in zip(model.trainable_weights, loaded.trainable_weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a),
                                      keras.ops.convert_to_numpy(b))
    with pytest.raises(ValueError, match=r"Valid presets: .*Received: weights='no_such'"):
        build("no_such")
    with pytest.raises(ValueError, match="does not exist.*missing.weights.h5"):
        build(str(tmp_path / "missing.weights.h5"))
    bad = tmp_path / "corrupt.weights.h5"
    bad.write_bytes(b"this is not an HDF5 file")
    with pytest.raises(ValueError, match="Could not load the weights file .*corrupt"):
        build(str(bad))


def test_non_local_resnet50_weights_errors_come_before_building(tmp_path):
    with pytest.raises(ValueError, match="Valid presets"):
        applications.NonLocalResNet50(weights="no_such")
    with pytest.raises(ValueError, match="does not exist"):
        applications.NonLocalResNet50(weights=str(tmp_path / "x.weights.h5"))


def test_include_top_false_has_free_spatial_sizes():
    model = applications.NonLocalResNet(include_top=False, width=4)
    assert tuple(model.input.shape) == (None, None, None, 1)
    out = model.predict(np.zeros((1, 24, 20, 1), "float32"), verbose=0)
    assert out.shape == (1, 6, 5, 16)
    pooled = applications.AttentionVGG(include_top=False, width_multiplier=1 / 64)
    assert tuple(pooled.input.shape) == (None, None, None, 3)


def test_preset_into_a_model_without_its_top_and_at_another_size(tmp_path, monkeypatch):
    """A preset (here written to a temporary folder) loads into include_top=False."""
    config = {"input_shape": (16, 16, 1), "classes": 10, "width": 4}
    trained = applications.NonLocalResNet(**config)
    for variable in trained.trainable_weights:
        variable.assign(np.full(variable.shape, 0.01, "float32"))
    presets.save_preset(trained, "tiny_nl", "NonLocalResNet", config,
                        {"data": "none"}, directory=tmp_path)
    monkeypatch.setattr(presets, "PRESETS_DIR", tmp_path)
    features = applications.NonLocalResNet(include_top=False, width=4, weights="tiny_nl")
    np.testing.assert_array_equal(features.get_layer("stem").get_weights()[0],
                                  trained.get_layer("stem").get_weights()[0])
    bigger = applications.NonLocalResNet(input_shape=(24, 24, 1), width=4,
                                         weights="tiny_nl")
    np.testing.assert_array_equal(bigger.get_layer("predictions").get_weights()[0],
                                  trained.get_layer("predictions").get_weights()[0])
    with pytest.raises(ValueError, match="has 10 classes"):
        applications.NonLocalResNet(width=4, classes=3, weights="tiny_nl")
    with pytest.raises(ValueError, match=r"trained with width=4.*built with width=8"):
        applications.NonLocalResNet(width=8, weights="tiny_nl")
    with pytest.raises(ValueError, match="for PixelCNN"):
        applications.PixelCNN(weights="tiny_nl")
    model = presets.load_preset("tiny_nl")
    assert model.count_params() == trained.count_params()
    record = json.loads((tmp_path / "tiny_nl.json").read_text())
    assert record["sha256"] == presets.sha256(tmp_path / "tiny_nl.weights.h5")


def test_resnet_preprocessing_is_exported():
    from keras_attention_vision.applications import non_local_resnet

    images = np.full((1, 2, 2, 3), 255.0, "float32")
    out = non_local_resnet.preprocess_input(images.copy())
    expected = keras.applications.resnet50.preprocess_input(images.copy())
    np.testing.assert_allclose(out, expected)
    assert callable(non_local_resnet.decode_predictions)
