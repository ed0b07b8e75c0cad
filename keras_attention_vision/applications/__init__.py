"""Ready-made models of the papers, built the `keras.applications` way."""

from keras_attention_vision.applications.pixelcnn import PixelCNN
from keras_attention_vision.applications.recurrent_attention_model import (
    RecurrentAttentionModel,
)

__all__ = [
    "PixelCNN",
    "RecurrentAttentionModel",
]
