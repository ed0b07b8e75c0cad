"""Tests of the SAGAN SelfAttention2D layer against a NumPy reference."""

import numpy as np
from keras import ops

from keras_attention_vision.layers import SelfAttention2D
from tests import testing
from tests.layers import non_local_reference as ref


def _input(shape=(2, 4, 6, 16), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _weights(layer):
    weights = {"gamma": float(ops.convert_to_numpy(layer.gamma))}
    for name in ("query", "key", "value", "output"):
        sub = getattr(layer, f"{name}_conv")
        weights[f"{name}_kernel"] = np.asarray(ops.convert_to_numpy(sub.kernel), "float64")
        weights[f"{name}_bias"] = np.asarray(ops.convert_to_numpy(sub.bias), "float64")
    return weights


class SelfAttention2DTest(testing.TestCase):
    def test_matches_numpy(self):
        x = _input()
        for sub_sample in (True, False):
            with self.subTest(sub_sample=sub_sample):
                layer = SelfAttention2D(sub_sample=sub_sample)
                layer(x)
                testing.perturb_weights(layer)
                out, scores = layer(x, return_attention_scores=True)
                expected, expected_scores = ref.sagan_attention(x, _weights(layer),
                                                                sub_sample)
                self.assertAllClose(out, expected, atol=2e-5, rtol=2e-5)
                self.assertAllClose(scores, expected_scores, atol=2e-6, rtol=2e-5)

    def _check_reference(self, x, mask=None, **kwargs):
        layer = SelfAttention2D(**kwargs)
        layer(x)
        testing.perturb_weights(layer)
        masked = {} if mask is None else {"mask": mask}
        out, scores = layer(x, return_attention_scores=True, **masked)
        expected, expected_scores = ref.sagan_attention(
            x, _weights(layer), kwargs.get("sub_sample", True), mask=mask)
        self.assertAllClose(out, expected, atol=2e-5, rtol=2e-5, msg=str(x.shape))
        self.assertAllClose(scores, expected_scores, atol=2e-6, rtol=2e-5)
        return layer

    def test_side_one_maps_match_numpy(self):
        # Before: 0 keys after the 2x2 pooling (x + bias on TF/JAX, an error on torch).
        for shape in ((2, 1, 5, 16), (1, 3, 1, 16), (1, 1, 1, 16)):
            with self.subTest(shape=shape):
                self._check_reference(_input(shape))

    def test_mask_matches_numpy_and_ignores_padding(self):
        mask = np.ones((2, 4, 6), bool)
        mask[0, 3:] = False
        mask[0, :, 5:] = False
        mask[1, :, 1:] = False
        for sub_sample in (False, True):
            with self.subTest(sub_sample=sub_sample):
                layer = self._check_reference(_input(), mask=mask, sub_sample=sub_sample,
                                              query_chunk_size=5)
        # Padding a 3x5 image to 4x6 does not change the real pixels' outputs
        # (sub-sampled: the last layer of the loop).
        x = _input()
        padded = testing.to_numpy(layer(x, mask=mask))
        alone = testing.to_numpy(layer(x[:1, :3, :5]))
        self.assertAllClose(padded[0, :3, :5], alone[0], atol=2e-5, rtol=2e-5)
        self.assert_channels_first_matches_last(SelfAttention2D, {}, x,
                                                call_kwargs={"mask": mask})

    def test_widths_identity_and_chunking(self):
        x = _input()
        layer = SelfAttention2D(query_chunk_size=5)
        self.assertAllClose(layer(x), x, atol=0)
        self.assertEqual(tuple(layer.query_conv.kernel.shape), (16, 2))
        self.assertEqual(tuple(layer.value_conv.kernel.shape), (16, 8))
        testing.perturb_weights(layer)
        full = SelfAttention2D()
        full(x)
        full.set_weights(layer.get_weights())
        self.assertAllClose(layer(x), full(x), atol=1e-5, rtol=1e-5)

    def test_harness_and_channels_first(self):
        self.run_layer_test(SelfAttention2D, {"use_spectral_norm": True,
                                              "query_chunk_size": 8,
                                              "return_attention_scores": True},
                            _input((2, 4, 4, 16)))
        self.assert_channels_first_matches_last(SelfAttention2D, {}, _input())

    def test_bad_input(self):
        with self.assertRaisesRegex(ValueError, r"Received: input_shape=\(2, 4, 16\)"):
            SelfAttention2D()(np.zeros((2, 4, 16), "float32"))
        with self.assertRaisesRegex(ValueError, "Received: query_channels=0"):
            SelfAttention2D(query_channels=0)
