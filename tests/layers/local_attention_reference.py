"""NumPy reference of the Image Transformer's local self-attention.

Written from the paper's definition (Parmar et al., 2018, section 3.2), not
from the layer: full multi-head attention over all positions, with a
`(N, N)` mask that says which key each query may see:

- 2D: the key lies in the memory window of the query's block (the block, `fh`
  rows above, below too when not causal, `fw` columns left and right) and,
  when causal, comes no later in the generation order (blocks in raster
  order, raster order inside a block);
- 1D: the key lies in `[start - lm, start + lq (+ lm when not causal))` of the
  query's block and, when causal, is not after the query.

Everything is float64. The per-block weights are read back from the full
`(N, N)` weight matrix into the layout the layers document.
"""

import numpy as np
from keras import ops


def layer_weights(layer):
    """The four projections of a local-attention layer, as float64 arrays."""
    weights = {}
    for name in ("query", "key", "value", "output"):
        dense = getattr(layer, "output_dense" if name == "output" else f"{name}_dense")
        weights[f"{name}_kernel"] = np.asarray(ops.convert_to_numpy(dense.kernel),
                                               "float64")
        bias = getattr(dense, "bias", None)
        weights[f"{name}_bias"] = (0.0 if bias is None
                                   else np.asarray(ops.convert_to_numpy(bias), "float64"))
    return weights


def allowed_2d(height, width, query_shape, memory_flange, causal):
    """`(H * W, H * W)` booleans: may raster position `p` attend to `m`."""
    (qh, qw), (fh, fw) = query_shape, memory_flange
    rows, cols = np.divmod(np.arange(height * width), width)
    top, left = rows // qh * qh, cols // qw * qw
    below = 0 if causal else fh
    pr, pc = top[:, None], left[:, None]
    mr, mc = rows[None, :], cols[None, :]
    mask = ((mr >= pr - fh) & (mr < pr + qh + below)
            & (mc >= pc - fw) & (mc < pc + qw + fw))
    if causal:
        # Generation rank from the tuple (block row, block col, row, col in block).
        keys = [(r // qh, c // qw, r % qh, c % qw) for r, c in zip(rows, cols)]
        rank = np.empty(len(keys), int)
        rank[sorted(range(len(keys)), key=keys.__getitem__)] = np.arange(len(keys))
        mask &= rank[None, :] <= rank[:, None]
    return mask


def allowed_1d(length, query_length, memory_length, causal):
    """`(L, L)` booleans for the 1D layer."""
    pos = np.arange(length)
    start = (pos // query_length * query_length)[:, None]
    after = 0 if causal else memory_length
    m = pos[None, :]
    mask = (m >= start - memory_length) & (m < start + query_length + after)
    if causal:
        mask &= m <= pos[:, None]
    return mask


def masked_mha(x, weights, mask):
    """Multi-head attention over flattened positions with a boolean mask.

    Args:
        x: `(batch, N, C)`.
        weights: `layer_weights(layer)`.
        mask: `(N, N)`, True where query `p` may see key `m`.

    Returns:
        `(output (batch, N, out), weights (batch, heads, N, N))`.
    """
    x = np.asarray(x, "float64")
    q = np.einsum("bnc,chd->bhnd", x, weights["query_kernel"]) + _head_bias(
        weights["query_bias"])
    k = np.einsum("bnc,chd->bhnd", x, weights["key_kernel"]) + _head_bias(
        weights["key_bias"])
    v = np.einsum("bnc,chd->bhnd", x, weights["value_kernel"]) + _head_bias(
        weights["value_bias"])
    logits = np.einsum("bhnd,bhmd->bhnm", q, k) / np.sqrt(q.shape[-1])
    logits = np.where(mask, logits, -np.inf)
    logits -= logits.max(axis=-1, keepdims=True)
    w = np.exp(logits)
    w /= w.sum(axis=-1, keepdims=True)
    heads = np.einsum("bhnm,bhmd->bhnd", w, v)
    out = np.einsum("bhnd,hdo->bno", heads, weights["output_kernel"])
    return out + weights["output_bias"], w


def _head_bias(bias):
    return bias if np.isscalar(bias) else bias[None, :, None, :]


def local_attention_2d(x, weights, query_shape, memory_flange, causal):
    """`x (batch, H, W, C)` -> output `(batch, H, W, out)` and per-block weights.

    The weights come in the documented layout `(batch, heads, blocks, qh * qw,
    mh * mw)`; rows of padded query positions are left at 0 (the layer's
    values there are not defined by the paper), and memory positions outside
    the image are 0.
    """
    batch, height, width, channels = x.shape
    mask = allowed_2d(height, width, query_shape, memory_flange, causal)
    out, w = masked_mha(x.reshape(batch, -1, channels), weights, mask)
    (qh, qw), (fh, fw) = query_shape, memory_flange
    mh = qh + fh + (0 if causal else fh)
    mw = fw + qw + (0 if causal and fh == 0 else fw)
    nbh, nbw = -(-height // qh), -(-width // qw)
    blocks = np.zeros((batch, w.shape[1], nbh * nbw, qh * qw, mh * mw))
    for bi in range(nbh):
        for bj in range(nbw):
            top, left = bi * qh, bj * qw
            for qi in range(qh * qw):
                pr, pc = top + qi // qw, left + qi % qw
                if pr >= height or pc >= width:
                    continue
                for mi in range(mh * mw):
                    mr, mc = top - fh + mi // mw, left - fw + mi % mw
                    if 0 <= mr < height and 0 <= mc < width:
                        blocks[:, :, bi * nbw + bj, qi, mi] = w[:, :, pr * width + pc,
                                                                mr * width + mc]
    return out.reshape(batch, height, width, -1), blocks


def local_attention_1d(x, weights, query_length, memory_length, causal):
    """`x (batch, L, C)` -> output and weights `(batch, heads, blocks, lq, m)`."""
    batch, length, _ = x.shape
    out, w = masked_mha(x, weights, allowed_1d(length, query_length, memory_length,
                                               causal))
    memory = memory_length + query_length + (0 if causal else memory_length)
    num_blocks = -(-length // query_length)
    blocks = np.zeros((batch, w.shape[1], num_blocks, query_length, memory))
    for b in range(num_blocks):
        start = b * query_length
        for qi in range(query_length):
            if start + qi >= length:
                continue
            for mi in range(memory):
                m = start - memory_length + mi
                if 0 <= m < length:
                    blocks[:, :, b, qi, mi] = w[:, :, start + qi, m]
    return out, blocks
