"""Entry point of the `kav` command: `kav --help` and `kav --version` without TensorFlow.

Importing `keras_attention_vision` imports Keras, and with it TensorFlow (about
10 s), because the package registers every public class for
`keras.saving.load_model`. This module lives outside the package so that the
`kav` command can build its parser (the recipes' options, which import nothing
heavy) before that happens: it creates the package module without running its
`__init__`, and `keras_attention_vision.cli` runs the `__init__` on the same
module object once the command line has been parsed and checked. Plain
`import keras_attention_vision` is unchanged.

It also keeps TensorFlow's C++ log lines (`I0000 ...`, `W0000 ...`, `E0000 ...
NodeDef mentions attribute use_unbounded_threadpool`, the absl start-up
warning) off the terminal; set `KAV_TF_LOGS=1` to see them.
"""

import importlib.util
import logging
import os
import re
import sys
import threading

PACKAGE = "keras_attention_vision"

#: Lines of TensorFlow's C++ logging (absl format) and its start-up notes.
TF_LOG_LINE = re.compile(
    rb"^(?:[IWE]\d{4} [\d:.]+ +\d+ [\w.\-/]+:\d+\] "
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|To enable the following instructions: .* rebuild TensorFlow)")


def defer_package_init():
    """Puts the package module in `sys.modules` without running its `__init__`.

    Sub-modules (`cli`, `version`, `recipes`) import normally under it.
    `keras_attention_vision.cli.finish_package_import()` runs the `__init__`.
    """
    if PACKAGE in sys.modules:
        return
    spec = importlib.util.find_spec(PACKAGE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = module

    def finish():
        del module._kav_finish_import
        spec.loader.exec_module(module)

    module._kav_finish_import = finish


def _keep(lines, dropping):
    """The lines to show, and whether the last one shown was a dropped log line.

    A log line's continuation lines (indented: `\twhen importing GraphDef ...`)
    go with it.
    """
    kept = []
    for line in lines:
        if TF_LOG_LINE.match(line) or (dropping and line[:1] in (b"\t", b" ")):
            dropping = True
        else:
            dropping = False
            kept.append(line)
    return b"".join(kept), dropping


def _pump(read_fd, out_fd):
    """Copies `read_fd` to `out_fd` line by line, leaving out TensorFlow's log lines."""
    pending, dropping = b"", False
    while True:
        try:
            chunk = os.read(read_fd, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            break
        pending += chunk
        parts = re.split(rb"(?<=[\n\r])", pending)
        pending = parts.pop()  # no line end yet (b"" when the chunk ended one)
        kept, dropping = _keep(parts, dropping)
        if kept:
            os.write(out_fd, kept)
    kept, _ = _keep([pending], dropping)
    if kept:
        os.write(out_fd, kept)
    os.close(read_fd)


def quiet_tensorflow_logs():
    """Filters TensorFlow's C++ log lines out of file descriptor 2 (stderr).

    Returns a function that restores stderr and flushes what is left, or
    `None` when nothing was changed (`KAV_TF_LOGS` set, or no usable stderr).
    """
    if os.environ.get("KAV_TF_LOGS"):
        return None
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no TF INFO/WARNING lines
    # TensorFlow's Python warnings (e.g. "5 out of the last 5 calls ... retracing")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        saved = os.dup(2)
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 2)
        os.close(write_fd)
    except OSError:
        return None
    thread = threading.Thread(target=_pump, args=(read_fd, saved), daemon=True)
    thread.start()

    def restore():
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 2)  # closes the pipe's last write end: the pump sees EOF
        thread.join(timeout=5)

    return restore


def main(argv=None):
    """`kav`: parses the command line, then imports the package and runs the command."""
    restore = quiet_tensorflow_logs()
    try:
        defer_package_init()
        from keras_attention_vision import cli

        return cli.main(argv)
    finally:
        if restore is not None:
            restore()


if __name__ == "__main__":
    sys.exit(main())
