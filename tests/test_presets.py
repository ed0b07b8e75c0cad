"""Weights presets: resolution, hashes, clear errors, URLs through keras.utils.get_file."""

import json
import pathlib

import keras
import numpy as np
import pytest

from keras_attention_vision import presets


def _model():
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs), name="tiny")


@pytest.fixture
def shipped(tmp_path):
    model = _model()
    model.get_layer("dense").kernel.assign(np.arange(6, dtype="float32").reshape(3, 2))
    presets.save_preset(model, "tiny_demo", "Tiny", {"units": 2},
                        {"data": "none", "command": "test"}, directory=tmp_path)
    return tmp_path, model


def test_preset_round_trip_and_record(shipped):
    folder, model = shipped
    info = presets.get_preset("tiny_demo", "Tiny", folder)
    assert info["config"] == {"units": 2}
    assert info["sha256"] == presets.sha256(folder / "tiny_demo.weights.h5")
    loaded = presets.load_weights(_model(), "tiny_demo", "Tiny", directory=folder)
    np.testing.assert_array_equal(loaded.get_layer("dense").get_weights()[0],
                                  model.get_layer("dense").get_weights()[0])
    assert list(presets.available_presets("Other", folder)) == []


def test_float16_storage_stores_float16_and_loads_as_float32(tmp_path):
    import h5py

    model = _model()
    rng = np.random.default_rng(0)
    kernel = rng.normal(scale=3.0, size=(3, 2)).astype("float32")
    bias = np.array([1e-3, -7.123456], dtype="float32")
    model.get_layer("dense").set_weights([kernel, bias])
    presets.save_preset(model, "full", "Tiny", {"units": 2}, {"data": "none"},
                        directory=tmp_path)
    presets.save_preset(model, "half", "Tiny", {"units": 2}, {"data": "none"},
                        directory=tmp_path, storage_dtype="float16")
    with h5py.File(tmp_path / "half.weights.h5", "r") as f:
        stored = []
        f.visititems(lambda n, item: stored.append(item.dtype)
                     if isinstance(item, h5py.Dataset) else None)
    assert stored and set(stored) == {np.dtype("float16")}
    info = presets.get_preset("half", "Tiny", tmp_path)
    assert info["storage_dtype"] == "float16"
    assert "storage_dtype" not in presets.get_preset("full", "Tiny", tmp_path)
    assert info["sha256"] == presets.sha256(tmp_path / "half.weights.h5")
    assert sorted(f.name for f in tmp_path.iterdir()) == [  # no temporary file left
        "full.json", "full.weights.h5", "half.json", "half.weights.h5"]
    loaded = presets.load_weights(_model(), "half", "Tiny", directory=tmp_path)
    got = loaded.get_layer("dense").get_weights()
    assert all(w.dtype == np.float32 for w in got)
    # NumPy's own float16 rounding is the reference: within 2**-11 of each value.
    np.testing.assert_array_equal(got[0], kernel.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(got[1], bias.astype(np.float16).astype(np.float32))
    assert np.all(np.abs(got[0] - kernel) <= np.abs(kernel) * 2.0**-11)


def test_float16_storage_halves_the_size_of_a_wide_layer(tmp_path):
    inputs = keras.Input((128,))
    wide = keras.Model(inputs, keras.layers.Dense(128)(inputs))  # 16,512 weights
    sizes = {}
    for dtype in (None, "float16"):
        presets.save_preset(wide, f"wide_{dtype}", "Tiny", {}, {}, directory=tmp_path,
                            storage_dtype=dtype)
        sizes[dtype] = (tmp_path / f"wide_{dtype}.weights.h5").stat().st_size
    # float32: 66,048 bytes of weights, float16 33,024, plus the same HDF5 overhead
    assert sizes[None] - sizes["float16"] >= 33_024 - 512, sizes


@pytest.mark.parametrize("value, message", [
    (65520.0, "largest magnitude is 65520, beyond 65504"),  # rounds to inf in float16
    (np.inf, "infinite or NaN"), (np.nan, "infinite or NaN")])
def test_float16_storage_refuses_what_it_cannot_hold_and_keeps_the_old_preset(
        tmp_path, value, message):
    model = _model()
    presets.save_preset(model, "p", "Tiny", {"units": 2}, {"data": "old"},
                        directory=tmp_path, storage_dtype="float16")
    before = {f.name: f.read_bytes() for f in tmp_path.iterdir()}
    kernel = np.zeros((3, 2), "float32")
    kernel[1, 1] = value
    model.get_layer("dense").set_weights([kernel, np.zeros(2, "float32")])
    with pytest.raises(ValueError, match=r"'layers/dense/vars/0'.*" + message):
        presets.save_preset(model, "p", "Tiny", {"units": 2}, {"data": "new"},
                            directory=tmp_path, storage_dtype="float16")
    assert {f.name: f.read_bytes() for f in tmp_path.iterdir()} == before


def test_float16_storage_keeps_65504_and_warns_when_weights_become_zero(tmp_path):
    model = _model()
    kernel = np.array([[65504.0, 1e-8], [3e-6, 1e-4], [1.0, 0.0]], "float32")
    model.get_layer("dense").set_weights([kernel, np.zeros(2, "float32")])
    with pytest.warns(UserWarning, match=r"'layers/dense/vars/0': 1\}"):
        presets.save_preset(model, "p", "Tiny", {"units": 2}, {}, directory=tmp_path,
                            storage_dtype="float16")
    got = presets.load_weights(_model(), "p", "Tiny", directory=tmp_path)
    np.testing.assert_array_equal(got.get_layer("dense").get_weights()[0],
                                  kernel.astype(np.float16).astype(np.float32))
    assert got.get_layer("dense").get_weights()[0][0, 0] == 65504.0


def test_a_failed_save_leaves_other_presets_and_the_old_one_intact(tmp_path):
    model = _model()
    # A preset named as the temporary file of "mine" once was.
    presets.save_preset(model, "mine.partial", "Tiny", {}, {}, directory=tmp_path)
    presets.save_preset(model, "mine", "Tiny", {}, {"data": "old"}, directory=tmp_path,
                        storage_dtype="float16")
    before = {f.name: f.read_bytes() for f in tmp_path.iterdir()}
    with pytest.raises(ValueError, match="cannot be written as JSON"):  # unsortable keys
        presets.save_preset(model, "mine", "Tiny", {}, {"test": {0: 0.9, "mean": 0.8}},
                            directory=tmp_path, storage_dtype="float16")
    assert {f.name: f.read_bytes() for f in tmp_path.iterdir()} == before
    for name in ("mine", "mine.partial"):
        presets.load_weights(_model(), name, "Tiny", directory=tmp_path)


@pytest.mark.parametrize("name", ["sub/dir", "x.h5", "x.json", ".hidden", "", " x"])
def test_a_preset_name_must_be_a_plain_file_stem(tmp_path, name):
    with pytest.raises(ValueError, match=f"Received: name={name!r}"):
        presets.save_preset(_model(), name, "Tiny", {}, {}, directory=tmp_path)
    assert not list(tmp_path.iterdir())


def test_bad_storage_dtype_is_refused(tmp_path):
    with pytest.raises(ValueError, match="Received: storage_dtype='bfloat16'"):
        presets.save_preset(_model(), "p", "Tiny", {}, {}, directory=tmp_path,
                            storage_dtype="bfloat16")


def test_unknown_preset_lists_the_valid_ones(shipped):
    folder, _ = shipped
    with pytest.raises(ValueError, match=r"\['tiny_demo'\]. Received: weights='tiny'"):
        presets.resolve_weights("tiny", "Tiny", directory=folder)
    with pytest.raises(ValueError, match="for Other"):  # another model's preset
        presets.resolve_weights("tiny_demo", "Other", directory=folder)


def test_tampered_preset_is_refused(shipped):
    folder, _ = shipped
    path = folder / "tiny_demo.weights.h5"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match its recorded SHA-256"):
        presets.resolve_weights("tiny_demo", "Tiny", directory=folder)


def test_missing_and_corrupt_files_are_named(tmp_path):
    missing = tmp_path / "nope.weights.h5"
    with pytest.raises(ValueError, match="does not exist.*nope.weights.h5"):
        presets.load_weights(_model(), str(missing))
    corrupt = tmp_path / "bad.weights.h5"
    corrupt.write_bytes(b"not an h5 file")
    with pytest.raises(ValueError, match="Could not load the weights file .*bad.weights.h5"):
        presets.load_weights(_model(), str(corrupt))
    with pytest.raises(ValueError, match="weights=3"):
        presets.resolve_weights(3)


def test_url_needs_a_hash_and_is_fetched_with_it(shipped, tmp_path, monkeypatch):
    folder, model = shipped
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    url = pathlib.Path(folder / "tiny_demo.weights.h5").as_uri()
    with pytest.raises(ValueError, match="file_hash"):
        presets.resolve_weights(url)
    digest = json.loads((folder / "tiny_demo.json").read_text())["sha256"]
    loaded = presets.load_weights(_model(), url, file_hash=digest)
    np.testing.assert_array_equal(loaded.get_weights()[0], model.get_weights()[0])
    with pytest.raises(ValueError, match="Could not fetch the weights at .*tiny_demo2"):
        presets.resolve_weights(url.replace("tiny_demo", "tiny_demo2"), file_hash="0" * 64)
    (folder / "copy.weights.h5").write_bytes((folder / "tiny_demo.weights.h5").read_bytes())
    with pytest.raises(ValueError, match="Could not fetch the weights at .*copy"):
        presets.resolve_weights(url.replace("tiny_demo", "copy"), file_hash="0" * 64)


class _Application:
    """A stand-in application constructor: records what it was built with."""

    def __init__(self, input_shape=(8, 8, 3), units=2, include_top=True, seed=None,
                 name="app", weights=None):
        self.arguments = dict(input_shape=input_shape, units=units,
                              include_top=include_top, seed=seed, name=name)


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    presets.save_preset(_model(), "tiny_app", "Tiny",
                        {"input_shape": [5, 6, 1], "units": 7, "seed": 3, "name": "x"},
                        {"data": "none"}, directory=tmp_path)
    monkeypatch.setattr(presets, "PRESETS_DIR", tmp_path)
    return presets.preset_arguments("Tiny")(_Application.__init__)


def test_unpassed_arguments_come_from_the_preset(recorded):
    app = _Application.__new__(_Application)
    recorded(app, weights="tiny_app")
    # The record's values (tuples restored), but never the caller's `name`.
    assert app.arguments == dict(input_shape=(5, 6, 1), units=7, include_top=True,
                                 seed=3, name="app")
    recorded(app, (9, 9, 1), units=4, weights="tiny_app")  # passed: kept
    assert app.arguments["input_shape"] == (9, 9, 1) and app.arguments["units"] == 4
    recorded(app, include_top=False, weights="tiny_app")  # any size, the channels
    assert app.arguments["input_shape"] == (None, None, 1)
    recorded(app, units=4)  # no preset: the signature's defaults
    assert app.arguments["input_shape"] == (8, 8, 3) and app.arguments["seed"] is None


def test_a_preset_of_another_application_is_refused_by_the_decorator(recorded, tmp_path):
    presets.save_preset(_model(), "other_app", "Other", {"units": 1}, {"data": "none"},
                        directory=tmp_path)
    app = _Application.__new__(_Application)
    with pytest.raises(ValueError, match=r"'other_app' holds Other weights, not Tiny ones. "
                       r"Valid presets for Tiny: \['tiny_app'\]"):
        recorded(app, weights="other_app")


def test_an_input_of_other_channels_is_refused_naming_them(recorded):
    app = _Application.__new__(_Application)
    with pytest.raises(ValueError, match=r"Preset 'tiny_app' takes images of 1 channel\(s\) "
                       r".*this Tiny was given 3\. .*Received: input_shape=\(9, 9, 3\)"):
        recorded(app, (9, 9, 3), weights="tiny_app")
    recorded(app, (9, 9, 1), weights="tiny_app")  # another size, the same channels
    assert app.arguments["input_shape"] == (9, 9, 1)
    recorded(app, (9, 9, 3))  # no preset: nothing to check
