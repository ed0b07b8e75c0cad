"""The export decorator that every public class of the package wears."""

import keras

PACKAGE = "keras_attention_vision"


class kav_export:
    """Registers a public symbol for `.keras` saving under our package name.

    Args:
        path: the public path(s) of the symbol, e.g.
            `"keras_attention_vision.layers.NonLocalBlock"`. Recorded on the
            symbol as `_kav_export_path` for the docs and tests.

    Example:

    ```python
    @kav_export("keras_attention_vision.layers.MyLayer")
    class MyLayer(keras.layers.Layer):
        ...
    ```
    """

    def __init__(self, path):
        if isinstance(path, str):
            path = (path,)
        if not path or not all(isinstance(p, str) and p for p in path):
            raise ValueError(
                f"`path` must be a non-empty string or tuple of strings. Received: path={path!r}"
            )
        self.path = tuple(path)

    def __call__(self, symbol):
        keras.saving.register_keras_serializable(package=PACKAGE)(symbol)
        symbol._kav_export_path = self.path
        return symbol
