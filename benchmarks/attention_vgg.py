"""The cost of the attention estimators: VGG-att3-concat-pc against the same VGG without.

The claim: the three `AttentionEstimator`s of VGG-att3 (a 1x1 compatibility
score, a softmax over space and a weighted sum per attended layer) add little
to a VGG training step. Both models are built by `AttentionVGG` (the same
backbone: 13 conv-BN-ReLU layers with the first two max-pools removed, two
more conv stages, the global vector `g`); the plain VGG classifies `g`, the
attention VGG classifies the concatenated attended vectors (the paper's
CIFAR-100 setting at 32x32x3 input). Each is timed as `train_on_batch` of the
compiled model (SGD, cross-entropy), in alternating rounds so that load from
other processes hits both alike; the median over rounds of the per-round
ratio att3 / plain is printed.

Usage: `KERAS_BACKEND=tensorflow python benchmarks/attention_vgg.py [--width 0.25]`
"""

import argparse
from functools import partial

import keras
import numpy as np
from _timing import describe, paired_ratio

from keras_attention_vision.applications import AttentionVGG


def build(shape, classes, width):
    """`(attention_vgg, plain_vgg)`, compiled, from the same initial backbone."""
    keras.utils.set_random_seed(0)
    attention = AttentionVGG(input_shape=shape, classes=classes, width_multiplier=width,
                             attention_layers="att3", aggregation="concat",
                             compatibility="pc")
    keras.utils.set_random_seed(0)
    backbone = AttentionVGG(input_shape=shape, classes=classes, width_multiplier=width,
                            include_top=False)
    outputs = keras.layers.Dense(classes, activation="softmax", name="predictions")(
        backbone.get_layer("global_fc").output)
    plain = keras.Model(backbone.input, outputs, name="plain_vgg")
    for model in (attention, plain):
        model.compile(optimizer=keras.optimizers.SGD(1e-3),
                      loss="sparse_categorical_crossentropy")
    return attention, plain


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--width", type=float, default=0.25,
                        help="width multiplier of VGG-16 (1.0: 64 to 512 channels)")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)
    shape = (args.size, args.size, 3)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(args.batch,) + shape).astype("float32")
    y = rng.integers(0, args.classes, size=args.batch)
    attention, plain = build(shape, args.classes, args.width)
    result = paired_ratio(partial(attention.train_on_batch, x, y),
                          partial(plain.train_on_batch, x, y), args.rounds,
                          steps=args.steps, warmup=args.warmup)
    ratio = result["ratio"]
    print(f"backend={keras.backend.backend()} input=({args.batch}, {args.size}, "
          f"{args.size}, 3) width x{args.width:g} classes={args.classes}")
    print(f"parameters: VGG-att3-concat-pc {attention.count_params():,}, "
          f"plain VGG {plain.count_params():,}")
    print(f"VGG-att3-concat-pc fwd+bwd step: {result['a'] * 1e3:9.1f} ms")
    print(f"plain VGG          fwd+bwd step: {result['b'] * 1e3:9.1f} ms")
    print(f"ratio att3 / plain = {describe(result)}")
    return ratio


if __name__ == "__main__":
    main()
