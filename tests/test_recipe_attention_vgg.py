"""The attention-vgg recipe end to end, at tiny sizes, on the active backend."""

import argparse
import json
import os

import keras

from keras_attention_vision.recipes import attention_vgg


def _args(tmp_path):
    parser = argparse.ArgumentParser()
    parser.add_argument("--output-dir", default=str(tmp_path / "out"))
    parser.add_argument("--seed", type=int, default=0)
    attention_vgg.add_arguments(parser)
    return parser.parse_args([])


def test_demo_writes_its_files_and_returns_the_documented_figures(tmp_path):
    args = _args(tmp_path)
    figures = attention_vgg.demo(args, canvas_size=28, distractors=2, train_size=32,
                                 test_size=8, epochs=1, batch_size=16,
                                 explanations=["gradcam"], fgsm_epsilons=[0.0, 0.1],
                                 map_examples=2)
    out = args.output_dir
    assert os.path.getsize(os.path.join(out, "maps.png")) > 1000
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    assert "FGSM" in open(os.path.join(out, "results.md")).read()
    on_tf = keras.backend.backend() == "tensorflow"
    maps = ["attention_layer7", "attention_layer10", "attention_layer13"]
    expected = set()
    for model in ("vgg_att3_concat_pc", "vgg"):
        model_maps = (maps if model != "vgg" else []) + (["gradcam"] if on_tf else [])
        expected |= {f"{model}_test_error", f"{model}_train_seconds",
                     f"{model}_fgsm_0_error", f"{model}_fgsm_0.1_error"}
        expected |= {f"{model}_{m}_{s}" for m in model_maps for s in ("pointing_game", "iou")}
    assert set(figures) == expected
    for key, value in figures.items():
        if not key.endswith("seconds"):
            assert 0.0 <= value <= 1.0, key
    # epsilon 0 is the clean error
    for model in ("vgg_att3_concat_pc", "vgg"):
        assert figures[f"{model}_fgsm_0_error"] == figures[f"{model}_test_error"]
        assert results[model]["test_error"] == figures[f"{model}_test_error"]
    assert ("note" in results) != on_tf
