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
