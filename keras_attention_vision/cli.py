"""The `kav` command: train, evaluate and visualise the papers' models on embedded data.

Usage:

```
kav demo                         # short version of every recipe, on embedded data
kav train RECIPE [options]       # the full recipe of one paper
kav evaluate RECIPE [options]    # offered once a recipe has the step
kav visualize RECIPE [options]
kav benchmark [NAME]             # run (or list) the scripts in benchmarks/
kav --version
```

Option values are checked before any work starts: counts, sizes and rates must
be positive and the output folder writable; otherwise one line on stderr and
exit status 2.
"""

import argparse
import os
import pathlib
import runpy
import sys
import time

from keras_attention_vision.version import __version__

STEPS = ("train", "evaluate", "visualize")


#: Numeric options of the recipes that may be 0; every other one must be > 0.
ZERO_ALLOWED = frozenset({"distractors", "shift", "rotate", "zoom", "std_final"})


def _recipe_parsers(subparsers, step, recipes):
    having = {name: module for name, module in recipes.items()
              if step == "train" or hasattr(module, step)}
    if not having:  # no recipe has this step yet: no empty `choose from ()` menu
        return
    parser = subparsers.add_parser(step, help=f"{step} one recipe ({', '.join(having)})")
    per_recipe = parser.add_subparsers(dest="recipe", metavar="RECIPE", required=True)
    for name, module in having.items():
        sub = per_recipe.add_parser(name, help=module.HELP)
        _add_common(sub)
        module.add_arguments(sub)


def _validate(parser, args):
    """Rejects bad option values before any work starts (`parser.error`: exit 2).

    Counts, sizes and rates must be positive (a few may be 0, `ZERO_ALLOWED`),
    and the output folder must be writable.
    """
    for name, value in sorted(vars(args).items()):
        if name == "seed" or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if value < 0 or (value == 0 and name not in ZERO_ALLOWED):
            bound = ">= 0" if name in ZERO_ALLOWED else "> 0"
            parser.error(f"--{name.replace('_', '-')} must be {bound}. "
                         f"Received: {value!r}")
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
                         f"({error.strerror or error}).")


def _add_common(parser):
    parser.add_argument("--output-dir", default="kav_output",
                        help="where results and pictures go (default: kav_output)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def build_parser():
    """Returns the `argparse` parser of `kav`, with one sub-command per recipe."""
    from keras_attention_vision.recipes import available_recipes

    recipes = available_recipes()
    parser = argparse.ArgumentParser(
        prog="kav",
        description="keras-attention-vision: train, evaluate and visualise the "
        "visual-attention models of the papers on embedded data.",
    )
    parser.add_argument("--version", action="version", version=f"kav {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo = subparsers.add_parser("demo", help="short version of every recipe")
    _add_common(demo)
    demo.add_argument("--only", nargs="+", choices=list(recipes), default=None,
                      help="run these recipes only")
    for step in STEPS:
        _recipe_parsers(subparsers, step, recipes)
    bench = subparsers.add_parser("benchmark", help="run or list the benchmarks")
    bench.add_argument("name", nargs="?", help="benchmark script name (no .py)")
    bench.add_argument("--dir", default="benchmarks",
                       help="folder of the benchmark scripts (default: benchmarks)")
    return parser, recipes


def _run_demo(args, recipes):
    chosen = args.only or list(recipes)
    if not chosen:
        print("kav demo: no recipe is installed yet.")
        return 0
    results = {}
    for name in chosen:
        print(f"\n=== kav demo: {name} ===", flush=True)
        start = time.perf_counter()
        out = recipes[name].demo(_sub_args(args, recipes[name], name))
        results[name] = (out or {}, time.perf_counter() - start)
    print("\n=== kav demo: summary ===")
    for name, (figures, seconds) in results.items():
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in figures.items())
        print(f"{name:>10}: {shown} ({seconds:.0f} s)")
    print(f"Results and pictures are in {os.path.abspath(args.output_dir)}")
    return 0


def _sub_args(args, module, name):
    """The recipe's defaults, with the common options of `args`."""
    parser = argparse.ArgumentParser(prog=f"kav {name}")
    _add_common(parser)
    module.add_arguments(parser)
    sub = parser.parse_args([])
    sub.output_dir = os.path.join(args.output_dir, name)
    sub.seed = args.seed
    return sub


def _run_benchmark(args):
    folder = pathlib.Path(args.dir)
    # `_name.py` files are helpers the scripts import, not benchmarks
    scripts = sorted(p.stem for p in folder.glob("*.py")
                     if not p.stem.startswith("_")) if folder.is_dir() else []
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
    sys.argv = [str(folder / f"{args.name}.py")]
    sys.path.insert(0, str(folder.resolve()))  # as `python benchmarks/NAME.py` does
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    finally:
        sys.path.remove(str(folder.resolve()))
    return 0


def main(argv=None):
    """Entry point of `kav`; returns the exit status (2 on bad usage)."""
    parser, recipes = build_parser()
    args = parser.parse_args(argv)
    if args.command != "benchmark":
        _validate(parser, args)
    if args.command == "demo":
        return _run_demo(args, recipes)
    if args.command == "benchmark":
        return _run_benchmark(args)
    module = recipes[args.recipe]
    args.output_dir = os.path.join(args.output_dir, args.recipe)
    figures = getattr(module, args.command)(args)
    if figures:
        print(", ".join(f"{k}={v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
