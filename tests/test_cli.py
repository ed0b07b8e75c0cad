import argparse
import os
import shlex
import subprocess
import sys
import textwrap
import time
import types

import pytest

import keras_attention_vision_cli as entry
from keras_attention_vision import cli
from keras_attention_vision.version import __version__

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_entry(code, cwd=ROOT, env=None):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, cwd=cwd, timeout=300, env={**os.environ, **(env or {})})


def test_version_end_to_end():
    out = subprocess.run([sys.executable, "-m", "keras_attention_vision.cli", "--version"],
                         capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.strip() == f"kav {__version__}"


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["train", "ram", "--help"],
                                  ["train", "nope"]])
def test_help_and_version_answer_without_tensorflow(argv):
    start = time.perf_counter()
    out = _run_entry(f"""
        import sys
        import keras_attention_vision_cli as entry
        try:
            code = entry.main({argv!r})
        except SystemExit as stop:
            code = stop.code
        heavy = sorted(m for m in ("keras", "tensorflow", "jax", "torch") if m in sys.modules)
        print("EXIT", code, "HEAVY", heavy)
    """)
    seconds = time.perf_counter() - start
    code = 2 if argv == ["train", "nope"] else 0
    assert out.stdout.splitlines()[-1] == f"EXIT {code} HEAVY []", out.stderr
    assert seconds < 2.0 * (3 if os.environ.get("CI") else 1), seconds
    if argv == ["--version"]:
        assert out.stdout.splitlines()[0] == f"kav {__version__}"


def test_deferred_package_import_registers_every_class():
    """`kav` runs the package `__init__` after parsing: load_model finds the classes."""
    out = _run_entry("""
        import sys
        import keras_attention_vision_cli as entry
        entry.defer_package_init()
        from keras_attention_vision import cli
        parser, recipes = cli.build_parser()
        assert "keras" not in sys.modules
        cli.finish_package_import()
        import keras
        import keras_attention_vision as kav
        block = kav.layers.NonLocalBlock
        assert keras.saving.get_registered_object(
            "keras_attention_vision>NonLocalBlock") is block
        assert kav.recipes is sys.modules["keras_attention_vision.recipes"]
        assert kav.__version__ and not hasattr(kav, "_kav_finish_import")
        print("OK")
    """)
    assert out.stdout.strip().endswith("OK"), out.stderr[-3000:]


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
                    reason="the filter does not depend on the backend: tested once")
def test_tensorflow_log_lines_are_filtered(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(textwrap.dedent("""
        import sys
        import tensorflow as tf
        list(tf.data.Dataset.range(4).map(lambda x: x + 1).batch(2))
        print("user message", file=sys.stderr)
        print("probe done")
    """))
    code = f"""
        import sys
        import keras_attention_vision_cli as entry
        sys.exit(entry.main(["benchmark", "probe", "--dir", {str(tmp_path)!r}]))
    """
    env = {"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "0"}
    out = _run_entry(code, env=env)
    assert out.returncode == 0, out.stderr
    assert "probe done" in out.stdout
    assert "user message" in out.stderr
    for line in out.stderr.splitlines():
        assert not entry.TF_LOG_LINE.match(line.encode()), line
    shown = _run_entry(code, env={**env, "KAV_TF_LOGS": "1"})  # the lines were there
    assert any(entry.TF_LOG_LINE.match(line.encode()) for line in shown.stderr.splitlines())


@pytest.mark.parametrize("line, dropped", [
    ("E0000 00:00:1795957566.331648   25676 cuda_platform.cc:52] failed call to cuInit", True),
    ("I0000 00:00:1795957560.648900   25676 port.cc:153] oneDNN custom operations are on", True),
    ("W0000 00:00:1795957560.6489 1 op_level_cost_estimator.cc:699] Error in PredictCost()",
     True),
    ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
     True),
    ("To enable the following instructions: AVX2 FMA, in other operations, rebuild "
     "TensorFlow with the appropriate compiler flags.", True),
    ("Traceback (most recent call last):", False),
    ("kav train ram: error: --epochs must be > 0", False),
])
def test_tensorflow_log_line_pattern(line, dropped):
    assert bool(entry.TF_LOG_LINE.match(line.encode())) == dropped


def test_continuation_lines_go_with_their_log_line():
    lines = [b"E0000 00:00:1795.5 25676 meta_optimizer.cc:967] NodeDef mentions attribute "
             b"use_unbounded_threadpool\n", b"\twhen importing GraphDef to MLIR module\n",
             b"Epoch 1/2\n", b"\tindented user text\n"]
    kept, dropping = entry._keep(lines, False)
    assert kept == b"Epoch 1/2\n\tindented user text\n" and not dropping


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    _, recipes = cli.build_parser()
    offered = [step for step in ("evaluate", "visualize")
               if any(hasattr(module, step) for module in recipes.values())]
    for command in ("demo", "train", "benchmark", *offered):
        assert command in out


def _walk(parser, path=("kav",)):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name))


def test_every_option_has_help():
    parser, _ = cli.build_parser()
    missing = []
    for path, sub in _walk(parser):
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            if not action.help or not action.help.strip():
                missing.append(f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, missing


def test_every_valued_option_shows_its_default_zero_included():
    # 0 and 0.0 equal False: they must still be shown (show-attend-tell's --lambda 0)
    parser, _ = cli.build_parser()
    hidden = []
    for path, sub in _walk(parser):
        for action in sub._actions:
            if (action.option_strings and action.nargs != 0 and action.default is not None
                    and action.default != argparse.SUPPRESS
                    and "default" not in (action.help or "")):
                hidden.append(f"{' '.join(path)} {action.option_strings[0]}")
    assert not hidden, hidden
    sat = next(sub for path, sub in _walk(parser) if path[-2:] == ("train", "show-attend-tell"))
    assert "(default: 0.0)" in " ".join(sat.format_help().split())  # --lambda


@pytest.mark.parametrize("args, complaint", [
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["train"], "the following arguments are required: RECIPE"),
    (["train", "no-such-recipe"], "invalid choice: 'no-such-recipe'"),
    (["demo", "--seed", "x"], "invalid int value: 'x'"),
    (["demo", "--only", "nope"], "invalid choice: 'nope'"),
    ([], "the following arguments are required: COMMAND"),
])
def test_bad_usage_is_one_line_and_exit_2(capsys, args, complaint):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("kav")
    assert complaint in err
    assert "--help" in err
    assert len(err.splitlines()) == 1


def test_recipes_follow_the_interface():
    from keras_attention_vision.recipes import ORDER

    _, recipes = cli.build_parser()
    assert list(recipes)[:1] == ["ram"]
    # every recipe is in the documented order, which lists no missing one
    assert list(recipes) == [name for name in ORDER if name in recipes]
    for name, module in recipes.items():
        assert module.NAME == name
        assert isinstance(module.HELP, str) and module.HELP
        for function in ("add_arguments", "train", "demo"):
            assert callable(getattr(module, function)), f"{name}.{function}"


def test_recipe_modules_import_nothing_heavy():
    out = _run_entry("""
        import sys
        import keras_attention_vision_cli as entry
        entry.defer_package_init()
        from keras_attention_vision.recipes import available_recipes
        names = list(available_recipes())
        heavy = sorted(m for m in ("keras", "tensorflow", "numpy", "matplotlib")
                       if m in sys.modules)
        print(len(names), heavy)
    """)
    assert out.stdout.strip().endswith("[]"), out.stdout + out.stderr[-2000:]


def test_benchmark_lists_runs_and_rejects(tmp_path, capsys):
    (tmp_path / "_helper.py").write_text("MESSAGE = 'probe ran'\n")
    (tmp_path / "probe.py").write_text("from _helper import MESSAGE\nprint(MESSAGE)\n")
    assert cli.main(["benchmark", "--dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.split() == ["probe"]
    assert cli.main(["benchmark", "probe", "--dir", str(tmp_path)]) == 0
    assert "probe ran" in capsys.readouterr().out
    assert cli.main(["benchmark", "nope", "--dir", str(tmp_path)]) == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err


def test_benchmark_folder_found_outside_the_checkout(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no ./benchmarks here: the checkout's folder is used
    assert cli.main(["benchmark"]) == 0
    assert "ram_epoch" in capsys.readouterr().out.split()
    assert cli.main(["benchmark", "--dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "ship with the source repository" in err and "--dir" in err


@pytest.mark.parametrize("args, complaint", [
    (["train", "ram", "--epochs", "0"], "--epochs must be > 0. Received: 0"),
    (["train", "pixelcnn", "--epochs", "-1"], "--epochs must be > 0. Received: -1"),
    (["train", "sagan", "--batch-size", "0"], "--batch-size must be > 0. Received: 0"),
    (["train", "non-local", "--learning-rate", "-0.1"],
     "--learning-rate must be > 0. Received: -0.1"),
    (["train", "non-local", "--distractors", "-1"], "--distractors must be >= 0"),
    (["train", "ram", "--seed", "-3"], "--seed must be >= 0"),
    (["train", "attention-vgg", "--fgsm-epsilons", "0.1", "-0.2"],
     "--fgsm-epsilons must be >= 0. Received: -0.2 (in [0.1, -0.2])"),
    (["train", "image-transformer", "--flanges", "0", "-7"], "--flanges must be >= 0"),
    (["demo", "--seed", "-1"], "--seed must be >= 0"),
    (["train", "ram", "--output-dir", "/proc/kav"], "is not a writable folder"),
    (["demo", "--output-dir", "/proc/kav"], "is not a writable folder"),
])
def test_bad_option_values_exit_2_before_any_work(capsys, args, complaint):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert complaint in err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1


def test_every_recipe_default_passes_validation(tmp_path):
    parser, recipes = cli.build_parser()
    for name in recipes:
        args = parser.parse_args(["train", name, "--output-dir", str(tmp_path)])
        cli._validate(parser, args)  # parser.error would exit


@pytest.mark.parametrize("args", [
    ["train", "show-attend-tell", "--lambda", "0"],   # no doubly stochastic term
    ["train", "ram", "--shift", "0", "--rotate", "0", "--zoom", "0"],
])
def test_zero_is_accepted_where_it_means_off(tmp_path, args):
    parser, _ = cli.build_parser()
    cli._validate(parser, parser.parse_args([*args, "--output-dir", str(tmp_path)]))


def test_output_dir_that_is_a_file_is_rejected(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "ram", "--output-dir", str(target)])
    assert exit_info.value.code == 2
    assert "is not a writable folder" in capsys.readouterr().err


def test_steps_without_recipes_are_not_offered(capsys):
    parser, recipes = cli.build_parser()
    steps = parser._subparsers._group_actions[0].choices
    for step in ("evaluate", "visualize"):
        having = [name for name, module in recipes.items() if hasattr(module, step)]
        assert (step in steps) == bool(having)


# ----------------------------------------------------------------------------------
# kav train: run state, Ctrl-C, errors, with a fake recipe (no training)
# ----------------------------------------------------------------------------------


@pytest.fixture
def fake_recipe(monkeypatch):
    from keras_attention_vision import recipes as recipes_package

    module = types.ModuleType("fake_recipe")
    module.NAME, module.HELP = "fake", "a fake recipe for the tests"
    module.behaviour = "ok"

    def add_arguments(parser):
        parser.add_argument("--epochs", type=int, default=3, help="training epochs")

    def train(args):
        os.makedirs(os.path.join(getattr(args, "checkpoint_dir", None) or args.output_dir,
                                 "model"), exist_ok=True)
        if module.behaviour == "interrupt":
            raise KeyboardInterrupt
        if module.behaviour == "bad value":
            raise ValueError("query_shape must divide the image. Received: query_shape=5")
        if module.behaviour == "long error":
            raise ValueError("A total of 22 objects could not be loaded.\n<layer 1>\n<layer 2>")
        if module.behaviour == "backend":
            from keras_attention_vision.distributions import UnsupportedBackendError

            raise UnsupportedBackendError("REINFORCE models need TensorFlow or JAX.")
        with open(os.path.join(args.output_dir, "results.json"), "w") as f:
            f.write("{}")
        return {"test_error": 0.125, "test_bits_per_dim": 1.5, "train_seconds": 3.0}

    module.add_arguments, module.train, module.demo = add_arguments, train, train
    original = recipes_package.available_recipes
    monkeypatch.setattr(recipes_package, "available_recipes",
                        lambda: {**original(), "fake": module})
    return module


def test_train_marks_finished_and_refuses_to_overwrite(tmp_path, capsys, fake_recipe):
    out = str(tmp_path / "out")
    assert cli.main(["train", "fake", "--output-dir", out]) == 0
    printed = capsys.readouterr().out
    assert "test_error 12.5%" in printed and "1.5 bits/dim" in printed and "3.0 s" in printed
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "fake", "--output-dir", out])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "holds a finished run; use --restart" in err and len(err.splitlines()) == 1
    assert cli.main(["train", "fake", "--output-dir", out, "--restart"]) == 0


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path, capsys, fake_recipe):
    fake_recipe.behaviour = "interrupt"
    out = str(tmp_path / "out")
    assert cli.main(["train", "fake", "--output-dir", out]) == 130
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err
    assert os.path.join(out, "fake", "checkpoints") in lines[0]
    assert "again to resume" in lines[0]
    fake_recipe.behaviour = "ok"  # the same command resumes (same options)
    assert cli.main(["train", "fake", "--output-dir", out]) == 0
    assert "resuming the run" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # other options: refused, not mixed
        cli.main(["train", "fake", "--output-dir", out, "--restart", "--epochs", "0"])


def test_unfinished_run_with_other_options_is_refused(tmp_path, capsys, fake_recipe):
    from keras_attention_vision.recipes import _checkpoint

    fake_recipe.behaviour = "interrupt"
    out = str(tmp_path / "out")
    assert cli.main(["train", "fake", "--output-dir", out]) == 130
    capsys.readouterr()
    # as if interrupted after its first epoch: there is something to resume
    with open(os.path.join(out, "fake", "checkpoints", "model",
                           _checkpoint.STATE_FILE), "w") as f:
        f.write('{"epoch": 1}')
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "fake", "--output-dir", out, "--epochs", "5"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "other options (--epochs 3)" in err and len(err.splitlines()) == 1


def test_demo_does_not_overwrite_a_train_run(tmp_path, capsys, fake_recipe):
    out = str(tmp_path / "out")
    assert cli.main(["train", "fake", "--output-dir", out]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--only", "fake", "--output-dir", out])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "holds the results of `kav train fake`" in err and len(err.splitlines()) == 1


def test_demo_writes_the_report(tmp_path, capsys, fake_recipe):
    out = tmp_path / "out"
    assert cli.main(["demo", "--only", "fake", "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fake: test_error 12.5%, test_bits_per_dim 1.5 bits/dim" in printed
    assert (out / "index.html").exists() and (out / "fake" / "results.json").exists()


def test_value_error_in_a_recipe_is_one_line(tmp_path, capsys, fake_recipe):
    fake_recipe.behaviour = "bad value"
    assert cli.main(["train", "fake", "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kav train fake: error: query_shape must divide")
    assert len(err.splitlines()) == 1


@pytest.fixture
def fake_recipe_with_preset(fake_recipe):
    """The fake recipe with `--weights` (default preset `pixelcnn_mnist`, which ships)."""
    from keras_attention_vision.recipes._weights import add_weights_argument

    calls = []
    original = fake_recipe.add_arguments

    def add_arguments(parser):
        original(parser)
        add_weights_argument(parser, fake_recipe.default_preset)

    def evaluate(args):
        calls.append(("evaluate", args.weights, args.output_dir))
        return {"weights": args.default_preset, "test_error_m1": 3.3}

    def visualize(args):
        calls.append(("visualize", args.weights, args.output_dir))
        open(os.path.join(args.output_dir, "preset_samples.png"), "wb").close()

    fake_recipe.default_preset = "pixelcnn_mnist"
    fake_recipe.add_arguments, fake_recipe.evaluate = add_arguments, evaluate
    fake_recipe.visualize, fake_recipe.calls = visualize, calls
    return fake_recipe


def test_demo_shows_the_shipped_preset(tmp_path, capsys, fake_recipe_with_preset):
    out = tmp_path / "out"
    assert cli.main(["demo", "--only", "fake", "--output-dir", str(out)]) == 0
    preset_dir = str(out / "fake" / "preset")
    # evaluate and visualize on the default preset (no --weights), into fake/preset
    assert fake_recipe_with_preset.calls == [("evaluate", None, preset_dir),
                                             ("visualize", None, preset_dir)]
    printed = capsys.readouterr().out
    assert "preset pixelcnn_mnist" in printed
    assert "preset_test_error_m1 3.30%" in printed  # the unit of the unprefixed key
    assert "test_error 12.5%" in printed            # and the short training still runs
    assert "kav demo [" in printed and "1/1 recipes" in printed  # the progress line
    assert "fake/preset/preset_samples.png" in (out / "index.html").read_text()


def test_demo_without_presets_or_without_a_shipped_one(tmp_path, capsys,
                                                       fake_recipe_with_preset):
    assert cli.main(["demo", "--only", "fake", "--no-presets",
                     "--output-dir", str(tmp_path / "a")]) == 0
    assert fake_recipe_with_preset.calls == []
    fake_recipe_with_preset.default_preset = "no_such_preset"
    assert cli.main(["demo", "--only", "fake", "--output-dir", str(tmp_path / "b")]) == 0
    assert fake_recipe_with_preset.calls == []
    assert "no shipped preset to show" in capsys.readouterr().out


def test_interrupt_hint_resumes_without_restart_and_quotes(tmp_path, capsys, fake_recipe,
                                                           monkeypatch):
    fake_recipe.behaviour = "interrupt"
    out = str(tmp_path / "my out")
    argv = ["train", "fake", "--output-dir", out, "--restart"]
    monkeypatch.setattr(sys, "argv", ["kav", *argv])
    assert cli.main(argv) == 130
    hint = capsys.readouterr().err.split("Run `")[1].split("`")[0]
    assert "--restart" not in hint and shlex.quote(out) in hint, hint


@pytest.mark.parametrize("behaviour, text", [
    ("backend", "REINFORCE models need TensorFlow or JAX."),
    ("long error", "A total of 22 objects could not be loaded."),
])
def test_backend_and_multi_line_errors_are_one_line(tmp_path, capsys, fake_recipe,
                                                    behaviour, text):
    fake_recipe.behaviour = behaviour
    assert cli.main(["train", "fake", "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert text in err and len(err.splitlines()) == 1, err


def test_a_run_that_finished_no_epoch_does_not_block_other_options(tmp_path, capsys,
                                                                   fake_recipe):
    out = str(tmp_path / "out")
    fake_recipe.behaviour = "bad value"  # fails at start: run.json unfinished, no epoch
    assert cli.main(["train", "fake", "--output-dir", out]) == 2
    fake_recipe.behaviour = "ok"
    assert cli.main(["train", "fake", "--output-dir", out, "--epochs", "5"]) == 0
    assert "finished no epoch; starting afresh" in capsys.readouterr().out
