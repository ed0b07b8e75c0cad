"""Non-local blocks and SAGAN, through the public API only.

    python applications/non_local/train_non_local.py              # both full recipes
    python applications/non_local/train_non_local.py --demo       # about 2 minutes
    python applications/non_local/train_non_local.py --only sagan --epochs 5

Same as `kav train non-local` and `kav train sagan` (`kav demo --only non-local
sagan`); options after the script name go to each recipe (`kav train non-local
--help`, `kav train sagan --help`).
"""

import argparse
import sys

from keras_attention_vision.cli import main

RECIPES = ("non-local", "sagan")

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", action="store_true")
    parser.add_argument("--only", choices=RECIPES, default=None)
    args, extra = parser.parse_known_args()
    chosen = [args.only] if args.only else list(RECIPES)
    if args.demo:
        sys.exit(main(["demo", "--only", *chosen] + extra))
    status = 0
    for name in chosen:
        status = status or main(["train", name] + extra)
    sys.exit(status)
