"""The non-local block of Wang et al. (2018), for sequences, images and video."""

import keras
from keras import ops

from keras_attention_vision.api_export import kav_export
from keras_attention_vision.layers import attention_core, jax_cpu
from keras_attention_vision.layers.validation import (
    check_bool,
    check_choice,
    check_nonempty_sizes,
    check_positive_int,
    check_rank,
    standardize_data_format,
)

MODES = ("embedded_gaussian", "gaussian", "dot_product", "concatenation")


def _fused_bn_applies(bn, y, training, mask):
    """Whether `_fused_batch_norm` may replace `bn(y, training, mask)`.

    On TensorFlow, PyTorch and JAX on a CPU, for a training step (`training is
    True`, `bn.trainable`) of a float32 layer without a mask or batch
    renormalisation: every other case (inference, mixed precision, masks)
    goes through the Keras layer.
    """
    backend = keras.backend.backend()
    return ((backend in ("tensorflow", "torch") or jax_cpu.use_jax_cpu_kernels())
            and training is True and bn.trainable
            and mask is None and not bn.renorm and bn.center and bn.scale
            and not bn.synchronized and bn.compute_dtype == "float32"
            and bn.variable_dtype == "float32"
            and keras.backend.standardize_dtype(y.dtype) == "float32")


def _fused_batch_norm(bn, y):
    """`bn(y, training=True)` in one fused computation forward and backward.

    Why: Keras's `BatchNormalization` computes the batch moments
    (`E[x^2] - E[x]^2`) and the normalisation as separate element-wise
    operations and reductions, several passes over the `(batch, *spatial,
    channels)` map in the forward pass and more in the backward pass; it
    took a quarter of a `NonLocalBlock` training step on PyTorch on the CPU
    and 45 of 350 ms on JAX. PyTorch: `torch.native_batch_norm`, one kernel
    forward and one backward (0.65 of the time of Keras's on a (16, 32, 32,
    256) map, forward and backward, measured in alternating rounds; the
    block's training step at that size: 0.86 of the time). TensorFlow:
    `FusedBatchNormV3` (10 against 22 ms on that map). JAX on a CPU:
    `jax_cpu.batch_norm_training` (channel sums as matrix-vector products;
    10 against 34 ms on that map). The result is Keras's within float32
    rounding (the biased batch variance, computed from the centred values:
    more accurate than `E[x^2] - E[x]^2`). The moving statistics get Keras's
    update (`moving * momentum + batch * (1 - momentum)`, biased variance),
    and the layer and its variables are the same, so saving and loading are
    unchanged.

    Args:
        bn: the built `keras.layers.BatchNormalization` (channels on the last
            axis, `_fused_bn_applies` true).
        y: the float32 channels-last tensor to normalise.

    Returns:
        The normalised tensor, of `y`'s shape.
    """
    if keras.backend.backend() == "torch":
        import torch

        channels = y.shape[-1]
        out, mean, invstd = torch.native_batch_norm(
            y.reshape(-1, channels), bn.gamma.value, bn.beta.value, None, None, True,
            0.0, bn.epsilon)
        # The kernel returns 1 / sqrt(var + epsilon); its variance is recovered.
        variance = torch.reciprocal(torch.square(invstd.detach())) - bn.epsilon
        mean = mean.detach()
        out = out.reshape(y.shape)
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # A (rows, 1, 1, C) image: the kernel normalises over all but C.
        rows = tf.reshape(y, (-1, 1, 1, y.shape[-1]))
        out, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            rows, bn.gamma.value, bn.beta.value, epsilon=bn.epsilon,
            data_format="NHWC", is_training=True)
        out = tf.reshape(out, tf.shape(y))
        # The kernel's batch variance is the unbiased one; Keras's is biased.
        count = tf.cast(tf.shape(rows)[0], "float32")
        variance = variance * tf.maximum(count - 1.0, 0.0) / tf.maximum(count, 1.0)
        mean, variance = tf.stop_gradient(mean), tf.stop_gradient(variance)
    else:
        out, mean, variance = jax_cpu.batch_norm_training(
            y, bn.gamma.value, bn.beta.value, bn.epsilon)
        mean, variance = ops.stop_gradient(mean), ops.stop_gradient(variance)
    momentum = bn.momentum
    bn.moving_mean.assign(bn.moving_mean.value * momentum + mean * (1.0 - momentum))
    bn.moving_variance.assign(bn.moving_variance.value * momentum
                              + variance * (1.0 - momentum))
    return out


@kav_export("keras_attention_vision.layers.NonLocalBlock")
class NonLocalBlock(attention_core.NonLocalMixin, keras.layers.Layer):
    """Non-local block: every position attends to every other position.

    From "Non-local Neural Networks" (Wang, Girshick, Gupta and He, 2018):

    ```
    y_i = 1 / C(x) * sum_j f(x_i, x_j) g(x_j)        z_i = W_z y_i + x_i
    ```

    `theta`, `phi` and `g` are 1x1 convolutions (dense layers on the channel
    axis) to `inter_channels`, `W_z` a 1x1 convolution back to the input
    channels. The pairwise function `f` and the normaliser `C(x)` follow `mode`:

    - `"embedded_gaussian"`: `softmax_j(theta_i . phi_j)`;
    - `"gaussian"`: `softmax_j(x_i . x_j)` (no `theta`/`phi`);
    - `"dot_product"`: `theta_i . phi_j / N`;
    - `"concatenation"`: `ReLU(w^T [theta_i; phi_j]) / N`,

    with `N` the number of key positions. The rank of the input chooses the
    variant: `(batch, T, C)` 1D, `(batch, H, W, C)` 2D and `(batch, T, H, W, C)`
    3D (video), or their channels-first forms.

    The block is the identity at initialisation: `W_z` is followed by a batch
    normalisation whose gamma starts at zero (`use_bn=True`), or `W_z` itself
    starts at zero (`use_bn=False`). It can therefore be added to a trained
    network without changing its outputs.

    Args:
        mode: the pairwise function, one of `"embedded_gaussian"` (default),
            `"gaussian"`, `"dot_product"`, `"concatenation"`.
        inter_channels: channels of `theta`, `phi` and `g`; defaults to half the
            input channels (at least 1).
        sub_sample: max-pool `phi` and `g` (the keys and values) over space
            only, 2 for 1D, 2x2 for images, 1x2x2 for video; the queries keep
            the full resolution. The pooling is in ceil mode: a side of `n`
            gives `ceil(n / 2)` keys (an odd side's last window holds one
            position), so a side of 1 keeps its key and `None` sizes work.
            Defaults to `False`.
        use_bn: batch normalisation after `W_z` with gamma initialised to zero
            (the paper's choice). With `False`, `W_z` is zero-initialised.
            Defaults to `True`.
        use_scale: divide the Gaussian and embedded-Gaussian logits by the
            square root of their channel count, as the authors' code does (the
            paper's equations do not). Defaults to `True`.
        query_chunk_size: compute the affinities for this many query positions
            at a time, so the full `N x N` matrix never exists (same result,
            lower peak memory on large maps). `None` (default) computes all at
            once.
        return_attention_scores: return `(output, scores)` instead of the
            output; can be overridden per call. Defaults to `False`.
        data_format: `"channels_last"`, `"channels_first"` or `None` (the Keras
            image data format).
        kernel_initializer: initializer of `theta`, `phi`, `g` (and of `W_z`
            when `use_bn=True`). Defaults to `"he_normal"`.
        kernel_regularizer: regularizer of the same kernels.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a rank 3, 4 or 5 tensor.
        mask: optional boolean `(batch, *spatial)` tensor, True at real
            positions (Keras passes it from e.g. `Embedding(mask_zero=True)`).
            Padded positions are no keys: the softmax and the `N` of the
            dot-product and concatenation forms count real keys only, and
            with `sub_sample` the pooling sees real positions only (a window
            of padding alone is dropped). Real positions' outputs therefore
            do not depend on appended padding. The mask is passed on to the
            next layer, and to the batch normalisation.
        training: passed to the batch normalisation.
        return_attention_scores: overrides the constructor value for this call.

    Returns:
        A tensor of the input's shape; with `return_attention_scores`, also the
        `(batch, N_q, N_k)` affinity weights over the flattened positions
        (row `i` is the weight of every key position for query position `i`;
        `N_k` is the pooled count, `prod(ceil(side / pool))`, when
        `sub_sample=True`; masked keys have weight 0).

    Example:

    ```python
    x = keras.Input((32, 32, 64))
    y = NonLocalBlock(sub_sample=True)(x)
    video = keras.Input((8, 14, 14, 256))
    z = NonLocalBlock(mode="dot_product")(video)
    tokens = keras.Input((None,), dtype="int32")
    embedded = keras.layers.Embedding(1000, 32, mask_zero=True)(tokens)
    s = NonLocalBlock(sub_sample=True)(embedded)  # padding is no key
    ```
    """

    def __init__(self, mode="embedded_gaussian", inter_channels=None, sub_sample=False,
                 use_bn=True, use_scale=True, query_chunk_size=None,
                 return_attention_scores=False, data_format=None,
                 kernel_initializer="he_normal", kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.mode = check_choice("mode", mode, MODES)
        self.inter_channels = check_positive_int("inter_channels", inter_channels,
                                                 allow_none=True)
        self.query_chunk_size = check_positive_int("query_chunk_size",
                                                   query_chunk_size, allow_none=True)
        for name, value in (("sub_sample", sub_sample), ("use_bn", use_bn),
                            ("use_scale", use_scale),
                            ("return_attention_scores", return_attention_scores)):
            check_bool(name, value)
        self.sub_sample = sub_sample
        self.use_bn = use_bn
        self.use_scale = use_scale
        self.return_attention_scores = return_attention_scores
        self.data_format = standardize_data_format(data_format)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.supports_masking = True

    def get_config(self):
        config = super().get_config()
        config.update({
            "mode": self.mode,
            "inter_channels": self.inter_channels,
            "sub_sample": self.sub_sample,
            "use_bn": self.use_bn,
            "use_scale": self.use_scale,
            "query_chunk_size": self.query_chunk_size,
            "return_attention_scores": self.return_attention_scores,
            "data_format": self.data_format,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
        })
        return config

    def _dense(self, units, name, kernel_initializer=None):
        return keras.layers.Dense(
            units, name=name, dtype=self.dtype_policy,
            kernel_initializer=kernel_initializer or self.kernel_initializer,
            kernel_regularizer=self.kernel_regularizer,
        )

    def build(self, input_shape):
        check_rank(self, input_shape, (3, 4, 5))
        shape = self._channels_last_shape(input_shape)
        check_nonempty_sizes(self, input_shape)
        channels = shape[-1]
        if channels is None:
            raise ValueError(f"{type(self).__name__} needs a known channel count. "
                             f"Received: input_shape={tuple(input_shape)}")
        self.rank = len(shape)  # 3, 4 or 5: the 1D, 2D or 3D variant
        self.channels = channels
        self.inner = self.inter_channels or max(1, channels // 2)
        if self.mode != "gaussian":
            self.theta = self._dense(self.inner, "theta")
            self.phi = self._dense(self.inner, "phi")
            self.theta.build(shape)
            self.phi.build(shape)
        self.g = self._dense(self.inner, "g")
        self.g.build(shape)
        if self.mode == "concatenation":
            self.concat_kernel = self.add_weight(
                name="concat_kernel", shape=(2 * self.inner, 1),
                initializer=self.kernel_initializer,
                regularizer=self.kernel_regularizer,
            )
        inner_shape = shape[:-1] + (self.inner,)
        if self.use_bn:
            self.w_z = self._dense(channels, "w_z")
            self.bn = keras.layers.BatchNormalization(
                axis=-1, gamma_initializer="zeros", name="bn", dtype=self.dtype_policy)
            self.bn.build(shape)
        else:
            self.w_z = self._dense(channels, "w_z", kernel_initializer="zeros")
        self.w_z.build(inner_shape)
        self.built = True

    def _scale(self, key_channels):
        if self.use_scale and self.mode in ("embedded_gaussian", "gaussian"):
            return float(key_channels) ** -0.5
        return 1.0

    def call(self, inputs, mask=None, training=None, return_attention_scores=None):
        if return_attention_scores is None:
            return_attention_scores = self.return_attention_scores
        mask = self._check_mask(inputs, mask)
        x = inputs
        if self.data_format == "channels_first":
            x = ops.moveaxis(x, 1, -1)
        if self.mode == "gaussian":
            query, key = x, x
        else:
            query = attention_core.dense_over_channels(self.theta, x)
            key = attention_core.dense_over_channels(self.phi, x)
        value, _ = self._keys(attention_core.dense_over_channels(self.g, x), mask)
        key, key_mask = self._keys(key, mask)
        query_flat = attention_core.flatten_positions(query)
        pairwise, normalization = "dot", "softmax"
        if self.mode in ("dot_product", "concatenation"):
            normalization = "count"
        if self.mode == "concatenation":
            kernel = ops.cast(self.concat_kernel, "float32")
            pairwise = "concat_relu"
            query_flat = ops.matmul(ops.cast(query_flat, "float32"), kernel[:self.inner])
            key = ops.matmul(ops.cast(key, "float32"), kernel[self.inner:])
        y, scores = attention_core.attend(
            query_flat, key, value, pairwise=pairwise, normalization=normalization,
            scale=self._scale(query.shape[-1]), query_chunk_size=self.query_chunk_size,
            return_scores=return_attention_scores, mask=key_mask, training=training,
        )
        y = ops.cast(y, self.compute_dtype)
        y = ops.reshape(y, ops.shape(query)[:-1] + (self.inner,))
        y = attention_core.dense_over_channels(self.w_z, y)
        if self.use_bn and _fused_bn_applies(self.bn, y, training, mask):
            y = _fused_batch_norm(self.bn, y)
        elif self.use_bn:
            # Padded positions take no part in the batch statistics either.
            y = self.bn(y, training=training, mask=mask)
        z = ops.cast(y, x.dtype) + x
        if self.data_format == "channels_first":
            z = ops.moveaxis(z, -1, 1)
        if return_attention_scores:
            return z, ops.cast(scores, self.compute_dtype)
        return z
