"""The attention core shared by the non-local family (and reusable by others).

Every function here works on *flattened positions*: a feature map of shape
`(batch, *spatial, channels)` (channels last) becomes `(batch, positions,
channels)` with `flatten_positions`. The layers move channels-first inputs to
channels last with a transpose first (never a bare reshape, which would mix
channels and positions).

`attend(query, key, value, ...)` computes

```
y_i = sum_j w(i, j) value_j,   w(i, .) = normalise(pairwise(query_i, key_j))
```

with

- `pairwise="dot"`: `scale * query_i . key_j` (embedded Gaussian, Gaussian,
  dot product, SAGAN);
- `pairwise="concat_relu"`: `ReLU(query_i + key_j)`, where `query` and `key`
  are the per-position scalars `w_theta . theta_i` and `w_phi . phi_j`, so the
  paper's `ReLU(w^T [theta_i; phi_j])` never builds the concatenated
  `(N, N, 2C)` tensor;
- `normalization="softmax"`: softmax over the keys (the Gaussian forms);
- `normalization="count"`: division by the number of keys `N` (dot product and
  concatenation forms of the non-local paper).

`mask` (optional, boolean, broadcastable to `(batch, N_q, N_k)`, True where a
query may look at a key) removes keys: they get weight 0, the softmax is over
the remaining keys and `"count"` divides by their number. A query with no key
left gets an all-zero row (output 0), never NaN. The mask is applied with
`where` on the float32 logits, never by adding a literal such as -1e9.

Logits, softmax and the weighted sum are computed in float32 whatever the
compute dtype (float16 softmax overflows); the caller casts the result back.
(PyTorch's fused kernel takes bfloat16 inputs as they are and accumulates in
float32: see below.)

Memory: the `(N_q, N_k)` weight matrix is what exhausts memory on large maps.
With `query_chunk_size`, the queries are processed `query_chunk_size` at a time,
so only a `(query_chunk_size, N_k)` block exists at once; each chunk is wrapped
in `keras.remat`, so training does not keep every block for the backward pass
either (it recomputes them). The numbers are those of the unchunked
computation. When the weights are a softmax of dot products and are not
returned, `keras.ops.dot_product_attention` is used, so GPUs get the fused
kernels of the backend (except on JAX's CPU backend, where plain einsums are
faster; see `fused_kernel_helps`). The inputs of the fused call are float32,
except on PyTorch, whose SDPA kernels keep the logits and the softmax in
float32 themselves: there bfloat16 inputs stay bfloat16 (and float16 ones on
CUDA), so its low-precision kernels run under mixed precision
(`fused_kernel_dtype`).

Example:

```python
from keras import random
from keras_attention_vision.layers import attention_core

q = random.normal((2, 64, 8))
k = random.normal((2, 16, 8))
v = random.normal((2, 16, 4))
y = attention_core.attend(q, k, v, scale=8 ** -0.5, query_chunk_size=16)
y.shape  # (2, 64, 4)
```
"""

import keras
import ml_dtypes
from keras import ops

from keras_attention_vision.layers import jax_cpu
from keras_attention_vision.layers.validation import check_rank

PAIRWISE = ("dot", "concat_relu")
NORMALIZATIONS = ("softmax", "count")


def flatten_positions(x):
    """`(batch, *spatial, channels)` -> `(batch, prod(spatial), channels)`.

    The number of positions is static when every spatial size is known,
    `-1` otherwise.
    """
    shape = ops.shape(x)
    spatial = x.shape[1:-1]
    if all(isinstance(d, int) for d in spatial):
        positions = 1
        for d in spatial:
            positions *= d
    else:
        positions = -1
    return ops.reshape(x, (shape[0], positions, x.shape[-1]))


def dense_over_channels(layer, x):
    """`layer(x)` for a `Dense` layer, computed as one rank-2 matrix product.

    `(..., C)` -> `(..., units)`: the leading axes are flattened into rows
    first and restored after, so the kernel gradient is a plain `(C, rows) .
    (rows, units)` product. The numbers are those of `layer(x)`; on JAX on a
    CPU, XLA ran the kernel gradient of a `(16, 32, 32, 256)` input 1.7x
    faster this way (9.8 against 16.5 ms for 128 units); PyTorch and
    TensorFlow flatten a rank-4 product themselves.
    """
    lead = tuple(ops.shape(x)[:-1])
    out = layer(ops.reshape(x, (-1, x.shape[-1])))
    return ops.reshape(out, lead + (out.shape[-1],))


def lowest_value(dtype):
    """The lowest finite value of a float dtype (`-65504.0` for float16)."""
    return float(ml_dtypes.finfo(keras.backend.standardize_dtype(dtype)).min)


def pool_space(x, pool_size, mask=None):
    """Max-pools a channels-last map over its spatial axes, in ceil mode.

    The windows have stride = pool size and start at the first position; a
    side that is not a multiple of the window ends with a partial window
    (`"same"` padding at the end, never filled into the maximum). So a side
    of `n` gives `ceil(n / p)` positions: a side of 1 gives 1, never 0, and
    unknown (`None`) sizes work too.

    Args:
        x: `(batch, *spatial, channels)`.
        pool_size: one int per spatial axis, e.g. `(2, 2)` for images and
            `(1, 2, 2)` for video (time is not pooled).
        mask: `None` or a boolean `(batch, *spatial)` tensor, True at real
            positions. Padded positions then take no part in the maximum,
            and a window without any real position gives 0.

    Returns:
        The pooled map `(batch, *pooled, channels)`; with a `mask`, the tuple
        `(pooled, pooled_mask)`, where `pooled_mask` (boolean
        `(batch, *pooled)`) is True where the window holds a real position.
    """
    pool_size = tuple(pool_size)
    dtype = keras.backend.standardize_dtype(x.dtype)
    # TF has no float16 MaxPool3D kernel on CPU; the max is exact in float32.
    upcast = len(pool_size) == 3 and dtype in ("float16", "bfloat16")
    if upcast:
        x = ops.cast(x, "float32")
    if mask is not None:
        mask = ops.convert_to_tensor(mask, "bool")
        x = ops.where(mask[..., None], x, ops.cast(lowest_value(x.dtype), x.dtype))
    x = ops.max_pool(x, pool_size=pool_size, strides=pool_size, padding="same",
                     data_format="channels_last")
    if mask is not None:
        pooled_mask = ops.max_pool(ops.cast(mask[..., None], "float32"),
                                   pool_size=pool_size, strides=pool_size,
                                   padding="same", data_format="channels_last")
        pooled_mask = pooled_mask[..., 0] > 0.5
        x = ops.where(pooled_mask[..., None], x, ops.zeros((), x.dtype))
    x = ops.cast(x, dtype) if upcast else x
    return x if mask is None else (x, pooled_mask)


def attention_logits(query, key, pairwise="dot", scale=1.0):
    """The float32 `(batch, N_q, N_k)` pairwise scores before normalisation."""
    query = ops.cast(query, "float32")
    key = ops.cast(key, "float32")
    if pairwise == "dot":
        logits = ops.einsum("bqc,bkc->bqk", query, key)
        if scale != 1.0:
            logits = logits * scale
        return logits
    # concat_relu: query (B, N_q, 1), key (B, N_k, 1).
    return ops.relu(query + ops.transpose(key, (0, 2, 1)))


def attention_weights(logits, normalization="softmax", mask=None):
    """Normalises float32 logits over the keys (last axis).

    Args:
        logits: float32 `(..., N_q, N_k)`.
        normalization: `"softmax"` or `"count"`.
        mask: `None` or a boolean tensor broadcastable to `logits`, True where
            the key counts. Masked keys get weight 0; a row with no key left
            is all zeros.
    """
    if normalization == "softmax" and logits.shape[-1] == 1:
        # One key (e.g. a 1x1 map): its weight is 1 (ops.softmax would warn).
        ones = ops.ones_like(logits)
        return ones if mask is None else ops.where(mask, ones, 0.0)
    if mask is None:
        if normalization == "softmax":
            return ops.softmax(logits, axis=-1)
        return logits / ops.cast(ops.shape(logits)[-1], "float32")
    mask = ops.convert_to_tensor(mask, "bool")
    if normalization == "softmax":
        lowest = ops.convert_to_tensor(-3.0e38, "float32")
        weights = ops.softmax(ops.where(mask, logits, lowest), axis=-1)
        return ops.where(mask, weights, 0.0)
    counts = ops.sum(ops.cast(mask, "float32"), axis=-1, keepdims=True)
    return ops.where(mask, logits, 0.0) / ops.maximum(counts, 1.0)


def fused_kernel_helps():
    """Whether `keras.ops.dot_product_attention` beats plain einsums here.

    True on TensorFlow and PyTorch (SDPA), and on JAX with an accelerator.
    On JAX's CPU backend the explicit einsum/softmax/einsum is faster (measured
    by `benchmarks/non_local_vs_mha.py`: 0.82 against 1.00 of the MHA
    baseline), so it is used there (and in training steps `jax_cpu.attention`).
    """
    return not jax_cpu.use_jax_cpu_kernels()


def fused_kernel_dtype(dtype, device_type="cpu"):
    """The dtype of the fused `dot_product_attention` call for inputs of `dtype`.

    The contract is float32 logits and softmax. PyTorch's SDPA kernels keep
    both in float32 internally (their accumulators) whatever the input
    dtype, so there the inputs keep a low precision when the device has fast
    matmuls for it: `bfloat16` on any device (CPUs with AVX512-BF16 or AMX,
    GPUs); `float16` only on CUDA (CPUs have no float16 matmul kernels:
    SDPA took 3.5x its float32 time here). Everything else is float32:
    TensorFlow's and JAX's CPU `dot_product_attention` is the explicit
    matmul / softmax / matmul, whose logits would be rounded to the low
    precision, and XLA's CPU dots are no faster in bfloat16.

    Args:
        dtype: the dtype of the queries, keys and values (a string).
        device_type: `"cpu"` or `"cuda"` (PyTorch's device type).

    Returns:
        `"bfloat16"`, `"float16"` or `"float32"`.
    """
    if keras.backend.backend() == "torch":
        if dtype == "bfloat16" or (dtype == "float16" and device_type == "cuda"):
            return dtype
    return "float32"


def _can_fuse(query, value, pairwise, normalization, return_scores, mask=None):
    # With a mask, rows without any key must give 0 (not the backend's
    # uniform or NaN row), so masked attention takes the explicit path.
    return (pairwise == "dot" and normalization == "softmax" and not return_scores
            and mask is None and query.shape[-1] == value.shape[-1]
            and fused_kernel_helps())


def _attend_block(query, key, value, pairwise, normalization, scale, return_scores,
                  mask=None, training=None):
    if _can_fuse(query, value, pairwise, normalization, return_scores, mask):
        # (B, N, C) -> (B, N, 1 head, C): the backend's fused kernel.
        dtype = fused_kernel_dtype(keras.backend.standardize_dtype(query.dtype),
                                   _device_type(query))
        query, key, value = (ops.cast(t, dtype) for t in (query, key, value))
        out = ops.dot_product_attention(
            query[:, :, None, :], key[:, :, None, :], value[:, :, None, :],
            scale=scale,
        )
        return ops.cast(out[:, :, 0, :], "float32"), None
    query = ops.cast(query, "float32")
    key = ops.cast(key, "float32")
    value = ops.cast(value, "float32")
    if (training is True and pairwise == "dot" and normalization == "softmax"
            and mask is None and not return_scores and jax_cpu.use_jax_cpu_kernels()):
        return jax_cpu.attention(query, key, value, scale), None
    weights = attention_weights(attention_logits(query, key, pairwise, scale),
                                normalization, mask)
    out = ops.einsum("bqk,bkc->bqc", weights, value)
    return out, (weights if return_scores else None)


def _device_type(tensor):
    """PyTorch's device type of `tensor` (`"cpu"` on the other backends)."""
    device = getattr(tensor, "device", None)
    return getattr(device, "type", "cpu") if keras.backend.backend() == "torch" else "cpu"


def _query_rows(mask, start, stop):
    """The rows `start:stop` of a `(B, N_q, N_k)`-broadcastable mask."""
    if mask is None or mask.shape[-2] == 1:
        return mask
    return mask[..., start:stop, :]


def attend(query, key, value, pairwise="dot", normalization="softmax", scale=1.0,
           query_chunk_size=None, return_scores=False, remat_chunks=True, mask=None,
           training=None):
    """Weighted sum of `value` over keys, optionally in chunks of queries.

    Args:
        query: `(batch, N_q, C_k)` (`(batch, N_q, 1)` for `"concat_relu"`).
        key: `(batch, N_k, C_k)` (`(batch, N_k, 1)` for `"concat_relu"`).
        value: `(batch, N_k, C_v)`.
        pairwise: `"dot"` or `"concat_relu"` (see the module docstring).
        normalization: `"softmax"` or `"count"`.
        scale: multiplies the dot-product logits (`1.0`: none).
        query_chunk_size: `None` (all queries at once) or a positive int; the
            result is the same, only the peak memory changes. Needs a static
            number of query positions, else the queries are not chunked.
        return_scores: also return the `(batch, N_q, N_k)` float32 weights
            (then the full matrix exists, chunked or not).
        remat_chunks: recompute each chunk in the backward pass instead of
            keeping its weights (used only when chunking without scores).
        mask: `None` or a boolean tensor of rank 3 broadcastable to
            `(batch, N_q, N_k)`, True where the query may look at the key
            (see the module docstring).
        training: `True` in a training step, whose loss is differentiated in
            reverse mode: on JAX on a CPU, the unmasked softmax attention
            then goes through `jax_cpu.attention` (faster gradients; no
            forward-mode differentiation). Otherwise the plain einsums.

    Returns:
        The float32 `(batch, N_q, C_v)` result, and the weights when
        `return_scores` (else `None`): a tuple `(output, weights)`.
    """
    if pairwise not in PAIRWISE:
        raise ValueError(f"`pairwise` must be one of {PAIRWISE}. "
                         f"Received: pairwise={pairwise!r}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"`normalization` must be one of {NORMALIZATIONS}. "
                         f"Received: normalization={normalization!r}")
    if mask is not None:
        mask = ops.convert_to_tensor(mask, "bool")
        if len(mask.shape) != 3:
            raise ValueError("`mask` must have rank 3, broadcastable to (batch, N_q, N_k). "
                             f"Received: mask.shape={tuple(mask.shape)}")
    num_queries = query.shape[1]
    # PyTorch's fused SDPA kernels never build the (N_q, N_k) matrix (measured
    # by benchmarks/non_local_memory.py), so chunking would only add work.
    torch_fused = (keras.backend.backend() == "torch"
                   and _can_fuse(query, value, pairwise, normalization, return_scores,
                                 mask))
    if (query_chunk_size is None or not isinstance(num_queries, int)
            or num_queries <= query_chunk_size or torch_fused):
        return _attend_block(query, key, value, pairwise, normalization, scale,
                             return_scores, mask, training)

    def block(q, k, v, m=None):
        return _attend_block(q, k, v, pairwise, normalization, scale, False, m,
                             training)[0]

    if remat_chunks and not return_scores:
        block = keras.remat(block)
        if keras.backend.backend() == "jax" and (mask is None or mask.shape[1] == 1):
            return _scan_chunks(block, query, key, value, query_chunk_size, mask), None
    outputs, all_weights = [], []
    for start in range(0, num_queries, query_chunk_size):
        stop = start + query_chunk_size
        q, m = query[:, start:stop], _query_rows(mask, start, stop)
        if return_scores:
            out, weights = _attend_block(q, key, value, pairwise, normalization, scale,
                                         True, m)
            all_weights.append(weights)
        else:
            out = block(q, key, value) if m is None else block(q, key, value, m)
        outputs.append(out)
    output = ops.concatenate(outputs, axis=1)
    weights = ops.concatenate(all_weights, axis=1) if return_scores else None
    return output, weights


def _scan_chunks(block, query, key, value, chunk, mask=None):
    """Runs `block` over query chunks with `keras.ops.map` (a sequential loop).

    Used on JAX: XLA may schedule the chunks of an unrolled Python loop side
    by side, which brings the memory back; a scan runs them one after the
    other. The queries are padded to a multiple of `chunk`, the padded rows
    dropped afterwards.
    """
    num_queries = query.shape[1]
    num_chunks = -(-num_queries // chunk)
    pad = num_chunks * chunk - num_queries
    if pad:
        query = ops.pad(query, [[0, 0], [0, pad], [0, 0]])
    batch = ops.shape(query)[0]
    chunks = ops.reshape(query, (batch, num_chunks, chunk, query.shape[-1]))
    chunks = ops.moveaxis(chunks, 1, 0)
    if mask is None:
        out = ops.map(lambda q: block(q, key, value), chunks)
    else:  # a mask with one query row, the same for every chunk
        out = ops.map(lambda q: block(q, key, value, mask), chunks)
    out = ops.reshape(ops.moveaxis(out, 0, 1),  # explicit sizes: the batch may be empty
                      (batch, num_chunks * chunk, out.shape[-1]))
    return out[:, :num_queries]


# Max-pool window of `sub_sample` per channels-last rank: space only, never time.
SPACE_POOL_SIZES = {3: (2,), 4: (2, 2), 5: (1, 2, 2)}


class NonLocalMixin:
    """What the non-local family shares: keys, masks, output and scores shapes.

    Mixed into a layer (before `keras.layers.Layer`) with the attributes
    `data_format`, `sub_sample` and `return_attention_scores`. Keys and values
    are max-pooled over space only when `sub_sample` (`SPACE_POOL_SIZES`), in
    ceil mode (see `pool_space`: a side of `n` gives `ceil(n / 2)` keys, so a
    side of 1 is kept, never pooled to nothing), then flattened. The output
    has the input's shape, followed by the `(batch, N_q, N_k)` weights when
    they are asked for (in the constructor or, for `compute_output_spec`, in
    the call). `INPUT_RANKS` lists the input ranks the layer accepts.

    Keras masks (`(batch, *spatial)`, True at real positions, e.g. from
    `Embedding(mask_zero=True)`) remove the padded positions from the keys:
    with `sub_sample`, the pooling only sees real positions and a window
    without any is dropped. `compute_mask` passes the input mask on.
    """

    INPUT_RANKS = (3, 4, 5)

    def _channels_last_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if self.data_format == "channels_first":
            return (input_shape[0],) + input_shape[2:] + (input_shape[1],)
        return input_shape

    def _check_mask(self, inputs, mask):
        """The boolean `(batch, *spatial)` mask, or `None`; refuses other shapes."""
        if mask is None:
            return None
        mask = ops.convert_to_tensor(mask, "bool")
        spatial = (tuple(inputs.shape[2:]) if self.data_format == "channels_first"
                   else tuple(inputs.shape[1:-1]))
        if len(mask.shape) != len(spatial) + 1 or any(
                m is not None and s is not None and m != s
                for m, s in zip(mask.shape[1:], spatial)):
            raise ValueError(
                f"{type(self).__name__} takes a mask of shape (batch, *spatial) = "
                f"(batch, {', '.join(map(str, spatial))}), True at real positions. "
                f"Received: mask.shape={tuple(mask.shape)}")
        return mask

    def _keys(self, t, mask=None):
        """Flattens channels-last keys or values, pooled first with `sub_sample`.

        Returns the flattened keys and, with a `(batch, *spatial)` mask, the
        `(batch, 1, N_k)` key mask for `attend` (else `None`).
        """
        if self.sub_sample:
            pool = SPACE_POOL_SIZES[len(t.shape)]
            if mask is None:
                t = pool_space(t, pool)
            else:
                t, mask = pool_space(t, pool, mask)
        keys = flatten_positions(t)
        if mask is None:
            return keys, None
        key_mask = ops.reshape(mask, (ops.shape(keys)[0], 1, -1))
        return keys, key_mask

    def _scores_shape(self, input_shape):
        shape = self._channels_last_shape(input_shape)
        spatial = shape[1:-1]
        if any(d is None for d in spatial):
            return (shape[0], None, None)
        num_queries, num_keys = 1, 1
        pools = SPACE_POOL_SIZES[len(shape)] if self.sub_sample else (1,) * len(spatial)
        for d, p in zip(spatial, pools):
            num_queries *= d
            num_keys *= -(-d // p)  # ceil mode: a side of 1 keeps its key
        return (shape[0], num_queries, num_keys)

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        check_rank(self, input_shape, self.INPUT_RANKS)
        if self.return_attention_scores:
            return tuple(input_shape), self._scores_shape(input_shape)
        return tuple(input_shape)

    def compute_output_spec(self, inputs, mask=None, training=None,
                            return_attention_scores=None):
        if return_attention_scores is None:
            return_attention_scores = self.return_attention_scores
        output = keras.KerasTensor(inputs.shape, dtype=self.compute_dtype)
        if return_attention_scores:
            scores = keras.KerasTensor(self._scores_shape(inputs.shape),
                                       dtype=self.compute_dtype)
            return output, scores
        return output
