"""The JAX CPU kernels against NumPy (forward) and JAX autodiff of the plain formula."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_attention_vision.layers import attention_core, jax_cpu

RNG = np.random.default_rng(0)


def _need_jax():
    if keras.backend.backend() != "jax":
        pytest.skip("the kernels are JAX functions")


def _np_attention(q, k, v, scale):
    logits = np.einsum("bqc,bkc->bqk", q.astype("float64"), k) * scale
    logits -= logits.max(-1, keepdims=True)
    w = np.exp(logits)
    w /= w.sum(-1, keepdims=True)
    return np.einsum("bqk,bkc->bqc", w, v)


@pytest.mark.parametrize("batch, nq, nk, c, cv", [(2, 5, 7, 3, 4), (1, 6, 6, 8, 8),
                                                  (3, 1, 1, 2, 5)])
def test_attention_forward_and_gradients(batch, nq, nk, c, cv):
    _need_jax()
    import jax
    import jax.numpy as jnp

    q = RNG.normal(size=(batch, nq, c)).astype("float32")
    k = RNG.normal(size=(batch, nk, c)).astype("float32")
    v = RNG.normal(size=(batch, nk, cv)).astype("float32")
    weights = RNG.normal(size=(batch, nq, cv)).astype("float32")
    scale = 0.7
    out = np.asarray(jax.jit(lambda *t: jax_cpu.attention(*t, scale))(q, k, v))
    np.testing.assert_allclose(out, _np_attention(q, k, v, scale), rtol=1e-5, atol=1e-5)

    def plain(q, k, v):  # autodiff through jax.nn.softmax: independent of our backward
        w = jax.nn.softmax(jnp.einsum("bqc,bkc->bqk", q, k) * scale, axis=-1)
        return jnp.sum(jnp.einsum("bqk,bkc->bqc", w, v) * weights)

    ours = jax.jit(jax.grad(lambda *t: jnp.sum(jax_cpu.attention(*t, scale) * weights),
                            argnums=(0, 1, 2)))(q, k, v)
    expected = jax.grad(plain, argnums=(0, 1, 2))(q, k, v)
    for got, want in zip(ours, expected):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)


def test_attention_gradient_by_finite_differences():
    _need_jax()
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    try:
        q, k = RNG.normal(size=(2, 2, 3, 4))
        v = RNG.normal(size=(2, 3, 5))
        w = RNG.normal(size=(2, 3, 5))

        def loss(q, k, v):
            return jnp.sum(jax_cpu.attention(q, k, v, 0.5) * w)

        grads = jax.grad(loss, argnums=(0, 1, 2))(q, k, v)
        args = [q, k, v]
        for i, g in enumerate(grads):
            numeric = np.zeros_like(args[i])
            for idx in np.ndindex(args[i].shape):
                plus = [a.copy() for a in args]
                minus = [a.copy() for a in args]
                plus[i][idx] += 1e-6
                minus[i][idx] -= 1e-6
                numeric[idx] = (loss(*plus) - loss(*minus)) / 2e-6
            np.testing.assert_allclose(np.asarray(g), numeric, rtol=1e-6, atol=1e-8)
    finally:
        jax.config.update("jax_enable_x64", False)


def test_batch_norm_training_forward_and_gradients():
    _need_jax()
    import jax
    import jax.numpy as jnp

    # A large mean, so E[x^2] - E[x]^2 would lose digits (ours centres first).
    y = (RNG.normal(size=(3, 4, 5, 6)) * 0.5 + 20.0).astype("float32")
    gamma = RNG.normal(size=6).astype("float32")
    beta = np.arange(6, dtype="float32")
    w = RNG.normal(size=y.shape).astype("float32")
    eps = 1e-3
    out, mean, var = jax.jit(lambda *t: jax_cpu.batch_norm_training(*t, eps))(
        y, gamma, beta)
    y64 = y.astype("float64")
    m64, v64 = y64.mean((0, 1, 2)), y64.var((0, 1, 2))
    np.testing.assert_allclose(np.asarray(mean), m64, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(var), v64, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(out), (y64 - m64) / np.sqrt(v64 + eps) * gamma
                               + beta, rtol=1e-4, atol=1e-4)

    def plain(y, g, b):
        m = jnp.mean(y, axis=(0, 1, 2))
        v = jnp.mean(jnp.square(y - m), axis=(0, 1, 2))
        return jnp.sum(((y - m) / jnp.sqrt(v + eps) * g + b) * w)

    ours = jax.grad(lambda *t: jnp.sum(jax_cpu.batch_norm_training(*t, eps)[0] * w),
                    argnums=(0, 1, 2))(y, gamma, beta)
    for got, want in zip(ours, jax.grad(plain, argnums=(0, 1, 2))(y, gamma, beta)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-3, atol=1e-3)


def test_use_jax_cpu_kernels_follows_the_backend():
    expected = keras.backend.backend() == "jax"
    assert jax_cpu.use_jax_cpu_kernels() is expected  # the test machines have no GPU


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (0, 3, 4, 5), (2, 5), (1, 1, 1, 5)])
def test_dense_over_channels_is_the_layer(shape):
    layer = keras.layers.Dense(3)
    layer.build(shape)
    x = RNG.normal(size=shape).astype("float32")
    got = ops.convert_to_numpy(attention_core.dense_over_channels(layer, x))
    assert got.shape == shape[:-1] + (3,)
    kernel, bias = (ops.convert_to_numpy(t) for t in (layer.kernel, layer.bias))
    np.testing.assert_allclose(got, x @ kernel + bias, rtol=1e-5, atol=1e-5)


class _Projection(keras.layers.Layer):
    """`dense_over_channels` inside a layer's call, as the blocks use it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(3)

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, x):
        return attention_core.dense_over_channels(self.dense, x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (3,)


def test_dense_over_channels_with_unknown_sizes():
    # Spatial sizes unknown when the model is built; two image sizes later.
    inputs = keras.Input((None, None, 5))
    layer = _Projection()
    model = keras.Model(inputs, layer(inputs))
    assert tuple(model.output.shape) == (None, None, None, 3)
    kernel, bias = (ops.convert_to_numpy(t) for t in (layer.dense.kernel, layer.dense.bias))
    for shape in ((2, 3, 7, 5), (1, 4, 2, 5)):
        x = RNG.normal(size=shape).astype("float32")
        np.testing.assert_allclose(model.predict(x, verbose=0), x @ kernel + bias,
                                   rtol=1e-5, atol=1e-5)


def test_gradient_of_gradient_matches_autodiff():
    # Reverse over reverse goes through the custom VJP's backward pass.
    _need_jax()
    import jax
    import jax.numpy as jnp

    q, k, v = (RNG.normal(size=(2, 5, 3)).astype("float32") for _ in range(3))

    def ours(q):
        return jnp.sum(jax_cpu.attention(q, k, v, 0.5) ** 2)

    def plain(q):
        w = jax.nn.softmax(jnp.einsum("bqc,bkc->bqk", q, k) * 0.5, axis=-1)
        return jnp.sum(jnp.einsum("bqk,bkc->bqc", w, v) ** 2)

    got = jax.grad(lambda q: jnp.sum(jax.grad(ours)(q) ** 2))(q)
    want = jax.grad(lambda q: jnp.sum(jax.grad(plain)(q) ** 2))(q)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("rows", [1, 1000, 1025, 2**19 + 7])
def test_batch_norm_moments_stay_accurate_over_many_rows(rows):
    # float32 sums over half a million rows lose digits when accumulated in
    # one run (a single matrix-vector product: variance off by 1.8e-4 here).
    _need_jax()
    import jax
    import jax.numpy as jnp

    y = (RNG.normal(size=(rows, 8)) + 3.0).astype("float32")
    _, mean, var = jax.jit(lambda y: jax_cpu.batch_norm_training(
        y, jnp.ones(8), jnp.zeros(8), 1e-3))(y)
    y64 = y.astype("float64")
    np.testing.assert_allclose(np.asarray(mean), y64.mean(0), rtol=3e-6)
    np.testing.assert_allclose(np.asarray(var), y64.var(0), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("training", [None, False])
def test_forward_mode_outside_training(training):
    # The custom VJPs are taken in training steps only: inference keeps
    # forward-mode differentiation, and gives the training path's numbers.
    _need_jax()
    import jax
    import jax.numpy as jnp

    from keras_attention_vision.layers import NonLocalBlock

    layer = NonLocalBlock(use_bn=False)
    x = jnp.asarray(RNG.normal(size=(2, 4, 5, 8)), "float32")
    layer.build(x.shape)
    layer.w_z.kernel.assign(RNG.normal(size=(4, 8)).astype("float32"))
    _, tangent = jax.jvp(lambda x: layer(x, training=training), (x,), (jnp.ones_like(x),))
    step = 1e-3
    numeric = (layer(x + step, training=True) - layer(x - step, training=True)) / (2 * step)
    np.testing.assert_allclose(np.asarray(tangent), np.asarray(numeric), rtol=2e-2, atol=2e-3)
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(lambda x: layer(x, training=True), (x,), (jnp.ones_like(x),))
