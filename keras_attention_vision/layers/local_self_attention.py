"""Local (blocked) multi-head self-attention of the Image Transformer.

From "Image Transformer" (Parmar, Vaswani, Uszkoreit, Kaiser, Shazeer, Ku and
Tran, 2018), section 3.2 ("Local Self-Attention") and figure 2. The image (or
sequence) is cut into non-overlapping *query blocks*; the queries of a block
attend only to a *memory block* around it, so the cost is
`O(h * w * m * d)` for `m` memory positions instead of the
`O((h * w)^2 * d)` of full self-attention.

Both layers share one implementation: a sequence is a one-row image. The
query block and the flange of the 1D layer are `(1, query_length)` and
`(0, memory_length)`.

## Geometry (2D)

Query block `b = (bi, bj)` covers rows `bi * qh ... bi * qh + qh - 1` and
columns `bj * qw ... bj * qw + qw - 1` (`query_shape = (qh, qw)`). Its memory
window, with `memory_flange = (fh, fw)`, is the rectangle of

- rows `bi * qh - fh ... bi * qh + qh - 1 (+ fh when not causal)`,
- columns `bj * qw - fw ... bj * qw + qw - 1 + fw`; when `causal` and
  `fh == 0` the right flange is left out (all its positions come later in
  the generation order, so it would be masked entirely),

so `memory_positions = mh * mw` with `mh = qh + fh (+ fh)` and
`mw = fw + qw (+ fw)`. Query positions run in raster order inside the block,
memory positions in raster order inside the window (top-left first).

Images whose sides are not multiples of the block are padded at the bottom
and right to whole blocks; the output is cropped back. Window positions
outside the image are removed with a boolean mask built from the image size
(never detected from zero keys, never a literal -1e9: see
`attention_core.attend`).

## How it is computed

Per image size, `_plan` makes (once, in NumPy) the index of every memory
position of every block and the `(blocks, q, m)` mask. The keys and values
of all windows are then one `take` (its gradient one scatter-add): of
whole blocks when the flange is a multiple of the block (the default
`(8, 8)` / `(8, 8)`; the memory positions are then computed block by block,
and the returned weights put back in the window's raster order), of single
pixels otherwise. The mask is a constant that broadcasts over batch and
heads. With `causal=True` and `fh > 0`, the right flange in the block's own
rows (hidden from every query of the block) is not computed at all:
`m = fh * mw + qh * (fw + qw)` instead of `mh * mw` (the returned weights
are 0 there). On PyTorch (without attention scores or dropout) the image
is laid out blocks first and the masked softmax attention is
`keras.ops.dot_product_attention` (the fused SDPA kernel); elsewhere
everything is laid out `(batch, heads, blocks, positions, dim)` and it is
matmul / softmax / matmul in float32. The numbers are those of
`attention_core.attend` with the boolean mask.

## Generation order (`causal=True`)

The paper's order for 2D local attention: query blocks in raster order
(block row by block row, left to right), and raster order inside each block.
Position `p` may attend to memory position `m` only when `m` comes no later
than `p` in this order (`p` itself included). `generation_order(height,
width, query_shape)` returns this order as a permutation of the raster
indices, for samplers that fill an image pixel by pixel. With
`query_shape = (1, width)` or `(1, w)` blocks in a single row it is plain
raster order; for the 1D layer it is always the sequence order.
"""

import functools

import keras
import numpy as np
from keras import ops

from keras_attention_vision.api_export import kav_export
from keras_attention_vision.layers import attention_core
from keras_attention_vision.layers.validation import (
    check_bool,
    check_int_tuple,
    check_non_negative_int,
    check_nonempty_sizes,
    check_number,
    check_positive_int,
    check_rank,
    standardize_data_format,
)


def _num_blocks(size, block):
    return -(-size // block)


def generation_order(height, width, query_shape):
    """The causal generation order of `LocalSelfAttention2D`, as a permutation.

    Query blocks of `query_shape` in raster order, raster order inside each
    block (blocks at the right and bottom edges may be partial: the order is
    that of the image padded to whole blocks, restricted to real pixels).

    Args:
        height, width: the image size.
        query_shape: `(qh, qw)`, the query block of the layer.

    Returns:
        An int array `order` of length `height * width`: `order[t]` is the
        raster index `row * width + col` of the `t`-th pixel generated.

    Example:

    >>> generation_order(2, 4, (2, 2)).tolist()
    [0, 1, 4, 5, 2, 3, 6, 7]
    """
    check_positive_int("height", height)
    check_positive_int("width", width)
    qh, qw = check_int_tuple("query_shape", query_shape, 2)
    rows, cols = np.indices((height, width)).reshape(2, -1)
    return np.lexsort((cols % qw, rows % qh, cols // qw, rows // qh))


def _memory_extent(query_shape, memory_flange, causal):
    """`(mh, mw)`: the memory window of one query block (module docstring)."""
    (qh, qw), (fh, fw) = query_shape, memory_flange
    mh = qh + fh + (0 if causal else fh)
    mw = fw + qw + (0 if causal and fh == 0 else fw)
    return mh, mw


def _causal_mask(query_shape, memory_flange, memory_extent):
    """`(q, m)` booleans: memory position no later than the query position.

    The same for every block: rows above the block belong to earlier block
    rows; in the block's own rows, columns left of the block to earlier
    blocks, columns right of it to later ones; inside the block, raster order.
    """
    (qh, qw), (fh, fw), (mh, mw) = query_shape, memory_flange, memory_extent
    i, j = np.indices((qh, qw)).reshape(2, -1, 1)  # query, relative to the block
    r, c = np.indices((mh, mw)).reshape(2, 1, -1)  # memory, relative to the block
    r, c = r - fh, c - fw
    inside = (c >= 0) & (c < qw) & ((r < i) | ((r == i) & (c <= j)))
    return (r < 0) | ((r < qh) & ((c < 0) | inside))


def _memory_parts(query_shape, memory_flange, causal):
    """The rectangles of the memory window that are computed, top to bottom.

    Each part is `(r0, rows, c0, cols)`, relative to the block's top-left
    pixel. When `causal` and `fh > 0`, the right flange in the block's own
    rows comes later in the generation order for every query, so it is left
    out of the computation (its weights are exactly 0): the window is then
    the `fh` full rows above the block, and the block's own rows from the
    left flange to the block's right edge. Otherwise it is one rectangle.
    """
    (qh, qw), (fh, fw) = query_shape, memory_flange
    mh, mw = _memory_extent(query_shape, memory_flange, causal)
    if causal and fh > 0:
        return ((-fh, fh, -fw, mw), (0, qh, -fw, fw + qw))
    return ((-fh, mh, -fw, mw),)


@functools.lru_cache(maxsize=64)
def _plan(height, width, query_shape, memory_flange, causal):
    """How one image size is computed: the memory gather and the mask.

    - `index`: `(blocks, m)` int32, the raster index `row * width + col` of
      every computed memory position of every block (the parts of
      `_memory_parts` one after the other, raster order inside each). A
      position outside the image points at the nearest real pixel instead:
      it is masked, so its weight is exactly 0 and it receives no gradient,
      and the keys and values need no padding.
    - `bias`: `(blocks, q, m)` float32, from the boolean mask that is True
      where a query may look (a real pixel that, when `causal`, comes no
      later in the generation order): 0 there, the lowest float32 elsewhere
      (see `LocalAttentionBase._attention`); `None` when nothing is masked.
      No query row is ever fully masked (each query sees the top-left pixel
      of its block, always real), so the softmax never needs the all-zero
      rows of `attention_core.attention_weights`.
    """
    (qh, qw), (fh, fw) = query_shape, memory_flange
    nbh, nbw = _num_blocks(height, qh), _num_blocks(width, qw)
    mh, mw = _memory_extent(query_shape, memory_flange, causal)
    causal_mask = _causal_mask(query_shape, memory_flange, (mh, mw)).reshape(
        qh * qw, mh, mw)
    indices, masks = [], []
    for r0, rows, c0, cols in _memory_parts(query_shape, memory_flange, causal):
        row = np.arange(nbh)[:, None] * qh + r0 + np.arange(rows)[None, :]
        col = np.arange(nbw)[:, None] * qw + c0 + np.arange(cols)[None, :]
        flat = (np.clip(row, 0, height - 1)[:, None, :, None] * width
                + np.clip(col, 0, width - 1)[None, :, None, :])
        indices.append(flat.reshape(nbh * nbw, rows * cols))
        valid_rows, valid_cols = (row >= 0) & (row < height), (col >= 0) & (col < width)
        valid = valid_rows[:, None, None, :, None] & valid_cols[None, :, None, None, :]
        if causal:
            valid = valid & causal_mask[None, None, :, fh + r0:fh + r0 + rows,
                                        fw + c0:fw + c0 + cols]
        valid = np.broadcast_to(valid, (nbh, nbw, qh * qw, rows, cols))
        masks.append(valid.reshape(nbh * nbw, qh * qw, rows * cols))
    mask = np.concatenate(masks, axis=-1)
    assert mask.any(axis=-1).all()  # no fully masked query row (docstring)
    shifts, order = _block_shifts(query_shape, memory_flange, causal)
    block_index = None
    if shifts is not None:
        mask = mask[..., order]
        bi, bj = np.divmod(np.arange(nbh * nbw), nbw)
        di, dj = np.array(shifts).T
        block_index = (np.clip(bi[:, None] + di, 0, nbh - 1) * nbw
                       + np.clip(bj[:, None] + dj, 0, nbw - 1)).reshape(-1)
    bias = None
    if not mask.all():
        lowest = attention_core.lowest_value("float32")
        bias = np.ascontiguousarray(np.where(mask, np.float32(0.0), np.float32(lowest)),
                                    dtype="float32")
    index = np.concatenate(indices, axis=-1)
    row, col = np.divmod(index, width)  # raster -> blocks-first layout
    blocked = ((row // qh * nbw + col // qw) * qh + row % qh) * qw + col % qw
    return {"index": index.astype("int32"), "bias": bias,
            "blocked_index": blocked.reshape(-1).astype("int32"),
            "shifts": shifts,
            "block_index": None if shifts is None else block_index.astype("int32"),
            "scores_order": None if shifts is None else np.argsort(order).astype("int32")}


def _block_shifts(query_shape, memory_flange, causal):
    """The memory window as whole blocks, when the flange is a multiple of the block.

    Then every part of `_memory_parts` is a union of whole query blocks, so
    the keys (values) of all windows are one gather of whole blocks of the
    block grid (rows of `qh * qw` positions), not of single pixels: the
    gather and its gradient (a scatter-add) move long contiguous rows.

    Returns:
        `(shifts, order)`, or `(None, None)` when the flange is not a
        multiple of the block. `shifts` lists the block offsets `(di, dj)`
        of the window's blocks, parts one after the other, raster order of
        blocks inside each part; the memory positions are then the blocks
        in this order, raster order inside each block. `order[k]` is the
        position in the `_plan` (window raster) order of memory position `k`.
    """
    (qh, qw), (fh, fw) = query_shape, memory_flange
    if fh % qh or fw % qw:
        return None, None
    shifts, order, start = [], [], 0
    for r0, rows, c0, cols in _memory_parts(query_shape, memory_flange, causal):
        for a in range(rows // qh):
            for b in range(cols // qw):
                shifts.append((r0 // qh + a, c0 // qw + b))
                i, j = np.indices((qh, qw)).reshape(2, -1)
                order.append(start + (a * qh + i) * cols + b * qw + j)
        start += rows * cols
    return tuple(shifts), np.concatenate(order)


def _fused_attention_helps():
    """Whether `_fused_attention` is used (PyTorch: its fused SDPA kernel).

    TensorFlow's and JAX's `dot_product_attention` with a mask are the same
    matmul / softmax / matmul as `LocalAttentionBase._attention` (and JAX on
    CPU is faster without it), so only PyTorch gains.
    """
    return keras.backend.backend() == "torch"


def _torch_sdpa_blhd(query, key, value, bias, scale):
    """PyTorch's SDPA on `(batch, length, heads, dim)` tensors, without copies.

    Keras's `ops.dot_product_attention` on PyTorch makes the `(batch, heads,
    length, dim)` views of its inputs contiguous before the kernel when not on
    the CUDA flash path: a copy of the queries and of both gathered windows
    per call. PyTorch's CPU kernel reads the `(batch, length, heads, dim)`
    layout as it is (its last axis has stride 1), so the views go in
    directly (3% off the training step of the issue-10 benchmark on a CPU).
    Same numbers: same kernel.
    """
    import torch

    out = torch.nn.functional.scaled_dot_product_attention(
        query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2),
        attn_mask=bias, scale=scale)
    return out.transpose(1, 2)


def _constant(plan, name, like):
    """`plan[name]` as a tensor on the device of `like`, converted once per plan.

    For eager PyTorch only (a tensor made under a TensorFlow or JAX trace
    must not outlive it). Keras also runs layers on the "meta" device to
    infer shapes, hence one tensor per device.
    """
    key = ("tensor", name, str(like.device))
    if key not in plan:
        plan[key] = ops.convert_to_tensor(plan[name])
    return plan[key]


class LocalAttentionBase(keras.layers.Layer):
    """What the 1D and 2D local self-attention layers share (not public).

    Works on a channels-last image `(batch, H, W, C)`; the 1D layer passes
    a sequence as a one-row image. Subclasses set `_query_shape`,
    `_memory_flange` (2D tuples), and implement `_to_image` / `_from_image`
    and their shape twins.
    """

    def __init__(self, num_heads, key_dim, value_dim=None, causal=False, dropout=0.0,
                 use_bias=True, output_shape=None, return_attention_scores=False,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 **kwargs):
        super().__init__(**kwargs)
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.key_dim = check_positive_int("key_dim", key_dim)
        self.value_dim = check_positive_int("value_dim", value_dim, allow_none=True)
        self.causal = check_bool("causal", causal)
        self.dropout = check_number("dropout", dropout, minimum=0.0)
        if self.dropout >= 1.0:
            raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")
        self.use_bias = check_bool("use_bias", use_bias)
        self.output_dim = check_positive_int("output_shape", output_shape,
                                             allow_none=True)
        self.return_attention_scores = check_bool("return_attention_scores",
                                                  return_attention_scores)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def _base_config(self):
        config = super().get_config()
        config.update({
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "value_dim": self.value_dim,
            "causal": self.causal,
            "dropout": self.dropout,
            "use_bias": self.use_bias,
            "output_shape": self.output_dim,
            "return_attention_scores": self.return_attention_scores,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        })
        return config

    @property
    def memory_extent(self):
        """`(mh, mw)`: rows and columns of each block's memory window."""
        return _memory_extent(self._query_shape, self._memory_flange, self.causal)

    def _dense(self, name, equation, output_shape, bias_axes, input_shape):
        layer = keras.layers.EinsumDense(
            equation, output_shape=output_shape,
            bias_axes=bias_axes if self.use_bias else None,
            kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer, name=name, dtype=self.dtype_policy)
        layer.build(input_shape)
        return layer

    def build(self, input_shape):
        check_rank(self, input_shape, (self.INPUT_RANK,))
        check_nonempty_sizes(self, input_shape)
        shape = self._image_shape(input_shape)
        channels = shape[-1]
        if channels is None:
            raise ValueError(f"{type(self).__name__} needs a known channel count. "
                             f"Received: input_shape={tuple(input_shape)}")
        # later calls with another channel count get Keras's input-spec error
        channel_axis = 1 if getattr(self, "data_format", None) == "channels_first" else -1
        self.input_spec = keras.InputSpec(ndim=self.INPUT_RANK,
                                          axes={channel_axis: channels})
        value_dim = self.value_dim or self.key_dim
        heads = self.num_heads
        project = "abcd,def->abcef"  # (B, H, W, C) -> (B, H, W, heads, dim)
        self.query_dense = self._dense("query", project, (None, None, heads, self.key_dim),
                                       "ef", shape)
        self.key_dense = self._dense("key", project, (None, None, heads, self.key_dim),
                                     "ef", shape)
        self.value_dense = self._dense("value", project, (None, None, heads, value_dim),
                                       "ef", shape)
        self.output_dense = self._dense(
            "attention_output", "abcde,def->abcf",
            (None, None, self.output_dim or channels), "f",
            shape[:-1] + (heads, value_dim))
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        self.built = True

    def _windows(self, t, plan):
        """`(B, H, W, heads, d)` -> `(B, heads, blocks, m, d)`: one gather.

        Memory positions: the parts of `_memory_parts` one after the other,
        raster order inside each (`_plan`). The heads move first on the
        projection (one copy of `H * W` pixels), so that the gathered
        windows come out in the layout of the matrix products.
        """
        batch, height, width, heads, d = (ops.shape(t)[0],) + tuple(t.shape[1:])
        t = ops.reshape(ops.transpose(t, (0, 3, 1, 2, 4)),
                        (batch, heads, height * width, d))
        return ops.take(t, plan["index"], axis=2)

    def _blocks(self, t):
        """`(B, H, W, heads, d)` -> `(B, heads, blocks, q, d)`: the query blocks.

        Padded to whole blocks; blocks in raster order, raster order inside
        each (`q = qh * qw`).
        """
        (qh, qw), heads, d = self._query_shape, t.shape[3], t.shape[4]
        batch, height, width = ops.shape(t)[0], t.shape[1], t.shape[2]
        nbh, nbw = _num_blocks(height, qh), _num_blocks(width, qw)
        if (nbh * qh, nbw * qw) != (height, width):
            t = ops.pad(t, [[0, 0], [0, nbh * qh - height], [0, nbw * qw - width],
                            [0, 0], [0, 0]])
        t = ops.reshape(t, (batch, nbh, qh, nbw, qw, heads, d))
        t = ops.transpose(t, (0, 5, 1, 3, 2, 4, 6))  # (B, heads, nbh, nbw, qh, qw, d)
        return ops.reshape(t, (batch, heads, nbh * nbw, qh * qw, d))

    def _block_windows(self, t, plan):
        """`(B, H, W, heads, d)` -> `(B, heads, blocks, m, d)`: a gather of whole blocks.

        For a flange that is a multiple of the block (`_block_shifts`): the
        projection is laid out as a grid of blocks (padded to whole blocks),
        and the window of every block is one `take` of whole blocks along
        the grid (contiguous rows of `qh * qw * d` numbers; its gradient a
        scatter-add of the same rows). A block outside the image points at
        a real one instead: it is masked by the plan's bias.
        """
        t = self._blocks(t)
        batch, heads, blocks, q, d = (ops.shape(t)[0],) + tuple(t.shape[1:])
        t = ops.reshape(t, (batch, heads, blocks, q * d))
        t = ops.take(t, plan["block_index"], axis=2)  # (B, heads, blocks * S, q * d)
        # explicit sizes, no -1: the batch may be empty
        return ops.reshape(t, (batch, heads, blocks, plan["index"].shape[-1], d))

    def _full_window(self, weights):
        """`(..., q, m)` weights over the computed parts -> the whole window.

        The positions left out (`_memory_parts`) get weight 0.
        """
        parts = _memory_parts(self._query_shape, self._memory_flange, self.causal)
        if len(parts) == 1:
            return weights
        mh, mw = self.memory_extent
        lead = tuple(weights.shape[:-1])
        rows, start = [], 0
        for _, part_rows, c0, cols in parts:
            w = weights[..., start:start + part_rows * cols]
            start += part_rows * cols
            w = ops.reshape(w, lead + (part_rows, cols))
            before = c0 + self._memory_flange[1]
            pad = [[0, 0]] * len(lead) + [[0, 0], [before, mw - before - cols]]
            rows.append(ops.reshape(ops.pad(w, pad), lead + (part_rows * mw,)))
        return ops.concatenate(rows, axis=-1)

    def _local_attention(self, x, training, return_scores):
        """Channels-last `(B, H, W, C)` -> output `(B, H, W, out)`, scores or None."""
        height, width = x.shape[1], x.shape[2]
        if height is None or width is None:
            raise ValueError(f"{type(self).__name__} needs static spatial sizes when "
                             f"called. Received: input shape {tuple(x.shape)}")
        (qh, qw), heads = self._query_shape, self.num_heads
        nbh, nbw = _num_blocks(height, qh), _num_blocks(width, qw)
        plan = _plan(height, width, self._query_shape, self._memory_flange, self.causal)
        dropout = bool(training) and self.dropout > 0
        if _fused_attention_helps() and not return_scores and not dropout:
            return self._local_attention_fused(x, plan), None
        batch = ops.shape(x)[0]

        # Everything is laid out (B, heads, blocks, positions, dim): the
        # batched matrix products need no further transpose.
        query = self._blocks(self.query_dense(x))
        if plan["shifts"] is not None:
            key = self._block_windows(self.key_dense(x), plan)
            value = self._block_windows(self.value_dense(x), plan)
        else:
            key = self._windows(self.key_dense(x), plan)
            value = self._windows(self.value_dense(x), plan)
        key, value = ops.cast(key, "float32"), ops.cast(value, "float32")
        query = ops.cast(query, "float32")
        # The logit scale goes on the queries (q * d numbers, not the q * m
        # logits), in float32 as attention_core computes.
        scale = float(self.key_dim) ** -0.5
        out, weights = self._attention(query * scale, key, value, plan, training, dropout)
        value_dim = value.shape[-1]
        out = ops.cast(out, self.compute_dtype)  # (B, heads, blocks, q, dv)
        out = ops.reshape(out, (batch, heads, nbh, nbw, qh, qw, value_dim))
        out = ops.transpose(out, (0, 2, 4, 3, 5, 1, 6))
        out = ops.reshape(out, (batch, nbh * qh, nbw * qw, heads, value_dim))
        out = self.output_dense(out[:, :height, :width])
        if not return_scores:
            return out, None
        if plan["scores_order"] is not None:  # back to the window's raster order
            weights = ops.take(weights, plan["scores_order"], axis=-1)
        return out, ops.cast(self._full_window(weights), self.compute_dtype)

    def _local_attention_fused(self, x, plan):
        """The PyTorch path: `(B, H, W, C)` -> `(B, H, W, out)` through fused SDPA.

        The image is laid out blocks first, `(blocks, q, B, C)`, before the
        projections, so that the queries, the gathered windows and the
        output are in the kernel's own `(batch, length, heads, dim)` layout
        with the blocks as its batch and `B * heads` as its heads: the
        `(blocks, 1, q, m)` bias then broadcasts over batch and heads, and
        the kernel's gradients come back in the layout of the projections
        (no transposes but the image's to and from blocks). The bias and
        the gather's index are converted to tensors once per plan, not per
        call. Torch's own tensor methods, not `keras.ops`: this path runs on
        PyTorch only, and each `keras.ops` call costs tens of microseconds
        of dispatch (about 1 ms of the 64x64 step of the issue-10
        benchmark); the projections stay `EinsumDense` calls (LoRA,
        quantization and the dtype policy are theirs).
        """
        import torch

        height, width = x.shape[1], x.shape[2]
        (qh, qw), heads = self._query_shape, self.num_heads
        nbh, nbw = _num_blocks(height, qh), _num_blocks(width, qw)
        batch, channels = x.shape[0], x.shape[-1]
        blocks, q, memory = nbh * nbw, qh * qw, plan["index"].shape[-1]
        if (nbh * qh, nbw * qw) != (height, width):
            x = torch.nn.functional.pad(x, (0, 0, 0, nbw * qw - width, 0, nbh * qh - height))
        x = x.reshape(batch, nbh, qh, nbw, qw, channels).permute(1, 3, 2, 4, 0, 5)
        x = x.reshape(blocks, q, batch, channels)
        whole_blocks = plan["shifts"] is not None
        index = _constant(plan, "block_index" if whole_blocks else "blocked_index", x)

        def windows(t):  # (blocks, q, B, heads, d) -> (blocks, m, B * heads, d)
            d = t.shape[-1]
            row = batch * heads * d  # explicit sizes, no -1: the batch may be empty
            t = t.reshape((blocks, q * row) if whole_blocks else (blocks * q, row))
            return t.index_select(0, index).float().reshape(blocks, memory, batch * heads, d)

        query = self.query_dense(x)
        dtype = query.dtype  # the policy's compute dtype
        query = query.float().reshape(blocks, q, batch * heads, self.key_dim)
        key, value = windows(self.key_dense(x)), windows(self.value_dense(x))
        bias = plan["bias"]
        if bias is not None:
            bias = _constant(plan, "bias", x)[:, None]  # (blocks, 1, q, m)
        out = _torch_sdpa_blhd(query, key, value, bias, float(self.key_dim) ** -0.5)
        value_dim = value.shape[-1]
        out = out.to(dtype).reshape(blocks, q, batch, heads, value_dim)
        out = self.output_dense(out)  # (blocks, q, B, out)
        out = out.reshape(nbh, nbw, qh, qw, batch, out.shape[-1]).permute(4, 0, 2, 1, 3, 5)
        out = out.reshape(batch, nbh * qh, nbw * qw, out.shape[-1])
        return out[:, :height, :width]

    def _attention(self, query, key, value, plan, training, dropout):
        """Float32 softmax attention over the computed memory positions.

        `(B, heads, blocks, q|m, d)` -> `(B, heads, blocks, q, dv)` and the
        weights `(B, heads, blocks, q, m)`. The same numbers as
        `attention_core.attend` with the boolean mask: masked logits go to
        the lowest float32 (here by adding the plan's float32 `bias`, 0 or
        lowest, exact at the allowed positions and with a free gradient), so
        their softmax weight is exactly 0; no query row is fully masked, so
        no row needs zeroing afterwards.
        """
        # Batched matmuls (TensorFlow folds the key transpose into the
        # BatchMatMul's adjoint flag; its gradients need no transposes).
        logits = ops.matmul(query, ops.swapaxes(key, -1, -2))
        if plan["bias"] is not None:
            logits = logits + ops.convert_to_tensor(plan["bias"])
        weights = ops.softmax(logits, axis=-1)
        if dropout:
            # Attention dropout acts between the softmax and the weighted sum.
            # (The Dropout layer computes in the policy's dtype: back to float32.)
            dropped = ops.cast(self.dropout_layer(weights, training=training), "float32")
        else:
            dropped = weights
        return ops.matmul(dropped, value), weights

    def call(self, inputs, training=None, return_attention_scores=None):
        if return_attention_scores is None:
            return_attention_scores = self.return_attention_scores
        out, scores = self._local_attention(self._to_image(inputs), training,
                                            return_attention_scores)
        out = self._from_image(out)
        return (out, scores) if return_attention_scores else out

    def _scores_shape(self, input_shape):
        _, height, width, _ = self._image_shape(input_shape)
        (qh, qw), (mh, mw) = self._query_shape, self.memory_extent
        blocks = None
        if height is not None and width is not None:
            blocks = _num_blocks(height, qh) * _num_blocks(width, qw)
        return (input_shape[0], self.num_heads, blocks, qh * qw, mh * mw)

    def compute_output_shape(self, input_shape):
        check_rank(self, input_shape, (self.INPUT_RANK,))
        image = self._image_shape(input_shape)
        out = self._output_shape(input_shape, self.output_dim or image[-1])
        if self.return_attention_scores:
            return out, self._scores_shape(input_shape)
        return out

    def compute_output_spec(self, inputs, training=None, return_attention_scores=None):
        if return_attention_scores is None:
            return_attention_scores = self.return_attention_scores
        check_rank(self, inputs.shape, (self.INPUT_RANK,))
        channels = self.output_dim or self._image_shape(inputs.shape)[-1]
        output = keras.KerasTensor(self._output_shape(inputs.shape, channels),
                                   dtype=self.compute_dtype)
        if return_attention_scores:
            return output, keras.KerasTensor(self._scores_shape(inputs.shape),
                                             dtype=self.compute_dtype)
        return output




@kav_export("keras_attention_vision.layers.LocalSelfAttention2D")
class LocalSelfAttention2D(LocalAttentionBase):
    """Multi-head self-attention over 2D query blocks and their memory flange.

    The 2D local attention of the Image Transformer (Parmar et al., 2018,
    section 3.2 and figure 2, right): the image is cut into query blocks of
    `query_shape`; the queries of each block attend to the memory window made
    of the block and `memory_flange` rows above, columns left and right
    (rows below too when not causal). A flange of `(0, 0)` means the block
    alone. Queries, keys and values are per-pixel projections with
    `num_heads` heads, as in `keras.layers.MultiHeadAttention` (the same
    kernel shapes), softmax logits are scaled by `key_dim ** -0.5` and
    computed in float32, and the heads are joined by an output projection.

    With `causal=True`, a pixel attends only to itself and the pixels before
    it in the paper's generation order: query blocks in raster order, raster
    order inside a block (`generation_order` gives the permutation; the
    right flange in the block's own rows is then invisible). Sides that are
    not multiples of the block are padded and the output cropped back; padded
    positions are removed with a boolean mask.

    Time and memory are linear in the number of pixels:
    `O(H * W * mh * mw * (key_dim + value_dim) * num_heads)`.

    Args:
        num_heads: number of attention heads.
        key_dim: size of each head's query and key.
        value_dim: size of each head's value; defaults to `key_dim`.
        query_shape: `(qh, qw)`, the query block. Defaults to `(8, 8)`.
        memory_flange: `(fh, fw)`, the rows above (and below when not causal)
            and the columns left and right of the block that its queries also
            see. Defaults to `(8, 8)`.
        causal: mask so that each position sees only itself and the positions
            before it in the generation order (see the module docstring).
            Defaults to `False`.
        dropout: dropout rate on the attention weights (training only).
            Defaults to `0.0`.
        use_bias: biases in the four projections. Defaults to `True`.
        output_shape: channels of the output; defaults to the input channels.
        return_attention_scores: also return the per-block weights; can be
            overridden per call. Defaults to `False`.
        data_format: `"channels_last"`, `"channels_first"` or `None` (the
            Keras image data format).
        kernel_initializer: initializer of the projection kernels. Defaults to
            `"glorot_uniform"`.
        bias_initializer: initializer of the biases. Defaults to `"zeros"`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `(batch, H, W, C)` (`(batch, C, H, W)` channels first). `H` and
            `W` must be known when the layer runs.
        training: enables the attention dropout.
        return_attention_scores: overrides the constructor value for this call.

    Returns:
        `(batch, H, W, output_channels)` (channels first: `(batch,
        output_channels, H, W)`); with `return_attention_scores`, also the
        weights `(batch, num_heads, num_blocks, qh * qw, mh * mw)`, blocks in
        raster order, query and memory positions in raster order inside the
        block and the window (module docstring: `mh = qh + fh (+ fh)`,
        `mw = fw + qw (+ fw)`); masked positions have weight 0.

    Example:

    ```python
    x = keras.random.normal((2, 28, 28, 64))
    layer = LocalSelfAttention2D(num_heads=4, key_dim=16, query_shape=(8, 8),
                                 memory_flange=(8, 8), causal=True)
    y, scores = layer(x, return_attention_scores=True)
    y.shape       # (2, 28, 28, 64)
    scores.shape  # (2, 4, 16, 64, 384): 4x4 blocks, 8x8 queries, 16x24 memory
    ```
    """

    INPUT_RANK = 4

    def __init__(self, num_heads, key_dim, value_dim=None, query_shape=(8, 8),
                 memory_flange=(8, 8), causal=False, dropout=0.0, use_bias=True,
                 output_shape=None, return_attention_scores=False, data_format=None,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 **kwargs):
        super().__init__(num_heads, key_dim, value_dim=value_dim, causal=causal,
                         dropout=dropout, use_bias=use_bias, output_shape=output_shape,
                         return_attention_scores=return_attention_scores,
                         kernel_initializer=kernel_initializer,
                         bias_initializer=bias_initializer, **kwargs)
        self.query_shape = check_int_tuple("query_shape", query_shape, 2, minimum=1)
        self.memory_flange = check_int_tuple("memory_flange", memory_flange, 2,
                                             minimum=0)
        self.data_format = standardize_data_format(data_format)
        self._query_shape, self._memory_flange = self.query_shape, self.memory_flange

    def get_config(self):
        config = self._base_config()
        config.update({"query_shape": self.query_shape,
                       "memory_flange": self.memory_flange,
                       "data_format": self.data_format})
        return config

    def generation_order(self, height, width):
        """The causal order of this layer on an image: see `generation_order`."""
        return generation_order(height, width, self.query_shape)

    def _image_shape(self, shape):
        shape = tuple(shape)
        if self.data_format == "channels_first":
            return (shape[0],) + shape[2:] + (shape[1],)
        return shape

    def _output_shape(self, input_shape, channels):
        batch, height, width, _ = self._image_shape(input_shape)
        if self.data_format == "channels_first":
            return (batch, channels, height, width)
        return (batch, height, width, channels)

    def _to_image(self, x):
        return ops.transpose(x, (0, 2, 3, 1)) if self.data_format == "channels_first" else x

    def _from_image(self, y):
        return ops.transpose(y, (0, 3, 1, 2)) if self.data_format == "channels_first" else y


@kav_export("keras_attention_vision.layers.LocalSelfAttention1D")
class LocalSelfAttention1D(LocalAttentionBase):
    """Multi-head self-attention over 1D query blocks and the positions before them.

    The 1D local attention of the Image Transformer (Parmar et al., 2018,
    section 3.2 and figure 2, left), for a sequence or an image flattened in
    raster order by the user: the sequence is cut into query blocks of
    `query_length`; the queries of each block attend to the block itself and
    the `memory_length` positions before it, and, when not causal, the
    `memory_length` positions after it. With `causal=True`, each position
    sees itself and earlier positions only (sequence order). Sequences whose
    length is not a multiple of the block are padded and cropped back, the
    padding masked with booleans. It is `LocalSelfAttention2D` on a one-row
    image (`query_shape = (1, query_length)`, `memory_flange = (0,
    memory_length)`): the same code and the same weights.

    Args:
        num_heads: number of attention heads.
        key_dim: size of each head's query and key.
        value_dim: size of each head's value; defaults to `key_dim`.
        query_length: `lq`, the query block length. Defaults to `8`.
        memory_length: `lm`, positions before the block (and after it when not
            causal) that its queries also see. Defaults to `8`.
        causal: mask so that each position sees only itself and the positions
            before it in the generation order (see the module docstring).
            Defaults to `False`.
        dropout: dropout rate on the attention weights (training only).
            Defaults to `0.0`.
        use_bias: biases in the four projections. Defaults to `True`.
        output_shape: channels of the output; defaults to the input channels.
        return_attention_scores: also return the per-block weights; can be
            overridden per call. Defaults to `False`.
        kernel_initializer: initializer of the projection kernels. Defaults to
            `"glorot_uniform"`.
        bias_initializer: initializer of the biases. Defaults to `"zeros"`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `(batch, length, C)`; `length` must be known when the layer
            runs.
        training: enables the attention dropout.
        return_attention_scores: overrides the constructor value for this call.

    Returns:
        `(batch, length, output_channels)`; with `return_attention_scores`,
        also the weights `(batch, num_heads, num_blocks, lq, m)` with
        `m = lm + lq` when causal, `lm + lq + lm` otherwise (memory positions
        in sequence order, the earliest first); masked positions have weight 0.

    Example:

    ```python
    x = keras.random.normal((2, 784, 32))  # a 28x28 image in raster order
    layer = LocalSelfAttention1D(num_heads=2, key_dim=16, query_length=64,
                                 memory_length=128, causal=True)
    layer(x).shape  # (2, 784, 32)
    ```
    """

    INPUT_RANK = 3

    def __init__(self, num_heads, key_dim, value_dim=None, query_length=8,
                 memory_length=8, causal=False, dropout=0.0, use_bias=True,
                 output_shape=None, return_attention_scores=False,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 **kwargs):
        super().__init__(num_heads, key_dim, value_dim=value_dim, causal=causal,
                         dropout=dropout, use_bias=use_bias, output_shape=output_shape,
                         return_attention_scores=return_attention_scores,
                         kernel_initializer=kernel_initializer,
                         bias_initializer=bias_initializer, **kwargs)
        self.query_length = check_positive_int("query_length", query_length)
        self.memory_length = check_non_negative_int("memory_length", memory_length)
        self._query_shape = (1, self.query_length)
        self._memory_flange = (0, self.memory_length)

    def get_config(self):
        config = self._base_config()
        config.update({"query_length": self.query_length,
                       "memory_length": self.memory_length})
        return config

    def _image_shape(self, shape):
        batch, length, channels = tuple(shape)
        return (batch, 1, length, channels)

    def _output_shape(self, input_shape, channels):
        return (input_shape[0], input_shape[1], channels)

    def _to_image(self, x):
        return ops.expand_dims(x, 1)

    def _from_image(self, y):
        return ops.squeeze(y, 1)
