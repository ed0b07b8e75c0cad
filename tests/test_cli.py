import subprocess
import sys

import pytest

from keras_attention_vision import cli
from keras_attention_vision.version import __version__


def run_kav(*args):
    return subprocess.run([sys.executable, "-m", "keras_attention_vision.cli", *args],
                          capture_output=True, text=True)


def test_version():
    out = run_kav("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"kav {__version__}"


def test_help_lists_every_command():
    out = run_kav("--help")
    assert out.returncode == 0
    for command in ("demo", "train", "evaluate", "visualize", "benchmark"):
        assert command in out.stdout


@pytest.mark.parametrize("args", [["frobnicate"], ["train"], ["train", "no-such-recipe"],
                                  ["demo", "--seed", "x"], []])
def test_bad_usage_exits_2_with_short_usage(args):
    out = run_kav(*args)
    assert out.returncode == 2, out
    assert out.stderr.startswith("usage: kav")
    assert "Traceback" not in out.stderr


def test_recipes_follow_the_interface():
    _, recipes = cli.build_parser()
    for name, module in recipes.items():
        assert module.NAME == name
        assert isinstance(module.HELP, str) and module.HELP
        for function in ("add_arguments", "train", "demo"):
            assert callable(getattr(module, function)), f"{name}.{function}"


def test_benchmark_lists_and_rejects(tmp_path):
    (tmp_path / "probe.py").write_text("print('probe ran')\n")
    listed = run_kav("benchmark", "--dir", str(tmp_path))
    assert listed.returncode == 0 and listed.stdout.split() == ["probe"]
    ran = run_kav("benchmark", "probe", "--dir", str(tmp_path))
    assert ran.returncode == 0 and "probe ran" in ran.stdout
    unknown = run_kav("benchmark", "nope", "--dir", str(tmp_path))
    assert unknown.returncode == 2 and "unknown benchmark 'nope'" in unknown.stderr
