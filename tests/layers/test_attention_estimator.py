"""AttentionEstimator against the paper's equations (Jetley et al., 2018) in NumPy."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_attention_vision.layers import AttentionEstimator
from tests import testing


def _np(v):
    return np.asarray(ops.convert_to_numpy(v), "float64")


def reference(local, global_, compatibility, normalization, u=None, projection=None):
    """c_s = <u, l_s + g> or <l_s, g>; a = softmax(c) or sigmoid(c)/sum; g_a = sum a_s l_s."""
    local = local.astype("float64")
    g = global_.astype("float64")
    if projection is not None:
        g = g @ projection
    batch, height, width, channels = local.shape
    flat = local.reshape(batch, height * width, channels)
    if compatibility == "pc":
        scores = (flat + g[:, None, :]) @ u[:, 0]
    else:
        scores = np.einsum("bnc,bc->bn", flat, g)
    if normalization == "softmax":
        e = np.exp(scores - scores.max(-1, keepdims=True))
        a = e / e.sum(-1, keepdims=True)
    else:
        s = 1.0 / (1.0 + np.exp(-scores))
        a = s / s.sum(-1, keepdims=True)
    g_a = np.einsum("bn,bnc->bc", a, flat)
    return g_a, a.reshape(batch, height, width)


def _inputs(channels=6, global_channels=10, seed=0, shape=(2, 5, 4)):
    rng = np.random.default_rng(seed)
    local = rng.normal(size=shape + (channels,)).astype("float32")
    global_ = rng.normal(size=(shape[0], global_channels)).astype("float32")
    return local, global_


class AttentionEstimatorTest(testing.TestCase):
    def _check(self, compatibility, normalization, global_channels):
        local, global_ = _inputs(global_channels=global_channels)
        layer = AttentionEstimator(compatibility, normalization,
                                   data_format="channels_last")
        layer([local, global_])
        testing.perturb_weights(layer)
        g_a, attention = layer([local, global_])
        u = _np(layer.u) if compatibility == "pc" else None
        projection = None if layer.projection is None else _np(layer.projection.kernel)
        expected_g_a, expected_a = reference(local, global_, compatibility,
                                             normalization, u, projection)
        self.assertAllClose(g_a, expected_g_a, atol=1e-5, rtol=1e-5)
        self.assertAllClose(attention, expected_a, atol=1e-6, rtol=1e-5)
        return attention

    def test_matches_numpy_reference(self):
        for compatibility in ("pc", "dp"):
            for normalization in ("softmax", "sigmoid"):
                for global_channels in (6, 10):
                    with self.subTest(compatibility=compatibility,
                                      normalization=normalization,
                                      global_channels=global_channels):
                        self._check(compatibility, normalization, global_channels)

    def test_projection_only_when_channels_differ(self):
        local, global_ = _inputs(global_channels=6)
        layer = AttentionEstimator("dp")
        layer([local, global_])
        assert layer.projection is None and not layer.weights
        layer = AttentionEstimator("dp")
        layer([local, _inputs(global_channels=9)[1]])
        assert tuple(layer.projection.kernel.shape) == (9, 6)

    def test_maps_sum_to_one_and_sigmoid_in_range(self):
        local, global_ = _inputs()
        for normalization in ("softmax", "sigmoid"):
            _, attention = AttentionEstimator("pc", normalization)([local, global_])
            attention = testing.to_numpy(attention)
            assert attention.shape == (2, 5, 4)
            np.testing.assert_allclose(attention.sum(axis=(1, 2)), 1.0, atol=1e-6)
            assert np.all(attention > 0) and np.all(attention < 1)

    def test_global_feature_steers_the_map_except_pc_softmax(self):
        # c_s = <u, l_s> + <u, g>: a per-example constant that softmax removes.
        local, global_ = _inputs(global_channels=6)
        other = global_ + 3.0
        for compatibility, normalization, steered in (
                ("pc", "softmax", False), ("pc", "sigmoid", True),
                ("dp", "softmax", True), ("dp", "sigmoid", True)):
            layer = AttentionEstimator(compatibility, normalization)
            a = testing.to_numpy(layer([local, global_])[1])
            b = testing.to_numpy(layer([local, other])[1])
            assert (np.abs(a - b).max() > 1e-4) == steered, (compatibility, normalization)

    def test_sigmoid_weights_are_bounded_sigmoids(self):
        # Each sigmoid weight is sigmoid(c_s) / sum sigmoid: no larger than 1 / (N * min sigmoid)
        # and, unlike softmax, a single huge score cannot take more than 1 / (1 + sum of the rest).
        local = np.zeros((1, 2, 2, 1), "float32")
        local[0, 0, 0, 0] = 100.0
        global_ = np.ones((1, 1), "float32")
        _, soft = AttentionEstimator("dp", "softmax")([local, global_])
        _, sig = AttentionEstimator("dp", "sigmoid")([local, global_])
        self.assertAllClose(testing.to_numpy(soft)[0, 0, 0], 1.0, atol=1e-6)
        self.assertAllClose(testing.to_numpy(sig)[0, 0, 0], 1.0 / (1.0 + 3 * 0.5), atol=1e-6)

    def test_harness(self):
        for compatibility, normalization, global_channels in (
                ("pc", "softmax", 10), ("dp", "sigmoid", 10), ("pc", "sigmoid", 6)):
            with self.subTest(compatibility=compatibility, normalization=normalization):
                self.run_layer_test(
                    AttentionEstimator,
                    {"compatibility": compatibility, "normalization": normalization},
                    list(_inputs(global_channels=global_channels)))
        # dp with G == C has no weights (nothing to fit): the other checks still run.
        self.run_layer_test(AttentionEstimator, {"compatibility": "dp"},
                            list(_inputs(global_channels=6)), run_fit=False)

    def test_channels_first_matches_last(self):
        for compatibility in ("pc", "dp"):
            with self.subTest(compatibility=compatibility):
                self.assert_channels_first_matches_last(
                    AttentionEstimator, {"compatibility": compatibility},
                    list(_inputs()), image_inputs=(0,), image_outputs=())

    def test_unknown_spatial_size(self):
        local = keras.Input((None, None, 6))
        global_ = keras.Input((8,))
        g_a, attention = AttentionEstimator()([local, global_])
        assert tuple(g_a.shape) == (None, 6)
        assert tuple(attention.shape) == (None, None, None)
        model = keras.Model([local, global_], [g_a, attention])
        for shape in ((2, 3, 7), (1, 9, 2)):
            x, g = _inputs(global_channels=8, shape=shape)
            out_g, out_a = testing.to_numpy(model([x, g]))
            assert out_g.shape == (shape[0], 6)
            assert out_a.shape == shape

    def test_mixed_precision_softmax_in_float32(self):
        # Scores far beyond float16's range still give a valid softmax.
        local, global_ = _inputs()
        local = local * 300.0
        layer = AttentionEstimator("dp", dtype="mixed_float16")
        g_a, attention = layer([local, global_[:, :6]])
        attention = testing.to_numpy(attention).astype("float32")
        assert np.all(np.isfinite(attention))
        np.testing.assert_allclose(attention.sum(axis=(1, 2)), 1.0, atol=2e-3)

    def test_incompatible_ranks(self):
        layer = AttentionEstimator()
        with pytest.raises(ValueError, match=r"local_shape=\(2, 5, 6\).*global_shape"):
            layer([np.zeros((2, 5, 6), "float32"), np.zeros((2, 6), "float32")])
        with pytest.raises(ValueError, match=r"global_shape=\(2, 1, 6\)"):
            AttentionEstimator()([np.zeros((2, 3, 3, 6), "float32"),
                                  np.zeros((2, 1, 6), "float32")])
        with pytest.raises(ValueError, match="list"):
            AttentionEstimator().build((2, 3, 3, 6))

    def test_bad_arguments_are_quoted(self):
        with pytest.raises(ValueError, match="compatibility='add'"):
            AttentionEstimator(compatibility="add")
        with pytest.raises(ValueError, match="normalization='relu'"):
            AttentionEstimator(normalization="relu")
        with pytest.raises(ValueError, match="data_format='nhwc'"):
            AttentionEstimator(data_format="nhwc")
