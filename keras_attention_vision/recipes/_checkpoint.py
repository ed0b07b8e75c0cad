"""Per-epoch checkpoints and resumption for the recipes' training (`kav train`).

`kav train NAME` gives the recipe `args.checkpoint_dir`
(`OUTPUT_DIR/checkpoints`). A recipe trains through `fit` below (or
`EpochCheckpoint` when it runs its own epoch loop); after every epoch that
writes the model's weights with the optimizer's state (Keras's
`keras.callbacks.BackupAndRestore` writes them, two copies, so a file cut short
by a kill is not the only one; `EpochCheckpoint.restore` loads them with
`model.load_weights` as its `on_train_begin` does, but before `fit`, after
building a subclassed model, which TensorFlow's `fit` builds only when it
traces the first step), the states of every `keras.random.SeedGenerator` of the
model and Keras's global one (which `BackupAndRestore` leaves out), the history
of the finished epochs and whatever the recipe adds (`extra`). Run again with
the same options, training starts at the first unfinished epoch and ends with
the weights an uninterrupted run ends with.

Each epoch's data must be a function of `(seed, epoch)`: `fit` shuffles with
`numpy.random.default_rng([seed, epoch])` (not `fit(shuffle=True)`, whose
order depends on how many epochs the process has run), and a recipe that
redraws its data every epoch draws it from such a generator too. Schedules
that follow the optimizer's step counter (learning rates) resume with it;
anything else that changes per epoch must be computed from the epoch number.

Without `args.checkpoint_dir` (`kav demo`, the tests, a recipe called from
Python) the same loop runs and nothing is written.

Layout: `checkpoint_dir/run.json` (the options of the run, and whether it
finished) and one folder per trained model, `checkpoint_dir/NAME/`.

This module imports nothing heavy at module level (`kav --help` reads the
recipes without TensorFlow).
"""

import json
import os
import shutil
import sys
import time

RUN_FILE = "run.json"
STATE_FILE = "state.json"
SEEDS_FILE = "seed_states.npz"
#: Options that do not change what a run computes (not compared on resume).
IGNORED_OPTIONS = frozenset({"command", "recipe", "output_dir", "checkpoint_dir", "restart"})


class RunStateError(ValueError):
    """The output folder holds a run that `kav train` must not silently overwrite."""


def _options(args):
    return {k: v for k, v in sorted(vars(args).items()) if k not in IGNORED_OPTIONS}


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_json(path, data):
    """Writes `data` to `path` atomically (a temporary file, then a rename)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, default=str)
    os.replace(tmp, path)


def _sha256(path):
    from keras_attention_vision.presets import sha256

    return sha256(path)


def completed_epochs(directory):
    """Epochs finished by the checkpoint in `directory` (0 when there is none)."""
    state = _read_json(os.path.join(directory, STATE_FILE)) or {}
    return int(state.get("epoch", 0))


def progress(checkpoint_dir):
    """`{model name: finished epochs}` of the checkpoints under `checkpoint_dir`."""
    if not os.path.isdir(checkpoint_dir):
        return {}
    return {name: completed_epochs(os.path.join(checkpoint_dir, name))
            for name in sorted(os.listdir(checkpoint_dir))
            if os.path.isdir(os.path.join(checkpoint_dir, name))}


def prepare_run(args, restart=False):
    """Checks `args.output_dir` before a `kav train` run; returns a line to print.

    - `restart`: the checkpoints of an earlier run are deleted (its results are
      overwritten as the new run writes them).
    - A finished run, or files of a run made without checkpoints, in the
      folder: `RunStateError` (use `--restart` or another `--output-dir`).
    - An unfinished run with the same options: it is resumed.
    - An unfinished run with other options: `RunStateError` naming them.

    Writes `run.json` (the options, `finished: false`).
    """
    output_dir, checkpoint_dir = args.output_dir, args.checkpoint_dir
    run_file = os.path.join(checkpoint_dir, RUN_FILE)
    options = json.loads(json.dumps(_options(args), default=str))
    message = None
    if restart and os.path.isdir(checkpoint_dir):
        shutil.rmtree(checkpoint_dir)
        message = f"kav train: --restart: deleted the checkpoints in {checkpoint_dir}"
    run = _read_json(run_file)
    hint = "use --restart to train again and overwrite it, or choose another --output-dir"
    if run is None:
        earlier = sorted(name for name in os.listdir(output_dir)
                         if name != os.path.basename(checkpoint_dir)) \
            if os.path.isdir(output_dir) else []
        if earlier and not restart:
            shown = ", ".join(earlier[:3]) + (", ..." if len(earlier) > 3 else "")
            raise RunStateError(f"{output_dir} already holds results of an earlier run "
                                f"({shown}); {hint}")
    elif run.get("finished"):
        raise RunStateError(f"{output_dir} holds a finished run; {hint}")
    else:
        changed = sorted(k for k in set(options) | set(run.get("options", {}))
                         if options.get(k) != run.get("options", {}).get(k))
        if changed and not any(progress(checkpoint_dir).values()):
            # It stopped before its first epoch (e.g. an error at start): nothing
            # to resume, so the new options start afresh.
            shutil.rmtree(checkpoint_dir)
            changed = []
            run = None
            message = (f"kav train: the earlier run in {output_dir} finished no epoch; "
                       "starting afresh with these options")
        if changed:
            was = ", ".join(f"--{k.replace('_', '-')} {run.get('options', {}).get(k)!r}"
                            for k in changed)
            raise RunStateError(f"the unfinished run in {output_dir} was started with "
                                f"other options ({was}); run it with those to resume, "
                                f"or {hint}")
    if run is not None and not run.get("finished"):
        done = progress(checkpoint_dir)
        shown = ", ".join(f"{name}: {epochs} epoch{'s' * (epochs != 1)} done"
                          for name, epochs in done.items() if epochs)
        message = (f"kav train: resuming the run in {output_dir} from its checkpoints "
                   f"({shown or 'no finished epoch yet'}); --restart starts over")
    os.makedirs(checkpoint_dir, exist_ok=True)
    _write_json(run_file, {"options": options, "finished": False,
                           "command": " ".join(sys.argv)})
    return message


def finish_run(args):
    """Marks the run in `args.checkpoint_dir` as finished (a rerun then refuses)."""
    run_file = os.path.join(args.checkpoint_dir, RUN_FILE)
    run = _read_json(run_file) or {}
    run["finished"] = True
    _write_json(run_file, run)


def _seed_states(model):
    """The state variables of the model's seed generators, and Keras's global one."""
    from keras.src.random.seed_generator import global_seed_generator

    weights = {id(v) for v in model.weights}
    states = [v for v in model.variables if id(v) not in weights]
    return states + [global_seed_generator().state]


class EpochCheckpoint:
    """Saves and restores one model's training, epoch by epoch.

    For recipes with their own epoch loop (e.g. data redrawn every epoch):

    ```python
    checkpoint = EpochCheckpoint(model, args, "ram")
    checkpoint.restore(x_train, y_train, batch_size=64)  # one step on the training data
    rows = checkpoint.extra.get("rows", [])
    for epoch in range(checkpoint.initial_epoch, epochs):
        x = draw(numpy.random.default_rng([args.seed, epoch]))
        model.fit(x, y, epochs=epoch + 1, initial_epoch=epoch)
        rows.append(...)
        checkpoint.save(epoch, extra={"rows": rows})
    ```

    Args:
        model: a compiled model.
        args: the recipe's arguments; nothing is saved without
            `args.checkpoint_dir`.
        name: the folder under `args.checkpoint_dir`, unique in the run.
    """

    def __init__(self, model, args, name):
        self.model = model
        root = getattr(args, "checkpoint_dir", None)
        self.directory = os.path.join(root, name) if root else None
        self._backup = None
        self._restored = self.directory is None
        state = (_read_json(os.path.join(self.directory, STATE_FILE))
                 if self.directory else None) or {}
        self._state = state
        self.initial_epoch = int(state.get("epoch", 0))
        self.history = state.get("history", {})
        self.extra = state.get("extra", {})
        # Training time of the finished epochs of earlier runs, and when this
        # run's training began (`restore` restarts the clock after its step).
        self._earlier_seconds = float(state.get("train_seconds", 0.0))
        self._since = time.perf_counter()
        if self.directory:
            import keras

            os.makedirs(self.directory, exist_ok=True)
            self._backup = keras.callbacks.BackupAndRestore(
                self.directory, double_checkpoint=True, delete_checkpoint=False)

    def restore(self, x, y=None, batch_size=None):
        """Loads the checkpoint, if there is one, before training resumes.

        First one throw-away training step on `x, y` creates every variable
        the way training creates them (a subclassed model's layers, and the
        optimizer's slots for the variables the model's own `train_step`
        updates: SAGAN's, Show-Attend-Tell's); then the weights, the
        optimizer state and the seed-generator states are overwritten from
        the checkpoint, so the step leaves no trace. (`BackupAndRestore`'s
        own `on_train_begin` loads at the start of `fit`, before TensorFlow
        builds a subclassed model, and refuses it.)

        Args:
            x, y: the training data, as `fit` takes it (the step runs on
                its first batch; a full batch of the data `fit` will see
                traces the step as training does: a step traced on other
                shapes gave results 3e-5 apart on TensorFlow, and
                Show-Attend-Tell pads captions to the longest one given).
            batch_size: passed to that `fit`.
        """
        import numpy as np

        if self._restored:
            return
        self._restored = True
        self._since = time.perf_counter()
        if self.initial_epoch == 0:
            return
        self.model.fit(x, y, batch_size=batch_size, epochs=1, steps_per_epoch=1,
                       shuffle=False, verbose=0)
        # the file BackupAndRestore wrote, loaded as its on_train_begin() does
        self.model.load_weights(self._weights_file())
        path = os.path.join(self.directory, SEEDS_FILE)
        if os.path.exists(path):
            with np.load(path) as saved:
                for i, state in enumerate(_seed_states(self.model)):
                    if f"state_{i}" in saved:
                        state.assign(saved[f"state_{i}"])
        self._since = time.perf_counter()

    def train_seconds(self):
        """Wall-clock seconds of training so far, earlier runs' epochs included.

        A resumed run counts the saved epochs' time (recorded in
        `state.json`) plus its own since `restore`; the time an interrupted
        run spent in an epoch it did not finish is not counted.
        """
        return self._earlier_seconds + time.perf_counter() - self._since

    def _weights_file(self):
        """The weights file that `state.json` committed (by its SHA-256).

        BackupAndRestore writes `latest.weights.h5` in place, after copying
        the previous one to `.bkp`: a run stopped while it wrote leaves a
        short file that HDF5 still opens. `state.json` is written last and
        names the complete file's hash, so the copy that matches it is used.
        """
        weights = os.path.join(self.directory, "latest.weights.h5")
        candidates = [weights, f"{weights}.bkp"]
        expected = self._state.get("weights_sha256")
        if expected is None:  # written without a hash: the newest file
            return weights
        for path in candidates:
            if os.path.exists(path) and _sha256(path) == expected:
                if path != weights:  # load_weights wants the .weights.h5 name
                    shutil.copyfile(path, weights)
                return weights
        raise RunStateError(f"the checkpoint in {self.directory} is damaged (no weights "
                            "file matches state.json); use --restart to start over")

    def save(self, epoch, logs=None, extra=None):
        """Saves the state after `epoch` (0-based) finished, with its `logs`."""
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        if extra is not None:
            self.extra = extra
        seconds = self.train_seconds()
        if self.directory is None:
            return
        import keras
        import numpy as np

        self._backup.set_model(self.model)
        self._backup.on_epoch_end(epoch)  # weights, optimizer state (2 copies)
        states = {f"state_{i}": keras.ops.convert_to_numpy(v.value)
                  for i, v in enumerate(_seed_states(self.model))}
        path = os.path.join(self.directory, SEEDS_FILE)
        np.savez(f"{path}.tmp.npz", **states)
        os.replace(f"{path}.tmp.npz", path)
        # last: the epoch counter and the hash say the files above are complete
        weights = os.path.join(self.directory, "latest.weights.h5")
        self._state = {"epoch": epoch + 1, "weights_sha256": _sha256(weights),
                       "history": self.history, "extra": self.extra,
                       "train_seconds": seconds}
        _write_json(os.path.join(self.directory, STATE_FILE), self._state)


class _History:
    """What `fit` returns: `.history`, as `keras.callbacks.History` has it."""

    def __init__(self, history, epochs, train_seconds):
        self.history = history
        self.epoch = list(range(epochs))
        self.train_seconds = train_seconds  # earlier runs' epochs included


def _progress_logger(total_epochs, verbose):
    import keras

    class Progress(keras.callbacks.ProgbarLogger):
        """Keras's progress bar, with the run's epoch count in `Epoch 3/10`."""

        def set_params(self, params):
            super().set_params(params)
            self.epochs = total_epochs

    return Progress() if verbose else None


def _is_array(a):
    return hasattr(a, "shape") and hasattr(a, "__getitem__")


def _take(data, index):
    """`data[index]`: an array, a list/tuple/dict of arrays, or a list of strings.

    `None` stays `None`; a plain list (e.g. caption strings) becomes an array.
    """
    import numpy as np

    if data is None:
        return None
    if isinstance(data, dict):
        return {key: _take(value, index) for key, value in data.items()}
    if isinstance(data, (list, tuple)) and data and all(_is_array(a) for a in data):
        return type(data)(_take(a, index) for a in data)
    return (data if _is_array(data) else np.asarray(data))[index]


def _length(data):
    while isinstance(data, dict) or (isinstance(data, (list, tuple)) and data
                                     and all(_is_array(a) for a in data)):
        data = next(iter(data.values())) if isinstance(data, dict) else data[0]
    return len(data)


def fit(model, x, y=None, *, args, name, epochs, batch_size=None, shuffle=True,
        verbose="auto", callbacks=(), **kwargs):
    """`model.fit(x, y, ...)` with a checkpoint every epoch and resumption.

    Runs one `fit` call per epoch, the data permuted with
    `numpy.random.default_rng([args.seed, epoch])` when `shuffle` (so the
    order of epoch `e` is the same in a resumed run), and saves through
    `EpochCheckpoint(model, args, name)` after each.

    Args:
        model: a compiled model.
        x, y: NumPy arrays, or lists/tuples/dicts of them (same first axis).
        args: the recipe's arguments (`seed`, and `checkpoint_dir` to save).
        name: the model's checkpoint folder name, unique within the run.
        epochs: total epochs of the run.
        batch_size, callbacks, kwargs: passed to `fit` (`validation_data`, ...).
        shuffle: permute the examples every epoch.
        verbose: `"auto"` is 1 (progress bars) on a terminal, else 2.

    Returns:
        An object with `.history`: every epoch's logs, restored ones included,
        and `.train_seconds`: the wall-clock training time, earlier runs'
        finished epochs included (`EpochCheckpoint.train_seconds`).
    """
    import numpy as np

    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    checkpoint = EpochCheckpoint(model, args, name)
    start = checkpoint.initial_epoch
    if start:
        print(f"[{name}] resuming after epoch {min(start, epochs)} of {epochs}", flush=True)
    checkpoint.restore(x, y, batch_size=batch_size)
    n = _length(x)
    for epoch in range(start, epochs):
        if shuffle:
            order = np.random.default_rng([args.seed, epoch]).permutation(n)
            xe, ye = _take(x, order), _take(y, order)
        else:
            xe, ye = x, y
        logger = _progress_logger(epochs, verbose)
        history = model.fit(xe, ye, batch_size=batch_size, epochs=epoch + 1,
                            initial_epoch=epoch, shuffle=False, verbose=verbose,
                            callbacks=[*callbacks, *([logger] if logger else [])],
                            **kwargs)
        logs = {k: v[-1] for k, v in history.history.items() if v}
        checkpoint.save(epoch, logs)
    return _History(checkpoint.history, epochs, checkpoint.train_seconds())
