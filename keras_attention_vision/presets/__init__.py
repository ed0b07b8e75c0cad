"""Weights presets shipped with the package, loaded the `keras.applications` way.

A preset is two files in this folder: `NAME.weights.h5` (the weights, saved by
`model.save_weights`) and `NAME.json`, which records the application it
belongs to, the constructor arguments it was trained with, the SHA-256 of the
weights file (checked on every load) and a model card (data, the recipe
command that made it, its test score).

Every application's `weights` argument goes through `resolve_weights`:
`None` (random initialisation), a preset name, the path of a weights file, or
an `http(s)://` / `file://` URL fetched with `keras.utils.get_file` (then a
SHA-256 `file_hash` is required). An unknown name, a missing file, a hash that
does not match or a file Keras cannot read gives a `ValueError` that lists the
presets or names the file, never Keras's generic error.

Example:

```python
from keras_attention_vision import presets

presets.available_presets()            # {name: info} of every shipped preset
path = presets.resolve_weights("ram_mnist", application="RecurrentAttentionModel")
```
"""

import hashlib
import json
import os
import pathlib

PRESETS_DIR = pathlib.Path(__file__).resolve().parent
URL_SCHEMES = ("http://", "https://", "file://")


def sha256(path):
    """The hex SHA-256 of the file at `path`."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def available_presets(application=None, directory=None):
    """Returns `{name: info}` of the presets (of one application, if given).

    `info` is the preset's JSON record: `application`, `config`, `sha256`,
    `weights_file` and `card`.
    """
    directory = pathlib.Path(directory or PRESETS_DIR)
    found = {}
    for path in sorted(directory.glob("*.json")):
        with open(path) as f:
            info = json.load(f)
        if application is None or info.get("application") == application:
            found[path.stem] = info
    return found


def get_preset(name, application=None, directory=None):
    """The JSON record of preset `name`; a `ValueError` listing the valid ones."""
    presets = available_presets(application, directory)
    if name not in presets:
        owner = f" for {application}" if application else ""
        raise ValueError(f"Unknown weights preset{owner}. Valid presets: "
                         f"{sorted(presets) or 'none shipped yet'}. Received: weights={name!r}")
    return presets[name]


def _check_hash(path, expected, what):
    actual = sha256(path)
    if actual != expected:
        raise ValueError(f"{what} {str(path)!r} does not match its recorded SHA-256 "
                         f"(expected {expected}, got {actual}): the file is corrupt or "
                         "was replaced.")


def resolve_weights(weights, application=None, file_hash=None, directory=None):
    """Turns a `weights` argument into the path of a weights file (or `None`).

    Args:
        weights: `None`, a preset name, a file path, or an `http(s)://` or
            `file://` URL.
        application: the application name, to reject another model's preset
            and to list the valid ones in the error.
        file_hash: the SHA-256 of a URL's file (required for URLs) or, for a
            path, an optional hash to check.
        directory: where the presets live (default: this package folder).

    Returns:
        `None` or a local file path.

    Raises:
        ValueError: an unknown preset (the message lists the valid ones), a
            missing file, a URL without `file_hash`, or a hash mismatch.
    """
    if weights is None:
        return None
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError("`weights` must be None, a preset name, a file path or a URL. "
                         f"Received: weights={weights!r}")
    weights = os.fspath(weights)
    if weights.startswith(URL_SCHEMES):
        if not file_hash:
            raise ValueError("Weights from a URL need their SHA-256 as `file_hash`. "
                             f"Received: weights={weights!r}, file_hash={file_hash!r}")
        import keras

        fname = weights.rstrip("/").rsplit("/", 1)[-1]
        try:
            return keras.utils.get_file(fname=fname, origin=weights, file_hash=file_hash,
                                        hash_algorithm="sha256",
                                        cache_subdir="keras_attention_vision")
        except Exception as error:  # get_file raises a bare Exception on fetch errors
            raise ValueError(f"Could not fetch the weights at {weights!r}: {error}") \
                from error
    if os.path.exists(weights):
        if file_hash:
            _check_hash(weights, file_hash, "Weights file")
        return weights
    looks_like_path = (os.sep in weights or weights.endswith((".h5", ".keras"))
                       or (os.altsep and os.altsep in weights))
    if looks_like_path:
        raise ValueError(f"The weights file does not exist. Received: weights={weights!r}")
    directory = pathlib.Path(directory or PRESETS_DIR)
    info = get_preset(weights, application, directory)
    path = directory / info["weights_file"]
    if not path.exists():
        raise ValueError(f"The file of preset {weights!r} is missing from the package: "
                         f"{str(path)!r}. Reinstall keras-attention-vision.")
    _check_hash(path, info["sha256"], f"The file of preset {weights!r},")
    return str(path)


def load_weights(model, weights, application=None, file_hash=None, directory=None):
    """Loads `weights` (see `resolve_weights`) into `model`; returns `model`.

    Raises:
        ValueError: as `resolve_weights`, or when Keras cannot read the file
            into this model (another architecture, not a weights file); the
            message names the file.
    """
    path = resolve_weights(weights, application, file_hash, directory)
    if path is None:
        return model
    try:
        model.load_weights(path)
    except Exception as error:  # Keras raises several types for a bad file
        raise ValueError(f"Could not load the weights file {path!r} into "
                         f"{type(model).__name__} {model.name!r}: {error}") from error
    return model


def save_preset(model, name, application, config, card, directory=None):
    """Writes `model`'s weights as preset `name`, with its hash, config and card.

    Args:
        model: the trained model.
        name: the preset name (file stem), e.g. `"ram_mnist"`.
        application: the application it belongs to, e.g.
            `"RecurrentAttentionModel"`.
        config: the constructor arguments that rebuild the architecture.
        card: a dict describing it: data, the command that made it, scores
            (with units), backend.
        directory: where to write (default: this package folder).

    Returns:
        The path of the JSON record.
    """
    directory = pathlib.Path(directory or PRESETS_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    weights_file = f"{name}.weights.h5"
    model.save_weights(str(directory / weights_file))
    record = {"application": application, "config": config,
              "weights_file": weights_file, "sha256": sha256(directory / weights_file),
              "card": card}
    path = directory / f"{name}.json"
    with open(path, "w") as f:
        json.dump(record, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
    return str(path)


__all__ = ["available_presets", "get_preset", "load_weights", "resolve_weights",
           "save_preset", "sha256"]
