"""Recipe `attention-vgg`: VGG-att3-concat-pc against the plain VGG on cluttered MNIST.

`kav train attention-vgg` builds `AttentionVGG` (att3, concat, pc, softmax) at a
reduced width, and the plain VGG: the same backbone (same initial weights) with
its classifier on the global vector `g` (no attention). Both are trained with
Adam (learning rate decayed to 0 along a cosine over the run) on cluttered
MNIST canvases made from the embedded MNIST split (boxes known), and scored on
the test canvases:

- test error;
- pointing game and IoU (`metrics.pointing_game`, `metrics.attention_iou`) of
  the three attention maps, and of the Grad-CAM, Grad-CAM++ and Saliency maps
  of both models (tf-keras-vis; TensorFlow backend only: on JAX or PyTorch
  these rows are left out and `results.md` says so);
- test error under FGSM (`adversarial.fgsm_error`, any backend) at a few
  epsilons.

Writes `results.md`, `results.json` and `maps.png` (attention maps beside the
Grad-CAM maps of both models, with the digit's box) under `--output-dir`.
The recipe runs on any backend; on this project's CPU machine TensorFlow was
the faster one (an epoch of 1,000 40x40 canvases at width x0.125: 21 s on
TensorFlow, 43 s on JAX).
"""

import json
import os
import time

NAME = "attention-vgg"
HELP = "VGG-att3-concat-pc vs plain VGG (Jetley et al. 2018) on cluttered MNIST"

MODELS = (("vgg_att3_concat_pc", "VGG-att3-concat-pc"), ("vgg", "VGG"))
EXPLANATIONS = ("gradcam", "gradcam++", "saliency")
EXPLANATION_NAMES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++",
                     "saliency": "Saliency"}
ATTENDED = (7, 10, 13)

#: What `kav demo` changes: a smaller, less cluttered canvas, fewer digits and
#: epochs, no Saliency maps, two FGSM epsilons.
DEMO = {"canvas_size": 32, "distractors": 4, "train_size": 2000, "test_size": 200,
        "epochs": 2, "explanations": ["gradcam", "gradcam++"],
        "fgsm_epsilons": [0.05, 0.1], "map_examples": 4}


def add_arguments(parser):
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--width-multiplier", type=float, default=0.0625,
                        help="channels of VGG-16 times this (default 0.0625: 4 to 32)")
    parser.add_argument("--canvas-size", type=int, default=40)
    parser.add_argument("--distractors", type=int, default=8)
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="IoU binarisation: fraction of each map's maximum")
    parser.add_argument("--train-size", type=int, default=None,
                        help="use the first N training digits (default: all 4,000)")
    parser.add_argument("--test-size", type=int, default=None,
                        help="use the first N test digits (default: all 1,000)")
    parser.add_argument("--explanations", nargs="*", choices=EXPLANATIONS,
                        default=list(EXPLANATIONS),
                        help="tf-keras-vis maps to score (TensorFlow backend only)")
    parser.add_argument("--fgsm-epsilons", nargs="*", type=float, default=[0.02, 0.05, 0.1],
                        help="FGSM step sizes (images in [0, 1])")
    parser.add_argument("--map-examples", type=int, default=6,
                        help="test canvases shown in maps.png")
    parser.add_argument("--only", choices=[key for key, _ in MODELS], default=None,
                        help="train and score only this model (default: both); each "
                             "trained model's weights are written as MODEL.weights.h5")
    from keras_attention_vision.recipes._weights import add_weights_argument

    add_weights_argument(parser, "attention_vgg_cluttered_mnist")


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
    keras.utils.set_random_seed(args.seed)
    steps = args.epochs * -(-len(x) // args.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(args.learning_rate, steps)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    from keras_attention_vision.recipes._checkpoint import fit  # resumable (kav train)

    history = fit(model, x, y, args=args, name=model.name, batch_size=args.batch_size,
                  epochs=args.epochs)
    return history.train_seconds, history.history  # earlier runs' epochs included


def _scores(maps, boxes, args):
    from keras_attention_vision.metrics import attention_iou, pointing_game

    shape = (args.canvas_size, args.canvas_size)
    return {"pointing_game": pointing_game(maps, boxes, image_shape=shape),
            "iou": attention_iou(maps, boxes, threshold=args.threshold, image_shape=shape)}


def evaluate_models(attention, plain, data, args):
    """Test errors, localisation scores and FGSM errors of both models.

    Returns:
        `(results, maps)`: the nested results dict, and `maps`, a dict from a
        column name to `(N, h, w)` maps of the test canvases (attention maps,
        and the tf-keras-vis maps on TensorFlow).
    """
    import keras
    import numpy as np

    from keras_attention_vision.adversarial import fgsm_error
    from keras_attention_vision.applications import attention_maps_model

    _, (x, y, boxes) = data
    results, maps = {}, {}
    models = {k: m for k, m in zip((k for k, _ in MODELS), (attention, plain)) if m is not None}
    for key, model in models.items():
        pred = model.predict(x, batch_size=256, verbose=0).argmax(-1)
        results[key] = {"test_error": float(np.mean(pred != y)), "maps": {}}
    attention_maps = ([] if attention is None else
                      attention_maps_model(attention).predict(x, batch_size=256, verbose=0))
    for layer, layer_maps in zip(ATTENDED, attention_maps):
        results["vgg_att3_concat_pc"]["maps"][f"attention_layer{layer}"] = _scores(
            layer_maps, boxes, args)
        maps[f"attention, layer {layer}\n(att3)"] = layer_maps
    if keras.backend.backend() == "tensorflow":
        from keras_attention_vision.visualization.gradcam import explanation_maps

        for key, short in (("vgg_att3_concat_pc", "att3"), ("vgg", "VGG")):
            if key not in models:
                continue
            for method in args.explanations:
                layer = None if method == "saliency" else "block5_conv3"
                start = time.perf_counter()
                cams = explanation_maps(models[key], x, y, method, layer, batch_size=200)
                scores = _scores(cams, boxes, args)
                scores["seconds"] = round(time.perf_counter() - start, 1)
                results[key]["maps"][method] = scores
                maps[f"{EXPLANATION_NAMES[method]}\n({short})"] = cams
    elif args.explanations:
        results["note"] = ("Grad-CAM, Grad-CAM++ and Saliency maps come from tf-keras-vis, "
                           "which needs the TensorFlow backend: not computed on "
                           f"{keras.backend.backend()!r}.")
    for key, model in models.items():
        start = time.perf_counter()
        errors = fgsm_error(model, x, y, args.fgsm_epsilons, batch_size=200)
        results[key]["fgsm_error"] = {f"{eps:g}": err for eps, err in errors.items()}
        results[key]["fgsm_seconds"] = round(time.perf_counter() - start, 1)
    return results, maps


def _table(results, setting):
    names = {key: name for key, name in MODELS if key in results}
    lines = [f"Setting: {setting}", "",
             "| model | test error | train time (s) |", "|---|---|---|"]
    for key, name in names.items():
        row = results[key]
        lines.append(f"| {name} | {100 * row['test_error']:.1f}% | {row['train_seconds']:.0f} |")
    lines += ["", "Localisation of the digit by each map (test canvases):", "",
              "| model | map | pointing game | IoU |", "|---|---|---|---|"]
    for key, name in names.items():
        for method, scores in results[key]["maps"].items():
            label = (method.replace("attention_layer", "attention, layer ")
                     if method.startswith("attention") else EXPLANATION_NAMES[method])
            lines.append(f"| {name} | {label} | {scores['pointing_game']:.3f} | "
                         f"{scores['iou']:.3f} |")
    epsilons = list(results[next(iter(names))]["fgsm_error"])
    if epsilons:
        lines += ["", "Test error under FGSM (L-infinity step epsilon, images in [0, 1]):", "",
                  "| model | " + " | ".join(f"eps {e}" for e in epsilons) + " |",
                  "|---|" + "---|" * len(epsilons)]
        for key, name in names.items():
            errors = results[key]["fgsm_error"]
            lines.append(f"| {name} | " + " | ".join(f"{100 * errors[e]:.1f}%"
                                                    for e in epsilons) + " |")
    if "note" in results:
        lines += ["", results["note"]]
    return "\n".join(lines) + "\n"


def _figures(results):
    """The flat headline figures `train`/`demo` return (documented keys)."""
    figures = {}
    for key, _ in MODELS:
        if key not in results:
            continue  # --only the other model
        row = results[key]
        figures[f"{key}_test_error"] = row["test_error"]
        figures[f"{key}_train_seconds"] = row["train_seconds"]
        for method, scores in row["maps"].items():
            figures[f"{key}_{method}_pointing_game"] = scores["pointing_game"]
            figures[f"{key}_{method}_iou"] = scores["iou"]
        for eps, error in row["fgsm_error"].items():
            figures[f"{key}_fgsm_{eps}_error"] = error
    return figures


def train(args):
    """Trains both models, scores them, writes the table and `maps.png`.

    Returns:
        A flat dict of figures: `{model}_test_error`, `{model}_train_seconds`,
        `{model}_{map}_pointing_game`, `{model}_{map}_iou` and
        `{model}_fgsm_{epsilon}_error`, for `model` in `vgg_att3_concat_pc`,
        `vgg`, and `map` in `attention_layer7/10/13` (attention model only),
        `gradcam`, `gradcam++`, `saliency` (TensorFlow only).
    """
    import keras

    from keras_attention_vision.visualization.attention_maps import save_attention_overlays

    for eps in args.fgsm_epsilons:
        if not eps >= 0:
            raise ValueError(f"--fgsm-epsilons must be >= 0. Received: {args.fgsm_epsilons}")
    os.makedirs(args.output_dir, exist_ok=True)
    data = _data(args)
    attention, plain = build_models(args)
    print(f"[attention-vgg] {attention.name}: {attention.count_params():,} parameters; "
          f"plain VGG: {plain.count_params():,}", flush=True)
    only = getattr(args, "only", None)
    if only == "vgg":
        attention = None
    elif only == "vgg_att3_concat_pc":
        plain = None
    trained = {key: model for (key, _), model in zip(MODELS, (attention, plain))
               if model is not None}
    fits = {}
    for key, model in trained.items():
        fits[key] = _fit(model, data, args)
        model.save_weights(os.path.join(args.output_dir, f"{key}.weights.h5"))
    results, maps = evaluate_models(attention, plain, data, args)
    for key, (seconds, history) in fits.items():
        results[key]["train_seconds"] = round(seconds, 1)
        results[key]["history"] = {k: [round(float(v), 4) for v in values]
                                   for k, values in history.items()}
    (x_train, _), (x, y, boxes) = data
    setting = (f"cluttered MNIST {args.canvas_size}x{args.canvas_size}, {args.distractors} "
               f"distractors, {len(x_train)} train / {len(x)} test canvases, "
               f"{args.epochs} epochs, Adam {args.learning_rate:g} with cosine decay, "
               f"batch {args.batch_size}, "
               f"width x{args.width_multiplier:g}, seed {args.seed}, IoU threshold "
               f"{args.threshold:g}, backend {keras.backend.backend()}")
    results["setting"] = setting
    table = _table(results, setting)
    with open(os.path.join(args.output_dir, "results.md"), "w") as f:
        f.write(table)
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    n = min(args.map_examples, len(x))
    if n and maps:
        pred = {key: model.predict(x[:n], verbose=0).argmax(-1)
                for key, model in trained.items()}
        short = {"vgg_att3_concat_pc": "att3", "vgg": "VGG"}
        titles = [f"label {y[i]}; " + ", ".join(f"{short[k]}: {p[i]}" for k, p in pred.items())
                  for i in range(n)]
        save_attention_overlays(
            x[:n], [m[:n] for m in maps.values()], os.path.join(args.output_dir, "maps.png"),
            map_names=list(maps), titles=titles, boxes=boxes[:n],
            suptitle="Attention maps of VGG-att3-concat-pc beside Grad-CAM maps of both "
                     "models (green: the digit's box)")
    print(table)
    return _figures(results)


def _load(args):
    """The VGG-att3-concat-pc of `--weights`, the test canvases and the preset record."""
    from keras_attention_vision.applications import AttentionVGG
    from keras_attention_vision.recipes import _weights

    def build():
        return AttentionVGG(input_shape=(args.canvas_size, args.canvas_size, 1), classes=10,
                            width_multiplier=args.width_multiplier, attention_layers="att3",
                            aggregation="concat", compatibility="pc")

    model, info = _weights.load(args, "AttentionVGG", "attention_vgg_cluttered_mnist", build)
    _weights.recipe_args(args, info, ("canvas_size", "distractors", "seed", "test_size"))
    args.train_size = 1  # evaluate and visualize read the test canvases only
    _, test = _data(args)
    return model, test, info


def evaluate(args):
    """Test error and attention localisation of trained weights (a preset or a file)."""
    import numpy as np

    from keras_attention_vision.applications import attention_maps_model
    from keras_attention_vision.recipes import _weights

    model, (x, y, boxes), info = _load(args)
    pred = model.predict(x, batch_size=256, verbose=0).argmax(-1)
    figures = {"weights": args.weights or "attention_vgg_cluttered_mnist",
               "test_error": round(float(np.mean(pred != y)), 4)}
    maps = attention_maps_model(model).predict(x, batch_size=256, verbose=0)
    for layer, layer_maps in zip(ATTENDED, maps):
        for key, value in _scores(layer_maps, boxes, args).items():
            figures[f"attention_layer{layer}_{key}"] = round(float(value), 4)
    return _weights.compare(figures, info, "test_error")


def visualize(args):
    """The three attention maps on test canvases, with labels, predictions and boxes."""
    from keras_attention_vision.applications import attention_maps_model
    from keras_attention_vision.visualization.attention_maps import save_attention_overlays

    model, (x, y, boxes), _ = _load(args)
    os.makedirs(args.output_dir, exist_ok=True)
    n = min(args.map_examples, len(x))
    pred = model.predict(x[:n], verbose=0).argmax(-1)
    maps = attention_maps_model(model).predict(x[:n], verbose=0)
    path = os.path.join(args.output_dir, "maps.png")
    save_attention_overlays(
        x[:n], list(maps), path, map_names=[f"attention, layer {i}" for i in ATTENDED],
        titles=[f"label {y[i]}, predicted {pred[i]}" for i in range(n)], boxes=boxes[:n],
        suptitle="VGG-att3-concat-pc attention maps (green: the digit's box)")
    print(f"attention-vgg: attention maps written to {path}")
    return {"maps_png": path}


def demo(args, **overrides):
    """About a minute on 2 cores: see `DEMO`; keyword arguments override it."""
    for name, value in {**DEMO, **overrides}.items():
        setattr(args, name, value)
    return train(args)
