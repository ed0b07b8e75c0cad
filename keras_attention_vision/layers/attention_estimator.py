"""The attention estimator of "Learn to Pay Attention" (Jetley et al., 2018)."""

import keras
from keras import ops

from keras_attention_vision.api_export import kav_export
from keras_attention_vision.layers.validation import check_choice, standardize_data_format

COMPATIBILITIES = ("pc", "dp")
NORMALIZATIONS = ("softmax", "sigmoid")


@kav_export("keras_attention_vision.layers.AttentionEstimator")
class AttentionEstimator(keras.layers.Layer):
    """Attention over a local feature map, steered by a global feature vector.

    From "Learn to Pay Attention" (Jetley, Lord, Lee and Torr, ICLR 2018),
    section 3. The local features `l_s` (one `C`-vector per position `s` of an
    intermediate layer) are compared with the global feature `g` of the last
    layer through a compatibility function, the scores are normalised over
    space, and the attended vector is their weighted sum:

    ```
    pc (parametrised):  c_s = <u, l_s + g>      (u: a learned C-vector)
    dp (dot product):   c_s = <l_s, g>
    softmax:            a_s = exp(c_s) / sum_r exp(c_r)
    sigmoid:            a_s = sigmoid(c_s) / sum_r sigmoid(c_r)
    attended vector:    g_a = sum_s a_s l_s
    ```

    Note that with `"pc"` and `"softmax"` the global feature does not change
    the map: `<u, l_s + g> = <u, l_s> + <u, g>` and the second term is the
    same at every position, which the softmax removes. `g` then acts only
    through training (it does not reach the classifier either); it shapes
    the map with `"dp"`, or with `"pc"` and `"sigmoid"`. This follows from
    the paper's equation and is checked in the tests.

    When `g` has `G != C` channels it is first mapped to `C` channels by a
    learned linear projection (no bias), the paper's one-layer projection
    that matches the dimensions.

    Both normalisations make `g_a` a convex combination of the local
    features, as the paper's abstract states ("a convex combination of the
    intermediate 2D feature vectors ... must alone be used for
    classification", OpenReview HyzbhfWRW). With `"sigmoid"` the weights are
    bounded by a per-position sigmoid before being normalised by their sum,
    so several positions can take high weight at once. (A public PyTorch port
    instead averages the sigmoid-weighted features over space, which is not
    a convex combination; we follow the abstract.)

    The scores, their normalisation and the weighted sum are computed in
    float32 (mixed precision included), then cast to the compute dtype.

    Args:
        compatibility: `"pc"` (default; the paper's better variant) or `"dp"`.
        normalization: `"softmax"` (default) or `"sigmoid"`.
        data_format: `"channels_last"`, `"channels_first"` or `None` (the
            Keras image data format); the layout of the local features. The
            returned numbers are the same in both layouts.
        kernel_initializer: initializer of `u` and of the projection.
            Defaults to `"glorot_uniform"`.
        kernel_regularizer: regularizer of `u` and of the projection.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a list `[local_features, global_features]`: local features
            `(batch, H, W, C)` (or `(batch, C, H, W)` with
            `data_format="channels_first"`; any `H`, `W`, also `None`) and
            global features `(batch, G)`.

    Returns:
        A list `[g_a, attention]`: the attended vector `(batch, C)` and the
        attention map `(batch, H, W)` (the weights `a_s`, summing to one over
        the `H x W` positions of each example; the same shape in both data
        formats).

    Example:

    ```python
    local = keras.Input((32, 32, 256))       # e.g. VGG layer 7
    global_ = keras.Input((512,))            # e.g. the last layer's vector
    g_a, attention = AttentionEstimator("pc")([local, global_])
    # g_a: (None, 256); attention: (None, 32, 32)
    ```
    """

    def __init__(self, compatibility="pc", normalization="softmax", data_format=None,
                 kernel_initializer="glorot_uniform", kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.compatibility = check_choice("compatibility", compatibility, COMPATIBILITIES)
        self.normalization = check_choice("normalization", normalization, NORMALIZATIONS)
        self.data_format = standardize_data_format(data_format)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.supports_masking = False

    def get_config(self):
        config = super().get_config()
        config.update({
            "compatibility": self.compatibility,
            "normalization": self.normalization,
            "data_format": self.data_format,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
        })
        return config

    def _split_shapes(self, input_shape):
        name = type(self).__name__
        if (not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2
                or not all(isinstance(s, (list, tuple)) for s in input_shape)):
            raise ValueError(
                f"{name} is called on a list [local_features, global_features]. "
                f"Received: input_shape={input_shape}")
        local_shape, global_shape = (tuple(s) for s in input_shape)
        if len(local_shape) != 4 or len(global_shape) != 2:
            raise ValueError(
                f"{name} expects local features of rank 4 (batch, H, W, C) (or "
                "(batch, C, H, W) channels first) and global features of rank 2 "
                f"(batch, G). Received: local_shape={local_shape}, "
                f"global_shape={global_shape}")
        if self.data_format == "channels_first":
            local_shape = (local_shape[0],) + local_shape[2:] + (local_shape[1],)
        if local_shape[-1] is None or global_shape[-1] is None:
            raise ValueError(
                f"{name} needs known channel counts. Received: "
                f"local_shape={tuple(input_shape[0])}, global_shape={global_shape}")
        return local_shape, global_shape

    def build(self, input_shape):
        local_shape, global_shape = self._split_shapes(input_shape)
        self.channels = local_shape[-1]
        self.global_channels = global_shape[-1]
        self.projection = None
        if self.global_channels != self.channels:
            self.projection = keras.layers.Dense(
                self.channels, use_bias=False, name="projection", dtype=self.dtype_policy,
                kernel_initializer=self.kernel_initializer,
                kernel_regularizer=self.kernel_regularizer)
            self.projection.build(global_shape)
        if self.compatibility == "pc":
            self.u = self.add_weight(
                name="u", shape=(self.channels, 1), initializer=self.kernel_initializer,
                regularizer=self.kernel_regularizer)
        self.built = True

    def call(self, inputs):
        local, global_ = inputs
        if self.data_format == "channels_first":
            local = ops.transpose(local, (0, 2, 3, 1))
        if self.projection is not None:
            global_ = self.projection(global_)
        local32 = ops.cast(local, "float32")
        global32 = ops.cast(global_, "float32")[:, None, None, :]
        if self.compatibility == "pc":
            u = ops.cast(self.u, "float32")
            scores = ops.matmul(local32 + global32, u)[..., 0]
        else:
            scores = ops.sum(local32 * global32, axis=-1)
        if self.normalization == "softmax":
            scores = scores - ops.stop_gradient(
                ops.max(scores, axis=(1, 2), keepdims=True))
            weights = ops.exp(scores)
        else:
            weights = ops.sigmoid(scores)
        weights = weights / ops.sum(weights, axis=(1, 2), keepdims=True)
        attended = ops.sum(weights[..., None] * local32, axis=(1, 2))
        return [ops.cast(attended, self.compute_dtype),
                ops.cast(weights, self.compute_dtype)]

    def compute_output_shape(self, input_shape):
        local_shape, _ = self._split_shapes(input_shape)
        batch = local_shape[0]
        return [(batch, local_shape[-1]), (batch,) + tuple(local_shape[1:3])]
