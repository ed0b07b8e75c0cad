"""The recipes that `kav train/evaluate/visualize/demo` run, one module per paper.

A recipe module defines:

- `NAME`: the name on the command line, e.g. `"non-local"`;
- `HELP`: one line for `kav --help`;
- `add_arguments(parser)`: its command-line options (all with defaults);
- `train(args)`: the full recipe: train, evaluate, write results and pictures
  under `args.output_dir`; returns a dict of the measured figures;
- `demo(args)`: a short version for `kav demo` (a minute or two on 2 cores);
- optionally `evaluate(args)` and `visualize(args)`;
- optionally `UNITS = {figure key: unit}` for numbers `kav demo` cannot name a
  unit for (`keras_attention_vision.report.unit_of`).

`train` fits through `recipes/_checkpoint.py` (`fit`, or `EpochCheckpoint` in
an epoch loop of its own), so `kav train` saves a checkpoint every epoch and a
rerun resumes; each epoch's data must be a function of `(seed, epoch)`
(docs/cli.md).

Modules are found by scanning this package, and import nothing heavy at module
level, so `kav --help` stays fast.
"""

import importlib
import pkgutil

ORDER = ("ram", "visual-search", "non-local", "sagan", "pixelcnn", "attention-vgg",
         "show-attend-tell", "image-transformer")


def available_recipes():
    """Returns `{name: module}` for every recipe module in this package."""
    recipes = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "NAME"):
            recipes[module.NAME] = module
    rank = {name: i for i, name in enumerate(ORDER)}
    return dict(sorted(recipes.items(), key=lambda kv: (rank.get(kv[0], 99), kv[0])))
