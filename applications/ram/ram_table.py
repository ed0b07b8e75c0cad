"""Trains the RAM presets on the embedded data and writes the table of error rates.

Uses the public API only: the `ram` recipe of `kav` (which itself uses
`RecurrentAttentionModel`, `load_mnist`, `make_cluttered_mnist` and
`plot_glimpse_paths`). Each preset's figures also land in
`OUTPUT/ram/results_PRESET.json`, with a PNG of the glimpse paths.

    KERAS_BACKEND=tensorflow python applications/ram/ram_table.py \\
        --presets mnist translated --output-dir ram_output

Every row uses the recipe's defaults for its preset (`ram.PRESET_DEFAULTS`,
the README's settings). The cluttered100 row is the recipe's curriculum, in
`OUTPUT/ram/cluttered100/`: a 105-epoch cluttered60 run (`ram_cluttered60.*`
there) whose model starts the cluttered100 run; its time is the two stages'.
"""

import argparse
import json
import os

from keras_attention_vision.recipes import ram


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["mnist"],
                        choices=list(ram.PAPER_ERRORS))
    parser.add_argument("--output-dir", default="ram_output")
    parser.add_argument("--seed", type=int, default=0)
    cli = parser.parse_args()
    rows = []
    for preset in cli.presets:
        sub = argparse.ArgumentParser()
        ram.add_arguments(sub)
        args = sub.parse_args(["--preset", preset])
        # a curriculum's two stages in a folder of their own (its first stage's
        # files have the names of a cluttered60 row's)
        args.output_dir = os.path.join(cli.output_dir, "ram",
                                       *([preset] if preset in ram.CURRICULUM else []))
        args.seed = cli.seed
        figures = ram.train(args)
        seconds = figures["train_seconds"] + figures.get("curriculum_train_seconds", 0.0)
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
