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

import functools
import hashlib
import inspect
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
        other = available_presets(None, directory).get(name) if application else None
        if other is not None:
            raise ValueError(f"Preset {name!r} holds {other['application']} weights, not "
                             f"{application} ones. Valid presets{owner}: "
                             f"{sorted(presets) or 'none shipped yet'}.")
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
        raise ValueError(f"The weights file of preset {weights!r} is missing: "
                         f"{str(path)!r}. "
                         + ("Reinstall keras-attention-vision." if directory == PRESETS_DIR
                            else "Save the preset again."))
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
    if not model.built:  # subclassed models that build on their first call
        try:
            model.build()
        except Exception:  # noqa: BLE001 - then Keras's own message below
            pass
    try:
        model.load_weights(path)
    except Exception as error:  # Keras raises several types for a bad file
        # Keras's message may list every layer on many lines: keep its first line.
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        raise ValueError(f"Could not load the weights file {path!r} into "
                         f"{type(model).__name__} {model.name!r} (a file of another "
                         f"architecture or of other constructor arguments?): "
                         f"{first}") from error
    return model


#: Constructor arguments that do not change the weights' shapes or meaning;
#: a preset's record may differ from the model in these.
FREE_ARGUMENTS = frozenset({"name", "seed", "std", "reinforce_weight", "policy_to_core",
                            "dropout", "classifier_activation", "include_top",
                            "input_tensor", "pooling", "weights", "trainable", "dtype",
                            "attention_regularization", "reward_weight", "entropy_weight",
                            "baseline_momentum", "expectation_probability",
                            "max_caption_length", "initial_found_probability",
                            "found_reward", "fixation_cost", "false_found_penalty",
                            "hit_reward", "recognition_weight", "fixation_weight"})


def _plain(value):
    """JSON-like form of a config value (tuples as lists), for comparisons."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def is_preset_name(weights, directory=None):
    """Whether `weights` names a shipped preset (rather than a path or a URL)."""
    if not isinstance(weights, str) or weights.startswith(URL_SCHEMES):
        return False
    return (pathlib.Path(directory or PRESETS_DIR) / f"{weights}.json").is_file()


def check_preset_config(weights, application, config, directory=None, ignore=()):
    """Checks a model's architecture against preset `weights`' record.

    Args:
        weights: the `weights` argument (only preset names are checked).
        application: the application name.
        config: the model's constructor arguments (or `get_config()`).
        directory: where the presets live.
        ignore: more argument names to leave out of the comparison.

    Raises:
        ValueError: naming every argument that differs, with the values the
            preset was trained with (and how to build it), or the unknown
            preset with the list of valid ones.
    """
    if not is_preset_name(weights, directory):
        return  # a path or a URL; an unknown name is reported by resolve_weights
    info = get_preset(weights, application, directory)
    skip = FREE_ARGUMENTS | set(ignore)
    differ = {key: (value, config[key]) for key, value in info["config"].items()
              if key not in skip and key in config
              and _plain(config[key]) != _plain(value)}
    if differ:
        wanted = ", ".join(f"{k}={v!r}" for k, (v, _) in sorted(differ.items()))
        got = ", ".join(f"{k}={g!r}" for k, (_, g) in sorted(differ.items()))
        raise ValueError(
            f"Preset {weights!r} was trained with {wanted}; this {application} was built "
            f"with {got}. Leave those arguments out (the preset's are then used), or "
            f"build it with keras_attention_vision.presets.load_preset({weights!r}).")


def copy_weights_by_name(source, target):
    """Copies the weights of `source`'s layers into `target`'s layers of the same name.

    Every `target` layer that has weights must find a layer of that name with
    weights of the same shapes in `source`. Used to load a full model's
    preset into an `include_top=False` model or one of another input size.

    Raises:
        ValueError: naming the layers that have no counterpart.
    """
    missing = []
    for layer in target.layers:
        if not layer.weights:
            continue
        try:
            other = source.get_layer(layer.name)
        except ValueError:
            missing.append(layer.name)
            continue
        values = other.get_weights()
        if [tuple(v.shape) for v in values] != [tuple(w.shape) for w in layer.weights]:
            missing.append(layer.name)
            continue
        layer.set_weights(values)
    if missing:
        raise ValueError(f"The weights have no (or differently shaped) layers {missing} "
                         f"of {target.name!r}.")
    return target


def check_weights_argument(weights, application):
    """Fails fast, before a model is built: an unknown preset, a missing file, a bad type.

    Constructors call this first, so a typo costs no model building. URLs are
    left to `load_weights` (they need a `file_hash`).

    Raises:
        ValueError: as `resolve_weights`.
    """
    if weights is None:
        return
    if isinstance(weights, (str, os.PathLike)) and os.fspath(weights).startswith(URL_SCHEMES):
        return
    resolve_weights(weights, application)


def top_reference(weights, application, include_top, classes, input_shape, builder):
    """For a functional application: how to load preset `weights` into this model.

    `keras.applications` loads its weights into models without the top or at
    another input size. Here a preset records one full model; this returns
    `None` when the model is that model (load the file directly), or a
    function building it (`builder(**config)`), to load the file into and
    copy the layers by name (`load_application_weights(reference=...)`).

    Raises:
        ValueError: `include_top=True` with another number of classes than
            the preset's.
    """
    if not is_preset_name(weights):
        return None
    get_preset(weights, application)  # another application's preset: refused here
    trained = preset_config(weights)
    if include_top and "classes" in trained and classes != trained["classes"]:
        raise ValueError(f"Preset {weights!r} has {trained['classes']} classes: use "
                         f"classes={trained['classes']} with include_top=True, or "
                         f"include_top=False. Received: classes={classes}")
    shape = tuple(input_shape) if input_shape is not None else None
    if include_top and shape == tuple(trained.get("input_shape", ())):
        return None
    return lambda: builder(**trained)


def load_application_weights(model, weights, application, config, reference=None,
                             file_hash=None, directory=None):
    """What every application constructor does with its `weights` argument.

    Checks `config` against a preset's record (`check_preset_config`), then
    loads the file. When `reference` is given (a function that builds the
    model the file was saved from: with its top, at its input size), the
    weights are loaded into that model and copied by layer name, as
    `keras.applications` does for `include_top=False`.

    Returns:
        `model`.
    """
    if weights is None:
        return model
    check_preset_config(weights, application, config, directory)
    if reference is None:
        return load_weights(model, weights, application, file_hash, directory)
    path = resolve_weights(weights, application, file_hash, directory)
    source = load_weights(reference(), path)
    try:
        return copy_weights_by_name(source, model)
    except ValueError as error:
        raise ValueError(f"Could not load the weights file {path!r} into {application} "
                         f"{model.name!r}: {error}") from error


#: Arguments a preset never passes on to the model (they are the caller's:
#: which model object to make, not which weights it holds).
NOT_INHERITED = frozenset({"name", "weights", "include_top", "input_tensor", "pooling",
                           "trainable", "dtype"})


def preset_arguments(application):
    """Constructor decorator: with `weights=PRESET`, unpassed arguments come from it.

    `keras.applications.ResNet50(weights="imagenet")` builds the network the
    weights were trained with. Here a preset records the constructor
    arguments it was trained with (`preset_config`); a constructor decorated
    with this takes each argument the caller did not pass (by binding the
    call to the signature, not by comparing values) from that record, so
    `AttentionVGG(weights="attention_vgg_cluttered_mnist")` builds the
    preset's architecture. Arguments the caller passes are kept and checked
    against the record as before (`check_preset_config`). With
    `include_top=False` and no `input_shape` (nor `input_tensor`), only the
    preset's channel count is taken: `(None, None, channels)`, any image size.
    `NOT_INHERITED` lists the arguments never taken.

    Args:
        application: the application name the presets are recorded under,
            e.g. `"AttentionVGG"` (a preset of another application is refused
            with the list of this one's).
    """
    def decorate(constructor):
        signature = inspect.signature(constructor)
        named = {k for k, p in signature.parameters.items()
                 if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}

        @functools.wraps(constructor)
        def build(*args, **kwargs):
            bound = signature.bind_partial(*args, **kwargs)
            weights = bound.arguments.get("weights")
            if not is_preset_name(weights):
                return constructor(*args, **kwargs)
            get_preset(weights, application)  # another application's preset: refused
            passed = set(bound.arguments)
            recorded = preset_config(weights)
            _check_channels(weights, application, bound.arguments, recorded)
            no_top = "include_top" in named and bound.arguments.get("include_top") is False
            for key, value in recorded.items():
                if key not in named or key in passed or key in NOT_INHERITED:
                    continue
                if key == "input_shape" and no_top:
                    if "input_tensor" in passed:
                        continue
                    value = (None, None, tuple(value)[-1])
                bound.arguments[key] = value
            return constructor(*bound.args, **bound.kwargs)

        # inspect.getfullargspec (which Keras's Operation.__new__ reads) does
        # not follow __wrapped__; it does read __signature__.
        build.__signature__ = signature
        return build

    return decorate


def _check_channels(weights, application, arguments, config):
    """Refuses an `input_shape` / `input_tensor` whose channels the preset cannot take.

    The first layer's kernel depends on the channel count, so the image
    size may differ from the preset's (`config`, its recorded arguments) but
    the channels may not.

    Raises:
        ValueError: naming both channel counts.
    """
    recorded = config.get("input_shape")
    if recorded is None:
        return
    shape = arguments.get("input_shape")
    if shape is None and arguments.get("input_tensor") is not None:
        shape = tuple(arguments["input_tensor"].shape[1:])
    if shape is None or len(shape) != len(recorded):
        return
    if shape[-1] is not None and shape[-1] != recorded[-1]:
        raise ValueError(
            f"Preset {weights!r} takes images of {recorded[-1]} channel(s) "
            f"(input_shape={tuple(recorded)}); this {application} was given "
            f"{shape[-1]}. The image size may differ, the channels may not. "
            f"Received: input_shape={tuple(shape)}")


def preset_config(name, directory=None):
    """The constructor arguments preset `name` was trained with (tuples restored)."""
    info = get_preset(name, None, directory)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in info["config"].items()}


def load_preset(name, directory=None, **overrides):
    """Builds preset `name`'s application with its recorded arguments and weights.

    `overrides` change arguments that do not touch the weights (e.g.
    `classifier_activation=None`, `seed=1`).

    Example:

    ```python
    model = keras_attention_vision.presets.load_preset("ram_mnist")
    ```
    """
    from keras_attention_vision import applications

    info = get_preset(name, None, directory)
    builder = getattr(applications, info["application"])
    config = {**preset_config(name, directory), **overrides}
    if directory is not None:  # the constructors look in the package folder
        model = builder(**config)
        return load_weights(model, name, info["application"], directory=directory)
    return builder(**config, weights=name)


#: Largest finite float16 value; values from 65520 up round to infinity.
FLOAT16_MAX = 65504.0


def store_as_float16(path):
    """Rewrites every float32 array of the weights file at `path` in float16.

    Halves a preset's size. Keras casts each array to its variable's dtype
    on `load_weights`, so the model loads as float32 on every backend. Each
    weight is rounded to the nearest float16: it moves by at most 2**-11 of its
    value above float16's smallest normal number (6.1e-5), by at most 3e-8
    below it; a warning names the arrays whose nonzero weights become 0.
    Other arrays (integers, float64, bfloat16), groups and attributes are
    copied as they are. The file is written anew (HDF5 does not reclaim the
    space of deleted arrays) and replaces `path` only once complete.

    Raises:
        ValueError: a weight that is infinite, NaN or overflows float16 (its
            magnitude 65520 or more); the message names the array. The file
            is left as it was.
    """
    import warnings

    import h5py
    import numpy as np

    path = pathlib.Path(path)
    converted = path.with_name(path.name + ".float16")
    flushed = {}
    try:
        with h5py.File(path, "r") as source, h5py.File(converted, "w") as target:
            target.attrs.update(source.attrs)

            def copy(name, item):
                if isinstance(item, h5py.Group):
                    target.create_group(name).attrs.update(item.attrs)
                    return
                value = item[()]
                if item.dtype == np.float32:
                    if not np.all(np.isfinite(value)):
                        raise ValueError(f"Weight {name!r} holds infinite or NaN values: "
                                         "it cannot be stored as a preset.")
                    with np.errstate(over="ignore"):  # overflow is checked below
                        half = value.astype(np.float16)
                    if not np.all(np.isfinite(half)):
                        largest = float(np.max(np.abs(value)))
                        raise ValueError(f"Weight {name!r} cannot be stored in float16: "
                                         f"its largest magnitude is {largest:g}, beyond "
                                         f"{FLOAT16_MAX:g}. Save it with "
                                         "storage_dtype=None.")
                    lost = int(np.count_nonzero((half == 0) & (value != 0)))
                    if lost:
                        flushed[name] = lost
                    value = half
                target.create_dataset(name, data=value).attrs.update(item.attrs)

            source.visititems(copy)
        os.replace(converted, path)
    finally:
        if converted.exists():
            converted.unlink()
    if flushed:
        warnings.warn("Nonzero weights below float16's range (about 6e-8) were stored "
                      f"as 0: {flushed} (array: count). Use storage_dtype=None to keep "
                      "them.", stacklevel=2)


def _check_preset_name(name):
    """A preset name is a plain file stem: its two files are NAME.json and
    NAME.weights.h5 in the presets folder."""
    bad = (not isinstance(name, str) or not name.strip() or name != name.strip()
           or os.sep in name or (os.altsep and os.altsep in name)
           or name.startswith(".") or name.endswith((".h5", ".json", ".keras")))
    if bad:
        raise ValueError("A preset name must be a plain file name without a folder, a "
                         "leading dot or an .h5/.json/.keras suffix (e.g. 'ram_mnist'). "
                         f"Received: name={name!r}")


def save_preset(model, name, application, config, card, directory=None,
                storage_dtype=None):
    """Writes `model`'s weights as preset `name`, with its hash, config and card.

    Both files are written to temporary names first and then moved over the
    preset's files, so that an error (a card JSON cannot hold, a weight
    float16 cannot hold) leaves an existing preset of that name as it was.

    Args:
        model: the trained model.
        name: the preset name (file stem), e.g. `"ram_mnist"`.
        application: the application it belongs to, e.g.
            `"RecurrentAttentionModel"`.
        config: the constructor arguments that rebuild the architecture.
        card: a dict describing it: data, the command that made it, scores
            (with units), backend.
        directory: where to write (default: this package folder).
        storage_dtype: `None` (the variables' own dtypes) or `"float16"`:
            float32 weights stored in half the bytes (see `store_as_float16`);
            they load back as float32. The record notes it.

    Returns:
        The path of the JSON record.

    Raises:
        ValueError: a name that is not a plain file stem, an unknown
            `storage_dtype`, a weight float16 cannot hold, or a config or card
            that cannot be written as JSON.
    """
    import secrets

    _check_preset_name(name)
    if storage_dtype not in (None, "float16"):
        raise ValueError("`storage_dtype` must be None or 'float16'. "
                         f"Received: storage_dtype={storage_dtype!r}")
    record = {"application": application, "config": config,
              "weights_file": f"{name}.weights.h5", "sha256": "", "card": card}
    if storage_dtype is not None:
        record["storage_dtype"] = storage_dtype
    try:  # before any file is touched
        json.dumps(record, sort_keys=True, default=str)
    except (TypeError, ValueError) as error:
        raise ValueError(f"The record of preset {name!r} cannot be written as JSON "
                         f"(config or card): {error}") from error
    directory = pathlib.Path(directory or PRESETS_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    # Temporary names no preset can have (a leading dot, a random part); the
    # files are created as usual, so their permissions follow the umask.
    stem = directory / f".preset-{secrets.token_hex(8)}"
    weights_tmp, record_tmp = f"{stem}.weights.h5", f"{stem}.json.tmp"
    try:
        model.save_weights(weights_tmp, overwrite=True)
        if storage_dtype == "float16":
            store_as_float16(weights_tmp)
        record["sha256"] = sha256(weights_tmp)
        with open(record_tmp, "w") as f:
            json.dump(record, f, indent=2, sort_keys=True, default=str)
            f.write("\n")
        os.replace(weights_tmp, directory / record["weights_file"])
        os.replace(record_tmp, directory / f"{name}.json")
    finally:
        for leftover in (weights_tmp, record_tmp):
            if os.path.exists(leftover):
                os.unlink(leftover)
    return str(directory / f"{name}.json")


__all__ = ["available_presets", "check_preset_config", "check_weights_argument",
           "copy_weights_by_name", "get_preset", "is_preset_name",
           "load_application_weights", "load_preset", "load_weights", "preset_config",
           "resolve_weights", "save_preset", "sha256", "store_as_float16",
           "top_reference"]
