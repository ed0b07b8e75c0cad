"""Data sets that work offline: MNIST and the translated / cluttered MNIST tasks."""

from keras_attention_vision.datasets.cluttered_mnist import (
    make_cluttered_mnist,
    make_translated_mnist,
)
from keras_attention_vision.datasets.mnist import load_mnist
from keras_attention_vision.datasets.shapes_captions import (
    caption_pairs,
    load_caption_images,
    load_coco_captions,
    load_flickr8k_captions,
    make_shapes_captions,
)

__all__ = ["load_mnist", "make_translated_mnist", "make_cluttered_mnist"]
__all__ += ["make_shapes_captions", "caption_pairs", "load_flickr8k_captions",
            "load_coco_captions", "load_caption_images"]
from keras_attention_vision.datasets.search_scenes import make_search_scenes  # noqa: E402

__all__ += ["make_search_scenes"]
