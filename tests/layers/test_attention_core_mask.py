"""The boolean `mask` of `attention_core.attend`, against a NumPy reference."""

import numpy as np
import pytest

from keras_attention_vision.layers import attention_core
from tests.testing import to_numpy


def _reference(q, k, v, mask, normalization, scale):
    """Masked attention written from the definition, one query row at a time."""
    out = np.zeros(q.shape[:2] + (v.shape[-1],), "float64")
    mask = np.broadcast_to(mask, q.shape[:2] + (k.shape[1],))
    for b in range(q.shape[0]):
        for i in range(q.shape[1]):
            keep = np.flatnonzero(mask[b, i])
            if keep.size == 0:
                continue
            logits = scale * k[b, keep] @ q[b, i]
            if normalization == "softmax":
                w = np.exp(logits - logits.max())
                w /= w.sum()
            else:
                w = logits / keep.size
            out[b, i] = w @ v[b, keep]
    return out


@pytest.mark.parametrize("normalization", ["softmax", "count"])
@pytest.mark.parametrize("chunk", [None, 4])
@pytest.mark.parametrize("mask_kind", ["keys", "full"])
def test_masked_attend_matches_reference(normalization, chunk, mask_kind):
    rng = np.random.default_rng(0)
    q = rng.normal(size=(2, 10, 3)).astype("float32")
    k = rng.normal(size=(2, 7, 3)).astype("float32")
    v = rng.normal(size=(2, 7, 3)).astype("float32")
    if mask_kind == "keys":  # padding: the same keys hidden for every query
        mask = np.ones((2, 1, 7), bool)
        mask[0, :, 5:] = False
        mask[1, :, 2:] = False
    else:  # a different key set per query, with one query that sees nothing
        mask = rng.uniform(size=(2, 10, 7)) < 0.5
        mask[1, 3] = False
    out, _ = attention_core.attend(q, k, v, normalization=normalization, scale=0.5,
                                   query_chunk_size=chunk, mask=mask)
    expected = _reference(q, k, v, mask, normalization, 0.5)
    np.testing.assert_allclose(to_numpy(out), expected, rtol=1e-5, atol=1e-5)


def test_masked_keys_do_not_change_the_output():
    rng = np.random.default_rng(1)
    q = rng.normal(size=(1, 4, 2)).astype("float32")
    k = rng.normal(size=(1, 6, 2)).astype("float32")
    v = rng.normal(size=(1, 6, 2)).astype("float32")
    mask = np.array([[[True] * 4 + [False] * 2]])
    out, weights = attention_core.attend(q, k, v, mask=mask, return_scores=True)
    k2, v2 = k.copy(), v.copy()
    k2[:, 4:], v2[:, 4:] = 1e4, -1e4  # huge padding values must not leak
    out2, _ = attention_core.attend(q, k2, v2, mask=mask)
    np.testing.assert_allclose(to_numpy(out), to_numpy(out2), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(to_numpy(weights)[..., 4:], 0.0)
    np.testing.assert_allclose(to_numpy(weights).sum(-1), 1.0, rtol=1e-6)


def test_mask_of_wrong_rank_is_refused():
    q = np.zeros((1, 2, 2), "float32")
    with pytest.raises(ValueError, match=r"mask.shape=\(2, 2\)"):
        attention_core.attend(q, q, q, mask=np.ones((2, 2), bool))


@pytest.mark.parametrize("shape", [(2, 5, 3), (2, 1, 3), (2, 3, 5, 3), (1, 1, 1, 3),
                                   (1, 2, 3, 1, 3)])
def test_masked_ceil_pooling_matches_reference(shape):
    """Ceil-mode pooling over real positions only; all-padding windows give 0."""
    from tests.layers.non_local_reference import max_pool_space

    rng = np.random.default_rng(2)
    x = rng.normal(size=shape).astype("float32") - 5.0  # negative: padding must not win
    mask = rng.uniform(size=shape[:-1]) < 0.6
    mask.reshape(shape[0], -1)[:, 0] = True
    pool = attention_core.SPACE_POOL_SIZES[len(shape)]
    expected, expected_mask = max_pool_space(x, pool, mask)
    pooled, pooled_mask = attention_core.pool_space(x, pool, mask)
    np.testing.assert_allclose(to_numpy(pooled), expected, rtol=1e-6)
    np.testing.assert_array_equal(to_numpy(pooled_mask), expected_mask)
    unmasked, _ = max_pool_space(x, pool)
    np.testing.assert_allclose(to_numpy(attention_core.pool_space(x, pool)), unmasked,
                               rtol=1e-6)
