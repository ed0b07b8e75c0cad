"""Recipe `pixelcnn`: Gated PixelCNN on binarised MNIST (van den Oord et al., 2016).

`kav train pixelcnn` binarises the embedded MNIST split (4,000 train / 1,000
test digits; pixel > 127 -> 1), trains a gated PixelCNN with `fit(images)`,
reports bits/dim and NLL (nats per image) on the held-out 1,000 digits, and saves
a grid of samples, a grid of completions of the test digits' lower halves, the
model and a results JSON under `--output-dir/pixelcnn`.
"""

import json
import math
import os
import time

NAME = "pixelcnn"
HELP = "Gated PixelCNN (van den Oord et al. 2016): bits/dim, samples, completions"

#: Binarised MNIST test NLL reported by the PixelRNN paper (nats per image),
#: PixelCNN row (unverified; see REFERENCE.md section 5).
PAPER_NLL_NATS = {"PixelCNN (van den Oord et al. 2016a)": 81.30}


def add_arguments(parser):
    parser.add_argument("--source", default="embedded",
                        choices=["embedded", "auto", "full"],
                        help="MNIST source (default: embedded, 4,000/1,000 digits)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--num-layers", type=int, default=5,
                        help="gated blocks, the first one 7x7 with mask A")
    parser.add_argument("--filters", type=int, default=32)
    parser.add_argument("--plain", action="store_true",
                        help="plain masked convolutions instead of gated blocks")
    parser.add_argument("--train-size", type=int, default=None,
                        help="use only this many training digits")
    parser.add_argument("--num-samples", type=int, default=16)
    parser.add_argument("--num-completions", type=int, default=8)
    from keras_attention_vision.recipes._weights import add_weights_argument

    add_weights_argument(parser, "pixelcnn_mnist")


def binarize(images):
    """uint8 MNIST -> float32 {0, 1} (threshold 127), with a channel axis."""
    return (images[..., None] > 127).astype("float32")


def _completions(model, x_test, count, seed):
    """Rows: original, upper half given, two completions of the lower half."""
    import numpy as np

    originals = x_test[:count]
    mask = np.zeros(originals.shape[1:], bool)  # (28, 28, 1): one mask for every image
    mask[:14] = True
    given = np.where(mask, originals, 0.5)
    first = model.complete(originals, mask, seed=seed)
    second = model.complete(originals, mask, seed=seed + 1)
    return np.concatenate([originals, given, first, second]), first, mask


def run(args, epochs, train_size, num_layers, filters, num_samples, num_completions,
        learning_rate):
    """Trains, evaluates and draws; returns the measured figures."""
    import keras
    import numpy as np

    from keras_attention_vision.applications import PixelCNN
    from keras_attention_vision.datasets import load_mnist
    from keras_attention_vision.visualization.image_grid import save_image_grid

    os.makedirs(args.output_dir, exist_ok=True)
    keras.utils.set_random_seed(args.seed)
    (x_train, _), (x_test, _) = load_mnist(args.source)
    x_train, x_test = binarize(x_train), binarize(x_test)
    if train_size:
        x_train = x_train[:train_size]

    model = PixelCNN(input_shape=(28, 28, 1), num_layers=num_layers, filters=filters,
                     gated=not args.plain, distribution="bernoulli")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    from keras_attention_vision.recipes._checkpoint import fit  # resumable (kav train)

    history = fit(model, x_train, args=args, name="pixelcnn", batch_size=args.batch_size,
                  epochs=epochs, validation_data=(x_test,))
    train_seconds = history.train_seconds  # earlier runs' epochs included

    test_bpd = model.bits_per_dim(x_test)
    test_nll = test_bpd * 784 * math.log(2)
    start = time.perf_counter()
    samples = model.sample(num_samples, seed=args.seed)
    sample_seconds = time.perf_counter() - start
    save_image_grid(samples, os.path.join(args.output_dir, "samples.png"),
                    title=f"PixelCNN: {len(samples)} samples (binarised 28x28 MNIST)")
    grid, completed, mask = _completions(model, x_test, num_completions, args.seed)
    save_image_grid(grid, os.path.join(args.output_dir, "completions.png"),
                    cols=num_completions, title="PixelCNN: lower halves of test digits "
                    "completed", row_labels=["test digit", "upper half given",
                                             "completion, seed 0", "completion, seed 1"])
    kept = bool(np.array_equal(completed[:, :14], x_test[:num_completions, :14]))
    model.save(os.path.join(args.output_dir, "pixelcnn.keras"))

    figures = {
        "test_bits_per_dim": round(float(test_bpd), 4),
        "test_nll_nats": round(float(test_nll), 2),
        "train_bits_per_dim": round(float(history.history["bits_per_dim"][-1]), 4),
        "train_seconds": round(train_seconds, 1),
        "sample_seconds": round(sample_seconds, 2),
        "completions_keep_given_half": kept,
    }
    results = dict(figures, backend=keras.backend.backend(), epochs=epochs,
                   learning_rate=learning_rate, batch_size=args.batch_size,
                   train_size=len(x_train), test_size=len(x_test),
                   num_layers=num_layers, filters=filters, gated=not args.plain,
                   parameters=model.count_params(), paper_nll_nats=PAPER_NLL_NATS,
                   history={k: [float(v) for v in vals]
                            for k, vals in history.history.items()})
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(f"pixelcnn: test {test_bpd:.4f} bits/dim = {test_nll:.2f} nats per image "
          f"(paper PixelCNN: 81.30 nats on the full binarised MNIST); "
          f"pictures in {args.output_dir}")
    return figures


def _load(args):
    """The model of `--weights` (default `pixelcnn_mnist`), its test digits and record."""
    from keras_attention_vision.applications import PixelCNN
    from keras_attention_vision.datasets import load_mnist
    from keras_attention_vision.recipes import _weights

    def build():
        return PixelCNN(input_shape=(28, 28, 1), num_layers=args.num_layers,
                        filters=args.filters, gated=not args.plain,
                        distribution="bernoulli")

    model, info = _weights.load(args, "PixelCNN", "pixelcnn_mnist", build)
    _weights.recipe_args(args, info, ("source",))
    _, (x_test, _) = load_mnist(args.source, verbose=False)
    return model, binarize(x_test), info


def evaluate(args):
    """Bits/dim of trained weights (a preset or a file) on the binarised test digits."""
    from keras_attention_vision.recipes import _weights

    model, x_test, info = _load(args)
    bpd = float(model.bits_per_dim(x_test))
    figures = {"weights": args.weights or "pixelcnn_mnist",
               "test_bits_per_dim": round(bpd, 4),
               "test_nll_nats": round(bpd * 784 * math.log(2), 2)}
    return _weights.compare(figures, info, "test_bits_per_dim")


def visualize(args):
    """Samples and completions of the test digits' lower halves, with titles."""
    import numpy as np

    from keras_attention_vision.recipes._weights import save_titled_grid

    model, x_test, _ = _load(args)
    os.makedirs(args.output_dir, exist_ok=True)
    name = args.weights or "pixelcnn_mnist"
    samples = model.sample(args.num_samples, seed=args.seed)
    samples_png = save_titled_grid(
        samples, os.path.join(args.output_dir, "samples.png"),
        f"PixelCNN samples ({os.path.basename(name)}, seed {args.seed})",
        [f"sample {i + 1}" for i in range(len(samples))])
    count = args.num_completions
    grid, _, _ = _completions(model, x_test, count, args.seed)
    labels = [f"{row} {i + 1}" for row in ("original", "given half", "completion",
                                             "completion") for i in range(count)]
    completions_png = save_titled_grid(
        np.asarray(grid), os.path.join(args.output_dir, "completions.png"),
        "PixelCNN: the lower halves of test digits completed (rows: original, the "
        "upper half given (grey = unknown), two completions)", labels, cols=count)
    print(f"pixelcnn: pictures written to {args.output_dir}")
    return {"samples_png": samples_png, "completions_png": completions_png}


def train(args):
    return run(args, args.epochs, args.train_size, args.num_layers, args.filters,
               args.num_samples, args.num_completions, args.learning_rate)


def demo(args):
    """A short run: 1,000 digits, 2 epochs, a small network (about a minute)."""
    return run(args, epochs=2, train_size=1000, num_layers=3, filters=16,
               num_samples=8, num_completions=4, learning_rate=5e-3)
