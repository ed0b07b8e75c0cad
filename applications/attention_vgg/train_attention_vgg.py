"""VGG-att3-concat-pc against the plain VGG on cluttered MNIST, through the public API only.

    python applications/attention_vgg/train_attention_vgg.py          # the full recipe
    python applications/attention_vgg/train_attention_vgg.py --demo   # about a minute

Same as `kav train attention-vgg` (`kav demo --only attention-vgg`); options after
the script name go to the recipe (`kav train attention-vgg --help`). Run it on the
TensorFlow backend (`KERAS_BACKEND=tensorflow`, the default) to get the Grad-CAM,
Grad-CAM++ and Saliency rows, which come from tf-keras-vis.
"""

import argparse
import sys

from keras_attention_vision.cli import main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", action="store_true")
    args, extra = parser.parse_known_args()
    if args.demo:
        sys.exit(main(["demo", "--only", "attention-vgg"] + extra))
    sys.exit(main(["train", "attention-vgg"] + extra))
