"""The `kav` command: train, evaluate and visualise the papers' models on embedded data.

Usage:

```
kav demo                         # short version of every recipe, with kav_output/index.html
kav train RECIPE [options]       # the full recipe of one paper, resumable (--restart)
kav evaluate RECIPE [options]    # offered once a recipe has the step
kav visualize RECIPE [options]
kav benchmark [NAME]             # run (or list) the scripts in benchmarks/
kav --version
```

The `kav` command enters through `keras_attention_vision_cli` (outside the
package), which defers the package's `__init__` (Keras, TensorFlow) until the
command line has been parsed and checked: `kav --help`, `kav --version` and
usage errors answer at once. Option values are checked before any work starts:
counts, sizes and rates must be positive and the output folder writable;
otherwise one line on stderr and exit status 2. Ctrl-C during `kav train`
prints where the checkpoints are and exits with status 130; the same command
then resumes.
"""

import argparse
import os
import pathlib
import runpy
import shlex
import sys
import time

from keras_attention_vision.version import __version__

STEPS = ("train", "evaluate", "visualize")

#: Numeric options of the recipes that may be 0; every other one must be > 0.
ZERO_ALLOWED = frozenset({"distractors", "shift", "rotate", "zoom", "std_final", "seed",
                          "flanges", "fgsm_epsilons", "map_examples", "curriculum_epochs"})
#: ... and those named like a loss weight, a cost or a penalty (0: switched off).
ZERO_ALLOWED_SUFFIXES = ("_weight", "_cost", "_penalty", "_regularization")

#: Help of options the recipes declare without one (same meaning in every recipe).
OPTION_HELP = {
    "epochs": "training epochs",
    "batch_size": "examples per training step",
    "learning_rate": "Adam learning rate",
    "train_size": "use only the first N training examples",
    "test_size": "use only the first N test examples",
    "canvas_size": "side of the cluttered-MNIST canvas, pixels",
    "distractors": "distractor patches per canvas",
    "mode": "pairwise function of the non-local blocks",
    "latent_dim": "size of the generator's latent vector",
    "base_channels": "channels of the first convolution (doubled per stage)",
    "samples": "number of generated samples to draw",
    "num_samples": "number of generated samples to draw",
    "num_completions": "test digits whose lower halves are completed",
    "filters": "channels of every masked convolution",
    "train_images": "training images generated",
    "train_scenes": "training scenes generated",
    "test_scenes": "test scenes generated",
    "core_units": "width of the core network's state",
    "fixation_cost": "reward paid for every fixation",
    "false_found_penalty": "negative reward of saying 'found' off the target",
    "test_images": "test images generated",
    "beam_width": "beam width of the caption search",
    "units": "width of the LSTM and the attention",
    "num_layers": "number of layers (blocks)",
    "hidden_size": "width of the model",
    "num_heads": "attention heads",
    "std_stages": "number of equal stages of the std annealing",
    "log_every": "evaluate and print every N epochs",
}


class _Parser(argparse.ArgumentParser):
    """An `ArgumentParser` whose usage errors are one line: `kav train: error: ...`."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def finish_package_import():
    """Runs the package `__init__` that `keras_attention_vision_cli` deferred.

    Imports Keras and registers every class for `keras.saving.load_model`; a
    no-op when the package was imported the ordinary way.
    """
    package = sys.modules.get("keras_attention_vision")
    finish = getattr(package, "_kav_finish_import", None)
    if finish is not None:
        finish()


def _fill_help(parser):
    """Gives every option of `parser` a help text, with its default."""
    for action in parser._actions:
        if action.help is argparse.SUPPRESS or not action.option_strings:
            continue
        if not action.help:
            action.help = OPTION_HELP.get(action.dest)
        # `is` tests: a default of 0 or 0.0 equals False and must still be shown
        shown = not (action.default is None or action.default is False
                     or action.default == argparse.SUPPRESS)
        if action.help and shown and "default" not in action.help:
            action.help += " (default: %(default)s)"


def _recipe_parsers(subparsers, step, recipes):
    having = {name: module for name, module in recipes.items()
              if step == "train" or hasattr(module, step)}
    if not having:  # no recipe has this step yet: no empty `choose from ()` menu
        return
    parser = subparsers.add_parser(step, help=f"{step} one recipe ({', '.join(having)})",
                                   description=f"{step} one recipe")
    per_recipe = parser.add_subparsers(dest="recipe", metavar="RECIPE", required=True)
    for name, module in having.items():
        sub = per_recipe.add_parser(name, help=module.HELP, description=module.HELP)
        _add_common(sub, step)
        module.add_arguments(sub)
        _fill_help(sub)


def _number_problem(name, value):
    """Why a numeric option value is bad, or `None`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    zero_allowed = name in ZERO_ALLOWED or name.endswith(ZERO_ALLOWED_SUFFIXES)
    if value < 0 or (value == 0 and not zero_allowed):
        bound = ">= 0" if zero_allowed else "> 0"
        return f"--{name.replace('_', '-')} must be {bound}. Received: {value!r}"
    return None


def _validate(parser, args):
    """Rejects bad option values before any work starts (`parser.error`: exit 2).

    Counts, sizes and rates must be positive (a few may be 0, `ZERO_ALLOWED`;
    lists are checked element by element), and the output folder must be
    writable. For `kav train`, the output folder must not hold a finished run
    (unless `--restart`), nor an unfinished one made with other options.
    """
    for name, value in sorted(vars(args).items()):
        values = value if isinstance(value, (list, tuple)) else [value]
        for item in values:
            problem = _number_problem(name, item)
            if problem:
                parser.error(problem if item is value else f"{problem} (in {value!r})")
    output_dir = getattr(args, "output_dir", None)
    if output_dir is not None:
        try:
            os.makedirs(output_dir, exist_ok=True)
            probe = os.path.join(output_dir, ".kav_write_test")
            with open(probe, "w"):
                pass
            os.remove(probe)
        except OSError as error:
            parser.error(f"--output-dir {output_dir!r} is not a writable folder "
                         f"({error.strerror or error})")


def _add_common(parser, step=None):
    parser.add_argument("--output-dir", default="kav_output",
                        help="where results and pictures go (default: kav_output)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    if step == "train":
        parser.add_argument("--restart", action="store_true",
                            help="start over: delete the checkpoints of an earlier run in "
                            "the output folder and overwrite its results (without it, "
                            "an unfinished run resumes and a finished one is kept)")
        parser.add_argument("--distribute", action="store_true",
                            help="train on every device: tf.distribute.MirroredStrategy "
                            "(GPUs) or TPUStrategy on TensorFlow, "
                            "keras.distribution.DataParallel on JAX; --batch-size is "
                            "then the global batch (see docs/distributed.md)")


def build_parser():
    """Returns the `argparse` parser of `kav`, with one sub-command per recipe."""
    from keras_attention_vision.recipes import available_recipes

    recipes = available_recipes()
    parser = _Parser(
        prog="kav",
        description="keras-attention-vision: train, evaluate and visualise the "
        "visual-attention models of the papers on embedded data.",
        epilog="Set KAV_TF_LOGS=1 to see TensorFlow's own log lines.",
    )
    parser.add_argument("--version", action="version", version=f"kav {__version__}",
                        help="print the version and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo = subparsers.add_parser(
        "demo", help="short version of every recipe, with an HTML report",
        description="Runs the short version of every recipe (under 10 minutes on 2 "
        "cores) and writes OUTPUT_DIR/index.html with their figures and pictures.")
    _add_common(demo)
    demo.add_argument("--only", nargs="+", choices=list(recipes), default=None,
                      metavar="RECIPE",
                      help=f"run these recipes only (from: {', '.join(recipes)})")
    demo.add_argument("--no-presets", action="store_true",
                      help="skip the shipped presets' scores and pictures (by default "
                      "each recipe's preset is evaluated and pictured before its short "
                      "training)")
    for step in STEPS:
        _recipe_parsers(subparsers, step, recipes)
    bench = subparsers.add_parser(
        "benchmark", help="run or list the benchmark scripts",
        description="Runs one script of the repository's benchmarks/ folder, or lists "
        "them. The scripts ship with the source repository, not with the installed "
        "package.")
    bench.add_argument("name", nargs="?", help="benchmark script name (no .py); "
                       "none: list them")
    bench.add_argument("--dir", default=None,
                       help="folder of the benchmark scripts (default: ./benchmarks, "
                       "else the benchmarks/ folder of the source checkout)")
    return parser, recipes


def _summary_line(name, figures, seconds, units):
    from keras_attention_vision.report import figure_texts

    shown = ", ".join(figure_texts(figures, units))
    return f"{name:>18}: {shown} (in {seconds:.0f} s)"


def _run_demo(args, recipes):
    from keras_attention_vision.report import write_report

    chosen = args.only or list(recipes)
    if not chosen:
        print("kav demo: no recipe is installed yet.")
        return 0
    results = {}
    start = time.perf_counter()
    for i, name in enumerate(chosen, 1):
        print(f"\n=== kav demo {i}/{len(chosen)}: {name} ({recipes[name].HELP}) ===",
              flush=True)
        sub = _sub_args(args, recipes[name], name)
        begin = time.perf_counter()
        figures = {}
        if not args.no_presets:
            figures.update(_demo_preset(args, recipes[name], name))
        figures.update(recipes[name].demo(sub) or {})
        results[name] = {"figures": figures, "seconds": time.perf_counter() - begin,
                         "output_dir": sub.output_dir, "help": recipes[name].HELP,
                         "units": getattr(recipes[name], "UNITS", {})}
        _demo_progress(i, len(chosen), time.perf_counter() - start)
    total = time.perf_counter() - start
    print(f"\n=== kav demo: summary ({total / 60:.1f} min) ===")
    for name, result in results.items():
        print(_summary_line(name, result["figures"], result["seconds"], result["units"]))
    index = write_report(args.output_dir, results, total_seconds=total)
    print(f"Results and pictures are in {os.path.abspath(args.output_dir)}; "
          f"report: {os.path.abspath(index)}")
    return 0


def _demo_progress(done, total, seconds, width=30):
    """One progress-bar line of the demo: recipes done, elapsed time, estimate left."""
    filled = round(width * done / total)
    left = seconds / done * (total - done)
    print(f"kav demo [{'=' * filled}{'.' * (width - filled)}] {done}/{total} recipes, "
          f"{seconds / 60:.1f} min elapsed, about {left / 60:.1f} min left", flush=True)


def _demo_preset(args, module, name):
    """Scores and pictures of the recipe's shipped preset, for `kav demo`.

    Runs the recipe's `evaluate` and `visualize` steps on its default preset
    (`--weights` not given) into `OUTPUT/NAME/preset/`; returns the figures
    with a `preset_` prefix (the preset's name under `preset`), or `{}` when
    the recipe has no such steps or its preset does not ship.
    """
    from keras_attention_vision import presets

    if not (hasattr(module, "evaluate") and hasattr(module, "visualize")):
        return {}
    sub = _sub_args(args, module, name)
    preset = getattr(sub, "default_preset", None)
    if preset is None or preset not in presets.available_presets():
        print(f"{name}: no shipped preset to show (trained in the demo only)", flush=True)
        return {}
    print(f"{name}: the shipped preset {preset!r}: scores and pictures", flush=True)
    sub.output_dir = os.path.join(args.output_dir, name, "preset")
    os.makedirs(sub.output_dir, exist_ok=True)
    figures = dict(module.evaluate(sub) or {})
    module.visualize(sub)
    shown = {"preset": preset}
    shown.update({f"preset_{key}": value for key, value in figures.items()
                  if key not in ("weights", "preset")})
    return shown


def _sub_args(args, module, name):
    """The recipe's defaults, with the common options of `args`."""
    parser = _Parser(prog=f"kav {name}")
    _add_common(parser)
    module.add_arguments(parser)
    sub = parser.parse_args([])
    sub.output_dir = os.path.join(args.output_dir, name)
    sub.seed = args.seed
    return sub


def _benchmark_folder(args):
    """The benchmarks folder: `--dir`, `./benchmarks` or the source checkout's."""
    if args.dir is not None:
        return pathlib.Path(args.dir), [pathlib.Path(args.dir)]
    here = pathlib.Path("benchmarks")
    checkout = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
    for folder in (here, checkout):
        if folder.is_dir():
            return folder, [here, checkout]
    return None, [here, checkout]


def _run_benchmark(args):
    folder, looked = _benchmark_folder(args)
    if folder is None or not folder.is_dir():
        places = " or ".join(str(p.resolve()) for p in dict.fromkeys(looked))
        print(f"kav benchmark: error: no benchmarks folder at {places}; the benchmark "
              "scripts ship with the source repository, not the installed package: run "
              "from a clone, or pass --dir PATH/TO/benchmarks", file=sys.stderr)
        return 2
    # `_name.py` files are helpers the scripts import, not benchmarks
    scripts = sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))
    if not args.name:
        if not scripts:
            print(f"kav benchmark: no benchmark scripts in {folder.resolve()}")
        for name in scripts:
            print(name)
        return 0
    if args.name not in scripts:
        print(f"kav benchmark: error: unknown benchmark {args.name!r} in {folder}; "
              f"choose from {scripts}", file=sys.stderr)
        return 2
    finish_package_import()
    sys.argv = [str(folder / f"{args.name}.py")]
    sys.path.insert(0, str(folder.resolve()))  # as `python benchmarks/NAME.py` does
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    finally:
        sys.path.remove(str(folder.resolve()))
    return 0


def _prepare_train(parser, args):
    """Checkpoint folder and run state of `kav train` (exit 2 if it must not run)."""
    from keras_attention_vision.recipes import _checkpoint

    args.checkpoint_dir = os.path.join(args.output_dir, "checkpoints")
    try:
        message = _checkpoint.prepare_run(args, restart=args.restart)
    except _checkpoint.RunStateError as error:
        parser.error(str(error))
    if message:
        print(message, flush=True)


def _check_demo_folders(parser, args, recipes):
    """`kav demo` must not overwrite the results of a `kav train` run (exit 2)."""
    from keras_attention_vision.recipes._checkpoint import RUN_FILE

    for name in args.only or list(recipes):
        folder = os.path.join(args.output_dir, name)
        if os.path.exists(os.path.join(folder, "checkpoints", RUN_FILE)):
            parser.error(f"{folder} holds the results of `kav train {name}`; the demo "
                         "would overwrite them: pass another --output-dir")


def _interrupted(args):
    """The one line printed on Ctrl-C."""
    checkpoint_dir = getattr(args, "checkpoint_dir", None)
    if args.command != "train" or not checkpoint_dir:
        return "kav: interrupted."
    from keras_attention_vision.recipes._checkpoint import progress

    done = ", ".join(f"{name}: {epochs} epoch{'s' * (epochs != 1)} done"
                     for name, epochs in progress(checkpoint_dir).items())
    # The command that resumes: this one without --restart (which would delete
    # the checkpoints), quoted for the shell.
    resume = [a for a in sys.argv[1:] if a != "--restart"]
    command = shlex.join(["kav", *resume]) if resume else "the same command"
    return (f"kav: interrupted; checkpoints ({done or 'no finished epoch yet'}) are in "
            f"{checkpoint_dir}. Run `{command}` again to resume.")


def _unsupported_backend_error():
    from keras_attention_vision.distributions import UnsupportedBackendError

    return UnsupportedBackendError


def main(argv=None):
    """Entry point of `kav`; returns the exit status (2 on bad usage, 130 on Ctrl-C)."""
    parser, recipes = build_parser()
    args = parser.parse_args(argv)
    step_parser = parser
    if args.command in STEPS:
        args.output_dir = os.path.join(args.output_dir, args.recipe)
        step_parser = _Parser(prog=f"kav {args.command} {args.recipe}")
    if args.command != "benchmark":
        _validate(step_parser, args)
    if args.command == "train":
        _prepare_train(step_parser, args)
    if args.command == "demo":
        _check_demo_folders(parser, args, recipes)
    try:
        if args.command == "benchmark":
            return _run_benchmark(args)
        finish_package_import()
        if args.command == "demo":
            return _run_demo(args, recipes)
        module = recipes[args.recipe]
        try:
            from keras_attention_vision.distribution import run_distributed

            figures = run_distributed(getattr(module, args.command), args)
        except (ValueError, _unsupported_backend_error()) as error:
            # a value the recipe or a constructor rejects, or a model the active
            # backend cannot run (REINFORCE models on PyTorch)
            if os.environ.get("KAV_DEBUG"):
                raise
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            print(f"kav {args.command} {args.recipe}: error: {first} (KAV_DEBUG=1 shows "
                  "the traceback)", file=sys.stderr)
            return 2
        if args.command == "train":
            from keras_attention_vision.recipes._checkpoint import finish_run

            finish_run(args)
        if figures:
            from keras_attention_vision.report import figure_texts

            units = getattr(module, "UNITS", {})
            print(", ".join(figure_texts(figures, units)))
        return 0
    except KeyboardInterrupt:
        print(f"\n{_interrupted(args)}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
