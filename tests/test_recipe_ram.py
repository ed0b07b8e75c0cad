"""The RAM recipe's data: digit augmentation of the canvas presets (NumPy only)."""

import argparse

import keras
import numpy as np
import pytest

from keras_attention_vision.datasets import load_mnist, make_cluttered_mnist
from keras_attention_vision.recipes import ram


def _args(*extra):
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    ram.add_arguments(parser)
    return parser.parse_args(list(extra))


def test_digit_augment_defaults_per_preset_and_the_papers_data_by_name():
    # translated: affine by default; the cluttered presets: the paper's data
    assert callable(ram._digit_augment(_args("--preset", "translated")))
    assert ram._digit_augment(_args("--preset", "cluttered100")) is None
    assert ram._digit_augment(_args("--preset", "translated", "--digit-augment",
                                    "none")) is None
    assert ram._digit_augment(_args("--preset", "mnist")) is None
    # mnist has its own augmentation: --digit-augment would be ignored, so it is refused
    with pytest.raises(ValueError, match="Received: --digit-augment none"):
        ram._digit_augment(_args("--preset", "mnist", "--digit-augment", "none"))
    assert ram._digit_augment_choice(_args("--preset", "translated")) == "affine"
    assert callable(ram._digit_augment(
        _args("--preset", "cluttered60", "--digit-augment", "affine")))


def test_train_canvases_hold_the_augmented_digits():
    flipped = []

    def flip(digits, rng):  # an augmentation whose result is known
        assert digits.shape[1:] == (28, 28) and digits.max() <= 1.0
        flipped.append(digits[:, ::-1, :])
        return flipped[-1]

    train_epoch, _, y_train, _ = ram._data("translated", 0, flip)
    canvases = train_epoch(np.random.default_rng(5))
    # the same draw of the placement seed, on the flipped digits
    seed = int(np.random.default_rng(5).integers(2**31))
    expected, boxes = make_cluttered_mnist(flipped[0], 60, 0, seed=seed)
    np.testing.assert_array_equal(canvases, expected)
    (x_train, _), _ = load_mnist("embedded", verbose=False)
    y0, x0 = boxes[0, :2]
    np.testing.assert_allclose(canvases[0, y0:y0 + 28, x0:x0 + 28, 0],
                               x_train[0, ::-1, :] / 255.0, atol=1e-6)
    assert len(canvases) == len(y_train)


def test_affine_digit_augment_with_zero_range_is_the_identity():
    augment = ram._digit_augment(_args("--preset", "translated", "--digit-augment",
                                       "affine", "--rotate", "0", "--zoom", "0"))
    digits = np.random.default_rng(0).random((4, 28, 28)).astype("float32")
    np.testing.assert_allclose(augment(digits, np.random.default_rng(1)), digits,
                               atol=1e-6)


@pytest.mark.parametrize("degrees,zoom", [(10.0, 0.1), (30.0, 0.0)])
def test_affine_images_moves_a_blob_where_the_rotation_and_zoom_send_it(degrees, zoom):
    # a 3x3 blob at (8, 19); output p reads input R(-angle) (p - c) / zoom + c
    image = np.zeros((1, 28, 28), "float32")
    image[0, 7:10, 18:21] = 1.0
    out = ram.affine_images(image, 0, degrees, zoom, np.random.default_rng(3))[0]
    replay = np.random.default_rng(3)  # the draws of affine_images, in its order
    angle = np.deg2rad(replay.uniform(-degrees, degrees, 1))[0]
    scale = replay.uniform(1 - zoom, 1 + zoom, 1)[0]
    c = 13.5
    q = np.array([8.0, 19.0]) - c
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    expected = scale * rotation @ q + c
    rows, cols = np.indices(out.shape)
    centroid = np.array([(rows * out).sum(), (cols * out).sum()]) / out.sum()
    np.testing.assert_allclose(centroid, expected, atol=0.3)
    assert abs(angle) > 0.01  # the draw did rotate


@pytest.mark.skipif(keras.backend.backend() == "torch",
                    reason="REINFORCE models need TensorFlow or JAX (TFP)")
def test_translated_default_core_reaches_the_model():
    from keras_attention_vision.applications import RecurrentAttentionModel

    model = RecurrentAttentionModel.from_preset(
        "translated", **ram._overrides(_args("--preset", "translated")))
    assert model.get_config()["core"] == "lstm"


@pytest.mark.skipif(keras.backend.backend() == "torch",
                    reason="REINFORCE models need TensorFlow or JAX (TFP)")
def test_glimpse_encoder_option_reaches_the_model():
    from keras_attention_vision.applications import RecurrentAttentionModel

    args = _args("--preset", "cluttered60", "--glimpse-encoder", "conv",
                 "--glimpse-hidden", "8", "--glimpse-units", "8", "--core-units", "8")
    model = RecurrentAttentionModel.from_preset("cluttered60", **ram._overrides(args))
    assert model.get_config()["glimpse_encoder"] == "conv"
    assert [layer.name for layer in model.glimpse_conv] == ["glimpse_conv1",
                                                            "glimpse_conv2"]


def test_location_range_defaults_per_preset_and_reaches_the_model():
    for preset in ram.PRESET_DEFAULTS:  # every preset: the paper's policy, 1.0
        args = _args("--preset", preset)
        assert ram._overrides(args)["location_range"] == 1.0
    args = _args("--preset", "cluttered60", "--location-range", "0.6")
    assert ram._overrides(args)["location_range"] == 0.6


def test_normalize_advantage_is_off_by_default_and_reaches_the_model():
    assert ram._overrides(_args("--preset", "cluttered60"))["normalize_advantage"] is False
    args = _args("--preset", "cluttered60", "--normalize-advantage")
    assert ram._overrides(args)["normalize_advantage"] is True


def test_policy_heads_and_rollouts_options_reach_the_overrides():
    overrides = ram._overrides(_args("--preset", "cluttered60", "--policy-to-core",
                                     "--rollouts-per-image", "3", "--baseline",
                                     "leave_one_out", "--location-hidden", "7"))
    assert (overrides["policy_to_core"], overrides["rollouts_per_image"],
            overrides["baseline"], overrides["location_hidden"]) == (
        True, 3, "leave_one_out", 7)
    assert ram._overrides(_args("--preset", "cluttered60", "--no-policy-to-core"))[
        "policy_to_core"] is False
    unset = ram._overrides(_args("--preset", "mnist"))
    assert unset["policy_to_core"] is False
    # cluttered100: on in the second stage, off in the curriculum's first
    args = _args("--preset", "cluttered100")
    first = ram._curriculum_first_stage(args)
    assert ram._overrides(args)["policy_to_core"] is True
    assert ram._overrides(first)["policy_to_core"] is False
    args = _args("--preset", "cluttered100", "--no-policy-to-core")
    first = ram._curriculum_first_stage(args)
    assert ram._overrides(args)["policy_to_core"] is False
    assert ram._overrides(first)["policy_to_core"] is False
    assert not {"rollouts_per_image", "baseline", "location_hidden"} & set(unset)


def test_preset_defaults_fill_only_the_unset_options():
    # cluttered60's recipe default (issue 15): glimpse network 256/512, final std
    # 0.05 over 450 epochs; cluttered100 has the same widths (the curriculum)
    args = ram.preset_defaults(_args("--preset", "cluttered60"))
    assert (args.epochs, args.std_final, args.glimpse_hidden, args.glimpse_units) == (
        450, 0.05, 256, 512)
    overrides = ram._overrides(_args("--preset", "cluttered100"))
    assert (overrides["glimpse_hidden"], overrides["glimpse_units"]) == (256, 512)
    schedule = ram._std_schedule(args, args.epochs)
    assert schedule[0] == 0.15 and abs(schedule[-1] - 0.05) < 1e-12
    # the paper's widths where the preset sets none (the model's defaults apply)
    assert "glimpse_hidden" not in ram._overrides(_args("--preset", "mnist"))
    mnist = ram.preset_defaults(_args("--preset", "mnist"))
    assert (mnist.epochs, mnist.std_final, mnist.digit_augment) == (300, 0.02, None)
    # the core: the model preset's where the recipe sets none (mnist's ReLU RNN),
    # an LSTM for translated (the fifth round), the paper's RNN when asked for
    assert "core" not in ram._overrides(_args("--preset", "mnist"))
    assert ram._overrides(_args("--preset", "translated"))["core"] == "lstm"
    assert ram._overrides(_args("--preset", "translated", "--core", "rnn"))["core"] == "rnn"
    # an option given on the command line wins, 0 included
    given = ram.preset_defaults(_args("--preset", "cluttered60", "--epochs", "7",
                                      "--std-final", "0", "--glimpse-hidden", "64"))
    assert (given.epochs, given.std_final, given.glimpse_hidden, given.glimpse_units) == (
        7, 0.0, 64, 512)


@pytest.fixture
def staged(monkeypatch, tmp_path):
    """`ram.train` with `ram.run` replaced by a recorder of the stages, no training.

    Returns `train(*options)` -> figures; the stages run are in `train.calls`.
    """
    calls = []

    def fake_run(args, epochs, verbose=True):
        calls.append(argparse.Namespace(**vars(args)))
        (tmp_path / f"results_{args.preset}.json").write_text(
            '{"figures": {}, "history": [], "args": {}}')
        return {"preset": args.preset, "train_seconds": 10.0 * len(calls),
                "test_error_m1": 50.0 - len(calls)}

    monkeypatch.setattr(ram, "run", fake_run)

    def train(*options):
        args = _args("--preset", "cluttered100", *options)
        args.output_dir = str(tmp_path)
        return ram.train(args)

    train.calls = calls
    return train


def test_cluttered100_trains_its_curriculum_by_default(staged, tmp_path):
    import json

    figures = staged("--seed", "3", "--glimpse-hidden", "64")
    first, second = staged.calls
    # stage 1: cluttered60 for the curriculum's epochs, this run's options and seed
    assert (first.preset, first.epochs, first.initial_weights) == ("cluttered60", 105, None)
    assert (first.seed, first.glimpse_hidden, first.glimpse_units) == (3, 64, 512)
    assert first.std_final == 0.05 and first.digit_augment == "none"
    # stage 2: cluttered100 from stage 1's saved model
    assert (second.preset, second.epochs) == ("cluttered100", 160)
    # the curriculum preset's glimpse encoder in both stages (seventh round)
    assert (first.glimpse_encoder, second.glimpse_encoder) == ("conv", "conv")
    assert second.initial_weights == str(tmp_path / "ram_cluttered60.keras")
    assert (second.seed, second.glimpse_hidden) == (3, 64)
    assert (figures["curriculum_epochs"], figures["curriculum_train_seconds"],
            figures["curriculum_test_error_m1"]) == (105, 10.0, 49.0)
    saved = json.loads((tmp_path / "results_cluttered100.json").read_text())
    assert saved["figures"]["curriculum_preset"] == "cluttered60"


def test_the_first_stage_builds_the_curriculum_presets_model(staged, monkeypatch):
    # a model option the curriculum preset sets and its first stage's preset
    # does not (or sets otherwise) follows the curriculum preset, so stage 1's
    # weights fit stage 2's model; training options stay the first stage's
    monkeypatch.setitem(ram.PRESET_DEFAULTS, "cluttered100", {
        **ram.PRESET_DEFAULTS["cluttered100"], "glimpse_encoder": "conv",
        "glimpse_units": 128, "digit_augment": "affine"})
    staged()
    first, second = staged.calls
    assert (first.glimpse_encoder, first.glimpse_units) == ("conv", 128)
    assert (second.glimpse_encoder, second.glimpse_units) == ("conv", 128)
    assert (first.digit_augment, second.digit_augment) == ("none", "affine")
    staged.calls.clear()
    staged("--glimpse-encoder", "dense")  # given on the command line: both stages
    assert [c.glimpse_encoder for c in staged.calls] == ["dense", "dense"]


@pytest.mark.parametrize("options, initial", [
    (("--curriculum-epochs", "0"), None),             # from scratch, as the paper
    (("--initial-weights", "given.keras"), "given.keras")])
def test_curriculum_epochs_0_or_initial_weights_train_one_stage(staged, options, initial):
    staged(*options)
    assert [(c.preset, c.initial_weights, c.curriculum_epochs) for c in staged.calls] == [
        ("cluttered100", initial, 0)]


def test_a_shorter_first_stage_is_taken(staged):
    staged("--curriculum-epochs", "7", "--epochs", "9")
    assert [(c.preset, c.epochs) for c in staged.calls] == [("cluttered60", 7),
                                                            ("cluttered100", 9)]


@pytest.mark.parametrize("options, message", [
    (("--initial-weights", "m.keras", "--curriculum-epochs", "5"), "give one of the two"),
    (("--preset", "translated", "--curriculum-epochs", "5"), r"is for \['cluttered100'\]")])
def test_curriculum_epochs_conflicts_are_refused_before_training(staged, options, message):
    with pytest.raises(ValueError, match=message):
        staged(*options)
    assert staged.calls == []



@pytest.mark.skipif(keras.backend.backend() == "torch",
                    reason="REINFORCE models need TensorFlow or JAX")
def test_a_resumed_ram_run_ends_as_the_uninterrupted_one(tmp_path, monkeypatch):
    from tests.reinforce_testing import resumed_and_uninterrupted

    (x_train, y_train), (x_test, y_test) = load_mnist("embedded", verbose=False)

    def small_data(preset, seed, digit_augment=None):  # 2 batches, 64 test digits
        def train_epoch(rng):
            return x_train[:128, ..., None].astype("float32") / 255.0
        return train_epoch, x_test[:64, ..., None] / 255.0, y_train[:128], y_test[:64]

    monkeypatch.setattr(ram, "_data", small_data)

    def run(name):  # 3 epochs: std annealed, affine digits, cosine learning rate
        args = _args("--preset", "mnist", "--epochs", "3", "--log-every", "1",
                     "--samples", "2")
        args.output_dir = str(tmp_path / name)
        args.checkpoint_dir = str(tmp_path / name / "checkpoints")
        ram.run(ram.preset_defaults(args), args.epochs, verbose=False)
        model = keras.saving.load_model(tmp_path / name / "ram_mnist.keras", compile=False)
        return [keras.ops.convert_to_numpy(w) for w in model.weights]

    resumed, uninterrupted = resumed_and_uninterrupted(run, monkeypatch)
    assert len(resumed) == len(uninterrupted) > 0
    for a, b in zip(resumed, uninterrupted):
        np.testing.assert_array_equal(a, b)
