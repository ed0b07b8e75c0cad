"""Gated PixelCNN on binarised MNIST, through the public API only.

    python applications/pixelcnn/train_pixelcnn.py            # the full recipe
    python applications/pixelcnn/train_pixelcnn.py --demo     # about a minute

Same as `kav train pixelcnn` / `kav demo --only pixelcnn`; every option of
`kav train pixelcnn --help` can be appended, e.g. `--epochs 5 --filters 64`.
"""

import sys

from keras_attention_vision.cli import main

if __name__ == "__main__":
    extra = [a for a in sys.argv[1:] if a != "--demo"]
    if "--demo" in sys.argv[1:]:
        sys.exit(main(["demo", "--only", "pixelcnn"] + extra))
    sys.exit(main(["train", "pixelcnn"] + extra))
