"""The glimpse network shared by the recurrent attention model and the visual search agent.

Mnih, Heess, Graves and Kavukcuoglu, *Recurrent Models of Visual Attention*
(NIPS 2014), section 4: the glimpse sensor `rho(x_t, l_{t-1})` gives the
retina-like patches, and

    h_g = Rect(Linear(rho(x_t, l_{t-1}))),  h_l = Rect(Linear(l_{t-1})),
    g_t = Rect(Linear(h_g) + Linear(h_l)).

The two models differ only in what they add before the last `Rect` (the
visual search agent adds its target's embedding), so this module gives the
sensor and the four `Dense` layers, not `g_t` itself.

`glimpse_encoder="conv"` (not the paper's) puts a small convolutional stack
before the first `Linear` of the "what" pathway: the retina's scales, centred
on the same point, are stacked as channels of one `(g, g, k * C)` image and go
through `Conv 3x3 (32) - MaxPool 2 - Conv 3x3 (64) - MaxPool 2` (ReLU, "same"
padding), so `h_g` reads features that move little when the glimpse moves by a
pixel or two, where the paper's `Linear` reads raw pixels.
"""

import keras
import numpy as np
from keras import ops

from keras_attention_vision.layers.glimpse_sensor import GlimpseSensor
from keras_attention_vision.layers.validation import check_choice

#: Filters of the two convolutions of `glimpse_encoder="conv"`.
CONV_FILTERS = (32, 64)


def _pooled_shape(shape):
    """The shape after `_max_pool`: `(B, ceil(H / 2), ceil(W / 2), C)`."""
    return (shape[0], -(-shape[1] // 2), -(-shape[2] // 2), shape[3])


def _max_pool(x):
    """2x2 max-pool, stride 2, of a non-negative `(B, H, W, C)` (ReLU output).

    An odd side is padded with zeros at its end, which for non-negative inputs
    is Keras's `MaxPooling2D(2, padding="same")`. Written as a reshape and a
    max: on JAX's CPU backend the pooling layer's gradient
    (`select_and_scatter`) made the whole RAM training step 1.9x slower.
    """
    height, width = x.shape[1], x.shape[2]
    if height % 2 or width % 2:
        x = ops.pad(x, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)))
        height, width = height + height % 2, width + width % 2
    x = ops.reshape(x, (-1, height // 2, 2, width // 2, 2, x.shape[3]))
    return ops.max(x, axis=(2, 4))


class GlimpseNetworkMixin:
    """The sensor and the "what" / "where" pathways of the glimpse network.

    For `keras.Model` subclasses with `self.image_shape` (without the batch
    axis). The attributes keep the names (and the layers the names) that
    the shipped presets were saved with: `sensor` ("glimpse_sensor"),
    `glimpse_what`, `glimpse_where` (the `h_g`, `h_l` layers, ReLU) and
    `glimpse_what_out`, `glimpse_where_out` (the linear maps summed in
    `g_t`); with `glimpse_encoder="conv"` also `glimpse_conv` (the list of
    the two `Conv2D` layers, channels_last inside whatever the model's
    `data_format`; each is followed by a 2x2 max-pool, `_max_pool`).
    """

    def _make_glimpse_network(self, patch_size, num_scales, scale_factor, data_format,
                              glimpse_hidden, glimpse_units, glimpse_encoder="dense"):
        """Creates the layers; sets `self.data_format` from the sensor's."""
        self.sensor = GlimpseSensor(patch_size, num_scales, scale_factor,
                                    data_format=data_format, name="glimpse_sensor")
        self.data_format = self.sensor.data_format
        self.glimpse_encoder = check_choice("glimpse_encoder", glimpse_encoder,
                                            ("dense", "conv"))
        # channels_last inside: NCHW convolutions are missing from some
        # TensorFlow CPU builds
        self.glimpse_conv = [
            keras.layers.Conv2D(filters, 3, padding="same", activation="relu",
                                data_format="channels_last", name=f"glimpse_conv{i}")
            for i, filters in enumerate(CONV_FILTERS, start=1)
        ] if self.glimpse_encoder == "conv" else []
        dense = keras.layers.Dense
        self.glimpse_what = dense(glimpse_hidden, activation="relu", name="glimpse_what")
        self.glimpse_where = dense(glimpse_hidden, activation="relu", name="glimpse_where")
        self.glimpse_what_out = dense(glimpse_units, name="glimpse_what_out")
        self.glimpse_where_out = dense(glimpse_units, name="glimpse_where_out")

    def _build_glimpse_network(self):
        """Builds the layers for images of `self.image_shape` and locations `(B, 2)`."""
        batch_image = (None,) + tuple(self.image_shape)
        self.sensor.build([batch_image, (None, 2)])
        for layer, shape, _ in self._encoder_shapes():
            layer.build(shape)
        self.glimpse_what.build((None, self._retina_features()))
        self.glimpse_where.build((None, 2))
        hidden = self.glimpse_what.units
        self.glimpse_what_out.build((None, hidden))
        self.glimpse_where_out.build((None, hidden))

    def _stacked_scales_shape(self):
        """`(None, g, g, k * C)`: the input shape of the convolutional encoder."""
        s = self.sensor
        channels = self.image_shape[-1 if self.data_format == "channels_last" else 0]
        return (None, s.patch_size, s.patch_size, s.num_scales * channels)

    def _encoder_shapes(self):
        """`[(conv layer, its input shape, its output shape before the pool)]`."""
        shapes, shape = [], self._stacked_scales_shape()
        for layer in self.glimpse_conv:
            out = layer.compute_output_shape(shape)
            shapes.append((layer, shape, out))
            shape = _pooled_shape(out)
        return shapes

    def _encode(self, glimpse):
        """The convolutional encoder on a sensor output -> `(B, g/4, g/4, 64)`.

        The scales become channels in the order `(scale, channel)` for both data
        formats, so channels_first gives the numbers of channels_last.
        """
        if self.data_format == "channels_last":  # (B, k, g, g, C)
            x = ops.transpose(glimpse, (0, 2, 3, 1, 4))
        else:  # (B, C, k, g, g)
            x = ops.transpose(glimpse, (0, 3, 4, 2, 1))
        g = self.sensor.patch_size
        x = ops.reshape(x, (ops.shape(x)[0], g, g, -1))
        for layer in self.glimpse_conv:
            x = _max_pool(layer(x))
        return x

    def _what(self, glimpse):
        """`Linear(h_g)`: a sensor output `(B, ...)` -> `(B, glimpse_units)`."""
        if self.glimpse_conv:
            glimpse = self._encode(glimpse)
        flat = ops.reshape(glimpse, (ops.shape(glimpse)[0], -1))
        return self.glimpse_what_out(self.glimpse_what(flat))

    def _encoder_multiply_adds(self):
        """Multiply-adds of the convolutional encoder for one glimpse (0 for dense)."""
        from keras_attention_vision.cost import layer_multiply_adds

        return sum(layer_multiply_adds(layer, shape, out)
                   for layer, shape, out in self._encoder_shapes())

    def _retina_features(self):
        """The width of the "what" pathway's input (the flat retina or encoder output)."""
        if self.glimpse_conv:
            _, _, out = self._encoder_shapes()[-1]
            return int(np.prod(_pooled_shape(out)[1:]))
        glimpse = self.sensor.compute_output_shape([(1,) + tuple(self.image_shape), (1, 2)])
        return int(np.prod(glimpse[1:]))

    def _where(self, location):
        """`Linear(h_l)`: locations `(B, 2)` -> `(B, glimpse_units)`."""
        return self.glimpse_where_out(self.glimpse_where(location))
