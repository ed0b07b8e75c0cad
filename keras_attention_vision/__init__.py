"""keras-attention-vision: visual-attention layers and the models of their papers.

Importing the package is cheap: TensorFlow Probability, matplotlib and the data
sets load only when something asks for them.
"""

from keras_attention_vision import layers
from keras_attention_vision.version import __version__

__all__ = ["layers", "__version__"]
