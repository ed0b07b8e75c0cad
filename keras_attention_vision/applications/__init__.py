"""Ready-made models of the papers, built the `keras.applications` way."""

from keras_attention_vision.applications.attention_vgg import (
    AttentionVGG,
    attach_attention_estimators,
    attention_maps_model,
)
from keras_attention_vision.applications.non_local_resnet import (
    BatchToFrames,
    FrameNonLocalBlock,
    FramesToBatch,
    NonLocalResNet,
    NonLocalResNet50,
    insert_non_local_blocks,
    small_resnet,
)
from keras_attention_vision.applications.pixelcnn import PixelCNN
from keras_attention_vision.applications.recurrent_attention_model import (
    RecurrentAttentionModel,
)
from keras_attention_vision.applications.sagan import (
    SAGAN,
    SAGANDiscriminator,
    SAGANGenerator,
)
from keras_attention_vision.applications.show_attend_tell import (
    ShowAttendTell,
    build_vocabulary,
)

__all__ = [
    "NonLocalResNet",
    "NonLocalResNet50",
    "insert_non_local_blocks",
    "small_resnet",
    "FramesToBatch",
    "BatchToFrames",
    "FrameNonLocalBlock",
    "SAGAN",
    "SAGANDiscriminator",
    "SAGANGenerator",
    "PixelCNN",
    "RecurrentAttentionModel",
    "AttentionVGG",
    "attach_attention_estimators",
    "attention_maps_model",
    "ShowAttendTell",
    "build_vocabulary",
]
from keras_attention_vision.applications.image_transformer import (  # noqa: E402
    ImageTransformer,
    ImageTransformerLayer,
)

__all__ += ["ImageTransformer", "ImageTransformerLayer"]
from keras_attention_vision.applications.visual_search_agent import (  # noqa: E402
    VisualSearchAgent,
)

__all__ += ["VisualSearchAgent"]
