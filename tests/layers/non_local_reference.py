"""NumPy references of the non-local block and SAGAN attention, from the papers.

Written from the equations (Wang et al. 2018, eq. 1-6; Zhang et al. 2019,
section 3), with explicit loops over query positions, independent of the
package's attention core. Inputs are channels last.
"""

import numpy as np


def dense(x, kernel, bias=None):
    y = x @ kernel
    return y if bias is None else y + bias


def max_pool_space(t, pool):
    """Max-pools `(B, *spatial, C)` with window = stride = `pool` (floor)."""
    spatial = t.shape[1:-1]
    out_sizes = [s // p for s, p in zip(spatial, pool)]
    crop = t[(slice(None),) + tuple(slice(0, o * p) for o, p in zip(out_sizes, pool))]
    shape = [t.shape[0]]
    for o, p in zip(out_sizes, pool):
        shape += [o, p]
    shape.append(t.shape[-1])
    blocks = crop.reshape(shape)
    axes = tuple(2 + 2 * i for i in range(len(pool)))
    return blocks.max(axis=axes)


def softmax(v):
    v = v - v.max()
    e = np.exp(v)
    return e / e.sum()


def non_local(x, weights, mode, sub_sample, use_scale, use_bn, bn_epsilon=1e-3):
    """The block's output and affinity weights with the given parameters.

    Args:
        x: `(B, *spatial, C)` float64.
        weights: dict of NumPy arrays: theta/phi/g/w_z kernels and biases,
            `concat_kernel`, and BN gamma/beta/moving_mean/moving_variance.
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
    if sub_sample:
        phi, g = max_pool_space(phi, pool), max_pool_space(g, pool)
    inner = g.shape[-1]
    theta = theta.reshape(batch, -1, theta.shape[-1])
    phi = phi.reshape(batch, -1, phi.shape[-1])
    g = g.reshape(batch, -1, inner)
    n_q, n_k = theta.shape[1], phi.shape[1]
    y = np.zeros((batch, n_q, inner))
    scores = np.zeros((batch, n_q, n_k))
    for b in range(batch):
        for i in range(n_q):
            if mode in ("embedded_gaussian", "gaussian"):
                logits = np.array([theta[b, i] @ phi[b, j] for j in range(n_k)])
                if use_scale:
                    logits = logits / np.sqrt(theta.shape[-1])
                f = softmax(logits)
            elif mode == "dot_product":
                f = np.array([theta[b, i] @ phi[b, j] for j in range(n_k)]) / n_k
            else:  # concatenation: ReLU(w^T [theta_i; phi_j]) / N
                w = weights["concat_kernel"][:, 0]
                f = np.array([max(0.0, w @ np.concatenate([theta[b, i], phi[b, j]]))
                              for j in range(n_k)]) / n_k
            scores[b, i] = f
            y[b, i] = sum(f[j] * g[b, j] for j in range(n_k))
    y = y.reshape((batch,) + spatial + (inner,))
    wy = dense(y, weights["w_z_kernel"], weights["w_z_bias"])
    if use_bn:
        wy = (weights["bn_gamma"] * (wy - weights["bn_moving_mean"])
              / np.sqrt(weights["bn_moving_variance"] + bn_epsilon) + weights["bn_beta"])
    return wy + x, scores


def sagan_attention(x, weights, sub_sample):
    """SAGAN: `x + gamma * W_o(sum_j softmax_j(q_i . k_j) v_j)`, keys pooled 2x2."""
    x = np.asarray(x, "float64")
    batch, h, w, _ = x.shape
    q = dense(x, weights["query_kernel"], weights["query_bias"])
    k = dense(x, weights["key_kernel"], weights["key_bias"])
    v = dense(x, weights["value_kernel"], weights["value_bias"])
    if sub_sample:
        k, v = max_pool_space(k, (2, 2)), max_pool_space(v, (2, 2))
    q = q.reshape(batch, h * w, -1)
    k = k.reshape(batch, -1, k.shape[-1])
    v = v.reshape(batch, -1, v.shape[-1])
    o = np.zeros((batch, h * w, v.shape[-1]))
    scores = np.zeros((batch, h * w, k.shape[1]))
    for b in range(batch):
        for i in range(h * w):
            f = softmax(k[b] @ q[b, i])
            scores[b, i] = f
            o[b, i] = f @ v[b]
    o = dense(o.reshape(batch, h, w, -1), weights["output_kernel"], weights["output_bias"])
    return x + weights["gamma"] * o, scores
