"""What the recipes' `evaluate` and `visualize` steps share: `--weights` and titled grids.

`kav evaluate RECIPE --weights PRESET|PATH` rebuilds the model a preset (or a
weights file) belongs to and measures it on the data its model card names;
without `--weights` it uses the recipe's default preset. Bad weights are
refused before any data is loaded, with a `ValueError` that lists the presets
or names the file (`kav` prints it on one line and exits with status 2).
"""

import os
import textwrap


def add_weights_argument(parser, default):
    """Adds `--weights` (used by `evaluate` and `visualize`; `train` ignores it).

    The recipe's default preset is also kept as `args.default_preset`
    (`kav demo` evaluates and pictures it when it ships).
    """
    parser.set_defaults(default_preset=default)
    parser.add_argument(
        "--weights", default=None,
        help=f"evaluate/visualize: a preset name, a .weights.h5 file (built with this "
        f"recipe's options) or a .keras model file (its own architecture) (default: the "
        f"preset {default!r}; see keras_attention_vision.presets.available_presets())")


def load(args, application, default, build):
    """The model that `args.weights` names, and its preset record (or `None`).

    Args:
        args: the recipe's parsed options (`args.weights`).
        application: the application name, e.g. `"PixelCNN"`.
        default: the preset used when `--weights` is not given.
        build: function `() -> model` building the architecture from the
            recipe's options, for a weights file that is not a preset.

    Returns:
        `(model, info)`: `info` is the preset's JSON record, `None` for a file.

    Raises:
        ValueError: an unknown preset (the valid ones are listed), another
            application's preset, a missing or unreadable file.
    """
    from keras_attention_vision import presets

    weights = getattr(args, "weights", None) or default
    if presets.is_preset_name(weights):
        info = presets.get_preset(weights, application)
        return presets.load_preset(weights), info
    if str(weights).endswith(".keras"):  # a whole saved model: its own architecture
        model = _load_model(weights, application)
        _check_data_shapes(model, build, weights)
        return model, None
    path = presets.resolve_weights(weights, application)
    return presets.load_weights(build(), path, application), None


def _data_shapes(model):
    """The sizes a model shares with the data it is scored on, or `None`.

    Subclassed applications: the `input_shape` (and `classes`) of their
    config; functional ones: the shapes of their inputs and outputs.
    """
    try:
        config = model.get_config()
    except Exception:  # noqa: BLE001 - a model without a config: not checked
        config = {}
    if "input_shape" in config:
        return {k: list(config[k]) if isinstance(config[k], (list, tuple)) else config[k]
                for k in ("input_shape", "classes") if k in config}
    inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
    if not inputs or not outputs:
        return None
    return {"inputs": [list(t.shape[1:]) for t in inputs],
            "outputs": [list(t.shape[1:]) for t in outputs]}


def _check_data_shapes(model, build, path):
    """Refuses a model file whose input or output sizes are not the recipe's.

    The recipe's data follow its options (e.g. `kav evaluate ram --preset`):
    a 60x60 RAM scored on 28x28 digits, or a model saved without its top,
    would give a meaningless figure.

    Raises:
        ValueError: quoting both sets of sizes.
    """
    mine = _data_shapes(model)
    expected = _data_shapes(build()) if mine is not None else None
    if expected is not None and mine != expected:
        raise ValueError(f"The model file {path!r} has {mine}; this recipe, with these "
                         f"options, scores a model with {expected}: give the options it "
                         "was trained with (see --help)")


def _load_model(path, application):
    """A `.keras` file saved by `model.save`, checked to be `application`'s model."""
    import keras

    if not os.path.isfile(path):
        raise ValueError(f"No such model file: {path!r}")
    try:
        model = keras.saving.load_model(path)
    except Exception as error:  # Keras raises several types for a bad file
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        raise ValueError(f"Could not load the model file {path!r}: {first}") from error
    from keras_attention_vision import applications

    expected = getattr(applications, application, None)
    # Subclassed applications are classes; functional ones (AttentionVGG, ...)
    # are plain keras.Model objects and are taken as they are.
    if isinstance(expected, type) and not isinstance(model, expected):
        raise ValueError(f"The model file {path!r} holds the {type(model).__name__} "
                         f"{model.name!r}; this recipe needs a {application}.")
    return model


def recipe_args(args, info, keys):
    """Copies the data settings a preset was trained and scored with into `args`."""
    if info is not None:
        for key in keys:
            if key in info["card"].get("recipe_args", {}):
                setattr(args, key, info["card"]["recipe_args"][key])
    return args


def compare(figures, info, key):
    """Adds the preset's documented score beside the measured one."""
    if info is not None and key in info["card"].get("test", {}):
        figures[f"{key}_documented"] = info["card"]["test"][key]
    return figures


def save_titled_grid(images, path, title, labels=None, cols=8, cmap="gray"):
    """Saves images in a grid with a title and one label per image (PNG).

    Args:
        images: `(n, H, W)` or `(n, H, W, C)` in `[0, 1]`.
        path: the PNG path.
        title: the figure title.
        labels: `None` or one string per image.
        cols: images per row.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    n = len(images)
    cols = min(cols, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.5 * rows + 0.5),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(np.clip(images[i], 0, 1), cmap=cmap, vmin=0, vmax=1)
            if labels is not None:
                ax.set_title(labels[i], fontsize=8)
    fig.suptitle(textwrap.fill(title, max(30, 12 * cols)), fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
