"""Tests of NonLocalResNet50 and insert_non_local_blocks."""

import os
import tempfile

import keras
import numpy as np

from keras_attention_vision.applications import NonLocalResNet50
from keras_attention_vision.applications.non_local_resnet import (
    PAPER_PLACEMENTS,
    FrameNonLocalBlock,
    insert_non_local_blocks,
)
from keras_attention_vision.layers import NonLocalBlock
from tests import testing


def _images(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=shape).astype("float32")


def _inbound_layer(model, layer_name):
    node = model.get_layer(layer_name)._inbound_nodes[-1]  # the newest graph
    return node.input_tensors[0]._keras_history.operation.name


class NonLocalResNetTest(testing.TestCase):
    def test_backbone_weights_file_gives_the_resnet_outputs(self):
        base = keras.applications.ResNet50(weights=None, include_top=False,
                                           input_shape=(32, 32, 3))
        x = _images((2, 32, 32, 3))
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "resnet50_notop.weights.h5")
            base.save_weights(path)
            model = NonLocalResNet50(include_top=False, input_shape=(32, 32, 3),
                                     backbone_weights=path, nonlocal_stages=5)
            video = NonLocalResNet50(include_top=False, input_shape=(2, 32, 32, 3),
                                     backbone_weights=path, nonlocal_stages=1)
        # The paper's placement: each block between its residual block and the next.
        blocks = [layer.name for layer in model.layers
                  if isinstance(layer, NonLocalBlock)]
        self.assertEqual(blocks, [f"{n}_nonlocal" for n in PAPER_PLACEMENTS[5]])
        self.assertEqual(_inbound_layer(model, "conv3_block1_out_nonlocal"),
                         "conv3_block1_out")
        self.assertEqual(_inbound_layer(model, "conv3_block2_1_conv"),
                         "conv3_block1_out_nonlocal")
        self.assertEqual(_inbound_layer(model, "conv3_block2_add"),
                         "conv3_block1_out_nonlocal")
        self.assertEqual(PAPER_PLACEMENTS[1], ("conv4_block5_out",))
        self.assertEqual(len(PAPER_PLACEMENTS[10]), 10)
        expected = testing.to_numpy(base(x, training=False))
        self.assertAllClose(model(x, training=False), expected, atol=1e-4, rtol=1e-4)
        # The video (C2D) model runs the same ResNet on every frame.
        # One clip of the 2 images as frames: the folded batch has the 2D
        # model's shapes (cheap on JAX, whose eager ops compile per shape).
        clip, per_frame = x[None], expected[None]
        self.assertAllClose(video(clip, training=False), per_frame, atol=1e-4, rtol=1e-4)
        blocks = [layer for layer in video.layers[2].layers
                  if isinstance(layer, FrameNonLocalBlock)]
        self.assertEqual(len(blocks), 1)
        self.assertEqual(blocks[0].rank, 5)  # 3D attention over T x H x W

    def test_insert_into_a_user_model_keeps_weights(self):
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inputs)
        x = keras.layers.Conv2D(8, 3, padding="same", name="c2")(x)
        outputs = keras.layers.Dense(2, name="head")(keras.layers.Flatten()(x))
        model = keras.Model(inputs, outputs)
        new = insert_non_local_blocks(model, ["c1"], mode="dot_product")
        self.assertEqual(_inbound_layer(new, "c2"), "c1_nonlocal")
        for layer in model.layers[1:]:
            for a, b in zip(layer.get_weights(), new.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(a, b)
        x = _images((3, 8, 8, 3))
        self.assertAllClose(new(x), model(x), atol=1e-5)
        with self.assertRaisesRegex(ValueError, r"Received: after=\['nope'\]"):
            insert_non_local_blocks(model, ["nope"])

    def test_frame_block_harness(self):
        self.run_layer_test(FrameNonLocalBlock, {"frames": 2, "sub_sample": True},
                            np.random.default_rng(0).normal(size=(4, 4, 4, 8)).astype("float32"))

    def test_bad_arguments(self):
        with self.assertRaisesRegex(ValueError, "Received: nonlocal_stages=3"):
            NonLocalResNet50(nonlocal_stages=3)
        with self.assertRaisesRegex(ValueError, "Received: weights='imagenet'"):
            NonLocalResNet50(weights="imagenet")
        with self.assertRaisesRegex(ValueError, "Received: frames=0"):
            FrameNonLocalBlock(0)
