"""The image-transformer recipe end to end, at tiny sizes, on the active backend."""

import argparse
import json
import os

import numpy as np

from keras_attention_vision.recipes import image_transformer


def _args(tmp_path):
    parser = argparse.ArgumentParser()
    parser.add_argument("--output-dir", default=str(tmp_path / "out"))
    parser.add_argument("--seed", type=int, default=0)
    image_transformer.add_arguments(parser)
    return parser.parse_args(["--num-layers", "1", "--hidden-size", "8",
                              "--num-heads", "2", "--batch-size", "16"])


def test_demo_writes_its_files_and_returns_the_documented_figures(tmp_path):
    args = _args(tmp_path)
    configs = {"1d": dict(attention="1d", query_length=28, memory_length=28),
               "2d_flange0": dict(attention="2d", query_shape=(7, 7),
                                  memory_flange=(0, 0))}
    figures = image_transformer.demo(args, epochs=1, train_size=32, test_size=8,
                                     configs=configs, super_resolution=True,
                                     num_completions=2, learning_rate=1e-2)
    assert set(figures) == {"untrained_bits_per_dim", "test_bits_per_dim",
                            "completions_keep_given_half"}
    assert figures["completions_keep_given_half"] is True
    assert 0.0 < figures["test_bits_per_dim"] < 20.0
    out = args.output_dir
    for picture in ("completions.png", "super_resolution.png"):
        assert os.path.getsize(os.path.join(out, picture)) > 1000
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    assert set(results["models"]) == {"1d", "2d_flange0", "super_resolution"}
    assert results["models"]["2d_flange0"]["memory_window_positions"] == 49
    assert results["test_size"] == 8 and results["train_size"] == 32
    assert results["2d_flange0_test_bits_per_dim"] == figures["test_bits_per_dim"]
    sr = results["models"]["super_resolution"]
    assert sr["low_resolution_positions"] == "aligned"
    assert sr["unconditional_model"] == "2d_flange0"
    saved = results["super_resolution_bits_per_dim_saved_fraction"]
    free, given = results["2d_flange0_test_bits_per_dim"], sr["test_bits_per_dim"]
    assert abs(saved - (free - given) / free) < 1e-3
    for key in ("super_resolution_input_mae", "unconditional_input_mae"):
        assert 0.0 <= results[key] <= 255.0


def test_input_consistency_is_the_mean_gap_of_block_means():
    low = np.array([[[[10.0], [200.0]]]])  # (1, 1, 2, 1)
    exact = np.repeat(np.repeat(low, 2, axis=1), 2, axis=2)
    assert image_transformer.input_consistency(exact, low, 2) == 0.0
    off = exact.copy()
    off[0, 0, 0, 0] += 8.0  # one of the four pixels of the first block
    assert image_transformer.input_consistency(off, low, 2) == 1.0  # 2 / 2 blocks


def test_downscale_averages_blocks():
    images = 4 * np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    low = image_transformer.downscale(images, 2)
    np.testing.assert_array_equal(low[0, :, :, 0], [[10.0, 18.0], [42.0, 50.0]])


def test_model_configs_follow_the_arguments(tmp_path):
    args = _args(tmp_path)
    args.flanges = [0, 3]
    configs = image_transformer.model_configs(args)
    assert list(configs) == ["pixelcnn", "1d", "2d_flange0", "2d_flange3"]
    assert configs["2d_flange3"]["memory_flange"] == (3, 3)
    assert configs["pixelcnn"]["distribution"] == "categorical"
    args.pixelcnn_baseline = False  # --no-pixelcnn-baseline
    assert list(image_transformer.model_configs(args)) == ["1d", "2d_flange0", "2d_flange3"]


def test_pixelcnn_baseline_is_trained_on_the_same_digits(tmp_path):
    """The baseline's bits/dim is its own on the same test digits; a PixelCNN alone runs."""
    from keras_attention_vision.applications import PixelCNN
    from keras_attention_vision.datasets import load_mnist

    args = _args(tmp_path)
    baseline = dict(application="PixelCNN", num_layers=2, filters=8,
                    distribution="categorical")
    configs = {"pixelcnn": baseline,
               "2d_flange0": dict(attention="2d", query_shape=(7, 7), memory_flange=(0, 0))}
    figures = image_transformer.run(args, epochs=1, train_size=32, configs=configs,
                                    super_resolution=False, num_completions=2,
                                    learning_rate=1e-2, test_size=8)
    with open(os.path.join(args.output_dir, "results.json")) as f:
        results = json.load(f)
    assert results["models"]["pixelcnn"]["application"] == "PixelCNN"
    assert results["models"]["2d_flange0"]["application"] == "ImageTransformer"
    assert results["models"]["pixelcnn"]["memory_window_positions"] is None
    assert "completions_keep_given_half" in figures  # by the Image Transformer
    # The figure is the saved model's bits/dim on the first 8 test digits.
    model = PixelCNN(input_shape=(28, 28, 1), num_layers=2, filters=8,
                     distribution="categorical")
    model.load_weights(os.path.join(args.output_dir, "pixelcnn.weights.h5"))
    (_, _), (x_test, _) = load_mnist("embedded", verbose=False)
    expected = model.bits_per_dim(x_test[:8, :, :, None].astype("float32"))
    assert abs(figures["pixelcnn_test_bits_per_dim"] - expected) < 1e-3
    alone = image_transformer.run(args, epochs=1, train_size=16,
                                  configs={"pixelcnn": baseline}, super_resolution=True,
                                  num_completions=2, learning_rate=1e-2, test_size=8)
    assert "completion_seconds" not in alone and "pixelcnn_test_bits_per_dim" in alone
