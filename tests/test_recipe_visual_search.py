"""The visual-search recipe end to end, at tiny sizes, on a TFP backend."""

import argparse
import json
import os

import keras
import numpy as np
import pytest

from keras_attention_vision.recipes import visual_search
from tests.reinforce_testing import needs_tfp, resumed_and_uninterrupted


def _args(tmp_path, *extra):
    parser = argparse.ArgumentParser()
    parser.add_argument("--output-dir", default=str(tmp_path / "out"))
    parser.add_argument("--seed", type=int, default=0)
    visual_search.add_arguments(parser)
    return parser.parse_args(["--fixations", "2", "--train-scenes", "32", "--test-scenes",
                              "8", "--core-units", "8", "--batch-size", "16", *extra])


@needs_tfp
def test_run_writes_the_table_the_picture_and_the_model(tmp_path):
    args = _args(tmp_path)
    figures = visual_search.run(args, epochs=2, verbose=False)
    for name in ("agent", "random", "raster"):
        assert 0.0 <= figures[f"{name}_success_within_k"] <= 1.0
        assert 0.0 <= figures[f"{name}_false_found_rate"] <= 1.0
    assert figures["K_fixations"] == 2 and figures["backend"] == keras.backend.backend()
    out = args.output_dir
    assert os.path.getsize(os.path.join(out, "search_paths.png")) > 1000
    with open(os.path.join(out, "table.md")) as f:
        table = f.read()
    assert "| raster | the agent |" in table and "perfect recogniser" in table
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    assert set(results["rows"]) == {"agent", "random", "raster"}
    assert results["test_scenes"] == 8
    agent = keras.saving.load_model(os.path.join(out, "visual_search_agent.keras"))
    assert agent.num_fixations == 2
    assert agent.fixation_weight == 1.0  # after the warm-up


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch only")
def test_torch_is_refused_with_the_clear_error(tmp_path):
    from keras_attention_vision.distributions import UnsupportedBackendError

    with pytest.raises(UnsupportedBackendError, match="tensorflow and jax"):
        visual_search.run(_args(tmp_path), epochs=1, verbose=False)


@needs_tfp
def test_a_resumed_run_ends_as_the_uninterrupted_one(tmp_path, monkeypatch):
    def run(name):  # 3 epochs: warm-up then fixations, cosine learning rate
        args = _args(tmp_path, "--epochs", "3", "--warmup-epochs", "1", "--log-every", "1")
        args.output_dir = str(tmp_path / name)
        args.checkpoint_dir = str(tmp_path / name / "checkpoints")
        visual_search.run(args, args.epochs, verbose=False)
        model = keras.saving.load_model(tmp_path / name / "visual_search_agent.keras",
                                        compile=False)
        return [keras.ops.convert_to_numpy(w) for w in model.weights]

    resumed, uninterrupted = resumed_and_uninterrupted(run, monkeypatch)
    assert len(resumed) == len(uninterrupted) > 0
    for a, b in zip(resumed, uninterrupted):
        np.testing.assert_array_equal(a, b)
