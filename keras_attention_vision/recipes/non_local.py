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
import time

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


def _residual_block(x, filters, stride, name):
    import keras

    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False,
                                       data_format=FORMAT, name=f"{name}_proj")(x)
        shortcut = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_proj_bn")(shortcut)
    y = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                            data_format=FORMAT, name=f"{name}_conv1")(x)
    y = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn1")(y)
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                            data_format=FORMAT, name=f"{name}_conv2")(y)
    y = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn2")(y)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def small_resnet(input_shape, classes=10, width=32):
    """A 5-block ResNet (stages at 1, 1/2 and 1/4 resolution) for small images.

    Channels last inside (and batch norms on the last axis, their default)
    whatever `keras.config.image_data_format()` is.
    """
    import keras

    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False,
                            data_format=FORMAT, name="stem")(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9, name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = _residual_block(x, width, 1, "stage1_block1")
    x = _residual_block(x, 2 * width, 2, "stage2_block1")
    x = _residual_block(x, 2 * width, 1, "stage2_block2")
    x = _residual_block(x, 4 * width, 2, "stage3_block1")
    x = _residual_block(x, 4 * width, 1, "stage3_block2")
    x = keras.layers.GlobalAveragePooling2D(data_format=FORMAT, name="avg_pool")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="small_resnet")


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


def _fit(model, data, args, seed):
    import keras

    (x_train, y_train), (x_test, y_test, _) = data
    keras.utils.set_random_seed(seed)
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
              verbose=2)
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
    return float(accuracy), seconds


def _attention_picture(model, data, args, path):
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
                                    titles=["query: digit centre"] * 6)


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
    acc_base, t_base = _fit(baseline, data, args, args.seed)
    acc_nl, t_nl = _fit(nonlocal_model, data, args, args.seed)
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
