"""The self-attention block of SAGAN (Zhang et al., 2019)."""

import keras
from keras import ops

from keras_attention_vision.api_export import kav_export
from keras_attention_vision.layers import attention_core
from keras_attention_vision.layers.validation import (
    check_bool,
    check_nonempty_sizes,
    check_positive_int,
    check_rank,
    standardize_data_format,
)


@kav_export("keras_attention_vision.layers.SelfAttention2D")
class SelfAttention2D(attention_core.NonLocalMixin, keras.layers.Layer):
    """SAGAN self-attention: `x + gamma * W_o(softmax(q k^T) v)` on images.

    From "Self-Attention Generative Adversarial Networks" (Zhang, Goodfellow,
    Metaxas and Odena, 2019), in the form of their released code (the one of
    BigGAN as well): query and key are 1x1 convolutions to `C / 8`, the value
    a 1x1 convolution to `C / 2`; key and value are max-pooled 2x2 over space;
    the attended values go through an output 1x1 convolution back to `C`, and
    are added to the input scaled by a learned `gamma` that starts at 0, so the
    block is the identity at initialisation. It is the non-local block's
    embedded-Gaussian form with other widths and no logit scale, and shares
    its attention core (`query_chunk_size` and float32 softmax included).

    Args:
        query_channels: channels of the query and key; defaults to `C // 8`
            (at least 1).
        value_channels: channels of the value; defaults to `C // 2` (at least 1).
        sub_sample: max-pool key and value 2x2, in ceil mode (a side of `n`
            gives `ceil(n / 2)` positions, so a side of 1 keeps its key and
            `None` sizes work). Defaults to `True`.
        use_spectral_norm: wrap the four 1x1 convolutions in
            `keras.layers.SpectralNormalization`, as SAGAN does in both
            networks. Defaults to `False`.
        query_chunk_size: compute the attention for this many query positions
            at a time (same result, lower peak memory). Defaults to `None`.
        return_attention_scores: return `(output, scores)`; can be overridden
            per call. Defaults to `False`.
        data_format: `"channels_last"`, `"channels_first"` or `None`.
        kernel_initializer: initializer of the 1x1 convolutions. Defaults to
            `"glorot_uniform"`.
        **kwargs: base layer arguments.

    Call arguments:
        inputs: a `(batch, H, W, C)` tensor (`(batch, C, H, W)` channels first).
        mask: optional boolean `(batch, H, W)` tensor, True at real pixels:
            the others are no keys (pooled over real pixels only), so real
            pixels' outputs do not depend on padding. Passed on as the
            output's mask.
        training: passed to the spectral normalisation (power iteration).
        return_attention_scores: overrides the constructor value for this call.

    Returns:
        A tensor of the input's shape; with `return_attention_scores`, also the
        `(batch, H * W, N_k)` attention weights (`N_k = ceil(H / 2) *
        ceil(W / 2)` with sub-sampling).

    Example:

    ```python
    x = keras.Input((16, 16, 64))
    y = SelfAttention2D(use_spectral_norm=True)(x)
    ```
    """

    INPUT_RANKS = (4,)

    def __init__(self, query_channels=None, value_channels=None, sub_sample=True,
                 use_spectral_norm=False, query_chunk_size=None,
                 return_attention_scores=False, data_format=None,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.query_channels = check_positive_int("query_channels", query_channels,
                                                 allow_none=True)
        self.value_channels = check_positive_int("value_channels", value_channels,
                                                 allow_none=True)
        self.query_chunk_size = check_positive_int("query_chunk_size",
                                                   query_chunk_size, allow_none=True)
        for name, value in (("sub_sample", sub_sample),
                            ("use_spectral_norm", use_spectral_norm),
                            ("return_attention_scores", return_attention_scores)):
            check_bool(name, value)
        self.sub_sample = sub_sample
        self.use_spectral_norm = use_spectral_norm
        self.return_attention_scores = return_attention_scores
        self.data_format = standardize_data_format(data_format)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.supports_masking = True

    def get_config(self):
        config = super().get_config()
        config.update({
            "query_channels": self.query_channels,
            "value_channels": self.value_channels,
            "sub_sample": self.sub_sample,
            "use_spectral_norm": self.use_spectral_norm,
            "query_chunk_size": self.query_chunk_size,
            "return_attention_scores": self.return_attention_scores,
            "data_format": self.data_format,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        })
        return config

    def _conv(self, units, name, input_shape):
        layer = keras.layers.Dense(units, name=name, dtype=self.dtype_policy,
                                   kernel_initializer=self.kernel_initializer)
        if self.use_spectral_norm:
            layer = keras.layers.SpectralNormalization(layer, name=f"{name}_sn",
                                                       dtype=self.dtype_policy)
        layer.build(input_shape)
        return layer

    def build(self, input_shape):
        check_rank(self, input_shape, (4,))
        shape = self._channels_last_shape(input_shape)
        check_nonempty_sizes(self, input_shape)
        channels = shape[-1]
        if channels is None:
            raise ValueError(f"{type(self).__name__} needs a known channel count. "
                             f"Received: input_shape={tuple(input_shape)}")
        self.qk_dim = self.query_channels or max(1, channels // 8)
        self.v_dim = self.value_channels or max(1, channels // 2)
        self.query_conv = self._conv(self.qk_dim, "query", shape)
        self.key_conv = self._conv(self.qk_dim, "key", shape)
        self.value_conv = self._conv(self.v_dim, "value", shape)
        self.output_conv = self._conv(channels, "output", shape[:-1] + (self.v_dim,))
        self.gamma = self.add_weight(name="gamma", shape=(), initializer="zeros")
        self.built = True

    def call(self, inputs, mask=None, training=None, return_attention_scores=None):
        if return_attention_scores is None:
            return_attention_scores = self.return_attention_scores
        mask = self._check_mask(inputs, mask)
        x = inputs
        if self.data_format == "channels_first":
            x = ops.moveaxis(x, 1, -1)
        sn = {"training": training} if self.use_spectral_norm else {}
        query = self.query_conv(x, **sn)
        key, key_mask = self._keys(self.key_conv(x, **sn), mask)
        value, _ = self._keys(self.value_conv(x, **sn), mask)
        o, scores = attention_core.attend(
            attention_core.flatten_positions(query), key, value, scale=1.0,
            query_chunk_size=self.query_chunk_size,
            return_scores=return_attention_scores, mask=key_mask, training=training,
        )
        o = ops.cast(o, self.compute_dtype)
        o = ops.reshape(o, ops.shape(query)[:-1] + (self.v_dim,))
        o = self.output_conv(o, **sn)
        z = x + ops.cast(self.gamma, self.compute_dtype) * o
        if self.data_format == "channels_first":
            z = ops.moveaxis(z, -1, 1)
        if return_attention_scores:
            return z, ops.cast(scores, self.compute_dtype)
        return z
