"""Recipe `non-local`: a ResNet with and without non-local blocks on cluttered MNIST.

`kav train non-local` builds a small ResNet (5 residual blocks in 3 stages),
and the same network with non-local blocks inserted after the first block of
stages 2 and 3 by `insert_non_local_blocks` (embedded Gaussian, sub-sampled,
identity at initialisation), trains both from the same initial weights on
cluttered MNIST canvases made from the embedded MNIST split (4,000 train /
1,000 test digits, distractor patches cut from other digits), and writes
the test accuracies as a table (`results.md`, `results.json`) and a picture
of where a position on the digit attends (`attention.png`).
"""

import json
import os

NAME = "non-local"
HELP = "ResNet with vs without non-local blocks (Wang et al. 2018) on cluttered MNIST"

#: The recipe's networks are channels-last inside whatever the global format.
FORMAT = "channels_last"

#: Layers after which the non-local blocks go (stage 2 at 1/2, stage 3 at 1/4).
NONLOCAL_AFTER = ("stage2_block1_out", "stage3_block1_out")


def add_arguments(parser):
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--width", type=int, default=16,
                        help="channels of the first stage (doubled per stage)")
    parser.add_argument("--canvas-size", type=int, default=40)
    parser.add_argument("--distractors", type=int, default=8)
    parser.add_argument("--mode", default="embedded_gaussian",
                        choices=["embedded_gaussian", "gaussian", "dot_product",
                                 "concatenation"])
    parser.add_argument("--train-size", type=int, default=None,
                        help="use the first N training digits (default: all 4,000)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="train the network with non-local blocks only")
    from keras_attention_vision.recipes._weights import add_weights_argument

    add_weights_argument(parser, "non_local_resnet_cluttered_mnist")


def small_resnet(input_shape, classes=10, width=32):
    """The recipe's baseline: `keras_attention_vision.applications.small_resnet`."""
    from keras_attention_vision.applications.non_local_resnet import small_resnet as build

    return build(input_shape, classes, width)


def _data(args):
    from keras_attention_vision.datasets import load_mnist, make_cluttered_mnist

    (x_train, y_train), (x_test, y_test) = load_mnist(source="embedded", verbose=False)
    if args.train_size:
        x_train, y_train = x_train[:args.train_size], y_train[:args.train_size]
    size = args.canvas_size
    train, _ = make_cluttered_mnist(x_train, size, args.distractors, 8, seed=args.seed)
    test, test_boxes = make_cluttered_mnist(x_test, size, args.distractors, 8,
                                            seed=args.seed + 1)
    return (train, y_train), (test, y_test, test_boxes)


def _fit(model, data, args, seed, name="model"):
    import keras

    from keras_attention_vision.recipes._checkpoint import fit  # resumable (kav train)

    (x_train, y_train), (x_test, y_test, _) = data
    keras.utils.set_random_seed(seed)
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    seconds = fit(model, x_train, y_train, args=args, name=name,
                  batch_size=args.batch_size, epochs=args.epochs).train_seconds
    _, accuracy = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
    return float(accuracy), seconds


def _attention_picture(model, data, args, path, titles=None):
    import keras

    from keras_attention_vision.visualization.non_local import save_non_local_attention

    _, (x_test, _, boxes) = data
    name = f"{NONLOCAL_AFTER[0]}_nonlocal"
    block = model.get_layer(name)
    probe = keras.Model(model.inputs, block.input)
    features = probe.predict(x_test[:6], verbose=0)
    _, scores = block(features, training=False, return_attention_scores=True)
    scores = keras.ops.convert_to_numpy(scores)
    h, w = features.shape[1:3]
    scale = x_test.shape[1] / h
    centres = [(int((b[0] + b[2]) / 2 / scale), int((b[1] + b[3]) / 2 / scale))
               for b in boxes[:6]]
    return save_non_local_attention(x_test[:6], scores, centres, (h, w),
                                    (h // 2, w // 2), path,
                                    titles=titles or ["query: digit centre"] * 6)


def _load(args):
    """The model of `--weights`, the recipe's test canvases and the preset record."""
    from keras_attention_vision.applications import NonLocalResNet
    from keras_attention_vision.datasets import load_mnist, make_cluttered_mnist
    from keras_attention_vision.recipes import _weights

    default = "non_local_resnet_cluttered_mnist"

    def build():
        return NonLocalResNet(input_shape=(args.canvas_size, args.canvas_size, 1),
                              width=args.width, nonlocal_after=NONLOCAL_AFTER,
                              mode=args.mode)

    model, info = _weights.load(args, "NonLocalResNet", default, build)
    _weights.recipe_args(args, info, ("canvas_size", "distractors", "seed"))
    _, (x_test, y_test) = load_mnist(source="embedded", verbose=False)
    test, boxes = make_cluttered_mnist(x_test, args.canvas_size, args.distractors, 8,
                                       seed=args.seed + 1)
    return model, (None, (test, y_test, boxes)), info


def evaluate(args):
    """Test accuracy of trained weights (a preset or a file) on the cluttered canvases."""
    import numpy as np

    from keras_attention_vision.recipes import _weights

    model, (_, (x_test, y_test, _)), info = _load(args)
    probabilities = model.predict(x_test, batch_size=256, verbose=0)
    accuracy = float(np.mean(probabilities.argmax(-1) == y_test))
    figures = {"weights": args.weights or "non_local_resnet_cluttered_mnist",
               "test_accuracy": round(accuracy, 4)}
    return _weights.compare(figures, info, "test_accuracy")


def visualize(args):
    """Where the centre of each test digit attends, in the first non-local block."""
    model, data, _ = _load(args)
    os.makedirs(args.output_dir, exist_ok=True)
    _, (x_test, y_test, _) = data
    predicted = model.predict(x_test[:6], verbose=0).argmax(-1)
    titles = [f"digit {y}, predicted {p}\n+ = query (digit centre)"
              for y, p in zip(y_test[:6], predicted)]
    path = _attention_picture(model, data, args,
                              os.path.join(args.output_dir, "attention.png"), titles)
    print(f"non-local: attention picture written to {path}")
    return {"attention_png": path}


def train(args):
    import keras

    from keras_attention_vision.applications import insert_non_local_blocks

    os.makedirs(args.output_dir, exist_ok=True)
    data = _data(args)
    shape = data[0][0].shape[1:]
    keras.utils.set_random_seed(args.seed)
    baseline = small_resnet(shape, width=args.width)
    nonlocal_model = insert_non_local_blocks(baseline, NONLOCAL_AFTER, mode=args.mode,
                                             sub_sample=True, data_format=FORMAT)
    print(f"[non-local] baseline {baseline.count_params():,} parameters, with "
          f"{len(NONLOCAL_AFTER)} non-local blocks {nonlocal_model.count_params():,}")
    if getattr(args, "no_baseline", False):
        acc_base, t_base = float("nan"), 0.0
    else:
        acc_base, t_base = _fit(baseline, data, args, args.seed, "baseline")
    acc_nl, t_nl = _fit(nonlocal_model, data, args, args.seed, "nonlocal")
    # loadable by NonLocalResNet(width=..., weights=...) (presets)
    nonlocal_model.save_weights(os.path.join(args.output_dir,
                                             "non_local_resnet.weights.h5"))
    figures = {
        "accuracy_baseline": acc_base,
        "accuracy_nonlocal": acc_nl,
        "train_seconds_baseline": t_base,
        "train_seconds_nonlocal": t_nl,
    }
    rows = [
        "| model | parameters | test accuracy | training time (s) |",
        "|---|---|---|---|",
        f"| ResNet (5 blocks) | {baseline.count_params():,} | {acc_base:.4f} | {t_base:.0f} |",
        f"| + {len(NONLOCAL_AFTER)} non-local blocks ({args.mode}) | "
        f"{nonlocal_model.count_params():,} | {acc_nl:.4f} | {t_nl:.0f} |",
    ]
    setting = (f"cluttered MNIST {args.canvas_size}x{args.canvas_size}, "
               f"{args.distractors} distractors, {len(data[0][0])} train / "
               f"{len(data[1][0])} test, {args.epochs} epochs, "
               f"backend {keras.backend.backend()}")
    table = "\n".join([f"Setting: {setting}", ""] + rows) + "\n"
    with open(os.path.join(args.output_dir, "results.md"), "w") as f:
        f.write(table)
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump({**figures, "setting": setting}, f, indent=2)
    _attention_picture(nonlocal_model, data, args,
                       os.path.join(args.output_dir, "attention.png"))
    print(table)
    return figures


def demo(args):
    """A short version: 1,000 digits, 2 epochs, a narrower network."""
    args.train_size, args.epochs, args.width = 1000, 2, 12
    return train(args)
