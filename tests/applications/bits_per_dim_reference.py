"""NumPy bits per dimension of images under per-sub-pixel logits (the tests' reference).

Bits/dim = NLL / (D ln 2), computed in float64 from the logits, independently
of `keras_attention_vision.metrics`.
"""

import numpy as np

LN2 = np.log(2.0)


def bernoulli_bits_per_dim(images, logits):
    """`(n,)` bits/dim of binary `images` under Bernoulli `logits` of their shape."""
    p = 1.0 / (1.0 + np.exp(-logits.astype("float64")))
    ll = images * np.log(p) + (1 - images) * np.log(1 - p)
    return -ll.reshape(len(images), -1).sum(-1) / (images[0].size * LN2)


def categorical_bits_per_dim(images, logits):
    """`(n,)` bits/dim of integer `images` under `(..., categories)` logits."""
    z = logits.astype("float64")
    z = z - z.max(-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_p, images.astype("int64")[..., None], -1)[..., 0]
    return -picked.reshape(len(images), -1).sum(-1) / (images[0].size * LN2)
