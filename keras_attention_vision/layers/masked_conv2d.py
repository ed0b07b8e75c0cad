"""MaskedConv2D: the causal convolution of PixelCNN (van den Oord et al., 2016)."""

import keras
import numpy as np
from keras import ops

from keras_attention_vision.api_export import kav_export
from keras_attention_vision.layers.data_format import (
    backend_runs_channels_first,
    to_channels_first,
    to_channels_last,
)
from keras_attention_vision.layers.validation import check_choice, check_positive_int

MASK_TYPES = ("A", "B")


def _pair(name, value):
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    value = tuple(value)
    if len(value) != 2 or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise ValueError(
            f"`{name}` must be an int or a tuple of 2 ints. Received: {name}={value!r}"
        )
    return value


def channel_groups(channels, color_channels):
    """Returns the colour group of each of `channels` channels.

    Channels are split in `color_channels` contiguous blocks: with 3 colours and
    6 channels, channels 0-1 belong to R (group 0), 2-3 to G, 4-5 to B. An input
    image with 3 channels therefore has R, G, B in groups 0, 1, 2.
    """
    return np.arange(channels) // (channels // color_channels)


def causal_kernel_mask(kernel_shape, mask_type, color_channels=1):
    """Builds the PixelCNN kernel mask as a NumPy array.

    Args:
        kernel_shape: `(rows, cols, in_channels, out_channels)`, odd rows/cols.
        mask_type: `"A"` hides the centre pixel's own group (first layer),
            `"B"` lets it through (later layers).
        color_channels: number of colour groups. At the centre pixel an output
            of group g sees input groups < g (mask A) or <= g (mask B).

    Returns:
        A float32 array of `kernel_shape`: 1 where the kernel may look.
    """
    rows, cols, in_channels, out_channels = kernel_shape
    mask = np.ones(kernel_shape, dtype="float32")
    center_row, center_col = rows // 2, cols // 2
    mask[center_row + 1:] = 0.0
    mask[center_row, center_col + 1:] = 0.0
    in_group = channel_groups(in_channels, color_channels)[:, None]
    out_group = channel_groups(out_channels, color_channels)[None, :]
    if mask_type == "A":
        allowed = in_group < out_group
    else:
        allowed = in_group <= out_group
    mask[center_row, center_col] = allowed.astype("float32")
    return mask


@kav_export("keras_attention_vision.layers.MaskedConv2D")
class MaskedConv2D(keras.layers.Conv2D):
    """2D convolution that only looks at the pixels before the current one.

    The PixelCNN convolution (van den Oord et al., 2016, "Pixel Recurrent Neural
    Networks"): the kernel is multiplied by a constant mask inside `call`, so the
    output at pixel (i, j) depends only on the rows above and on the pixels to
    the left in row i. Mask `"A"` (first layer) also hides the centre pixel;
    mask `"B"` (later layers) shows it. With `color_channels=3` the channels are
    split in three contiguous groups R, G, B, and at the centre pixel G sees R,
    B sees R and G (mask B also lets each group see itself).

    The mask is applied to the kernel on every call (no `assign`, no
    constraint), so the stored kernel may hold any value and the optimizer
    never breaks causality. As a subclass of `keras.layers.Conv2D`, tools that
    look for convolution layers (e.g. tf-keras-vis) find it.

    Only `padding="same"` and `strides=1` keep output pixel (i, j) aligned
    with input pixel (i, j), which causality is defined against, so other
    values are rejected. Dilation keeps it (the masked taps stay above and to
    the left), so any `dilation_rate` is accepted.

    `channels_first` gives the numbers of `channels_last` on every backend: where
    the backend's kernels cannot run channels_first (TensorFlow without a GPU)
    the layer transposes to channels_last and back.

    Args:
        filters: number of output channels; a multiple of `color_channels`.
        kernel_size: an odd int or a tuple of 2 odd ints.
        mask_type: `"A"` or `"B"`.
        color_channels: number of colour groups (1 for grey, 3 for RGB). The
            input channels must also be a multiple of it.
        padding: `"same"` (the only value: it keeps the output causal and
            aligned with the input).
        strides: 1 (the only value, for the same reason).
        dilation_rate: an int or a tuple of 2 ints.
        data_format: `"channels_last"`, `"channels_first"` or `None`
            (`keras.config.image_data_format()`).
        **kwargs: every other `keras.layers.Conv2D` argument except `groups`.

    Call arguments:
        inputs: a 4D tensor, `(batch, rows, cols, channels)` in channels_last
            or `(batch, channels, rows, cols)` in channels_first.

    Returns:
        The convolution of `inputs` with the masked kernel.

    Example:

    ```python
    x = keras.Input((28, 28, 1))
    h = MaskedConv2D(32, 7, mask_type="A")(x)
    h = MaskedConv2D(32, 3, mask_type="B", activation="relu")(h)
    ```
    """

    def __init__(self, filters, kernel_size, mask_type="B", color_channels=1,
                 padding="same", strides=1, data_format=None, **kwargs):
        kernel_size = _pair("kernel_size", kernel_size)
        if not isinstance(padding, str) or padding.lower() != "same":
            raise ValueError(
                "MaskedConv2D only supports padding='same': other paddings shift "
                "the output off the input pixels it must stay causal to. "
                f"Received: padding={padding!r}"
            )
        if _pair("strides", strides) != (1, 1):
            raise ValueError(
                "MaskedConv2D only supports strides=1: a strided output pixel sees "
                "input pixels after the one it is aligned with. "
                f"Received: strides={strides!r}"
            )
        _pair("dilation_rate", kwargs.get("dilation_rate", 1))
        if any(k % 2 == 0 for k in kernel_size):
            raise ValueError(
                "`kernel_size` must be odd so the kernel has a centre pixel. "
                f"Received: kernel_size={kernel_size}"
            )
        check_choice("mask_type", mask_type, MASK_TYPES)
        check_positive_int("color_channels", color_channels)
        check_positive_int("filters", filters)
        if filters % color_channels:
            raise ValueError(
                "`filters` must be a multiple of `color_channels`. "
                f"Received: filters={filters}, color_channels={color_channels}"
            )
        if kwargs.get("groups", 1) != 1:
            raise ValueError(
                "MaskedConv2D does not support grouped convolution. "
                f"Received: groups={kwargs['groups']!r}"
            )
        super().__init__(filters, kernel_size, padding="same", strides=1,
                         data_format=data_format, **kwargs)
        self.mask_type = mask_type
        self.color_channels = color_channels

    def get_config(self):
        config = super().get_config()
        config.update({"mask_type": self.mask_type,
                       "color_channels": self.color_channels})
        return config

    def build(self, input_shape):
        channel_axis = -1 if self.data_format == "channels_last" else 1
        in_channels = input_shape[channel_axis]
        if in_channels is not None and in_channels % self.color_channels:
            raise ValueError(
                f"{type(self).__name__} expects input channels that are a multiple "
                f"of color_channels={self.color_channels}. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        super().build(input_shape)
        self._kernel_mask = causal_kernel_mask(
            tuple(self.kernel.shape), self.mask_type, self.color_channels
        )

    @property
    def kernel_mask(self):
        """The constant mask (a NumPy array of the kernel's shape)."""
        return self._kernel_mask

    def _mask_tensor(self, kernel):
        # On TF and JAX the mask becomes a constant of the traced graph. PyTorch
        # runs eagerly, so keep one tensor per (dtype, device) of the kernel
        # rather than copying the NumPy mask into a new tensor at every call.
        if keras.backend.backend() != "torch":
            return ops.convert_to_tensor(self._kernel_mask, dtype=kernel.dtype)
        import torch

        cache = self.__dict__.setdefault("_mask_cache", {})
        key = (kernel.dtype, kernel.device)
        if key not in cache:
            cache[key] = torch.as_tensor(self._kernel_mask, dtype=kernel.dtype,
                                         device=kernel.device)
        return cache[key]

    def call(self, inputs):
        kernel = ops.cast(self.kernel, self.compute_dtype)
        kernel = ops.multiply(kernel, self._mask_tensor(kernel))
        data_format = self.data_format
        transpose = data_format == "channels_first" and not backend_runs_channels_first()
        if transpose:
            inputs, data_format = to_channels_last(inputs), "channels_last"
        outputs = ops.conv(inputs, kernel, strides=1, padding="same",
                           dilation_rate=self.dilation_rate, data_format=data_format)
        if self.use_bias:
            if data_format == "channels_last":
                bias_shape = (1, 1, 1, self.filters)
            else:
                bias_shape = (1, self.filters, 1, 1)
            bias = ops.cast(self.bias, self.compute_dtype)
            outputs = ops.add(outputs, ops.reshape(bias, bias_shape))
        if transpose:
            outputs = to_channels_first(outputs)
        if self.activation is not None:
            return self.activation(outputs)
        return outputs
