"""Recipe `attention-vgg`: VGG-att3-concat-pc against the plain VGG on cluttered MNIST.

`kav train attention-vgg` builds `AttentionVGG` (att3, concat, pc, softmax) at a
reduced width, and the plain VGG: the same backbone with its classifier on the
global vector `g` (no attention). Both are trained from the same seed on
cluttered MNIST canvases made from the embedded MNIST split (boxes known), and
scored on the test canvases: test error, and the pointing game and IoU (see
`metrics.pointing_game`, `metrics.attention_iou`) of the attention maps and, on
the TensorFlow backend, of Grad-CAM maps of both models (tf-keras-vis). Writes
`results.md`, `results.json` and `attention.png` under `--output-dir`.
"""

import json
import os
import time

NAME = "attention-vgg"
HELP = "VGG-att3-concat-pc vs plain VGG (Jetley et al. 2018) on cluttered MNIST"


def add_arguments(parser):
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--width-multiplier", type=float, default=0.125)
    parser.add_argument("--canvas-size", type=int, default=40)
    parser.add_argument("--distractors", type=int, default=8)
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="IoU binarisation: fraction of each map's maximum")
    parser.add_argument("--train-size", type=int, default=None,
                        help="use the first N training digits (default: all 4,000)")
    parser.add_argument("--test-size", type=int, default=None)


def _data(args):
    from keras_attention_vision.datasets import load_mnist, make_cluttered_mnist

    (x_train, y_train), (x_test, y_test) = load_mnist("embedded", verbose=False)
    if args.train_size:
        x_train, y_train = x_train[:args.train_size], y_train[:args.train_size]
    if args.test_size:
        x_test, y_test = x_test[:args.test_size], y_test[:args.test_size]
    size = args.canvas_size
    train, _ = make_cluttered_mnist(x_train, size, args.distractors, 8, seed=args.seed)
    test, boxes = make_cluttered_mnist(x_test, size, args.distractors, 8, seed=args.seed + 1)
    return (train, y_train), (test, y_test, boxes)


def build_models(args):
    """`(attention_vgg, plain_vgg)`: the same backbone, with and without attention."""
    import keras

    from keras_attention_vision.applications import AttentionVGG

    shape = (args.canvas_size, args.canvas_size, 1)
    keras.utils.set_random_seed(args.seed)
    attention = AttentionVGG(input_shape=shape, classes=10, width_multiplier=args.width_multiplier,
                             attention_layers="att3", aggregation="concat", compatibility="pc")
    keras.utils.set_random_seed(args.seed)
    backbone = AttentionVGG(input_shape=shape, classes=10, width_multiplier=args.width_multiplier,
                            include_top=False)
    logits = keras.layers.Dense(10, activation="softmax", name="predictions")(
        backbone.get_layer("global_fc").output)
    plain = keras.Model(backbone.input, logits, name="plain_vgg")
    return attention, plain


def _fit(model, data, args):
    import keras

    (x, y), _ = data
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.time()
    model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, verbose=0, shuffle=True)
    return time.time() - start


def _scores(maps, boxes, args):
    from keras_attention_vision.metrics import attention_iou, pointing_game

    shape = (args.canvas_size, args.canvas_size)
    return {"pointing_game": pointing_game(maps, boxes, image_shape=shape),
            "iou": attention_iou(maps, boxes, threshold=args.threshold, image_shape=shape)}


def evaluate_models(attention, plain, data, args):
    """Test errors and localisation scores of both models, as a dict."""
    import keras
    import numpy as np

    from keras_attention_vision.applications import attention_maps_model

    _, (x, y, boxes) = data
    results = {}
    for key, model in (("vgg_att3_concat_pc", attention), ("vgg", plain)):
        pred = model.predict(x, batch_size=256, verbose=0).argmax(-1)
        results[key] = {"test_error": float(np.mean(pred != y))}
    maps = attention_maps_model(attention).predict(x, batch_size=256, verbose=0)
    for i, layer in enumerate((7, 10, 13)):
        results["vgg_att3_concat_pc"][f"attention_layer{layer}"] = _scores(maps[i], boxes, args)
    if keras.backend.backend() == "tensorflow":
        from keras_attention_vision.visualization.gradcam import explanation_maps

        for key, model in (("vgg_att3_concat_pc", attention), ("vgg", plain)):
            for method in ("gradcam", "gradcam++", "saliency"):
                layer = None if method == "saliency" else "block5_conv3"
                cams = np.concatenate([
                    explanation_maps(model, x[k:k + 200], y[k:k + 200], method, layer)
                    for k in range(0, len(x), 200)])
                results[key][method] = _scores(cams, boxes, args)
    else:
        results["note"] = ("Grad-CAM/Grad-CAM++/Saliency need the TensorFlow backend "
                           "(tf-keras-vis); not computed on " + keras.backend.backend())
    return results, maps


def _table(results, setting):
    lines = [f"Setting: {setting}", "",
             "| model | test error | map | pointing game | IoU |", "|---|---|---|---|---|"]
    for key, name in (("vgg_att3_concat_pc", "VGG-att3-concat-pc"), ("vgg", "VGG")):
        row = results[key]
        for method, scores in row.items():
            if isinstance(scores, dict):
                lines.append(f"| {name} | {100 * row['test_error']:.1f}% | {method} | "
                             f"{scores['pointing_game']:.3f} | {scores['iou']:.3f} |")
    if "note" in results:
        lines += ["", results["note"]]
    return "\n".join(lines) + "\n"


def train(args):
    from keras_attention_vision.visualization.attention_maps import save_attention_overlays

    os.makedirs(args.output_dir, exist_ok=True)
    data = _data(args)
    attention, plain = build_models(args)
    seconds = {"vgg_att3_concat_pc": _fit(attention, data, args), "vgg": _fit(plain, data, args)}
    results, maps = evaluate_models(attention, plain, data, args)
    for key, value in seconds.items():
        results[key]["train_seconds"] = round(value, 1)
    setting = (f"cluttered MNIST {args.canvas_size}x{args.canvas_size}, {args.distractors} "
               f"distractors, {len(data[0][0])} train / {len(data[1][0])} test, "
               f"{args.epochs} epochs, width x{args.width_multiplier}, seed {args.seed}, "
               f"IoU threshold {args.threshold}")
    results["setting"] = setting
    with open(os.path.join(args.output_dir, "results.md"), "w") as f:
        f.write(_table(results, setting))
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    _, (x, _, boxes) = data
    save_attention_overlays(x[:6], [m[:6] for m in maps],
                            os.path.join(args.output_dir, "attention.png"),
                            map_names=["layer 7", "layer 10", "layer 13"], boxes=boxes[:6])
    print(_table(results, setting))
    return results


def demo(args):
    """About a minute on 2 cores: 1,000 digits, 2 epochs, 200 test canvases."""
    args.train_size, args.test_size, args.epochs = 1000, 200, 2
    return train(args)
