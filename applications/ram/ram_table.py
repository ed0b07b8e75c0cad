"""Trains the RAM presets on the embedded data and writes the table of error rates.

Uses the public API only: the `ram` recipe of `kav` (which itself uses
`RecurrentAttentionModel`, `load_mnist`, `make_cluttered_mnist` and
`plot_glimpse_paths`). Each preset's figures also land in
`OUTPUT/ram/results_PRESET.json`, with a PNG of the glimpse paths.

    KERAS_BACKEND=tensorflow python applications/ram/ram_table.py \\
        --presets mnist translated --output-dir ram_output

Every row uses the recipe's defaults for its preset (`ram.PRESET_DEFAULTS`,
the README's settings). The cluttered100 row is the README's curriculum: a
200-epoch cluttered60 run (in `OUTPUT/ram/curriculum/`) whose model starts
the cluttered100 run (`--initial-weights`).
"""

import argparse
import json
import os

from keras_attention_vision.recipes import ram

#: preset -> the stages of its run: (preset, options); a stage's model starts the next.
SETTINGS = {
    "mnist": [("mnist", [])],
    "translated": [("translated", [])],
    "cluttered60": [("cluttered60", [])],
    "cluttered100": [("cluttered60", ["--epochs", "200"]), ("cluttered100", [])],
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["mnist"], choices=list(SETTINGS))
    parser.add_argument("--output-dir", default="ram_output")
    parser.add_argument("--seed", type=int, default=0)
    cli = parser.parse_args()
    rows = []
    for preset in cli.presets:
        stages, initial, seconds = SETTINGS[preset], [], 0.0
        for i, (stage, options) in enumerate(stages):
            sub = argparse.ArgumentParser()
            ram.add_arguments(sub)
            args = sub.parse_args(["--preset", stage] + options + initial)
            args.output_dir = os.path.join(cli.output_dir, "ram",
                                           *(["curriculum"] if i < len(stages) - 1 else []))
            args.seed = cli.seed
            figures = ram.train(args)
            seconds += figures["train_seconds"]  # the curriculum's stages together
            initial = ["--initial-weights",
                       os.path.join(args.output_dir, f"ram_{stage}.keras")]
        rows.append({**figures, "train_seconds": seconds})
        print(json.dumps(rows[-1]))
    lines = ["| preset | ours M=1 | ours M=10 | paper (arXiv v1) | epochs | train time |",
             "|---|---|---|---|---|---|"]
    for f in rows:
        lines.append(f"| {f['preset']} | {f['test_error_m1']:.2f}% | "
                     f"{f['test_error_m10']:.2f}% | {f['paper_error']:.2f}% "
                     f"({f['paper_row'].split(': ')[1]}) | {f['epochs']} | "
                     f"{f['train_seconds'] / 60:.1f} min |")
    table = "\n".join(lines)
    with open(os.path.join(cli.output_dir, "ram", "table.md"), "w") as f:
        f.write(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
