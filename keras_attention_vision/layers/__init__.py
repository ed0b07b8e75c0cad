"""The public layers of keras-attention-vision, one per file."""

from keras_attention_vision.layers.attention_estimator import AttentionEstimator
from keras_attention_vision.layers.gated_pixelcnn_block import GatedPixelCNNBlock
from keras_attention_vision.layers.glimpse_sensor import GlimpseSensor
from keras_attention_vision.layers.local_self_attention import (
    LocalSelfAttention1D,
    LocalSelfAttention2D,
)
from keras_attention_vision.layers.masked_conv2d import MaskedConv2D
from keras_attention_vision.layers.non_local_block import NonLocalBlock
from keras_attention_vision.layers.positional_encoding import PositionalEncoding2D
from keras_attention_vision.layers.self_attention_2d import SelfAttention2D
from keras_attention_vision.layers.spatial_attention import SpatialAttention

__all__ = [
    "GatedPixelCNNBlock",
    "MaskedConv2D",
    "GlimpseSensor",
    "NonLocalBlock",
    "SelfAttention2D",
    "LocalSelfAttention1D",
    "LocalSelfAttention2D",
    "PositionalEncoding2D",
    "AttentionEstimator",
    "SpatialAttention",
]
