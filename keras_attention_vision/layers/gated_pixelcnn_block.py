"""The gated PixelCNN block: vertical and horizontal stacks, no blind spot."""

import keras
from keras import ops

from keras_attention_vision.api_export import kav_export
from keras_attention_vision.layers.data_format import to_channels_first, to_channels_last
from keras_attention_vision.layers.masked_conv2d import MASK_TYPES, MaskedConv2D
from keras_attention_vision.layers.validation import (
    check_bool,
    check_choice,
    check_odd_positive_int,
    check_positive_int,
    standardize_data_format,
)


@kav_export("keras_attention_vision.layers.GatedPixelCNNBlock")
class GatedPixelCNNBlock(keras.layers.Layer):
    """A gated PixelCNN layer with a vertical and a horizontal stack.

    From van den Oord et al. (2016), "Conditional Image Generation with
    PixelCNN Decoders". The vertical stack convolves the rows above and the
    current row (a `(k // 2 + 1, k)` kernel); its pre-activations, shifted one
    row down, reach the horizontal stack through a 1x1 convolution. The
    horizontal stack convolves the current row up to the current pixel (a
    `(1, k)` masked kernel). Both are gated, `tanh(f) * sigmoid(g)`, and the
    horizontal stack has a residual connection. Together the two stacks see
    every pixel above and to the left: there is no blind spot.

    With a conditioning vector `c` (e.g. a one-hot class), `V_f c` and `V_g c`
    are added inside both gates (eq. 4); with `condition_vertical=False` only
    inside the horizontal one.

    The first block of a network takes the image as both stacks
    (`mask_type="A"`, no residual); later blocks use `mask_type="B"`.

    The block computes in channels_last: with `data_format="channels_first"`
    `call` transposes its image inputs and outputs, so both formats give the
    same numbers on every backend and CPU (TensorFlow's CPU convolutions take
    channels_last only) and share the same weights. The `vertical` and
    `horizontal` methods, which fast sampling calls on windows of rows, take
    and return channels_last tensors in either format.

    Args:
        filters: channels of both stacks' outputs; a multiple of
            `color_channels`.
        kernel_size: odd int, the width of both stacks' kernels.
        mask_type: `"A"` (first block: the current pixel's own colour group is
            hidden) or `"B"`.
        color_channels: colour groups (1 or 3), as in `MaskedConv2D`.
        residual: add the horizontal input to its output. `None` means
            `mask_type == "B"`; the horizontal input then needs `filters`
            channels.
        data_format: `"channels_last"`, `"channels_first"` or `None`
            (`keras.config.image_data_format()`): the layout of the image
            inputs and outputs of `call`.
        condition_vertical: add the conditioning to the vertical stack's gate
            too. `False` for the last block of a network, whose vertical
            output feeds nothing (only its link, taken before the condition,
            reaches the horizontal stack): then the block has no weights
            that could not change the network's output. Defaults to `True`.
        kernel_initializer: initializer of every kernel.
        bias_initializer: initializer of every bias.

    Call arguments:
        inputs: `[vertical, horizontal]` or `[vertical, horizontal,
            conditioning]`: two 4D image tensors (in `data_format`) of the
            same spatial shape and an optional `(batch, features)`
            conditioning tensor.

    Returns:
        `[vertical_output, horizontal_output]` in `data_format`, each with
        `filters` channels.

    Example:

    ```python
    x = keras.Input((28, 28, 1))
    v, h = GatedPixelCNNBlock(32, 7, mask_type="A")([x, x])
    for _ in range(4):
        v, h = GatedPixelCNNBlock(32, 3)([v, h])
    logits = MaskedConv2D(1, 1, mask_type="B")(keras.layers.ReLU()(h))
    ```
    """

    def __init__(self, filters, kernel_size=3, mask_type="B", color_channels=1,
                 residual=None, data_format=None, condition_vertical=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 **kwargs):
        super().__init__(**kwargs)
        check_positive_int("filters", filters)
        check_odd_positive_int("kernel_size", kernel_size)
        check_choice("mask_type", mask_type, MASK_TYPES)
        check_positive_int("color_channels", color_channels)
        if filters % color_channels:
            raise ValueError(
                "`filters` must be a multiple of `color_channels`. "
                f"Received: filters={filters}, color_channels={color_channels}"
            )
        if residual not in (None, True, False):
            raise ValueError(
                f"`residual` must be None, True or False. Received: residual={residual!r}"
            )
        self.filters = filters
        self.kernel_size = kernel_size
        self.mask_type = mask_type
        self.color_channels = color_channels
        self.residual = residual
        self.data_format = standardize_data_format(data_format)
        self.condition_vertical = check_bool("condition_vertical", condition_vertical)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self._channel_axis = -1 if self.data_format == "channels_last" else 1
        self._spatial_axes = (1, 2) if self.data_format == "channels_last" else (2, 3)
        self._use_residual = mask_type == "B" if residual is None else residual

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "mask_type": self.mask_type,
            "color_channels": self.color_channels,
            "residual": self.residual,
            "data_format": self.data_format,
            "condition_vertical": self.condition_vertical,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        })
        return config

    def _conv_kwargs(self):
        # the inner layers compute in channels_last whatever `data_format`
        # (call transposes); kernel shapes do not depend on it, so weights saved
        # in either format load in the other
        return {
            "data_format": "channels_last",
            "kernel_initializer": keras.initializers.get(
                keras.initializers.serialize(self.kernel_initializer)),
            "bias_initializer": keras.initializers.get(
                keras.initializers.serialize(self.bias_initializer)),
            "dtype": self.dtype_policy,
        }

    def _last(self, shape):
        """A 4D shape of `data_format` in channels_last."""
        shape = tuple(shape)
        if self.data_format == "channels_last":
            return shape
        return (shape[0],) + shape[2:] + (shape[1],)

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) not in (2, 3) \
                or not isinstance(input_shape[0], (list, tuple)):
            raise ValueError(
                f"{type(self).__name__} expects inputs [vertical, horizontal] or "
                "[vertical, horizontal, conditioning]. "
                f"Received: input_shape={input_shape}"
            )
        for name, shape in (("vertical", input_shape[0]), ("horizontal", input_shape[1])):
            if len(shape) != 4:
                raise ValueError(
                    f"{type(self).__name__} expects a 4D {name} input. "
                    f"Received: input_shape={input_shape}"
                )
        v_sizes = [input_shape[0][a] for a in self._spatial_axes]
        h_sizes = [input_shape[1][a] for a in self._spatial_axes]
        if any(a is not None and b is not None and a != b for a, b in zip(v_sizes, h_sizes)):
            raise ValueError(
                f"{type(self).__name__} expects vertical and horizontal inputs of the "
                f"same rows and columns. Received: vertical shape={tuple(input_shape[0])}, "
                f"horizontal shape={tuple(input_shape[1])}"
            )
        h_channels = input_shape[1][self._channel_axis]
        if self._use_residual and h_channels is not None and h_channels != self.filters:
            raise ValueError(
                f"{type(self).__name__} with a residual connection needs a horizontal "
                f"input with filters={self.filters} channels. "
                f"Received: input_shape={input_shape}"
            )
        v_shape, h_shape = self._last(input_shape[0]), self._last(input_shape[1])
        k, two_p = self.kernel_size, 2 * self.filters
        self.vertical_conv = keras.layers.Conv2D(
            two_p, (k // 2 + 1, k), padding="valid", name="vertical_conv",
            **self._conv_kwargs())
        self.vertical_conv.build(_resize(v_shape, v_shape[-1], rows_added=k // 2,
                                         cols_added=2 * (k // 2)))
        self.vertical_to_horizontal = keras.layers.Conv2D(
            two_p, 1, name="vertical_to_horizontal", **self._conv_kwargs())
        self.vertical_to_horizontal.build(_resize(v_shape, two_p))
        self.horizontal_conv = MaskedConv2D(
            two_p, (1, k), mask_type=self.mask_type, color_channels=self.color_channels,
            name="horizontal_conv", **self._conv_kwargs())
        self.horizontal_conv.build(h_shape)
        self.horizontal_output = MaskedConv2D(
            self.filters, 1, mask_type="B", color_channels=self.color_channels,
            name="horizontal_output", **self._conv_kwargs())
        self.horizontal_output.build(_resize(h_shape, self.filters))
        self.conditional = len(input_shape) == 3
        if self.conditional:
            c_shape = tuple(input_shape[2])
            dense_kwargs = {"use_bias": False, "dtype": self.dtype_policy,
                            "kernel_initializer": self._conv_kwargs()["kernel_initializer"]}
            if self.condition_vertical:
                self.vertical_condition = keras.layers.Dense(
                    two_p, name="vertical_condition", **dense_kwargs)
                self.vertical_condition.build(c_shape)
            self.horizontal_condition = keras.layers.Dense(
                two_p, name="horizontal_condition", **dense_kwargs)
            self.horizontal_condition.build(c_shape)
        self.built = True

    def _gate(self, x):
        # Within each of the `color_channels` contiguous colour groups the first
        # half of the channels goes through tanh and the second half through the
        # sigmoid, so the output keeps the colour groups in order. A reshape to
        # (groups, 2, half) and two slices: no gather.
        shape = ops.shape(x)
        groups, half = self.color_channels, self.filters // self.color_channels
        x = ops.reshape(x, tuple(shape[:-1]) + (groups, 2, half))
        f, g = x[..., 0, :], x[..., 1, :]
        return ops.reshape(ops.multiply(ops.tanh(f), ops.sigmoid(g)),
                           tuple(shape[:-1]) + (self.filters,))

    def _condition_bias(self, dense, conditioning):
        return dense(ops.cast(conditioning, self.compute_dtype))[:, None, None, :]

    def _row_mask(self, valid_rows):
        return ops.cast(valid_rows, self.compute_dtype)[None, :, None, None]

    def vertical(self, vertical_input, conditioning=None, valid_rows=None):
        """Runs the vertical stack on a channels_last tensor.

        Args:
            vertical_input: the vertical input image tensor, channels_last
                `(batch, rows, cols, channels)` whatever `data_format`.
            conditioning: the optional `(batch, features)` tensor.
            valid_rows: optional 0/1 vector, one value per row, for running the
                stack on a window of rows that starts above the image (as fast
                sampling does): rows marked 0 are zeroed in the pre-activations
                and the output, as the zero padding of the whole image would be.

        Returns:
            `(vertical_output, link)`, channels_last: the gated vertical output
            and the vertical pre-activations shifted one row down through the
            1x1 convolution, which `horizontal` adds to its gates. Row i of
            `link` depends only on rows < i of `vertical_input`.
        """
        k = self.kernel_size
        padded = ops.pad(vertical_input, [[0, 0], [k // 2, 0], [k // 2, k // 2], [0, 0]])
        pre = self.vertical_conv(padded)
        if valid_rows is not None:
            pre = ops.multiply(pre, self._row_mask(valid_rows))
        shifted = ops.pad(pre, [[0, 0], [1, 0], [0, 0], [0, 0]])[:, :-1]
        link = self.vertical_to_horizontal(shifted)
        if self.conditional and self.condition_vertical:
            pre = ops.add(pre, self._condition_bias(self.vertical_condition, conditioning))
        out = self._gate(pre)
        if valid_rows is not None:
            out = ops.multiply(out, self._row_mask(valid_rows))
        return out, link

    def horizontal(self, horizontal_input, link, conditioning=None):
        """Runs the horizontal stack on channels_last tensors, given `vertical`'s `link`.

        Each row is computed from that row of `horizontal_input` and `link`
        only, so it can be run on a single row (as fast sampling does).

        Args:
            horizontal_input: channels_last `(batch, rows, cols, channels)`
                whatever `data_format`.
            link: the `link` returned by `vertical` for the same rows.
            conditioning: the optional `(batch, features)` tensor.

        Returns:
            The horizontal output, channels_last, with `filters` channels.
        """
        pre = ops.add(self.horizontal_conv(horizontal_input), link)
        if self.conditional:
            pre = ops.add(pre, self._condition_bias(self.horizontal_condition,
                                                    conditioning))
        out = self.horizontal_output(self._gate(pre))
        if self._use_residual:
            out = ops.add(out, ops.cast(horizontal_input, out.dtype))
        return out

    def call(self, inputs):
        vertical_input, horizontal_input = inputs[0], inputs[1]
        conditioning = inputs[2] if len(inputs) == 3 else None
        first = self.data_format == "channels_first"
        if first:
            vertical_input = to_channels_last(vertical_input)
            horizontal_input = to_channels_last(horizontal_input)
        vertical_output, link = self.vertical(vertical_input, conditioning)
        horizontal_output = self.horizontal(horizontal_input, link, conditioning)
        if first:
            return [to_channels_first(vertical_output), to_channels_first(horizontal_output)]
        return [vertical_output, horizontal_output]

    def compute_output_shape(self, input_shape):
        def with_filters(shape):
            shape = list(shape)
            shape[self._channel_axis] = self.filters
            return tuple(shape)

        return [with_filters(input_shape[0]), with_filters(input_shape[1])]


def _resize(shape, channels, rows_added=0, cols_added=0):
    """A channels_last shape with `channels` channels and rows / cols added."""
    batch, rows, cols, _ = shape
    rows = None if rows is None else rows + rows_added
    cols = None if cols is None else cols + cols_added
    return (batch, rows, cols, channels)
