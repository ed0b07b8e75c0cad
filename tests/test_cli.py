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
    for command in ("demo", "train", "evaluate", "visualize", "benchmark"):
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
    _, recipes = cli.build_parser()
    assert list(recipes) == ["ram", "non-local", "sagan", "pixelcnn"]
    for name, module in recipes.items():
        assert module.NAME == name
        assert isinstance(module.HELP, str) and module.HELP
        for function in ("add_arguments", "train", "demo"):
            assert callable(getattr(module, function)), f"{name}.{function}"


def test_benchmark_lists_runs_and_rejects(tmp_path, capsys):
    (tmp_path / "probe.py").write_text("print('probe ran')\n")
    assert cli.main(["benchmark", "--dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.split() == ["probe"]
    assert cli.main(["benchmark", "probe", "--dir", str(tmp_path)]) == 0
    assert "probe ran" in capsys.readouterr().out
    assert cli.main(["benchmark", "nope", "--dir", str(tmp_path)]) == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err
