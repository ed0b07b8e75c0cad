"""Recipe `image-transformer`: Image Transformer on 256-level MNIST (Parmar et al., 2018).

`kav train image-transformer` trains small Image Transformers on the embedded
MNIST split (4,000 train / 1,000 test digits, 28x28, the 256 grey levels kept,
not binarised) and reports bits/dim on the 1,000 held-out digits for:

- 1D local attention (raster-order blocks of `--query-length` attending to the
  `--memory-length` sub-pixels before them);
- 2D local attention with `--query-size` square blocks and each flange of
  `--flanges` (a larger flange is a larger memory, the paper's Table 3 claim);
- super-resolution: MNIST averaged down to 7x7 (4x4 blocks), then 7x7 -> 28x28
  with an encoder over the low-resolution pixels, compared with the same
  decoder without them: the fraction of bits/dim the input saves, and how far
  samples averaged back to 7x7 are from their input (`input_consistency`).

It writes `results.json`, `completions.png` (the upper half of test digits
kept, the lower half sampled by the largest-memory 2D model) and
`super_resolution.png` under `--output-dir/image-transformer`.
"""

import argparse
import json
import os
import time

NAME = "image-transformer"
HELP = ("Image Transformer (Parmar et al. 2018): bits/dim of 1D/2D local attention, "
        "completion, super-resolution")

#: Units of the figures whose names do not say them (`kav demo`, summary lines).
UNITS = {"super_resolution_bits_per_dim_saved_fraction": "fraction",
         "super_resolution_input_mae": "grey levels (0-255)",
         "unconditional_input_mae": "grey levels (0-255)"}

#: Figures the paper reports (unverified; see REFERENCE.md section 6).
PAPER = {
    "cifar10_bits_per_dim": 2.90,
    "imagenet32_bits_per_dim": 3.77,
    "imagenet32_bits_per_dim_by_memory_positions": {"8": 4.06, "16": 3.47, "64": 3.13,
                                                    "256": 2.99},
}


def add_arguments(parser):
    parser.add_argument("--source", default="embedded",
                        choices=["embedded", "auto", "full"],
                        help="MNIST source (default: embedded, 4,000/1,000 digits)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--hidden-size", type=int, default=32)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--query-size", type=int, default=7,
                        help="2D query blocks are query-size x query-size")
    parser.add_argument("--flanges", type=int, nargs="+", default=[0, 7],
                        help="2D memory flanges to compare (rows above, columns "
                             "left and right); one model each")
    parser.add_argument("--query-length", type=int, default=49, help="1D query block")
    parser.add_argument("--memory-length", type=int, default=196,
                        help="1D: sub-pixels before a block that it attends to")
    parser.add_argument("--train-size", type=int, default=None,
                        help="use only this many training digits")
    parser.add_argument("--num-completions", type=int, default=8)
    parser.add_argument("--no-super-resolution", action="store_true",
                        help="skip the 7x7 -> 28x28 super-resolution model")
    parser.add_argument("--super-resolution-epochs", type=int, default=None,
                        help="epochs of the super-resolution model (default: --epochs)")
    parser.add_argument("--low-resolution-positions", default="aligned",
                        choices=["aligned", "grid"],
                        help="positional encoding of the super-resolution encoder: "
                             "aligned with the decoder's coordinates (default) or the "
                             "low-resolution grid's own")
    parser.add_argument("--cross-attention-radius", type=_radius, default=1,
                        help="super-resolution: each high-resolution pixel attends to "
                             "the low-resolution pixels within this many rows and "
                             "columns of the one under it (default 1; 'all': every "
                             "low-resolution pixel, as in the paper)")
    parser.add_argument("--low-resolution-values", action=argparse.BooleanOptionalAction,
                        default=True,
                        help="super-resolution: add a linear map of each low-resolution "
                             "value to its embedding (default: on; not in the paper)")
    parser.add_argument("--pixelcnn-baseline", action=argparse.BooleanOptionalAction,
                        default=True,
                        help="also train a Gated PixelCNN (5 blocks of 32 channels, "
                             "256-way categorical) on the same 256-level digits with the "
                             "same epochs, batch and learning rate, for the comparison "
                             "(default: on)")
    parser.add_argument("--only", default=None,
                        help="train only this model of the comparison: 1d, "
                             "2d_flangeF for F in --flanges, or pixelcnn (default: all "
                             "of them); each trained model's weights are written as "
                             "NAME.weights.h5")
    from keras_attention_vision.recipes._weights import add_weights_argument

    add_weights_argument(parser, "image_transformer_mnist")


def _radius(text):
    """`--cross-attention-radius`: an int >= 0, or 'all' (None)."""
    if text == "all":
        return None
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 or 'all'. Received: {text!r}")
    return value


def downscale(images, factor):
    """`(n, H, W, C)` 8-bit images -> block means over `factor x factor`, rounded."""
    import numpy as np

    n, h, w, c = images.shape
    blocks = images.reshape(n, h // factor, factor, w // factor, factor, c)
    return np.round(blocks.mean(axis=(2, 4))).astype("float32")


def save_labelled_grid(rows, labels, path, title, low_resolution_rows=()):
    """Saves a grid of grey images with one label per row and a title.

    Args:
        rows: list of `(n, h, w, 1)` arrays (values 0..255), one per grid row.
        labels: one text per row.
        path: PNG file.
        title: the figure title.
        low_resolution_rows: indices of rows drawn as blocky low-resolution images.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = len(rows[0])
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.1 * cols + 1.6, 1.15 * len(rows)),
                             squeeze=False)
    for r, (images, label) in enumerate(zip(rows, labels)):
        for c in range(cols):
            ax = axes[r][c]
            ax.imshow(images[c][..., 0], cmap="gray", vmin=0, vmax=255,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def input_consistency(images, low_resolution, factor):
    """Mean absolute difference (grey levels) between images downscaled and an input.

    How well samples follow the low-resolution image they were given: each
    sample is averaged over `factor x factor` blocks (as the input was made)
    and compared with the input, pixel by pixel.
    """
    import numpy as np

    return float(np.abs(downscale(images, factor) - low_resolution).mean())


def _fit(model, inputs, args, epochs, learning_rate, name="model"):
    import keras

    from keras_attention_vision.recipes._checkpoint import fit  # resumable (kav train)

    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    history = fit(model, inputs, args=args, name=name, batch_size=args.batch_size,
                  epochs=epochs)
    return (history.train_seconds,  # earlier runs' epochs included
            [round(float(v), 4) for v in history.history["bits_per_dim"]])


def run(args, epochs, train_size, configs, super_resolution, num_completions,
        learning_rate, test_size=None, completion_config=None):
    """Trains each configuration, evaluates on the test split, draws; returns figures.

    Args:
        args: the parsed arguments (`output_dir`, `seed`, `source`, `batch_size`,
            `num_layers`, `hidden_size`, `num_heads`).
        epochs: training epochs of every model.
        train_size: `None` (all) or the number of training digits used.
        configs: `{name: keyword arguments}` of the models compared: an
            `ImageTransformer`'s, or, with `"application": "PixelCNN"`, a
            categorical `PixelCNN`'s (the baseline of `PIXELCNN_BASELINE`).
        super_resolution: also train the 7x7 -> 28x28 model (the decoder of
            the completing model, `args.super_resolution_epochs` epochs when
            set, else `epochs`; encoder positions, cross-attention radius and
            value inputs from `args.low_resolution_positions`,
            `args.cross_attention_radius`, `args.low_resolution_values`),
            and compare it with that unconditional model: the fraction of its
            test bits/dim saved, and the input consistency of samples with
            and without the 7x7 image (`input_consistency`).
        num_completions: test digits completed (and super-resolved).
        learning_rate: Adam learning rate.
        test_size: `None` (all 1,000) or the number of test digits evaluated.
        completion_config: the name in `configs` whose model completes digits
            (default: the last Image Transformer).

    Returns:
        `{name_test_bits_per_dim: ..., ...}`, the figures written to
        `results.json`.
    """
    import keras
    import numpy as np

    from keras_attention_vision.applications import ImageTransformer, PixelCNN
    from keras_attention_vision.datasets import load_mnist

    os.makedirs(args.output_dir, exist_ok=True)
    keras.utils.set_random_seed(args.seed)
    (x_train, _), (x_test, _) = load_mnist(args.source)
    x_train = x_train[:train_size, :, :, None].astype("float32")
    x_test = x_test[:test_size, :, :, None].astype("float32")
    common = dict(input_shape=(28, 28, 1), num_layers=args.num_layers,
                  hidden_size=args.hidden_size, num_heads=args.num_heads)

    figures, details, models = {}, {}, {}
    for name, config in configs.items():
        config = dict(config)
        if config.pop("application", "ImageTransformer") == "PixelCNN":
            model = PixelCNN(input_shape=common["input_shape"], **config)
        else:
            model = ImageTransformer(**common, **config)
        before = model.bits_per_dim(x_test[:100])  # 100 test digits
        seconds, history = _fit(model, x_train, args, epochs, learning_rate, name)
        model.save_weights(os.path.join(args.output_dir, f"{name}.weights.h5"))
        bpd = model.bits_per_dim(x_test)
        memory = (int(np.prod(model.attentions[0].memory_extent))
                  if isinstance(model, ImageTransformer) else None)
        figures[f"{name}_test_bits_per_dim"] = round(bpd, 4)
        figures[f"{name}_untrained_bits_per_dim"] = round(before, 4)
        details[name] = dict(config, application=type(model).__name__,
                             test_bits_per_dim=round(bpd, 4),
                             untrained_bits_per_dim=round(before, 4),
                             train_bits_per_dim_by_epoch=history,
                             train_seconds=round(seconds, 1),
                             memory_window_positions=memory,
                             parameters=model.count_params())
        models[name] = model
        window = f"memory window {memory} positions" if memory else "masked convolutions"
        print(f"image-transformer {name}: test {bpd:.4f} bits/dim "
              f"(untrained {before:.2f}; {window})", flush=True)

    transformers = [n for n, m in models.items() if isinstance(m, ImageTransformer)]
    name = completion_config or (transformers[-1] if transformers else None)
    if name is not None:  # not for a PixelCNN alone (--only pixelcnn)
        recorded = _Recorded(args, common, x_train, x_test, figures, details)
        originals = _complete(recorded, models[name], name, num_completions)
        if super_resolution:
            _super_resolve(recorded, models[name], name, configs[name], originals,
                           epochs, learning_rate)

    results = dict(figures, backend=keras.backend.backend(), epochs=epochs,
                   learning_rate=learning_rate, batch_size=args.batch_size,
                   train_size=len(x_train), test_size=len(x_test), seed=args.seed,
                   num_layers=args.num_layers, hidden_size=args.hidden_size,
                   num_heads=args.num_heads, models=details, paper_unverified=PAPER)
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(f"image-transformer: results and pictures in {args.output_dir} "
          "(paper: CIFAR-10 2.90, ImageNet 32x32 3.77 bits/dim)")
    return figures


class _Recorded:
    """What the completion and super-resolution steps read and add to.

    The parsed `args`, the models' `common` constructor arguments, the data
    splits, and the `figures` / `details` dicts of `results.json` that they
    fill in.
    """

    def __init__(self, args, common, x_train, x_test, figures, details):
        self.args, self.common = args, common
        self.x_train, self.x_test = x_train, x_test
        self.figures, self.details = figures, details


def _complete(recorded, model, name, num_completions):
    """Completes test digits from their upper halves with `model`; returns the digits."""
    import numpy as np

    args, figures = recorded.args, recorded.figures
    count = min(num_completions, len(recorded.x_test))
    originals = recorded.x_test[:count]
    mask = np.zeros((28, 28, 1), bool)
    mask[:14] = True
    start = time.perf_counter()
    first = model.complete(originals, mask, seed=args.seed)
    second = model.complete(originals, mask, seed=args.seed + 1)
    figures["completion_seconds"] = round(time.perf_counter() - start, 2)
    figures["completions_keep_given_half"] = bool(
        np.array_equal(first[:, :14], originals[:, :14]))
    given = np.where(mask, originals, 128.0)
    save_labelled_grid(
        [originals, given, first, second],
        ["test digit", "upper half\ngiven", "completion\nseed 0", "completion\nseed 1"],
        os.path.join(args.output_dir, "completions.png"),
        f"Image Transformer ({name}, test {figures[f'{name}_test_bits_per_dim']:.3f} "
        "bits/dim): lower halves sampled")
    return originals


def _super_resolve(recorded, free_model, name, config, originals, epochs, learning_rate):
    """Trains the 7x7 -> 28x28 model on `config` and compares it with `free_model`.

    `free_model` is the unconditional model `name` whose decoder `config`
    (its constructor arguments besides `recorded.common`) describes; the
    super-resolution model adds the encoder. `originals` are the digits
    whose downscaled versions are super-resolved in the figure.
    """
    import numpy as np

    from keras_attention_vision.applications import ImageTransformer

    args, figures, details = recorded.args, recorded.figures, recorded.details
    count = len(originals)
    low_train = downscale(recorded.x_train, 4)
    low_test = downscale(recorded.x_test, 4)
    positions = getattr(args, "low_resolution_positions", "aligned")
    sr_epochs = getattr(args, "super_resolution_epochs", None) or epochs
    config = dict(config, low_resolution_shape=(7, 7, 1),
                  low_resolution_positions=positions,
                  cross_attention_radius=getattr(args, "cross_attention_radius", None),
                  low_resolution_values=getattr(args, "low_resolution_values", False))
    model = ImageTransformer(**recorded.common, **config)
    seconds, history = _fit(model, [recorded.x_train, low_train], args, sr_epochs,
                            learning_rate, "super_resolution")
    model.save_weights(os.path.join(args.output_dir, "super_resolution.weights.h5"))
    bpd = model.bits_per_dim(recorded.x_test, low_resolution=low_test)
    free_bpd = figures[f"{name}_test_bits_per_dim"]
    low = low_test[:count]
    start = time.perf_counter()
    high = model.super_resolve(low, seed=args.seed)
    high2 = model.super_resolve(low, seed=args.seed + 1)
    sample_seconds = time.perf_counter() - start
    free = free_model.sample(count, seed=args.seed)
    free2 = free_model.sample(count, seed=args.seed + 1)
    consistency = np.mean([input_consistency(h, low, 4) for h in (high, high2)])
    free_consistency = np.mean([input_consistency(f, low, 4) for f in (free, free2)])
    figures.update({
        "super_resolution_test_bits_per_dim": round(bpd, 4),
        "super_resolution_bits_per_dim_saved_fraction": round(
            (free_bpd - bpd) / free_bpd, 4),
        "super_resolution_input_mae": round(float(consistency), 2),
        "unconditional_input_mae": round(float(free_consistency), 2),
    })
    details["super_resolution"] = dict(
        config, test_bits_per_dim=round(bpd, 4), epochs=sr_epochs,
        train_bits_per_dim_by_epoch=history, train_seconds=round(seconds, 1),
        parameters=model.count_params(), unconditional_model=name,
        unconditional_test_bits_per_dim=free_bpd,
        input_mae_grey_levels={"super_resolution": round(float(consistency), 2),
                               "unconditional": round(float(free_consistency), 2)},
        sampling_seconds=round(sample_seconds, 2))
    blocky = np.repeat(np.repeat(low, 4, axis=1), 4, axis=2)
    save_labelled_grid(
        [blocky, high, high2, free, originals],
        ["7x7 input", "28x28 sample\nseed 0", "28x28 sample\nseed 1",
         "no input\n(unconditional)", "original 28x28"],
        os.path.join(args.output_dir, "super_resolution.png"),
        f"Image Transformer super-resolution 7x7 -> 28x28: test {bpd:.3f} bits/dim "
        f"given the 7x7 image ({free_bpd:.3f} without)\nsamples downscaled to 7x7 "
        f"differ from the input by {consistency:.1f} grey levels on average "
        f"({free_consistency:.1f} without the input)")
    print(f"image-transformer super-resolution: test {bpd:.4f} bits/dim "
          f"({free_bpd:.4f} without the 7x7 image); input consistency "
          f"{consistency:.1f} grey levels ({free_consistency:.1f} without)", flush=True)


#: The PixelCNN the Image Transformer is compared with (`--pixelcnn-baseline`):
#: the `pixelcnn` recipe's network (5 gated blocks of 32 channels) with a 256-way
#: categorical output, as the Image Transformer's, on the same 256-level digits.
PIXELCNN_BASELINE = dict(application="PixelCNN", num_layers=5, filters=32,
                         distribution="categorical")


def model_configs(args):
    """`{name: keyword arguments}` of the models `train` compares (see `run`)."""
    q = args.query_size
    configs = {}
    if getattr(args, "pixelcnn_baseline", False):
        configs["pixelcnn"] = dict(PIXELCNN_BASELINE)
    configs["1d"] = dict(attention="1d", query_length=args.query_length,
                         memory_length=args.memory_length)
    for flange in args.flanges:
        configs[f"2d_flange{flange}"] = dict(attention="2d", query_shape=(q, q),
                                            memory_flange=(flange, flange))
    return configs


def _load(args):
    """The model of `--weights` (a preset, or a file of the recipe's last 2D model)."""
    from keras_attention_vision.applications import ImageTransformer
    from keras_attention_vision.datasets import load_mnist
    from keras_attention_vision.recipes import _weights

    def build():
        q, flange = args.query_size, args.flanges[-1]
        return ImageTransformer(input_shape=(28, 28, 1), num_layers=args.num_layers,
                                hidden_size=args.hidden_size, num_heads=args.num_heads,
                                attention="2d", query_shape=(q, q),
                                memory_flange=(flange, flange))

    model, info = _weights.load(args, "ImageTransformer", "image_transformer_mnist", build)
    _weights.recipe_args(args, info, ("source",))
    _, (x_test, _) = load_mnist(args.source, verbose=False)
    return model, x_test[..., None].astype("float32"), info


def evaluate(args):
    """Bits/dim of trained weights (a preset or a file) on the 8-bit test digits."""
    from keras_attention_vision.recipes import _weights

    model, x_test, info = _load(args)
    figures = {"weights": args.weights or "image_transformer_mnist",
               "test_bits_per_dim": round(float(model.bits_per_dim(x_test)), 4)}
    return _weights.compare(figures, info, "test_bits_per_dim")


def visualize(args):
    """Completions of the test digits' lower halves (two seeds), labelled."""
    import numpy as np

    model, x_test, _ = _load(args)
    os.makedirs(args.output_dir, exist_ok=True)
    originals = x_test[:args.num_completions]
    mask = np.zeros((28, 28, 1), bool)
    mask[:14] = True
    first = model.complete(originals, mask, seed=args.seed)
    second = model.complete(originals, mask, seed=args.seed + 1)
    path = os.path.join(args.output_dir, "completions.png")
    save_labelled_grid(
        [originals, np.where(mask, originals, 128.0), first, second],
        ["test digit", "upper half\ngiven", f"completion\nseed {args.seed}",
         f"completion\nseed {args.seed + 1}"], path,
        f"Image Transformer ({os.path.basename(args.weights or 'image_transformer_mnist')})"
        ": lower halves sampled")
    print(f"image-transformer: completions written to {path}")
    return {"completions_png": path}


def train(args):
    configs = model_configs(args)
    if args.only is not None:
        if args.only not in configs:
            raise ValueError(f"--only must be one of {sorted(configs)} (the flanges come "
                             f"from --flanges; pixelcnn needs --pixelcnn-baseline). "
                             f"Received: --only {args.only}")
        configs = {args.only: configs[args.only]}
    return run(args, args.epochs, args.train_size, configs,
               not args.no_super_resolution, args.num_completions, args.learning_rate)


def demo(args, **overrides):
    """A short run: one 2D model, 1,000 digits, 1 epoch (about a minute on TF).

    Shows the test bits/dim falling from about 8 (uniform over 256 levels)
    and writes `completions.png`. `overrides` replace keyword arguments of
    `run` (the tests shrink it).
    """
    q = args.query_size
    settings = dict(epochs=1, train_size=1000, test_size=200,
                    configs={"2d": dict(attention="2d", query_shape=(q, q),
                                        memory_flange=(q, q))},
                    super_resolution=False, num_completions=4, learning_rate=5e-3)
    settings.update(overrides)
    figures = run(args, **settings)
    name = list(settings["configs"])[-1]
    return {"untrained_bits_per_dim": figures[f"{name}_untrained_bits_per_dim"],
            "test_bits_per_dim": figures[f"{name}_test_bits_per_dim"],
            "completions_keep_given_half": figures["completions_keep_given_half"]}
