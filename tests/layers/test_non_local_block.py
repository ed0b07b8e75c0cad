"""Tests of NonLocalBlock against the paper's equation written in NumPy."""

import warnings

import keras
import numpy as np
import pytest
from keras import ops

from keras_attention_vision.layers import NonLocalBlock
from tests import testing
from tests.layers import non_local_reference as ref

MODES = ("embedded_gaussian", "gaussian", "dot_product", "concatenation")
SHAPES = {1: (2, 6, 4), 2: (2, 4, 5, 4), 3: (1, 2, 4, 4, 4)}


def _np(v):
    return np.asarray(ops.convert_to_numpy(v), "float64")


def layer_weights(layer):
    """The block's parameters by name, for the NumPy reference."""
    weights = {}
    names = ["g", "w_z"] + ([] if layer.mode == "gaussian" else ["theta", "phi"])
    for name in names:
        sub = getattr(layer, name)
        weights[f"{name}_kernel"] = _np(sub.kernel)
        weights[f"{name}_bias"] = _np(sub.bias)
    if layer.mode == "concatenation":
        weights["concat_kernel"] = _np(layer.concat_kernel)
    if layer.use_bn:
        for attr in ("gamma", "beta", "moving_mean", "moving_variance"):
            weights[f"bn_{attr}"] = _np(getattr(layer.bn, attr))
    return weights


def _input(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


# Maps with a side of 1 (and odd sides): pooled in ceil mode, never to zero keys.
SIDE_ONE_SHAPES = ((2, 1, 4), (2, 1, 5, 4), (1, 3, 1, 4), (1, 1, 1, 4),
                   (1, 2, 1, 3, 4), (1, 1, 1, 1, 4))


class NonLocalBlockTest(testing.TestCase):
    def _check_reference(self, mode, rank, sub_sample, use_bn=True, use_scale=True,
                         x=None, mask=None, **kwargs):
        x = _input(SHAPES[rank]) if x is None else x
        layer = NonLocalBlock(mode=mode, sub_sample=sub_sample, use_bn=use_bn,
                              use_scale=use_scale, **kwargs)
        layer(x)
        testing.perturb_weights(layer)
        masked = {} if mask is None else {"mask": mask}
        out, scores = layer(x, training=False, return_attention_scores=True, **masked)
        expected, expected_scores = ref.non_local(x, layer_weights(layer), mode,
                                                  sub_sample, use_scale, use_bn,
                                                  mask=mask)
        msg = f"{mode} shape {x.shape} sub_sample={sub_sample}"
        self.assertAllClose(out, expected, atol=2e-5, rtol=2e-5, msg=msg)
        self.assertAllClose(scores, expected_scores, atol=2e-6, rtol=2e-5, msg=msg)

    def test_side_one_maps_match_numpy(self):
        # Before: 0 keys, so TF and JAX returned x + bias and torch raised.
        for shape in SIDE_ONE_SHAPES:
            for mode in MODES:
                with self.subTest(shape=shape, mode=mode):
                    self._check_reference(mode, None, True, x=_input(shape))

    def test_unknown_spatial_sizes(self):
        inputs = keras.Input((None, None, 4))
        layer = NonLocalBlock(mode="dot_product", sub_sample=True)
        out, scores = layer(inputs, return_attention_scores=True)
        self.assertEqual(tuple(scores.shape), (None, None, None))
        model = keras.Model(inputs, out)
        testing.perturb_weights(layer)
        for shape in ((2, 1, 3, 4), (1, 3, 5, 4)):
            x = _input(shape)
            expected, _ = ref.non_local(x, layer_weights(layer), "dot_product", True,
                                        True, True)
            self.assertAllClose(model.predict(x, verbose=0), expected, atol=2e-5,
                                rtol=2e-5, msg=str(shape))

    def test_mask_matches_numpy(self):
        # A (batch, H, W) mask: the False positions are no keys, pooled or not.
        mask = np.ones((2, 4, 5), bool)
        mask[0, 3:] = False
        mask[1, :, 2:] = False
        mask[1, 0, 0] = False
        for mode in MODES:
            for sub_sample in (False, True):
                with self.subTest(mode=mode, sub_sample=sub_sample):
                    self._check_reference(mode, 2, sub_sample, mask=mask,
                                          query_chunk_size=7)
        video_mask = np.ones((1, 2, 4, 4), bool)
        video_mask[0, 1, 1:] = False
        self._check_reference("concatenation", 3, True, mask=video_mask)

    def test_channels_first_with_mask(self):
        mask = np.ones((2, 4, 5), bool)
        mask[:, 3:] = False
        self.assert_channels_first_matches_last(
            NonLocalBlock, {"sub_sample": True}, _input(SHAPES[2]),
            call_kwargs={"mask": mask})
        with self.assertRaisesRegex(ValueError, r"Received: mask.shape=\(2, 4\)"):
            NonLocalBlock()(_input(SHAPES[2]), mask=mask[:, :, 0])

    def test_each_mode_matches_numpy_2d(self):
        for mode in MODES:
            for sub_sample in (False, True):
                with self.subTest(mode=mode, sub_sample=sub_sample):
                    self._check_reference(mode, 2, sub_sample)

    def test_each_mode_matches_numpy_1d_and_3d(self):
        for mode in MODES:
            for rank in (1, 3):
                with self.subTest(mode=mode, rank=rank):
                    self._check_reference(mode, rank, sub_sample=True)

    def test_without_scale_and_without_bn_matches_numpy(self):
        self._check_reference("embedded_gaussian", 2, False, use_bn=False,
                              use_scale=False)
        self._check_reference("gaussian", 1, True, use_bn=False, use_scale=False)

    def test_identity_at_initialisation(self):
        x = _input(SHAPES[2])
        for mode in MODES:
            for use_bn in (True, False):
                layer = NonLocalBlock(mode=mode, use_bn=use_bn, sub_sample=True)
                for training in (False, True):
                    with self.subTest(mode=mode, use_bn=use_bn, training=training):
                        self.assertAllClose(layer(x, training=training), x, atol=0)

    def test_permutation_equivariance(self):
        rng = np.random.default_rng(3)
        for mode in MODES:
            with self.subTest(mode=mode):
                layer = NonLocalBlock(mode=mode)
                x = _input(SHAPES[2])
                layer(x)
                testing.perturb_weights(layer)
                b, h, w, c = x.shape
                perm = rng.permutation(h * w)
                x_perm = x.reshape(b, h * w, c)[:, perm].reshape(x.shape)
                out = testing.to_numpy(layer(x, training=False)).reshape(b, h * w, c)
                out_perm = testing.to_numpy(layer(x_perm, training=False))
                self.assertAllClose(out_perm.reshape(b, h * w, c), out[:, perm],
                                    atol=1e-5, rtol=1e-5)

    def test_chunked_equals_unchunked(self):
        cases = [(mode, 2, True) for mode in MODES]
        cases += [("concatenation", 3, True), ("dot_product", 1, False)]
        for mode, rank, sub_sample in cases:
            with self.subTest(mode=mode, rank=rank, sub_sample=sub_sample):
                x = _input(SHAPES[rank])
                full = NonLocalBlock(mode=mode, sub_sample=sub_sample)
                full(x)
                testing.perturb_weights(full)
                chunked = NonLocalBlock(mode=mode, sub_sample=sub_sample,
                                        query_chunk_size=3)
                chunked(x)
                chunked.set_weights(full.get_weights())
                a, sa = full(x, training=False, return_attention_scores=True)
                b, sb = chunked(x, training=False, return_attention_scores=True)
                self.assertAllClose(b, a, atol=1e-5, rtol=1e-5)
                self.assertAllClose(sb, sa, atol=1e-6, rtol=1e-5)
                self.assertAllClose(chunked(x, training=False),
                                    full(x, training=False), atol=1e-5, rtol=1e-5)

    def test_channels_first_matches_channels_last(self):
        for rank, mode in ((1, "gaussian"), (2, "concatenation"), (3, "embedded_gaussian")):
            with self.subTest(rank=rank, mode=mode):
                self.assert_channels_first_matches_last(
                    NonLocalBlock, {"mode": mode, "sub_sample": True},
                    _input(SHAPES[rank]))

    def test_shapes_1d_2d_3d(self):
        for rank, shape in SHAPES.items():
            layer = NonLocalBlock(sub_sample=True, inter_channels=3)
            out, scores = layer(_input(shape), return_attention_scores=True)
            positions = int(np.prod(shape[1:-1]))
            pool = {1: (2,), 2: (2, 2), 3: (1, 2, 2)}[rank]
            pooled = int(np.prod([-(-s // p) for s, p in zip(shape[1:-1], pool)]))  # ceil
            self.assertEqual(tuple(out.shape), shape)
            self.assertEqual(tuple(scores.shape), (shape[0], positions, pooled))
            self.assertEqual(tuple(layer.g.kernel.shape), (shape[-1], 3))

    def test_float32_softmax_under_mixed_precision(self):
        # x_i . x_j reaches ~9e4 here: beyond float16's 65504.
        x = np.full((1, 4, 4, 8), 100.0, "float32")
        x[0, 0, 0] = -100.0
        layer = NonLocalBlock(mode="gaussian", use_scale=False, dtype="mixed_float16")
        layer(x)
        testing.perturb_weights(layer)
        out = testing.to_numpy(layer(x, training=False)).astype("float64")
        self.assertTrue(np.all(np.isfinite(out)))
        expected, _ = ref.non_local(x, layer_weights(layer), "gaussian", False, False,
                                    True)
        np.testing.assert_allclose(out, expected, rtol=2e-2, atol=0.5)

    def test_harness_each_mode(self):
        for mode in MODES:
            with self.subTest(mode=mode):
                self.run_layer_test(NonLocalBlock, {"mode": mode, "sub_sample": True},
                                    _input((2, 4, 4, 4)))

    def test_harness_3d_chunked_and_scores(self):
        self.run_layer_test(NonLocalBlock,
                            {"sub_sample": True, "query_chunk_size": 8},
                            _input(SHAPES[3]))
        self.run_layer_test(NonLocalBlock,
                            {"use_bn": False, "return_attention_scores": True},
                            _input((2, 4, 4, 4)))

    def test_bad_input(self):
        for shape in ((2, 4), (1, 2, 2, 2, 2, 4)):
            with self.assertRaisesRegex(ValueError, "Received: input_shape=") as ctx:
                NonLocalBlock()(np.zeros(shape, "float32"))
            self.assertIn(str(shape), str(ctx.exception))
        with self.assertRaisesRegex(ValueError, "Received: inter_channels=0"):
            NonLocalBlock(inter_channels=0)
        with self.assertRaisesRegex(ValueError, "Received: mode='cosine'"):
            NonLocalBlock(mode="cosine")
        with self.assertRaisesRegex(ValueError, "Received: query_chunk_size=-1"):
            NonLocalBlock(query_chunk_size=-1)
        with self.assertRaisesRegex(ValueError, "Received: data_format='nhwc'"):
            NonLocalBlock(data_format="nhwc")


@pytest.mark.parametrize("sub_sample", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_padding_tokens_do_not_change_real_tokens(mode, sub_sample):
    """Embedding(mask_zero=True) -> NonLocalBlock: padded keys are removed."""
    rng = np.random.default_rng(0)
    lengths = (5, 2, 8)
    tokens = np.zeros((3, 8), "int32")
    for b, n in enumerate(lengths):
        tokens[b, :n] = rng.integers(1, 20, n)
    inputs = keras.Input((None,), dtype="int32")
    embedded = keras.layers.Embedding(20, 6, mask_zero=True)(inputs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outputs = NonLocalBlock(mode=mode, sub_sample=sub_sample)(embedded)
    assert not [w for w in caught if "mask" in str(w.message).lower()]
    model = keras.Model(inputs, outputs)
    testing.perturb_weights(model)
    padded = testing.to_numpy(model(tokens, training=False))
    for b, n in enumerate(lengths):
        alone = testing.to_numpy(model(tokens[b:b + 1, :n], training=False))
        np.testing.assert_allclose(padded[b, :n], alone[0], atol=2e-5, rtol=2e-5,
                                   err_msg=f"row {b}, {n} real tokens")


@pytest.mark.parametrize("mode", MODES)
def test_symbolic_model_returns_scores(mode):
    inputs = keras.Input((4, 4, 4))
    out, scores = NonLocalBlock(mode=mode, sub_sample=True)(
        inputs, return_attention_scores=True)
    assert tuple(out.shape) == (None, 4, 4, 4)
    assert tuple(scores.shape) == (None, 16, 4)


def test_fused_batch_norm_matches_keras():
    # The training-step path (the fused kernels of PyTorch and TensorFlow, JAX's
    # CPU kernel) against Keras's layer: output, moving statistics and, on
    # PyTorch and TensorFlow, gradients (the JAX kernel's gradients:
    # tests/layers/test_jax_cpu.py), from the same state.
    from keras_attention_vision.layers import jax_cpu
    from keras_attention_vision.layers import non_local_block as nlb

    backend = keras.backend.backend()
    if backend == "jax" and not jax_cpu.use_jax_cpu_kernels():
        pytest.skip("JAX with an accelerator uses Keras's layer")
    rng = np.random.default_rng(0)
    # A variance near epsilon and momentum 0.25, so a wrong epsilon or momentum
    # shows (mean 0: Keras's E[x^2] - E[x]^2 loses digits on a large mean).
    y = (rng.normal(size=(3, 4, 5, 6)) * 0.05).astype("float32")
    layers = []
    for _ in range(2):
        bn = keras.layers.BatchNormalization(axis=-1, momentum=0.25,
                                             gamma_initializer="ones")
        bn.build(y.shape)
        bn.gamma.assign(rng.normal(size=6).astype("float32") if not layers
                        else layers[0].gamma.numpy())
        bn.beta.assign(np.arange(6, dtype="float32") if not layers
                       else layers[0].beta.numpy())
        layers.append(bn)
    keras_bn, fused_bn = layers
    weights = rng.normal(size=y.shape).astype("float32")
    results = []
    for bn, fused in ((keras_bn, False), (fused_bn, True)):
        t = ops.convert_to_tensor(y)
        assert nlb._fused_bn_applies(bn, t, True, None)
        if backend == "torch":
            t.requires_grad_(True)
        if backend == "tensorflow":
            import tensorflow as tf

            with tf.GradientTape() as tape:
                tape.watch(t)
                out = nlb._fused_batch_norm(bn, t) if fused else bn(t, training=True)
                loss = tf.reduce_sum(out * weights)
            grads = tape.gradient(loss, [t, bn.gamma.value, bn.beta.value])
        else:
            out = nlb._fused_batch_norm(bn, t) if fused else bn(t, training=True)
        result = [ops.convert_to_numpy(out), ops.convert_to_numpy(bn.moving_mean),
                  ops.convert_to_numpy(bn.moving_variance)]
        if backend == "torch":
            import torch

            (out * torch.tensor(weights)).sum().backward()
            grads = [t.grad, bn.gamma.value.grad, bn.beta.value.grad]
        if backend != "jax":
            result += [ops.convert_to_numpy(g) for g in grads]
        results.append(result)
    for expected, got in zip(*results):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    t = ops.convert_to_tensor(y)
    assert not nlb._fused_bn_applies(fused_bn, t, False, None)
    assert not nlb._fused_bn_applies(fused_bn, t, True,
                                     ops.ones((3, 4, 5), dtype="bool"))


@pytest.mark.parametrize("dtype, device, expected", [
    ("float32", "cpu", "float32"), ("bfloat16", "cpu", "bfloat16"),
    ("float16", "cpu", "float32"), ("float16", "cuda", "float16"),
    ("bfloat16", "cuda", "bfloat16")])
def test_fused_kernel_dtype(dtype, device, expected):
    # Low precision only into PyTorch's SDPA (float32 logits inside), and
    # float16 only where it has float16 matmuls (CUDA).
    from keras_attention_vision.layers import attention_core

    if keras.backend.backend() != "torch":
        expected = "float32"
    assert attention_core.fused_kernel_dtype(dtype, device) == expected


@pytest.mark.parametrize("policy, kernel_dtype", [("float32", "float32"),
                                                  ("mixed_bfloat16", "bfloat16")])
def test_torch_sdpa_gets_bfloat16_under_mixed_bfloat16(monkeypatch, policy, kernel_dtype):
    # The fused kernel's inputs keep the compute dtype where PyTorch has fast
    # bfloat16 kernels; the output still matches the float32 equation.
    if keras.backend.backend() != "torch":
        pytest.skip("the low-precision fused kernel is PyTorch's SDPA")
    import torch

    seen = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(query, key, value, *args, **kwargs):
        seen.append({str(t.dtype) for t in (query, key, value)})
        return sdpa(query, key, value, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    x = _input((2, 4, 5, 8))
    layer = NonLocalBlock(dtype=policy)
    layer(x)
    testing.perturb_weights(layer)
    out = testing.to_numpy(layer(x, training=False)).astype("float64")
    assert seen and all(dtypes == {f"torch.{kernel_dtype}"} for dtypes in seen)
    expected, _ = ref.non_local(x, layer_weights(layer), "embedded_gaussian", False,
                                True, True)
    tolerance = 2e-5 if policy == "float32" else 5e-2
    np.testing.assert_allclose(out, expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("chunk", [None, 8])
def test_empty_batch_gives_an_empty_output(chunk):
    # JAX's chunked path (a scan over query chunks) included.
    out = NonLocalBlock(query_chunk_size=chunk)(np.zeros((0, 8, 8, 16), "float32"))
    assert tuple(out.shape) == (0, 8, 8, 16)


@pytest.mark.parametrize("shape", [(2, 0, 8, 16), (2, 8, 8, 0), (2, 0, 16)])
def test_zero_sizes_are_refused_with_the_shape(shape):
    from keras_attention_vision.layers import SelfAttention2D

    layers = [NonLocalBlock()] + ([SelfAttention2D()] if len(shape) == 4 else [])
    for layer in layers:
        with pytest.raises(ValueError, match=r"at least 1.*input_shape=\(2, "):
            layer(np.zeros(shape, "float32"))
