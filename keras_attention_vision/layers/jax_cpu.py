"""Attention and batch-norm kernels for JAX on a CPU, written for XLA's CPU dots.

XLA's CPU backend runs a batched matrix product at very different speeds
depending on which operand is read transposed. On the `(16, 1024, 1024)`
attention weights `P` of a `NonLocalBlock` at `(16, 32, 32, 256)` (2-core AMD
EPYC, jaxlib 0.4.38), the products whose output is `(keys, channels)` from
`P` read column-wise (`P^T dO` and `dS^T Q`, what JAX's autodiff emits for
the value and key gradients) ran at 93 GFLOP/s, while the same products
computed as `(channels, keys)` (`dO^T P`) ran at 166-174, as fast as the
forward products. XLA folds a transpose of a product back into the product,
so `attention` computes those two gradients in the fast form and transposes
the small `(batch, channels, keys)` result behind an `optimization_barrier`
that keeps the two apart. Its softmax is the plain max / exp / sum / divide
(12 ms against 19 ms for `jax.nn.softmax` on those weights). Forward and
backward of the attention core: 0.85-0.88 of the time of autodiff through
einsums; the whole block's step without batch normalisation 0.81.

XLA's CPU column reductions (a sum over every axis but the last, as batch
normalisation needs) ran at a fraction of the speed of a matrix-vector
product with a vector of ones (1.56 against 0.45 ms for `(16384, 256)`), so
`batch_norm_training` takes its four channel sums that way (in two levels,
for accuracy: `_channel_sum`): forward and backward 10 ms against 34 ms for
Keras's `BatchNormalization` on that map.

Only for JAX; the callers choose these where `use_jax_cpu_kernels()` says
so. Figures: `benchmarks/attention_flops.py` and `docs/non_local.md`.
Reverse mode to any order works (`jax.grad` of `jax.grad`); forward mode
(`jax.jvp`, `jax.jacfwd`, `jax.hessian`) does not go through a custom VJP,
so it raises a `TypeError` on these paths: the layers take them only in a
training step (`training=True`, as `fit` calls them).
"""

import functools

import keras


def use_jax_cpu_kernels():
    """Whether the backend is JAX with the CPU as its default device."""
    if keras.backend.backend() != "jax":
        return False
    import jax

    return jax.default_backend() == "cpu"


def _jax():
    import jax
    import jax.numpy as jnp

    return jax, jnp


def _transposed_product(a, b):
    """`(B, Q, C)`, `(B, Q, K)` -> `(B, K, C)` = `a^T b`, transposed: `(b^T a)`.

    Computed as the fast `(B, C, K)` product, then transposed; the barrier
    (adding a zero XLA cannot see) stops XLA folding the transpose back
    into the slow product.
    """
    jax, jnp = _jax()
    product = jnp.einsum("bqc,bqk->bck", a, b)
    zero = jax.lax.optimization_barrier(jnp.zeros((), product.dtype))
    return jnp.swapaxes(product + zero, 1, 2)


def _softmax(logits):
    _, jnp = _jax()
    exp = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))
    return exp / jnp.sum(exp, axis=-1, keepdims=True)


def _attention_forward(query, key, value, scale):
    _, jnp = _jax()
    weights = _softmax(jnp.einsum("bqc,bkc->bqk", query * scale, key))
    out = jnp.einsum("bqk,bkc->bqc", weights, value)
    return out, (query, key, value, out, weights)


def _attention_backward(scale, residuals, d_out):
    _, jnp = _jax()
    query, key, value, out, weights = residuals
    d_value = _transposed_product(d_out, weights)
    d_weights = jnp.einsum("bqc,bkc->bqk", d_out, value)
    # softmax gradient: P * (dP - rowsum(dP * P)), with rowsum(dP * P) =
    # rowsum(dO * O) (channels, not keys, wide)
    d_logits = weights * (d_weights - jnp.sum(d_out * out, axis=-1, keepdims=True))
    d_query = jnp.einsum("bqk,bkc->bqc", d_logits, key) * scale
    d_key = _transposed_product(query * scale, d_logits)
    return d_query, d_key, d_value


@functools.cache
def _custom_vjp(forward, backward):
    """`jax.custom_vjp` of `forward(a, b, c, constant)[0]` with the given rules.

    `forward` returns `(output, residuals)`; `backward(constant, residuals,
    cotangent)` the cotangents of `a`, `b` and `c`. The last argument (a
    Python float) is not differentiated.
    """
    jax, _ = _jax()
    fn = jax.custom_vjp(lambda a, b, c, constant: forward(a, b, c, constant)[0],
                        nondiff_argnums=(3,))
    fn.defvjp(forward, backward)
    return fn


def attention(query, key, value, scale):
    """`softmax(scale * query . key^T) . value` with XLA-friendly gradients.

    The numbers of `attention_core.attend` (dot product, softmax, no mask)
    to float32 rounding; the weights are kept for the backward pass, as
    autodiff keeps them.

    Args:
        query: float32 `(batch, N_q, C)`.
        key: float32 `(batch, N_k, C)`.
        value: float32 `(batch, N_k, C_v)`.
        scale: a Python float multiplying the logits.

    Returns:
        float32 `(batch, N_q, C_v)`.
    """
    fn = _custom_vjp(_attention_forward, _attention_backward)
    return fn(query, key, value, float(scale))


_SUM_BLOCK = 512


def _channel_sum(t):
    """`(..., C)` -> `(C,)`: the sum over all other axes, by matrix products.

    In two levels, so that no float32 accumulation runs over more than
    `_SUM_BLOCK` (or `rows / _SUM_BLOCK`) terms: one matrix-vector product
    over all rows lost digits as the rows grew (relative error 2e-5 at
    524,288 rows, 8e-5 at 2,097,152; in two levels 7e-7 and 3e-6). The first
    level is a batched product of a row of ones with each block of
    `_SUM_BLOCK` contiguous rows (0.38 ms for `(16384, 256)`, as fast as the
    single product; a strided grouping as one wide product took 11 ms).
    """
    _, jnp = _jax()
    channels = t.shape[-1]
    rows = t.reshape(-1, channels)
    count = rows.shape[0]
    groups = count // _SUM_BLOCK
    if groups < 2:
        return (jnp.ones((1, count), t.dtype) @ rows)[0]
    main = groups * _SUM_BLOCK
    partial = jnp.matmul(jnp.ones((groups, 1, _SUM_BLOCK), t.dtype),
                         rows[:main].reshape(groups, _SUM_BLOCK, channels))
    total = (jnp.ones((1, groups), t.dtype) @ partial.reshape(groups, channels))[0]
    if main < count:
        total = total + (jnp.ones((1, count - main), t.dtype) @ rows[main:])[0]
    return total


def _batch_norm_forward(y, gamma, beta, epsilon):
    jax, _ = _jax()
    count = y.size // y.shape[-1]
    mean = _channel_sum(y) / count
    centred = y - mean
    variance = _channel_sum(centred * centred) / count
    inv_std = jax.lax.rsqrt(variance + epsilon)
    out = centred * (inv_std * gamma) + beta
    return (out, mean, variance), (centred, inv_std, gamma)


def _batch_norm_backward(epsilon, residuals, cotangents):
    centred, inv_std, gamma = residuals
    d_out = cotangents[0]  # the batch moments' own cotangents are not used
    count = centred.size // centred.shape[-1]
    d_beta = _channel_sum(d_out)
    d_gamma = _channel_sum(d_out * centred) * inv_std
    d_y = (gamma * inv_std) * (d_out - d_beta / count
                               - centred * (inv_std * d_gamma / count))
    return d_y, d_gamma, d_beta


def batch_norm_training(y, gamma, beta, epsilon):
    """Batch normalisation over every axis but the last, with its batch moments.

    `(y - mean) / sqrt(variance + epsilon) * gamma + beta` with the biased
    batch variance (two passes: the centred values are squared), as
    `keras.layers.BatchNormalization` computes in training to float32
    rounding. The gradient flows through the output only (the moments feed
    the moving averages, which take none).

    Args:
        y: float32 `(..., C)`.
        gamma, beta: float32 `(C,)`.
        epsilon: a Python float.

    Returns:
        `(output, mean, variance)`: `y`'s shape, `(C,)`, `(C,)`.
    """
    fn = _custom_vjp(_batch_norm_forward, _batch_norm_backward)
    return fn(y, gamma, beta, float(epsilon))
