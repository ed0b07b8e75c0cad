"""Data sets that work offline: MNIST and the translated / cluttered MNIST tasks."""

from keras_attention_vision.datasets.cluttered_mnist import (
    make_cluttered_mnist,
    make_translated_mnist,
)
from keras_attention_vision.datasets.mnist import load_mnist

__all__ = ["load_mnist", "make_translated_mnist", "make_cluttered_mnist"]
