"""keras-attention-vision: visual-attention layers and the models of their papers.

Importing the package is cheap: its submodules (and with them keras, TensorFlow
Probability, matplotlib and the data sets) load on first use, so `kav --help`
answers at once.

Example:

```python
import keras_attention_vision as kav

block = kav.layers.NonLocalBlock()
```
"""

import importlib

from keras_attention_vision.version import __version__

SUBMODULES = ("applications", "datasets", "distributions", "layers", "metrics",
              "reinforce", "visualization")

__all__ = ["__version__", *SUBMODULES]


def __getattr__(name):
    if name in SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
