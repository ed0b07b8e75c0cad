"""Show, Attend and Tell on the shapes-captions set, through the public API only.

    python applications/show_attend_tell/train_show_attend_tell.py           # soft and hard
    python applications/show_attend_tell/train_show_attend_tell.py --demo    # about a minute
    python applications/show_attend_tell/train_show_attend_tell.py --attention soft --epochs 4

Same as `kav train show-attend-tell` (`kav demo --only show-attend-tell`); options
after the script name go to the recipe (`kav train show-attend-tell --help`).
"""

import argparse
import sys

from keras_attention_vision.cli import main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", action="store_true")
    args, extra = parser.parse_known_args()
    if args.demo:
        sys.exit(main(["demo", "--only", "show-attend-tell"] + extra))
    sys.exit(main(["train", "show-attend-tell"] + extra))
