"""LocalSelfAttention2D / 1D against full masked attention written in NumPy."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_attention_vision.layers import LocalSelfAttention1D, LocalSelfAttention2D
from keras_attention_vision.layers.local_self_attention import generation_order
from tests import testing
from tests.layers import local_attention_reference as ref
from tests.layers.input_gradients import input_gradient, randomize_weights


def _input(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _layer(cls, x, **kwargs):
    layer = cls(**kwargs)
    layer(x)
    testing.perturb_weights(layer)  # biases off zero
    return layer


# (H, W, query_shape, memory_flange): exact multiples, padding on one or both
# sides, no flange, a flange larger than the block, a block larger than the image.
CASES_2D = [
    (4, 6, (2, 3), (1, 1)),
    (5, 7, (2, 3), (1, 2)),
    (5, 5, (2, 2), (0, 0)),
    (6, 5, (3, 2), (2, 0)),
    (5, 6, (2, 2), (3, 1)),
    (3, 5, (4, 4), (1, 3)),
    (4, 5, (1, 2), (0, 2)),
]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("height,width,query_shape,memory_flange", CASES_2D)
def test_2d_matches_masked_full_attention(height, width, query_shape, memory_flange,
                                          causal):
    x = _input((2, height, width, 6))
    layer = _layer(LocalSelfAttention2D, x, num_heads=2, key_dim=3, value_dim=4,
                   query_shape=query_shape, memory_flange=memory_flange, causal=causal,
                   output_shape=5, data_format="channels_last")
    out, scores = layer(x, return_attention_scores=True)
    expected, expected_scores = ref.local_attention_2d(
        x, ref.layer_weights(layer), query_shape, memory_flange, causal)
    np.testing.assert_allclose(testing.to_numpy(out), expected, atol=1e-5, rtol=1e-5)
    scores = testing.to_numpy(scores)
    assert scores.shape == expected_scores.shape
    # Compare rows of real query positions (padded queries are cropped away).
    (qh, qw), nbw = query_shape, -(-width // query_shape[1])
    for b in range(scores.shape[2]):
        for qi in range(qh * qw):
            r, c = b // nbw * qh + qi // qw, b % nbw * qw + qi % qw
            if r < height and c < width:
                np.testing.assert_allclose(scores[:, :, b, qi], expected_scores[:, :, b, qi],
                                           atol=1e-6, rtol=1e-5)


# Flanges that are multiples of the block: the windows are gathered as whole
# blocks (`_block_shifts`), with and without padding, a flange of 0 in one
# axis, flanges of several blocks.
CASES_WHOLE_BLOCKS = [
    (6, 7, (2, 2), (2, 2)),
    (5, 9, (2, 3), (2, 3)),
    (7, 6, (1, 2), (2, 4)),
    (4, 4, (2, 2), (4, 2)),
    (5, 5, (3, 3), (0, 3)),
]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("height,width,query_shape,memory_flange",
                         CASES_2D + CASES_WHOLE_BLOCKS)
def test_2d_output_alone_matches_masked_full_attention(height, width, query_shape,
                                                       memory_flange, causal):
    # Without the scores (on PyTorch: the fused-kernel path, blocks first).
    x = _input((3, height, width, 6), seed=1)
    layer = _layer(LocalSelfAttention2D, x, num_heads=2, key_dim=3, value_dim=4,
                   query_shape=query_shape, memory_flange=memory_flange, causal=causal,
                   output_shape=5, data_format="channels_last")
    expected, _ = ref.local_attention_2d(x, ref.layer_weights(layer), query_shape,
                                         memory_flange, causal)
    np.testing.assert_allclose(testing.to_numpy(layer(x)), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("height,width,query_shape,memory_flange", CASES_WHOLE_BLOCKS)
def test_2d_whole_block_windows_match_masked_full_attention(height, width, query_shape,
                                                            memory_flange, causal):
    test_2d_matches_masked_full_attention(height, width, query_shape, memory_flange,
                                          causal)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("length,query_length,memory_length",
                         [(9, 3, 3), (10, 3, 2), (7, 4, 5), (8, 8, 0), (5, 2, 0),
                          (11, 3, 6)])
def test_1d_matches_masked_full_attention(length, query_length, memory_length, causal):
    x = _input((2, length, 5))
    layer = _layer(LocalSelfAttention1D, x, num_heads=3, key_dim=2,
                   query_length=query_length, memory_length=memory_length, causal=causal)
    out, scores = layer(x, return_attention_scores=True)
    expected, expected_scores = ref.local_attention_1d(
        x, ref.layer_weights(layer), query_length, memory_length, causal)
    np.testing.assert_allclose(testing.to_numpy(out), expected, atol=1e-5, rtol=1e-5)
    scores = testing.to_numpy(scores)
    real = np.arange(scores.shape[2] * query_length).reshape(scores.shape[2], -1) < length
    np.testing.assert_allclose(scores[:, :, real], expected_scores[:, :, real],
                               atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(testing.to_numpy(layer(x)), expected, atol=1e-5, rtol=1e-5)


def test_1d_is_2d_on_one_row():
    x = _input((2, 11, 4))
    one = _layer(LocalSelfAttention1D, x, num_heads=2, key_dim=3, query_length=4,
                 memory_length=3, causal=True)
    two = LocalSelfAttention2D(num_heads=2, key_dim=3, query_shape=(1, 4),
                               memory_flange=(0, 3), causal=True,
                               data_format="channels_last")
    two(x[:, None])
    two.set_weights(one.get_weights())
    np.testing.assert_allclose(testing.to_numpy(one(x)), testing.to_numpy(two(x[:, None]))[:, 0],
                               atol=1e-6)


def _support(layer, x, index):
    """Input pixels (any channel) that reach the output at `index` (all channels)."""
    weights = np.random.default_rng(1).normal(size=layer(x).shape[-1]).astype("float32")

    def fn(t):
        return ops.sum(layer(t)[(0,) + index] * ops.convert_to_tensor(weights))

    return np.abs(input_gradient(fn, x)[0]).sum(axis=-1) > 0


@pytest.mark.parametrize("causal", [False, True])
def test_2d_locality_and_causality_by_gradients(causal):
    height, width, query_shape, flange = 7, 8, (3, 3), (2, 2)
    x = _input((1, height, width, 4))
    layer = LocalSelfAttention2D(num_heads=2, key_dim=3, query_shape=query_shape,
                                 memory_flange=flange, causal=causal,
                                 data_format="channels_last")
    layer(x)
    randomize_weights(layer)
    allowed = ref.allowed_2d(height, width, query_shape, flange, causal)
    rank = np.argsort(layer.generation_order(height, width))
    for r, c in [(0, 0), (3, 4), (4, 2), (6, 7), (5, 6)]:
        support = _support(layer, x, (r, c)).reshape(-1)
        p = r * width + c
        np.testing.assert_array_equal(support, allowed[p], err_msg=f"pixel {(r, c)}")
        if causal:
            assert np.all(rank[support] <= rank[p]), f"pixel {(r, c)} sees a later pixel"
            assert rank[support].max() == rank[p]
        else:
            assert support.sum() > query_shape[0] * query_shape[1]


@pytest.mark.parametrize("causal", [False, True])
def test_1d_locality_and_causality_by_gradients(causal):
    length, lq, lm = 13, 4, 3
    x = _input((1, length, 4))
    layer = LocalSelfAttention1D(num_heads=2, key_dim=3, query_length=lq,
                                 memory_length=lm, causal=causal)
    layer(x)
    randomize_weights(layer)
    for p in (0, 5, 8, 12):
        support = np.flatnonzero(_support(layer, x, (p,)))
        start = p // lq * lq
        stop = (p + 1) if causal else min(length, start + lq + lm)
        np.testing.assert_array_equal(support, np.arange(max(0, start - lm), stop))


def test_generation_order():
    assert generation_order(2, 4, (2, 2)).tolist() == [0, 1, 4, 5, 2, 3, 6, 7]
    # Partial blocks at the edges: 3x3 image, 2x2 blocks.
    assert generation_order(3, 3, (2, 2)).tolist() == [0, 1, 3, 4, 2, 5, 6, 7, 8]
    np.testing.assert_array_equal(generation_order(5, 7, (1, 7)), np.arange(35))
    order = generation_order(9, 10, (4, 3))
    assert sorted(order.tolist()) == list(range(90))
    with pytest.raises(ValueError, match=r"Received: query_shape=\(0, 2\)"):
        generation_order(4, 4, (0, 2))


def test_scores_are_distributions_over_the_window():
    x = _input((2, 5, 7, 4))
    layer = LocalSelfAttention2D(num_heads=2, key_dim=2, query_shape=(2, 3),
                                 memory_flange=(1, 1), causal=True,
                                 return_attention_scores=True,
                                 data_format="channels_last")
    out, scores = layer(x)
    assert tuple(scores.shape) == (2, 2, 9, 6, 3 * 5)
    sums = testing.to_numpy(ops.sum(scores, axis=-1))
    # 3x3 blocks of 2x3; real query rows sum to 1.
    real = np.zeros((3, 3, 2, 3), bool)
    rows = np.arange(3)[:, None, None, None] * 2 + np.arange(2)[None, None, :, None]
    cols = np.arange(3)[None, :, None, None] * 3 + np.arange(3)[None, None, None, :]
    real = (rows < 5) & (cols < 7)
    np.testing.assert_allclose(sums[:, :, real.reshape(9, 6)], 1.0, atol=1e-5)


def test_symbolic_shapes_with_unknown_sizes():
    inputs = keras.Input((None, None, 8))
    out, scores = LocalSelfAttention2D(num_heads=2, key_dim=4, query_shape=(2, 2),
                                       memory_flange=(1, 1), output_shape=3,
                                       data_format="channels_last")(
        inputs, return_attention_scores=True)
    assert tuple(out.shape) == (None, None, None, 3)
    assert tuple(scores.shape) == (None, 2, None, 4, 16)
    layer = LocalSelfAttention1D(num_heads=1, key_dim=4, query_length=3,
                                 memory_length=2, causal=True)
    assert layer.compute_output_shape((2, 10, 6)) == (2, 10, 6)
    assert layer(keras.Input((10, 6)), return_attention_scores=True)[1].shape == (
        None, 1, 4, 3, 5)


@pytest.mark.parametrize("layer, shape", [
    (lambda: LocalSelfAttention2D(2, 4, data_format="channels_last"), (0, 16, 16, 16)),
    (lambda: LocalSelfAttention2D(2, 4, memory_flange=(3, 5), data_format="channels_last"),
     (0, 16, 16, 16)),
    (lambda: LocalSelfAttention2D(2, 4, causal=True, data_format="channels_last"),
     (0, 10, 12, 16)),
    (lambda: LocalSelfAttention1D(2, 4, query_length=4, memory_length=4), (0, 16, 16)),
])
def test_empty_batch_gives_an_empty_output(layer, shape):
    # Every path (whole-block and pixel windows, padding, PyTorch's fused
    # one) reshapes with explicit sizes, so a batch of 0 works as in Keras.
    layer = layer()
    out = layer(np.zeros(shape, "float32"))
    assert tuple(out.shape) == shape
    out, scores = layer(np.zeros(shape, "float32"), return_attention_scores=True)
    assert tuple(out.shape) == shape and scores.shape[0] == 0


class LocalSelfAttentionHarnessTest(testing.TestCase):
    def test_harness_2d(self):
        self.run_layer_test(
            LocalSelfAttention2D,
            {"num_heads": 2, "key_dim": 4, "query_shape": (2, 3), "memory_flange": (1, 2),
             "causal": True, "return_attention_scores": True, "dropout": 0.1},
            _input((2, 5, 7, 8)))
        self.run_layer_test(LocalSelfAttention2D,
                            {"num_heads": 1, "key_dim": 4, "value_dim": 2,
                             "output_shape": 6, "query_shape": (2, 2),
                             "memory_flange": (0, 0), "use_bias": False},
                            _input((2, 4, 4, 3)))

    def test_harness_1d(self):
        self.run_layer_test(
            LocalSelfAttention1D,
            {"num_heads": 2, "key_dim": 4, "query_length": 3, "memory_length": 4,
             "causal": True, "dropout": 0.2},
            _input((2, 10, 6)))

    def test_channels_first_matches_last(self):
        for causal in (False, True):
            self.assert_channels_first_matches_last(
                LocalSelfAttention2D,
                {"num_heads": 2, "key_dim": 3, "query_shape": (2, 3),
                 "memory_flange": (1, 1), "causal": causal,
                 "return_attention_scores": True},
                _input((2, 5, 7, 6)), image_outputs=(0,))

    def test_mixed_float16_stays_finite_with_padding(self):
        # Padding and causal masks under float16: no -1e9, no NaN/inf.
        x = 30.0 * _input((2, 5, 7, 8))
        for cls, kwargs, data in (
                (LocalSelfAttention2D, {"query_shape": (2, 3), "memory_flange": (1, 2),
                                        "causal": True}, x),
                (LocalSelfAttention1D, {"query_length": 3, "memory_length": 2}, x[:, 0])):
            layer = cls(num_heads=2, key_dim=4, dropout=0.2, dtype="mixed_float16",
                        **kwargs)
            out, scores = layer(data, return_attention_scores=True)
            self.assertEqual(keras.backend.standardize_dtype(out.dtype), "float16")
            trained = layer(data, training=True)  # the attention-dropout path
            for t in (out, scores, trained):
                self.assertTrue(np.all(np.isfinite(testing.to_numpy(t).astype("float32"))))

    def test_dropout_only_in_training(self):
        x = _input((2, 4, 6, 4))
        layer = LocalSelfAttention2D(num_heads=1, key_dim=4, query_shape=(2, 2),
                                     memory_flange=(1, 1), dropout=0.5,
                                     data_format="channels_last")
        self.assertAllClose(layer(x), layer(x, training=False))
        self.assertFalse(np.allclose(testing.to_numpy(layer(x, training=True)),
                                     testing.to_numpy(layer(x))))


@pytest.mark.parametrize("kwargs,message", [
    ({"query_shape": (0, 2)}, r"query_shape=\(0, 2\)"),
    ({"query_shape": (2,)}, r"query_shape=\(2,\)"),
    ({"query_shape": (2.0, 2)}, r"query_shape=\(2.0, 2\)"),
    ({"query_shape": 4}, r"query_shape=4"),
    ({"memory_flange": (-1, 0)}, r"memory_flange=\(-1, 0\)"),
    ({"memory_flange": (1, 1.5)}, r"memory_flange=\(1, 1.5\)"),
    ({"num_heads": 0}, r"num_heads=0"),
    ({"key_dim": "8"}, r"key_dim='8'"),
    ({"dropout": 1.0}, r"dropout=1.0"),
    ({"causal": 1}, r"causal=1"),
    ({"output_shape": (4, 4)}, r"output_shape=\(4, 4\)"),
])
def test_bad_2d_arguments_are_quoted(kwargs, message):
    base = {"num_heads": 2, "key_dim": 4}
    with pytest.raises(ValueError, match=f"Received: {message}"):
        LocalSelfAttention2D(**{**base, **kwargs})


@pytest.mark.parametrize("kwargs,message", [
    ({"query_length": 0}, "query_length=0"),
    ({"query_length": 2.5}, "query_length=2.5"),
    ({"memory_length": -1}, "memory_length=-1"),
    ({"memory_length": None}, "memory_length=None"),
])
def test_bad_1d_arguments_are_quoted(kwargs, message):
    with pytest.raises(ValueError, match=f"Received: {message}"):
        LocalSelfAttention1D(num_heads=1, key_dim=2, **kwargs)


def test_wrong_rank_names_the_layer_and_shape():
    with pytest.raises(ValueError, match=r"LocalSelfAttention2D.*input_shape=\(2, 4, 8\)"):
        LocalSelfAttention2D(num_heads=1, key_dim=2)(np.zeros((2, 4, 8), "float32"))
    with pytest.raises(ValueError, match=r"LocalSelfAttention1D.*input_shape=\(2, 4, 4, 8\)"):
        LocalSelfAttention1D(num_heads=1, key_dim=2)(np.zeros((2, 4, 4, 8), "float32"))


@pytest.mark.parametrize("make, shape", [
    (lambda: LocalSelfAttention2D(2, 4, data_format="channels_last"), (2, 0, 8, 16)),
    (lambda: LocalSelfAttention2D(2, 4, data_format="channels_last"), (2, 8, 8, 0)),
    (lambda: LocalSelfAttention1D(2, 4), (2, 0, 16)),
])
def test_zero_sizes_are_refused_with_the_shape(make, shape):
    with pytest.raises(ValueError, match=r"at least 1.*input_shape=\(2, "):
        make()(np.zeros(shape, "float32"))


@pytest.mark.parametrize("data_format, first, second", [
    ("channels_last", (1, 8, 8, 16), (1, 8, 8, 8)),
    ("channels_first", (1, 16, 8, 8), (1, 8, 8, 8)),
])
def test_another_channel_count_after_build_is_refused(data_format, first, second):
    layer = LocalSelfAttention2D(2, 4, data_format=data_format)
    layer(np.zeros(first, "float32"))
    with pytest.raises(ValueError, match="expected axis"):
        layer(np.zeros(second, "float32"))
