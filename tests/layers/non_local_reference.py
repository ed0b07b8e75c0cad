"""NumPy references of the non-local block and SAGAN attention, from the papers.

Written from the equations (Wang et al. 2018, eq. 1-6; Zhang et al. 2019,
section 3), with explicit loops over query positions, independent of the
package's attention core. Inputs are channels last.
"""

import numpy as np


def dense(x, kernel, bias=None):
    y = x @ kernel
    return y if bias is None else y + bias


def max_pool_space(t, pool, mask=None):
    """Max-pools `(B, *spatial, C)` with window = stride = `pool`, in ceil mode.

    Windows start at position 0; the last window of a side that is not a
    multiple of the pool size is partial (a side of 1 keeps its one
    position). With a boolean `(B, *spatial)` mask, only real positions enter
    each window's maximum; windows without any real position give 0, and the
    pooled mask is returned too.
    """
    spatial = t.shape[1:-1]
    out_sizes = [-(-s // p) for s, p in zip(spatial, pool)]
    if mask is None:
        mask = np.ones(t.shape[:-1], bool)
    out = np.zeros((t.shape[0], *out_sizes, t.shape[-1]))
    out_mask = np.zeros((t.shape[0], *out_sizes), bool)
    for b in range(t.shape[0]):
        for index in np.ndindex(*out_sizes):
            window = tuple(slice(i * p, (i + 1) * p) for i, p in zip(index, pool))
            values = t[(b,) + window].reshape(-1, t.shape[-1])
            real = mask[(b,) + window].reshape(-1)
            if real.any():
                out[(b,) + index] = values[real].max(axis=0)
                out_mask[(b,) + index] = True
    return out, out_mask


def softmax(v):
    v = v - v.max()
    e = np.exp(v)
    return e / e.sum()


def non_local(x, weights, mode, sub_sample, use_scale, use_bn, bn_epsilon=1e-3,
              mask=None):
    """The block's output and affinity weights with the given parameters.

    Args:
        x: `(B, *spatial, C)` float64.
        weights: dict of NumPy arrays: theta/phi/g/w_z kernels and biases,
            `concat_kernel`, and BN gamma/beta/moving_mean/moving_variance.
        mask: optional boolean `(B, *spatial)`, True at real positions: the
            other positions are no keys (`N` counts real keys only).
    """
    x = np.asarray(x, "float64")
    batch, spatial = x.shape[0], x.shape[1:-1]
    pool = {1: (2,), 2: (2, 2), 3: (1, 2, 2)}[len(spatial)]
    g = dense(x, weights["g_kernel"], weights["g_bias"])
    if mode == "gaussian":
        theta, phi = x, x
    else:
        theta = dense(x, weights["theta_kernel"], weights["theta_bias"])
        phi = dense(x, weights["phi_kernel"], weights["phi_bias"])
    key_mask = np.ones(x.shape[:-1], bool) if mask is None else np.asarray(mask, bool)
    if sub_sample:
        phi, pooled_mask = max_pool_space(phi, pool, key_mask)
        g, _ = max_pool_space(g, pool, key_mask)
        key_mask = pooled_mask
    inner = g.shape[-1]
    theta = theta.reshape(batch, -1, theta.shape[-1])
    phi = phi.reshape(batch, -1, phi.shape[-1])
    g = g.reshape(batch, -1, inner)
    key_mask = key_mask.reshape(batch, -1)
    n_q, n_k = theta.shape[1], phi.shape[1]
    y = np.zeros((batch, n_q, inner))
    scores = np.zeros((batch, n_q, n_k))
    for b in range(batch):
        keys = np.flatnonzero(key_mask[b])  # the real keys only
        n = len(keys)
        for i in range(n_q):
            if mode in ("embedded_gaussian", "gaussian"):
                logits = np.array([theta[b, i] @ phi[b, j] for j in keys])
                if use_scale:
                    logits = logits / np.sqrt(theta.shape[-1])
                f = softmax(logits)
            elif mode == "dot_product":
                f = np.array([theta[b, i] @ phi[b, j] for j in keys]) / n
            else:  # concatenation: ReLU(w^T [theta_i; phi_j]) / N
                w = weights["concat_kernel"][:, 0]
                f = np.array([max(0.0, w @ np.concatenate([theta[b, i], phi[b, j]]))
                              for j in keys]) / n
            scores[b, i, keys] = f
            y[b, i] = sum(f[m] * g[b, j] for m, j in enumerate(keys))
    y = y.reshape((batch,) + spatial + (inner,))
    wy = dense(y, weights["w_z_kernel"], weights["w_z_bias"])
    if use_bn:
        wy = (weights["bn_gamma"] * (wy - weights["bn_moving_mean"])
              / np.sqrt(weights["bn_moving_variance"] + bn_epsilon) + weights["bn_beta"])
    return wy + x, scores


def sagan_attention(x, weights, sub_sample, mask=None):
    """SAGAN: `x + gamma * W_o(sum_j softmax_j(q_i . k_j) v_j)`, keys pooled 2x2.

    `mask` (optional boolean `(B, H, W)`, True at real positions) removes
    the other positions from the keys.
    """
    x = np.asarray(x, "float64")
    batch, h, w, _ = x.shape
    q = dense(x, weights["query_kernel"], weights["query_bias"])
    k = dense(x, weights["key_kernel"], weights["key_bias"])
    v = dense(x, weights["value_kernel"], weights["value_bias"])
    key_mask = np.ones((batch, h, w), bool) if mask is None else np.asarray(mask, bool)
    if sub_sample:
        k, pooled_mask = max_pool_space(k, (2, 2), key_mask)
        v, _ = max_pool_space(v, (2, 2), key_mask)
        key_mask = pooled_mask
    q = q.reshape(batch, h * w, -1)
    k = k.reshape(batch, -1, k.shape[-1])
    v = v.reshape(batch, -1, v.shape[-1])
    key_mask = key_mask.reshape(batch, -1)
    o = np.zeros((batch, h * w, v.shape[-1]))
    scores = np.zeros((batch, h * w, k.shape[1]))
    for b in range(batch):
        keys = np.flatnonzero(key_mask[b])
        for i in range(h * w):
            f = softmax(k[b, keys] @ q[b, i])
            scores[b, i, keys] = f
            o[b, i] = f @ v[b, keys]
    o = dense(o.reshape(batch, h, w, -1), weights["output_kernel"], weights["output_bias"])
    return x + weights["gamma"] * o, scores
