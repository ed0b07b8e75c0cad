"""The visual search agent on embedded-MNIST scenes, through the public API only.

    KERAS_BACKEND=jax python applications/visual_search/train_visual_search.py
    python applications/visual_search/train_visual_search.py --demo    # about a minute

Same as `kav train visual-search` / `kav demo --only visual-search`; every
option of `kav train visual-search --help` can be appended, e.g. `--epochs 30`.
"""

import sys

from keras_attention_vision.cli import main

if __name__ == "__main__":
    extra = [a for a in sys.argv[1:] if a != "--demo"]
    if "--demo" in sys.argv[1:]:
        sys.exit(main(["demo", "--only", "visual-search"] + extra))
    sys.exit(main(["train", "visual-search"] + extra))
