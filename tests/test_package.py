"""Package-wide contracts: light import, every public class exported and documented."""

import importlib
import inspect
import pathlib
import pkgutil
import subprocess
import sys

import keras_attention_vision

ROOT = pathlib.Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow_probability", "matplotlib", "mlxtend", "sklearn", "tf_keras_vis")


def test_import_does_no_heavy_work():
    # keras itself may load some of these; count only what our import adds.
    code = (
        "import sys, keras; before = set(sys.modules); import keras_attention_vision; "
        f"print([m for m in {HEAVY!r} if m in sys.modules and m not in before])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_package_import_registers_public_classes_for_loading():
    # A user's script does `import keras_attention_vision` and then load_model():
    # the registered names must resolve without importing submodules by hand.
    code = (
        "import keras, keras_attention_vision; "
        "names = ['NonLocalBlock', 'GlimpseSensor', 'MaskedConv2D', "
        "'RecurrentAttentionModel', 'PixelCNN']; "
        "print([n for n in names if keras.saving.get_registered_object("
        "'keras_attention_vision>' + n) is None])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def _all_modules():
    prefix = keras_attention_vision.__name__ + "."
    for info in pkgutil.walk_packages(keras_attention_vision.__path__, prefix):
        if ".recipes." in info.name or info.name.endswith(".cli"):
            continue
        yield importlib.import_module(info.name)


def test_every_exported_class_is_public_and_documented():
    api_page = (ROOT / "docs" / "api.md").read_text()
    exported = {
        obj
        for module in _all_modules()
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if "_kav_export_path" in vars(obj)
    }
    for cls in exported:
        for path in cls._kav_export_path:
            module_name, _, name = path.rpartition(".")
            module = importlib.import_module(module_name)
            assert getattr(module, name, None) is cls, f"{path} is not importable"
            assert name in getattr(module, "__all__", ()), f"{name} not in __all__"
            assert f"::: {module_name}\n" in api_page, f"{module_name} not in api.md"
