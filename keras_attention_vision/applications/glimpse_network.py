"""The glimpse network shared by the recurrent attention model and the visual search agent.

Mnih, Heess, Graves and Kavukcuoglu, *Recurrent Models of Visual Attention*
(NIPS 2014), section 4: the glimpse sensor `rho(x_t, l_{t-1})` gives the
retina-like patches, and

    h_g = Rect(Linear(rho(x_t, l_{t-1}))),  h_l = Rect(Linear(l_{t-1})),
    g_t = Rect(Linear(h_g) + Linear(h_l)).

The two models differ only in what they add before the last `Rect` (the
visual search agent adds its target's embedding), so this module gives the
sensor and the four `Dense` layers, not `g_t` itself.
"""

import keras
import numpy as np
from keras import ops

from keras_attention_vision.layers.glimpse_sensor import GlimpseSensor


class GlimpseNetworkMixin:
    """The sensor and the "what" / "where" pathways of the glimpse network.

    For `keras.Model` subclasses with `self.image_shape` (without the batch
    axis). The attributes keep the names (and the layers the names) that
    the shipped presets were saved with: `sensor` ("glimpse_sensor"),
    `glimpse_what`, `glimpse_where` (the `h_g`, `h_l` layers, ReLU) and
    `glimpse_what_out`, `glimpse_where_out` (the linear maps summed in
    `g_t`).
    """

    def _make_glimpse_network(self, patch_size, num_scales, scale_factor, data_format,
                              glimpse_hidden, glimpse_units):
        """Creates the layers; sets `self.data_format` from the sensor's."""
        self.sensor = GlimpseSensor(patch_size, num_scales, scale_factor,
                                    data_format=data_format, name="glimpse_sensor")
        self.data_format = self.sensor.data_format
        dense = keras.layers.Dense
        self.glimpse_what = dense(glimpse_hidden, activation="relu", name="glimpse_what")
        self.glimpse_where = dense(glimpse_hidden, activation="relu", name="glimpse_where")
        self.glimpse_what_out = dense(glimpse_units, name="glimpse_what_out")
        self.glimpse_where_out = dense(glimpse_units, name="glimpse_where_out")

    def _build_glimpse_network(self):
        """Builds the layers for images of `self.image_shape` and locations `(B, 2)`."""
        batch_image = (None,) + tuple(self.image_shape)
        self.sensor.build([batch_image, (None, 2)])
        glimpse_shape = self.sensor.compute_output_shape([batch_image, (None, 2)])
        self.glimpse_what.build((None, int(np.prod(glimpse_shape[1:]))))
        self.glimpse_where.build((None, 2))
        hidden = self.glimpse_what.units
        self.glimpse_what_out.build((None, hidden))
        self.glimpse_where_out.build((None, hidden))

    def _what(self, glimpse):
        """`Linear(h_g)`: a sensor output `(B, ...)` -> `(B, glimpse_units)`."""
        flat = ops.reshape(glimpse, (ops.shape(glimpse)[0], -1))
        return self.glimpse_what_out(self.glimpse_what(flat))

    def _where(self, location):
        """`Linear(h_l)`: locations `(B, 2)` -> `(B, glimpse_units)`."""
        return self.glimpse_where_out(self.glimpse_where(location))
