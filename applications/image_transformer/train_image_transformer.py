"""Image Transformer on 256-level MNIST, through the public API only.

    python applications/image_transformer/train_image_transformer.py          # full recipe
    python applications/image_transformer/train_image_transformer.py --demo   # about a minute

Same as `kav train image-transformer` / `kav demo --only image-transformer`;
every option of `kav train image-transformer --help` can be appended, e.g.
`--epochs 5 --flanges 0 3 7`. TensorFlow was the fastest backend on CPU when
the README's figures were measured: `KERAS_BACKEND=tensorflow`.
"""

import sys

from keras_attention_vision.cli import main

if __name__ == "__main__":
    extra = [a for a in sys.argv[1:] if a != "--demo"]
    if "--demo" in sys.argv[1:]:
        sys.exit(main(["demo", "--only", "image-transformer"] + extra))
    sys.exit(main(["train", "image-transformer"] + extra))
