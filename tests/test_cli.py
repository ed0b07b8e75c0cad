import subprocess
import sys

import pytest

from keras_attention_vision import cli
from keras_attention_vision.version import __version__


def test_version_end_to_end():
    out = subprocess.run([sys.executable, "-m", "keras_attention_vision.cli", "--version"],
                         capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.strip() == f"kav {__version__}"


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


@pytest.mark.parametrize("args, complaint", [
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["train"], "the following arguments are required: RECIPE"),
    (["train", "no-such-recipe"], "invalid choice: 'no-such-recipe'"),
    (["demo", "--seed", "x"], "invalid int value: 'x'"),
    ([], "the following arguments are required: COMMAND"),
])
def test_bad_usage_exits_2_with_short_usage(capsys, args, complaint):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: kav")
    assert complaint in err
    assert len(err.splitlines()) <= 4


def test_recipes_follow_the_interface():
    from keras_attention_vision.recipes import ORDER

    _, recipes = cli.build_parser()
    assert list(recipes)[:4] == ["ram", "non-local", "sagan", "pixelcnn"]
    # every recipe is in the documented order, which lists no missing one
    assert list(recipes) == [name for name in ORDER if name in recipes]
    for name, module in recipes.items():
        assert module.NAME == name
        assert isinstance(module.HELP, str) and module.HELP
        for function in ("add_arguments", "train", "demo"):
            assert callable(getattr(module, function)), f"{name}.{function}"


def test_benchmark_lists_runs_and_rejects(tmp_path, capsys):
    (tmp_path / "_helper.py").write_text("MESSAGE = 'probe ran'\n")
    (tmp_path / "probe.py").write_text("from _helper import MESSAGE\nprint(MESSAGE)\n")
    assert cli.main(["benchmark", "--dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.split() == ["probe"]
    assert cli.main(["benchmark", "probe", "--dir", str(tmp_path)]) == 0
    assert "probe ran" in capsys.readouterr().out
    assert cli.main(["benchmark", "nope", "--dir", str(tmp_path)]) == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("args, complaint", [
    (["train", "ram", "--epochs", "0"], "--epochs must be > 0. Received: 0"),
    (["train", "pixelcnn", "--epochs", "-1"], "--epochs must be > 0. Received: -1"),
    (["train", "sagan", "--batch-size", "0"], "--batch-size must be > 0. Received: 0"),
    (["train", "non-local", "--learning-rate", "-0.1"],
     "--learning-rate must be > 0. Received: -0.1"),
    (["train", "non-local", "--distractors", "-1"], "--distractors must be >= 0"),
    (["train", "ram", "--output-dir", "/proc/kav"], "is not a writable folder"),
])
def test_bad_option_values_exit_2_before_any_work(capsys, args, complaint):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert complaint in err
    assert "Traceback" not in err
    assert len(err.splitlines()) <= 4


def test_steps_without_recipes_are_not_offered(capsys):
    parser, recipes = cli.build_parser()
    steps = parser._subparsers._group_actions[0].choices
    for step in ("evaluate", "visualize"):
        having = [name for name, module in recipes.items() if hasattr(module, step)]
        assert (step in steps) == bool(having)
