"""`recipes/_checkpoint.py`: a run killed mid-epoch and resumed ends as an uninterrupted one."""

import argparse
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from keras_attention_vision.recipes import _checkpoint

#: A small training run: dropout (a layer's SeedGenerator), Keras's global
#: SeedGenerator (noise on the hidden layer; JAX: a layer's own), a cosine learning-rate schedule
#: (optimizer step counter), Adam moments, shuffling. `KILL_AT = (epoch, batch)`
#: kills the process (SIGKILL) after that batch.
SCRIPT = textwrap.dedent("""
    import argparse, os, signal, sys
    import keras
    import numpy as np
    from keras_attention_vision.recipes import _checkpoint

    class Noisy(keras.layers.Layer):
        # Keras's global SeedGenerator (seed=None); JAX traces only seeded draws
        def __init__(self):
            super().__init__()
            jax = keras.backend.backend() == "jax"
            self.generator = keras.random.SeedGenerator(7) if jax else None

        def call(self, x, training=False):
            noise = keras.random.normal(keras.ops.shape(x), seed=self.generator)
            return x + 0.1 * noise if training else x

    class Kill(keras.callbacks.Callback):
        def __init__(self, at):
            super().__init__()
            self.at, self.epoch = at, None
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
        def on_train_batch_end(self, batch, logs=None):
            if self.at and (self.epoch, batch) == self.at:
                os.kill(os.getpid(), signal.SIGKILL)

    class Subclassed(keras.Model):
        # built by fit() only symbolically, as the RAM model is
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(16, activation="relu")
            self.dropout = keras.layers.Dropout(0.3, seed=1)
            self.noisy = Noisy()
            self.out = keras.layers.Dense(1)

        def call(self, x, training=False):
            x = self.dropout(self.hidden(x), training=training)
            return self.out(self.noisy(x, training=training))

    def run(checkpoint_dir, kill_at=None, epochs=4):
        keras.utils.set_random_seed(3)
        model = Subclassed()
        schedule = keras.optimizers.schedules.CosineDecay(0.01, decay_steps=epochs * 8)
        model.compile(keras.optimizers.Adam(schedule), "mse")
        rng = np.random.default_rng(0)
        x = rng.normal(size=(128, 6)).astype("float32")
        y = x.sum(-1, keepdims=True)
        args = argparse.Namespace(seed=5, checkpoint_dir=checkpoint_dir)
        history = _checkpoint.fit(model, x, y, args=args, name="probe", epochs=epochs,
                                  batch_size=16, verbose=0, callbacks=[Kill(kill_at)])
        return [w.copy() for w in model.get_weights()], history.history

    if __name__ == "__main__":
        run(sys.argv[1], kill_at=(2, 3))
""")


@pytest.fixture
def probe(tmp_path, monkeypatch):
    path = tmp_path / "resume_probe.py"
    path.write_text(SCRIPT)
    monkeypatch.syspath_prepend(str(tmp_path))
    import resume_probe

    yield path, resume_probe
    sys.modules.pop("resume_probe", None)


def test_killed_run_resumes_to_the_uninterrupted_weights(tmp_path, probe):
    path, module = probe
    checkpoints = tmp_path / "checkpoints"
    killed = subprocess.run([sys.executable, str(path), str(checkpoints)],
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]  # killed in epoch 3 of 4
    assert _checkpoint.progress(str(checkpoints)) == {"probe": 2}
    # as if it had also been stopped while writing the next epoch's weights: the
    # previous file copied aside (BackupAndRestore's .bkp), the new one cut short
    latest = checkpoints / "probe" / "latest.weights.h5"
    data = latest.read_bytes()
    (checkpoints / "probe" / "latest.weights.h5.bkp").write_bytes(data)
    latest.write_bytes(data[: len(data) // 3])

    resumed, resumed_history = module.run(str(checkpoints))
    uninterrupted, history = module.run(None)
    difference = max(float(np.max(np.abs(a - b))) for a, b in zip(resumed, uninterrupted))
    assert difference == 0.0, f"max weight difference {difference}"
    assert resumed_history == history  # epochs 1-2 restored from the checkpoint
    assert len(history["loss"]) == 4
    # a second run after the end loads the final weights and trains nothing
    again, _ = module.run(str(checkpoints))
    assert all(np.array_equal(a, b) for a, b in zip(again, uninterrupted))


def _args(tmp_path, **options):
    out = tmp_path / "out"
    return argparse.Namespace(output_dir=str(out), checkpoint_dir=str(out / "checkpoints"),
                              seed=0, epochs=3, **options)


def test_prepare_run_resumes_refuses_and_restarts(tmp_path):
    args = _args(tmp_path)
    assert _checkpoint.prepare_run(args) is None  # a new run
    run = json.loads((tmp_path / "out" / "checkpoints" / "run.json").read_text())
    assert run["options"] == {"epochs": 3, "seed": 0} and not run["finished"]
    message = _checkpoint.prepare_run(args)
    assert message.startswith("kav train: resuming the run in")
    # other options with no finished epoch: nothing to resume, a fresh start
    fresh = _checkpoint.prepare_run(argparse.Namespace(**{**vars(args), "epochs": 5}))
    assert "finished no epoch; starting afresh" in fresh
    _checkpoint.prepare_run(args, restart=True)
    model_dir = tmp_path / "out" / "checkpoints" / "model"
    model_dir.mkdir()
    (model_dir / _checkpoint.STATE_FILE).write_text('{"epoch": 1}')
    with pytest.raises(_checkpoint.RunStateError, match="--epochs 3"):
        _checkpoint.prepare_run(argparse.Namespace(**{**vars(args), "epochs": 5}))
    _checkpoint.finish_run(args)
    with pytest.raises(_checkpoint.RunStateError, match="finished run; use --restart"):
        _checkpoint.prepare_run(args)
    assert "deleted the checkpoints" in _checkpoint.prepare_run(args, restart=True)


def test_prepare_run_keeps_results_made_without_checkpoints(tmp_path):
    args = _args(tmp_path)
    os.makedirs(args.output_dir)
    (tmp_path / "out" / "results.json").write_text("{}")
    with pytest.raises(_checkpoint.RunStateError, match=r"earlier run \(results.json\)"):
        _checkpoint.prepare_run(args)
    _checkpoint.prepare_run(args, restart=True)


class _Clock:
    """A stand-in for `time` in `_checkpoint`: advances only when told."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


def test_train_seconds_of_a_resumed_run_count_the_earlier_epochs(tmp_path, monkeypatch):
    import keras

    clock = _Clock()
    monkeypatch.setattr(_checkpoint, "time", clock)

    def tick(epoch, logs=None):  # every epoch takes 5 "seconds"
        clock.now += 5.0

    def run(epochs):
        inputs = keras.Input((3,))
        model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
        model.compile("sgd", "mse")
        x = np.ones((8, 3), "float32")
        args = argparse.Namespace(seed=0, checkpoint_dir=str(tmp_path / "checkpoints"))
        return _checkpoint.fit(model, x, x[:, :1], args=args, name="clock", epochs=epochs,
                               batch_size=4, verbose=0,
                               callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=tick)])

    assert run(2).train_seconds == 10.0
    clock.now += 100.0  # between the runs: not training time
    assert run(3).train_seconds == 15.0  # 2 saved epochs + 1 in this run
