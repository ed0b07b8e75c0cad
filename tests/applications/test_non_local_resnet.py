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
from tests.layers import non_local_reference as ref
from tests.layers.test_non_local_block import layer_weights


def _images(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=shape).astype("float32")


def _inbound_layer(model, layer_name):
    node = model.get_layer(layer_name)._inbound_nodes[-1]  # the newest graph
    return node.input_tensors[0]._keras_history.operation.name


def _perturb_blocks(model):
    """Moves the non-local blocks off the identity (the ResNet keeps its init)."""
    layers = model.layers + [la for m in model.layers if isinstance(m, keras.Model)
                             for la in m.layers]
    blocks = [la for la in layers if isinstance(la, NonLocalBlock)]
    for block in blocks:
        testing.perturb_weights(block)
    return blocks


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

    def test_frame_block_equals_the_3d_block_with_a_mask(self):
        rng = np.random.default_rng(0)
        clips = rng.normal(size=(2, 2, 3, 4, 8)).astype("float32")
        mask = rng.uniform(size=(2, 2, 3, 4)) < 0.7
        video = NonLocalBlock(sub_sample=True, data_format="channels_last")
        video(clips)
        testing.perturb_weights(video)
        frames = FrameNonLocalBlock(2, sub_sample=True)
        frames(clips.reshape(4, 3, 4, 8))
        frames.set_weights(video.get_weights())
        expected = testing.to_numpy(video(clips, mask=mask, training=False))
        out = frames(clips.reshape(4, 3, 4, 8), mask=mask.reshape(4, 3, 4), training=False)
        self.assertAllClose(out, expected.reshape(4, 3, 4, 8), atol=1e-5, rtol=1e-5)

    def test_bad_arguments(self):
        with self.assertRaisesRegex(ValueError, "Received: nonlocal_stages=3"):
            NonLocalResNet50(nonlocal_stages=3)
        with self.assertRaisesRegex(ValueError, "Received: weights='imagenet'"):
            NonLocalResNet50(weights="imagenet")
        with self.assertRaisesRegex(ValueError, "Received: frames=0"):
            FrameNonLocalBlock(0)

    def test_channels_last_inside_under_global_channels_first(self):
        kwargs = {"include_top": False, "pooling": "avg", "nonlocal_stages": 1}
        cases = (((32, 32, 3), _images((2, 32, 32, 3))),
                 ((2, 32, 32, 3), _images((1, 2, 32, 32, 3))))
        for shape, x in cases:
            with self.subTest(input_shape=shape):
                model = NonLocalResNet50(input_shape=shape, **kwargs)
                _perturb_blocks(model)
                previous = keras.config.image_data_format()
                keras.config.set_image_data_format("channels_first")
                try:
                    model_cf = NonLocalResNet50(input_shape=shape, **kwargs)
                finally:
                    keras.config.set_image_data_format(previous)
                model_cf.set_weights(model.get_weights())
                self.assertAllClose(model_cf(x, training=False),
                                    model(x, training=False), atol=1e-4, rtol=1e-4)

    def test_16_pixel_inputs_attend_to_the_1x1_map(self):
        # res4 is 1x1 at 16 px: sub-sampling used to leave no key (x + bias
        # on TF and JAX, an error on torch). keras.applications refuses a
        # static size under 32, so the sizes are left open.
        model = NonLocalResNet50(input_shape=(None, None, 3), include_top=False,
                                 pooling="avg", nonlocal_stages=1)
        (block,) = _perturb_blocks(model)
        x = _images((2, 16, 16, 3))
        out = testing.to_numpy(model(x, training=False))
        self.assertTrue(np.all(np.isfinite(out)))
        self.assertGreater(np.abs(out[0] - out[1]).max(), 1e-3)
        features = testing.to_numpy(keras.Model(model.inputs[0], block.input)(x))
        self.assertEqual(features.shape[1:3], (1, 1))
        expected, _ = ref.non_local(features, layer_weights(block), block.mode, True,
                                    True, True)
        self.assertAllClose(block(features, training=False), expected, atol=1e-4,
                            rtol=1e-4)

    def test_input_tensor_keeps_the_layers_upstream(self):
        cases = (((32, 32, 3), _images((2, 32, 32, 3))),
                 ((2, 32, 32, 3), _images((1, 2, 32, 32, 3))))
        for shape, x in cases:
            with self.subTest(input_shape=shape):
                source = keras.Input(shape)
                rescale = keras.layers.Rescaling(1.0 / 255, name="rescale")
                model = NonLocalResNet50(input_tensor=rescale(source), include_top=False,
                                         pooling="avg", nonlocal_stages=1)
                self.assertIs(model.inputs[0], source)
                self.assertIn("rescale", [layer.name for layer in model.layers])
                _perturb_blocks(model)
                scaled = testing.to_numpy(model(x, training=False))
                rescale.scale = 1.0  # the preprocessing is part of the model
                self.assertGreater(np.abs(testing.to_numpy(model(x, training=False))
                                          - scaled).max(), 1e-4)
                self.assertAllClose(model(x / 255, training=False), scaled, atol=1e-4,
                                    rtol=1e-4)
