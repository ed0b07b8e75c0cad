"""The shipped presets: files, hashes and cards, and `kav evaluate --weights` reproducing
each card's test score on this backend (the weights were saved on another backend)."""

import json

import keras
import numpy as np
import pytest

from keras_attention_vision import presets
from keras_attention_vision.cli import build_parser

SHIPPED = presets.available_presets()
#: Presets of models that need TFP (REINFORCE): TensorFlow and JAX only.
REINFORCE_APPS = {"RecurrentAttentionModel", "VisualSearchAgent"}
#: How far a score may move between backends (float32 sums in another order).
TOLERANCE = {"test_error_m1": 0.3, "test_bits_per_dim": 2e-3, "test_accuracy": 3e-3,
             "nn_accuracy": 0.01, "test_error": 3e-3, "bleu4": 0.01,
             "agent_success_within_k": 0.01}
RECIPE = {"RecurrentAttentionModel": "ram", "PixelCNN": "pixelcnn",
          "NonLocalResNet": "non-local", "SAGANGenerator": "sagan",
          "AttentionVGG": "attention-vgg", "ShowAttendTell": "show-attend-tell",
          "ImageTransformer": "image-transformer", "VisualSearchAgent": "visual-search"}


def test_presets_ship_with_hash_config_and_card():
    assert {"ram_mnist", "ram_translated", "ram_cluttered60", "pixelcnn_mnist",
            "non_local_resnet_cluttered_mnist", "sagan_generator_mnist",
            "attention_vgg_cluttered_mnist", "image_transformer_mnist",
            "visual_search_agent_mnist", "show_attend_tell_shapes"} <= set(SHIPPED)
    total = 0
    for name, info in SHIPPED.items():
        path = presets.PRESETS_DIR / info["weights_file"]
        assert presets.sha256(path) == info["sha256"], name
        total += path.stat().st_size
        card = info["card"]
        for key in ("data", "recipe_command", "score", "test", "evaluate_command"):
            assert key in card, (name, key)
        assert card["score"] in card["test"], name
        assert card["recipe_command"].split()[1:3] == ["kav", "train"], name
    assert total < 10e6, f"presets take {total / 1e6:.1f} MB"


def _scored():
    for name, info in SHIPPED.items():
        marks = []
        if info["application"] in REINFORCE_APPS and keras.backend.backend() == "torch":
            marks.append(pytest.mark.skip(reason="REINFORCE models need TensorFlow or JAX"))
        yield pytest.param(name, marks=marks)


@pytest.mark.parametrize("name", list(_scored()))
def test_kav_evaluate_reproduces_the_documented_score(name, tmp_path):
    info = SHIPPED[name]
    recipe = RECIPE[info["application"]]
    parser, recipes = build_parser()
    argv = ["evaluate", recipe, "--weights", name, "--output-dir", str(tmp_path)]
    if recipe == "ram":
        argv += ["--samples", "1"]  # the deterministic mean path only
    figures = recipes[recipe].evaluate(parser.parse_args(argv))
    key = info["card"]["score"]
    documented = info["card"]["test"][key]
    assert figures[f"{key}_documented"] == documented
    assert abs(figures[key] - documented) <= TOLERANCE[key], (figures, documented)


def test_load_preset_builds_the_recorded_architecture():
    name = "non_local_resnet_cluttered_mnist"
    model = presets.load_preset(name)
    config = json.loads((presets.PRESETS_DIR / f"{name}.json").read_text())["config"]
    assert tuple(model.input.shape[1:]) == tuple(config["input_shape"])


@pytest.mark.parametrize("name", list(_scored()))
def test_the_constructor_with_only_weights_builds_the_preset(name):
    # As keras.applications.ResNet50(weights="imagenet"): no architecture
    # argument needed. Reference: the recorded arguments, then the file.
    from keras_attention_vision import applications

    info = SHIPPED[name]
    builder = getattr(applications, info["application"])
    model = builder(weights=name)
    reference = presets.load_weights(builder(**presets.preset_config(name)),
                                     str(presets.resolve_weights(name)))
    assert len(model.weights) == len(reference.weights) > 0
    for mine, theirs in zip(model.weights, reference.weights):
        assert mine.path == theirs.path
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(mine),
                                      keras.ops.convert_to_numpy(theirs), err_msg=mine.path)


def test_unknown_preset_is_one_line_and_exit_status_2(capsys, tmp_path):
    from keras_attention_vision.cli import main

    status = main(["evaluate", "pixelcnn", "--weights", "pixelcnn_mnst",
                   "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert len(err.splitlines()) == 1
    assert "Valid presets: ['pixelcnn_mnist']" in err
    status = main(["evaluate", "non-local", "--weights", str(tmp_path / "no.weights.h5"),
                   "--output-dir", str(tmp_path)])
    assert status == 2
    assert "no.weights.h5" in capsys.readouterr().err


def test_kav_evaluate_takes_a_whole_keras_model_file(tmp_path, capsys):
    # A .keras file carries its architecture: no recipe options needed.
    from keras_attention_vision.cli import main

    path = str(tmp_path / "mine.keras")
    presets.load_preset("pixelcnn_mnist").save(path)
    parser, recipes = build_parser()
    args = parser.parse_args(["evaluate", "pixelcnn", "--weights", path,
                              "--output-dir", str(tmp_path)])
    figures = recipes["pixelcnn"].evaluate(args)
    documented = SHIPPED["pixelcnn_mnist"]["card"]["test"]["test_bits_per_dim"]
    assert abs(figures["test_bits_per_dim"] - documented) <= TOLERANCE["test_bits_per_dim"]
    other = str(tmp_path / "other.keras")
    presets.load_preset("image_transformer_mnist").save(other)
    status = main(["evaluate", "pixelcnn", "--weights", other, "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1
    assert "holds the ImageTransformer" in err and "needs a PixelCNN" in err
    # the data follow the recipe's options: a model of other sizes is refused
    wide = str(tmp_path / "wide.keras")
    from keras_attention_vision.applications import PixelCNN

    PixelCNN(input_shape=(12, 12, 1), num_layers=2, filters=8).save(wide)
    status = main(["evaluate", "pixelcnn", "--weights", wide, "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1
    assert "'input_shape': [12, 12, 1]" in err and "'input_shape': [28, 28, 1]" in err


def test_kav_visualize_writes_the_pictures(tmp_path):
    parser, recipes = build_parser()
    args = parser.parse_args(["visualize", "non-local", "--weights",
                              "non_local_resnet_cluttered_mnist",
                              "--output-dir", str(tmp_path)])
    figures = recipes["non-local"].visualize(args)
    assert (tmp_path / "attention.png").stat().st_size > 10_000
    assert figures["attention_png"].endswith("attention.png")

