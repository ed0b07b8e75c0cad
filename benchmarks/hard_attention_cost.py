"""Is hard attention cheap? The recurrent attention model against a CNN over the canvas.

The survey says hard attention "requires significantly less computation and
memory" than a CNN over the whole image. On cluttered MNIST 100x100 (the RAM
paper's hardest setting), this script puts side by side the RAM that
`kav train ram --preset cluttered100` trains (the `cluttered100` preset, 8
glimpses of 12x12 at 4 scales, with the recipe's glimpse-network widths,
`ram.PRESET_DEFAULTS`; mean path) and the
CNN a user would pick instead, `applications.small_resnet` (the non-local
recipe's residual network, width 32) over the whole 100x100 canvas:

- multiply-adds per image, counted by `keras_attention_vision.cost.multiply_adds`
  (tested against hand counts and XLA's own count);
- parameters;
- inference images per second on this CPU (batch `--batch`, `predict_on_batch`,
  the two models in alternating rounds; the ratio is the median of the
  per-round ratios, with their range);
- the working memory of one inference batch: XLA's temporary buffers of the
  compiled forward pass (`memory_analysis()`, JAX backend: activations and
  scratch, without weights and input);
- test error, when `--cnn-epochs N` trains the CNN here on the embedded
  split (4,000 canvases redrawn each epoch, 1,000 test canvases), and from a
  `kav train ram --preset cluttered100` results file given by `--ram-results`.

Run: `KERAS_BACKEND=jax python benchmarks/hard_attention_cost.py [--cnn-epochs 10]`
(tensorflow too; the RAM needs TFP, so not torch).
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CANVAS, CLUTTER = 100, 8


def build(which):
    from keras_attention_vision.applications import RecurrentAttentionModel, small_resnet

    if which == "ram":
        from keras_attention_vision.recipes.ram import PRESET_DEFAULTS

        widths = {k: v for k, v in PRESET_DEFAULTS["cluttered100"].items()
                  if k in ("glimpse_hidden", "glimpse_units", "core_units",
                           "glimpse_encoder")}
        model = RecurrentAttentionModel.from_preset("cluttered100", seed=0, **widths)
        model.build()
        return model
    return small_resnet((CANVAS, CANVAS, 1))


def working_memory_mib(model, batch):
    """XLA's temporary-buffer size for one inference batch (JAX), in MiB.

    `memory_analysis()` of the compiled forward pass: the activations and
    scratch buffers, without the weights and the input. `None` on other
    backends.
    """
    import keras

    if keras.backend.backend() != "jax":
        return None
    import jax
    import numpy as np

    trainable = [v.value for v in model.trainable_variables]
    other = [v.value for v in model.non_trainable_variables]
    forward = jax.jit(lambda t, o, x: model.stateless_call(t, o, x, training=False)[0])
    x = np.zeros((batch, CANVAS, CANVAS, 1), "float32")
    analysis = forward.lower(trainable, other, x).compile().memory_analysis()
    return analysis.temp_size_in_bytes / 2**20


def _cnn_error(model, epochs, seed=0):
    """Trains the CNN on redrawn cluttered canvases; returns its test error (%)."""
    import keras
    import numpy as np

    from keras_attention_vision.datasets import load_mnist, make_cluttered_mnist

    (x_train, y_train), (x_test, y_test) = load_mnist("embedded", verbose=False)
    x_test_c, _ = make_cluttered_mnist(x_test, CANVAS, CLUTTER, seed=10_000 + seed)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        x, _ = make_cluttered_mnist(x_train, CANVAS, CLUTTER, seed=int(rng.integers(2**31)))
        model.fit(x, y_train, batch_size=64, epochs=epoch + 1, initial_epoch=epoch,
                  verbose=2)
    _, accuracy = model.evaluate(x_test_c, y_test, batch_size=256, verbose=0)
    return 100.0 * (1.0 - accuracy)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="inference batch size")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds")
    parser.add_argument("--cnn-epochs", type=int, default=0,
                        help="train the CNN this many epochs for its test error "
                        "(0: skip)")
    parser.add_argument("--ram-results", default=None,
                        help="results.json of `kav train ram --preset cluttered100`")
    args = parser.parse_args(argv)

    import keras
    import numpy as np
    from _timing import describe, paired_ratio

    from keras_attention_vision.cost import multiply_adds

    models = {"ram": build("ram"), "cnn": build("cnn")}
    x = np.random.default_rng(0).uniform(
        size=(args.batch, CANVAS, CANVAS, 1)).astype("float32")
    speed = paired_ratio(lambda: models["cnn"].predict_on_batch(x),
                         lambda: models["ram"].predict_on_batch(x), rounds=args.rounds)
    rows = {}
    for name, model in models.items():
        seconds = speed["b"] if name == "ram" else speed["a"]
        rows[name] = {"multiply_adds": multiply_adds(model),
                      "parameters": model.count_params(),
                      "images_per_second": args.batch / seconds,
                      "memory_mib": working_memory_mib(model, args.batch),
                      "error": None}
    if args.ram_results:
        with open(args.ram_results) as f:
            results = json.load(f)
        figures = results.get("figures", results)  # the recipe's results file
        rows["ram"]["error"] = figures.get("test_error_m1", figures.get("error"))
    if args.cnn_epochs:
        rows["cnn"]["error"] = _cnn_error(models["cnn"], args.cnn_epochs)

    print(f"backend {keras.backend.backend()}; cluttered MNIST {CANVAS}x{CANVAS} "
          f"({CLUTTER} distractors); inference batch {args.batch}")
    labels = {"ram": "RAM cluttered100 (8 glimpses, mean path)",
              "cnn": "small_resnet over the canvas (width 32)"}
    print(f"{'model':42} {'MACs/image':>12} {'params':>10} {'images/s':>9} "
          f"{'work MiB':>9} {'test error':>10}")
    for name, row in rows.items():
        error = "-" if row["error"] is None else f"{row['error']:.1f}%"
        memory = "-" if row["memory_mib"] is None else f"{row['memory_mib']:.1f}"
        print(f"{labels[name]:42} {row['multiply_adds']:12,} {row['parameters']:10,} "
              f"{row['images_per_second']:9.0f} {memory:>9} {error:>10}")
    ram, cnn = rows["ram"], rows["cnn"]
    print(f"CNN / RAM: multiply-adds {cnn['multiply_adds'] / ram['multiply_adds']:.0f}x, "
          f"parameters {cnn['parameters'] / ram['parameters']:.2f}x, "
          f"inference time {describe(speed)}" + (
              "" if ram["memory_mib"] is None else
              f", working memory {cnn['memory_mib'] / ram['memory_mib']:.0f}x"))
    return rows


if __name__ == "__main__":
    main()
