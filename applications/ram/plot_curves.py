"""Plots the learning curves of RAM runs: test error (M=1) against epoch.

Reads the `results_PRESET.json` files that `kav train ram` writes (their
`history` rows) and draws one line per file, with the issue's target of the
preset as a dashed line when one is given.

    python applications/ram/plot_curves.py OUT/ram/results_cluttered60.json \\
        --label "cluttered60" --target 8 --output curves.png
"""

import argparse
import json


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="results_PRESET.json files")
    parser.add_argument("--label", action="append", default=None,
                        help="legend entry of each file, in order (default: the preset)")
    parser.add_argument("--target", action="append", type=float, default=None,
                        help="a target test error (%%) drawn as a dashed line, per file")
    parser.add_argument("--title", default="RAM on the embedded MNIST split: test error "
                        "of the mean path (M=1)")
    parser.add_argument("--output", default="ram_curves.png")
    args = parser.parse_args(argv)
    labels = args.label or []
    targets = args.target or []
    if len(labels) not in (0, len(args.results)):
        parser.error(f"give one --label per file: {len(labels)} labels for "
                     f"{len(args.results)} files")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, path in enumerate(args.results):
        with open(path) as f:
            data = json.load(f)
        rows = data["history"]
        label = labels[i] if labels else data["figures"]["preset"]
        line, = ax.plot([r["epoch"] for r in rows], [r["test_error_m1"] for r in rows],
                        label=f"{label} (end: {data['figures']['test_error_m1']:.1f}%)")
        if i < len(targets):
            ax.axhline(targets[i], color=line.get_color(), linestyle="--", linewidth=1)
    ax.set_xlabel("epoch (4,000 training digits on fresh canvases)")
    ax.set_ylabel("test error, M=1 (%), 1,000 test canvases")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_yticks([t for t in (1, 2, 3, 5, 8, 10, 15, 20, 30, 50, 80)
                   if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]])
    ax.set_title(args.title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, title="dashed: issue 15's target", title_fontsize=8)
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(f"learning curves written to {args.output}")
    return args.output


if __name__ == "__main__":
    main()
