"""The retina of the Recurrent Attention Model (Mnih et al., 2014)."""

import keras
from keras import ops

from keras_attention_vision.api_export import kav_export
from keras_attention_vision.layers.validation import check_positive_int, standardize_data_format

MAX_PATCH_TO_IMAGE = 4


@kav_export("keras_attention_vision.layers.GlimpseSensor")
class GlimpseSensor(keras.layers.Layer):
    """Multi-resolution glimpses centred on given locations (the RAM retina).

    Scale `k` (0-based) is the square patch of side
    `patch_size * scale_factor**k` pixels centred on the location, reduced to
    `patch_size x patch_size` by averaging non-overlapping blocks of
    `scale_factor**k x scale_factor**k` pixels. Pixels outside the image take
    `padding_value` in pixel space (black by default, as in the paper), so pad
    before normalising the images, not after.

    Locations are `(y, x)` in `[-1, 1]`: `(-1, -1)` is the top-left corner of
    the image, `(1, 1)` the bottom-right one and `(0, 0)` its centre. A
    location maps to the pixel coordinate `c = (l + 1) / 2 * size`; the patch
    of side `s` starts at the pixel `floor(c - s / 2 + 0.5)` (rounded half up),
    so glimpses are exact crops, with no interpolation.

    The crops are one batched gather (no per-sample loop); the layer has no
    weights, runs on every backend and compiles under `jit`. The gradient
    flows to the images, not to the locations (RAM trains the locations with
    REINFORCE).

    Args:
        patch_size: side `g` of every returned patch, in pixels.
        num_scales: number `k` of patches per location, each `scale_factor`
            times wider than the last.
        scale_factor: integer ratio of the sides of consecutive scales.
        padding_value: the pixel value outside the image.
        data_format: `"channels_last"` (images `(B, H, W, C)`) or
            `"channels_first"` (images `(B, C, H, W)`); `None` means
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a list `[images, locations]`: images of shape `(B, H, W, C)`
            (or `(B, C, H, W)` for channels first) and locations of shape
            `(B, 2)` as `(y, x)` in `[-1, 1]`. Locations outside `[-1, 1]` are
            allowed; what falls outside the image reads `padding_value`.

    Returns:
        The glimpses, laid out as a `Conv3D` input of the same data format,
        with the scales as depth: `(B, num_scales, g, g, C)` for channels
        last, `(B, C, num_scales, g, g)` for channels first. Scale 0 is the
        finest.

    Example:

    ```python
    sensor = GlimpseSensor(patch_size=8, num_scales=3)
    images = np.random.rand(4, 28, 28, 1).astype("float32")
    centre = np.zeros((4, 2), "float32")  # (y, x)
    glimpses = sensor([images, centre])  # (4, 3, 8, 8, 1)
    ```
    """

    def __init__(self, patch_size=8, num_scales=1, scale_factor=2, padding_value=0.0,
                 data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = check_positive_int("patch_size", patch_size)
        self.num_scales = check_positive_int("num_scales", num_scales)
        self.scale_factor = check_positive_int("scale_factor", scale_factor)
        if isinstance(padding_value, bool) or not isinstance(padding_value, (int, float)):
            raise ValueError(
                f"`padding_value` must be a number. Received: padding_value={padding_value!r}"
            )
        self.padding_value = float(padding_value)
        self.data_format = standardize_data_format(data_format)

    def get_config(self):
        config = super().get_config()
        config.update({
            "patch_size": self.patch_size,
            "num_scales": self.num_scales,
            "scale_factor": self.scale_factor,
            "padding_value": self.padding_value,
            "data_format": self.data_format,
        })
        return config

    @property
    def largest_patch_size(self):
        """Side in pixels of the widest (coarsest) patch."""
        return self.patch_size * self.scale_factor ** (self.num_scales - 1)

    def _split_shapes(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2 or not all(
            isinstance(s, (list, tuple)) for s in input_shape
        ):
            raise ValueError(
                "GlimpseSensor expects a list [images, locations]. "
                f"Received: input_shape={input_shape}"
            )
        image_shape, location_shape = (tuple(s) for s in input_shape)
        if len(image_shape) != 4:
            raise ValueError(
                "GlimpseSensor expects images of rank 4 (batch included). "
                f"Received: images.shape={image_shape}"
            )
        if len(location_shape) != 2 or location_shape[-1] != 2:
            raise ValueError(
                "GlimpseSensor expects locations of shape (batch, 2) as (y, x). "
                f"Received: locations.shape={location_shape}"
            )
        if self.data_format == "channels_last":
            height, width, channels = image_shape[1:]
        else:
            channels, height, width = image_shape[1:]
        for side in (height, width):
            if side is not None and self.largest_patch_size > MAX_PATCH_TO_IMAGE * side:
                raise ValueError(
                    f"GlimpseSensor: the widest patch ({self.largest_patch_size} = "
                    f"patch_size * scale_factor**(num_scales - 1)) is more than "
                    f"{MAX_PATCH_TO_IMAGE}x the image side. "
                    f"Received: images.shape={image_shape}"
                )
        return image_shape, location_shape, (height, width, channels)

    def build(self, input_shape):
        self._split_shapes(input_shape)
        self.built = True

    def _starts(self, centres, size, side):
        # Top-left pixel of a patch of `side` pixels centred at `centres` (B,).
        pixel = (centres + 1.0) * (size / 2.0)
        return ops.cast(ops.floor(pixel - side / 2.0 + 0.5), "int32")

    def call(self, inputs):
        images, locations = inputs
        channels_last = self.data_format == "channels_last"
        shape = ops.shape(images)
        if channels_last:
            height, width = shape[1], shape[2]
            flat = ops.reshape(images, (shape[0], height * width, shape[3]))
        else:
            height, width = shape[2], shape[3]
            flat = ops.reshape(images, (shape[0], shape[1], height * width))
        locations = ops.cast(ops.stop_gradient(locations), "float32")
        flat32 = ops.cast(flat, "float32")
        g = self.patch_size
        glimpses = []
        for k in range(self.num_scales):
            factor = self.scale_factor**k
            side = g * factor
            offsets = ops.arange(side, dtype="int32")
            rows = self._starts(locations[:, 0], height, side)[:, None] + offsets
            cols = self._starts(locations[:, 1], width, side)[:, None] + offsets
            row_ok = (rows >= 0) & (rows < height)
            col_ok = (cols >= 0) & (cols < width)
            rows = ops.clip(rows, 0, height - 1)
            cols = ops.clip(cols, 0, width - 1)
            index = ops.reshape(rows[:, :, None] * width + cols[:, None, :], (-1, side * side))
            inside = ops.reshape(row_ok[:, :, None] & col_ok[:, None, :], (-1, side * side))
            if channels_last:
                crop = ops.take_along_axis(flat32, index[:, :, None], axis=1)
                crop = ops.where(inside[:, :, None], crop, self.padding_value)
                crop = ops.reshape(crop, (-1, g, factor, g, factor, shape[3]))
                glimpses.append(ops.mean(crop, axis=(2, 4)))
            else:
                crop = ops.take_along_axis(flat32, index[:, None, :], axis=2)
                crop = ops.where(inside[:, None, :], crop, self.padding_value)
                crop = ops.reshape(crop, (-1, shape[1], g, factor, g, factor))
                glimpses.append(ops.mean(crop, axis=(3, 5)))
        out = ops.stack(glimpses, axis=1 if channels_last else 2)
        return ops.cast(out, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        image_shape, _, (_, _, channels) = self._split_shapes(input_shape)
        g = self.patch_size
        if self.data_format == "channels_last":
            return (image_shape[0], self.num_scales, g, g, channels)
        return (image_shape[0], channels, self.num_scales, g, g)
