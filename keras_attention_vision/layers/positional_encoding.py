"""2D positional encodings of the Image Transformer (Parmar et al., 2018)."""

import keras
from keras import ops

from keras_attention_vision.api_export import kav_export
from keras_attention_vision.layers.validation import (
    check_bool,
    check_number,
    check_rank,
    standardize_data_format,
)


def sinusoids(positions, channels, max_wavelength=10000.0):
    """The sinusoids of `PositionalEncoding2D` for one coordinate, at any positions.

    Args:
        positions: `(length,)` coordinates (ints or floats: a position between
            two pixels gets the encoding between theirs).
        channels: even number of channels `d`.
        max_wavelength: the base of the wavelengths.

    Returns:
        `(length, channels)` float32: for `k = 0 ... d / 2 - 1`, channel `2k`
        is `sin(p / max_wavelength ** (2k / d))` and channel `2k + 1` the
        cosine.
    """
    position = ops.cast(ops.convert_to_tensor(positions), "float32")[:, None]
    k = ops.cast(ops.arange(channels // 2), "float32")
    inverse = ops.power(max_wavelength, -2.0 * k / channels)
    angles = position * inverse[None, :]
    return ops.reshape(ops.stack([ops.sin(angles), ops.cos(angles)], axis=-1),
                       (-1, channels))


@kav_export("keras_attention_vision.layers.PositionalEncoding2D")
class PositionalEncoding2D(keras.layers.Layer):
    """Adds a 2D positional encoding: half the channels the row, half the column.

    From "Image Transformer" (Parmar et al., 2018), section 3.1: the first
    `C / 2` channels encode the row `r`, the last `C / 2` the column `c`, and
    the encoding is added to the input.

    - Sinusoids (`learned=False`), the transformer's functions over `d = C / 2`
      channels for each coordinate: for `k = 0 ... d / 2 - 1`,
      channel `2k` gets `sin(r / max_wavelength ** (2k / d))` and channel
      `2k + 1` gets `cos(r / max_wavelength ** (2k / d))`; channels `d + 2k` and
      `d + 2k + 1` the same of `c`. No weights; any `H` and `W`, unknown
      (`None`) ones included. `C` must be a multiple of 4.
    - Learned (`learned=True`): a trainable row embedding `(H, C / 2)` and a
      column embedding `(W, C / 2)`, sized from the input shape in `build`
      (so `H` and `W` must be known). `C` must be even.

    Args:
        learned: trainable embeddings instead of sinusoids. Defaults to `False`.
        max_wavelength: the base of the sinusoids' wavelengths. Defaults to
            `10000.0`.
        embeddings_initializer: initializer of the learned embeddings.
            Defaults to `"random_normal"`.
        data_format: `"channels_last"`, `"channels_first"` or `None` (the
            Keras image data format).
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `(batch, H, W, C)` (`(batch, C, H, W)` channels first).

    Returns:
        `inputs` plus the encoding, same shape and dtype.

    Example:

    ```python
    x = keras.Input((None, None, 64))
    y = PositionalEncoding2D()(x)  # sinusoids: any image size
    z = PositionalEncoding2D(learned=True)(keras.random.normal((2, 28, 28, 64)))
    ```
    """

    def __init__(self, learned=False, max_wavelength=10000.0,
                 embeddings_initializer="random_normal", data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.learned = check_bool("learned", learned)
        self.max_wavelength = check_number("max_wavelength", max_wavelength)
        if self.max_wavelength <= 1.0:
            raise ValueError("`max_wavelength` must be > 1. "
                             f"Received: max_wavelength={max_wavelength!r}")
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.data_format = standardize_data_format(data_format)

    def get_config(self):
        config = super().get_config()
        config.update({
            "learned": self.learned,
            "max_wavelength": self.max_wavelength,
            "embeddings_initializer": keras.initializers.serialize(
                self.embeddings_initializer),
            "data_format": self.data_format,
        })
        return config

    def _channels_last_shape(self, shape):
        shape = tuple(shape)
        if self.data_format == "channels_first":
            return (shape[0],) + shape[2:] + (shape[1],)
        return shape

    def build(self, input_shape):
        check_rank(self, input_shape, (4,))
        _, height, width, channels = self._channels_last_shape(input_shape)
        multiple = 2 if self.learned else 4
        if channels is None or channels % multiple:
            raise ValueError(
                f"{type(self).__name__} needs channels divisible by {multiple} "
                f"(half for the row, half for the column"
                f"{'' if self.learned else ', each half sine and cosine'}). "
                f"Received: channels={channels}")
        if self.learned:
            if height is None or width is None:
                raise ValueError(f"{type(self).__name__}(learned=True) needs known H "
                                 f"and W. Received: input_shape={tuple(input_shape)}")
            self.row_embeddings = self.add_weight(
                name="row_embeddings", shape=(height, channels // 2),
                initializer=self.embeddings_initializer)
            self.column_embeddings = self.add_weight(
                name="column_embeddings", shape=(width, channels // 2),
                initializer=self.embeddings_initializer)
        self.built = True

    def _sinusoids(self, length, channels):
        """`(length, channels)` float32: sin/cos interleaved (class docstring)."""
        return sinusoids(ops.arange(length), channels, self.max_wavelength)

    def call(self, inputs):
        x = inputs
        if self.data_format == "channels_first":
            x = ops.transpose(x, (0, 2, 3, 1))
        shape = ops.shape(x)
        height, width, half = shape[1], shape[2], x.shape[-1] // 2
        if self.learned:
            rows, cols = self.row_embeddings, self.column_embeddings
        else:
            rows, cols = self._sinusoids(height, half), self._sinusoids(width, half)
        rows = ops.broadcast_to(ops.cast(rows, x.dtype)[:, None, :], (height, width, half))
        cols = ops.broadcast_to(ops.cast(cols, x.dtype)[None, :, :], (height, width, half))
        x = x + ops.concatenate([rows, cols], axis=-1)[None]
        if self.data_format == "channels_first":
            x = ops.transpose(x, (0, 3, 1, 2))
        return x

    def compute_output_shape(self, input_shape):
        check_rank(self, input_shape, (4,))
        return tuple(input_shape)
