"""PixelCNN and Gated PixelCNN (van den Oord et al., 2016), with fast sampling."""

import functools
import math

import keras
import numpy as np
from keras import ops

from keras_attention_vision.api_export import kav_export
from keras_attention_vision.layers.gated_pixelcnn_block import GatedPixelCNNBlock
from keras_attention_vision.layers.masked_conv2d import MaskedConv2D
from keras_attention_vision.layers.validation import (
    check_bool,
    check_choice,
    check_odd_positive_int,
    check_positive_int,
)
from keras_attention_vision.metrics import (
    DISTRIBUTIONS,
    BitsPerDim,
)
from keras_attention_vision.presets import (
    check_weights_argument,
    load_application_weights,
    preset_arguments,
)
from keras_attention_vision.sampling import AutoregressiveImageModel

CATEGORIES = 256
#: Pixels per network call of the eager (PyTorch) sampler for binary images.
LOOKAHEAD = 3


@functools.cache
def lookahead_windows(d, context):
    """The `2**d - 1` windows of a group of `d` binary pixels (NumPy tables).

    Window `w = 2**m - 1 + code` predicts pixel `j0 + m` of the group with the
    pixels `j0 + q` (`q < m`) set to bit `q` of `code`. It covers the columns
    `j0 + m - context ... j0 + m`, so position `t` of it is index `m + t` of the
    group's span of the row (which starts at column `j0 - context`).

    Returns:
        `(starts, set_mask, set_value)`: `starts[w] = m`, and `(W, context + 1)`
        float32 arrays: 1 where window `w` overrides a pixel, and the
        normalised value (-1 or 1) it puts there.
    """
    width = context + 1
    starts, set_mask, set_value = [], [], []
    for m in range(d):
        for code in range(2**m):
            starts.append(m)
            mask_w, value_w = np.zeros(width, "float32"), np.zeros(width, "float32")
            for q in range(m):
                t = context - m + q
                if t >= 0:  # pixels left of the window are outside its receptive field
                    mask_w[t] = 1.0
                    value_w[t] = 2.0 * ((code >> q) & 1) - 1.0
            set_mask.append(mask_w)
            set_value.append(value_w)
    return np.asarray(starts), np.asarray(set_mask), np.asarray(set_value)


@kav_export("keras_attention_vision.applications.PixelCNN")
class PixelCNN(AutoregressiveImageModel, keras.Model):
    """An autoregressive image model: PixelCNN or Gated PixelCNN.

    `p(x) = prod_i p(x_i | x_<i)` over the sub-pixels in raster order (rows,
    then columns, then R, G, B). The gated network (default) is a first
    `GatedPixelCNNBlock` with mask A and a `first_kernel_size` kernel, then
    `num_layers - 1` blocks with mask B; the plain network is a stack of
    `MaskedConv2D` with ReLU. Both end with two 1x1 mask-B convolutions that
    give, per sub-pixel, one Bernoulli logit (`distribution="bernoulli"`,
    binary images) or 256 categorical logits (`distribution="categorical"`,
    8-bit images).

    `fit(images)` trains it on images alone: the loss is the NLL in nats per
    dimension, and `bits_per_dim` (NLL / (D ln 2)) is reported by `fit` and
    `evaluate`. With `num_classes`, the inputs are `[images, labels]` and the
    one-hot label conditions every gate. `fit(images, sample_weight=w)` and
    `evaluate(images, sample_weight=w)` weight the loss as Keras's losses do,
    `sum(nll * w) / batch_size`, and the `bits_per_dim` metric as Keras's
    metrics do, `sum(bpd * w) / sum(w)` (Keras drops `sample_weight` when
    `y` is None, so these pass the images as `y`; the loss never reads it).
    `class_weight` needs class targets, which the model has not: it raises.

    The network is channels_last inside, whatever
    `keras.config.image_data_format()`: its layers are pinned to
    channels_last, and images are `(batch, rows, cols, channels)`; images of
    another shape are rejected.

    With C channels the sub-pixels of a pixel are predicted in channel order,
    each seeing the ones before it (R, then G given R, then B given R and G
    for RGB): the convolutions' channels are split in C contiguous groups as
    in `MaskedConv2D`.

    `sample` and `complete` (shared with the other autoregressive models
    through `keras_attention_vision.sampling.AutoregressiveSampler`; raster
    order) run the pixel loop compiled (`tf.function` with
    XLA on TensorFlow, `jax.jit` on JAX; eagerly under `torch.no_grad` on
    PyTorch, where binary one-channel images are drawn 3 pixels per network
    call) and, for the gated network, run the vertical stacks once per row
    on a window of the rows above and the horizontal stacks per sub-pixel on a
    window of the current row, giving exactly the whole network's logits. The
    random numbers come from NumPy with the given seed, so the same seed gives
    the same samples.

    Args:
        input_shape: `(rows, cols, channels)` (channels last; 1 for grey, 3
            for RGB, any positive number works).
        num_layers: number of masked layers / gated blocks.
        filters: channels of every layer (a multiple of the channels).
        kernel_size: odd kernel size of the layers after the first.
        first_kernel_size: odd kernel size of the first (mask A) layer.
        gated: `True` for gated blocks (no blind spot), `False` for plain
            masked convolutions.
        num_classes: `None`, or the number of classes to condition on.
        distribution: `"bernoulli"` (images in {0, 1}) or `"categorical"`
            (images with integer values in [0, 255]).
        head_filters: channels of the hidden 1x1 layer of the output head
            (default: `filters`).
        name: model name.
        weights: `None` (random initialisation), a preset name (e.g.
            `"pixelcnn_mnist"`; the arguments not passed are the preset's, the
            ones passed must agree with it), or the path of a `.weights.h5`
            file saved from a model of the same configuration.

    Example:

    ```python
    model = PixelCNN(input_shape=(28, 28, 1), num_layers=5, filters=32)
    model.compile(optimizer="adam")
    model.fit(binary_images, epochs=10, batch_size=64)
    samples = model.sample(16, seed=0)
    ```
    """

    @preset_arguments("PixelCNN")
    def __init__(self, input_shape=(28, 28, 1), num_layers=7, filters=64, kernel_size=3,
                 first_kernel_size=7, gated=True, num_classes=None,
                 distribution="bernoulli", head_filters=None, name="pixelcnn", weights=None,
                 **kwargs):
        check_weights_argument(weights, "PixelCNN")
        super().__init__(name=name, **kwargs)
        input_shape = tuple(input_shape)
        if len(input_shape) != 3 or not all(
            isinstance(d, int) and d > 0 for d in input_shape
        ):
            raise ValueError(
                "`input_shape` must be (rows, cols, channels) of positive ints. "
                f"Received: input_shape={input_shape!r}"
            )
        check_positive_int("num_layers", num_layers)
        check_positive_int("filters", filters)
        check_odd_positive_int("kernel_size", kernel_size)
        check_odd_positive_int("first_kernel_size", first_kernel_size)
        check_positive_int("num_classes", num_classes, allow_none=True)
        check_choice("distribution", distribution, DISTRIBUTIONS)
        check_positive_int("head_filters", head_filters, allow_none=True)
        check_bool("gated", gated)
        channels = input_shape[-1]
        if filters % channels or (head_filters or filters) % channels:
            raise ValueError(
                "`filters` and `head_filters` must be multiples of the image channels "
                f"({channels}). Received: filters={filters}, head_filters={head_filters}"
            )
        self.image_shape = input_shape
        self.num_layers = num_layers
        self.filters = filters
        self.kernel_size = kernel_size
        self.first_kernel_size = first_kernel_size
        self.gated = gated
        self.num_classes = num_classes
        self.distribution = distribution
        self.head_filters = head_filters
        self.channels = channels
        self.categories = CATEGORIES if distribution == "categorical" else 1
        self.num_dims = math.prod(input_shape)

        # channels_last inside, whatever keras.config.image_data_format()
        mask = {"color_channels": channels, "dtype": self.dtype_policy,
                "data_format": "channels_last"}
        if gated:
            # The last block's vertical output feeds nothing: no vertical
            # conditioning there (it would change no output, get no gradient).
            self.blocks = [
                GatedPixelCNNBlock(filters, kernel_size if i else first_kernel_size,
                                   mask_type="B" if i else "A", name=f"block_{i}",
                                   condition_vertical=i < num_layers - 1, **mask)
                for i in range(num_layers)]
        else:
            self.blocks = [MaskedConv2D(filters, first_kernel_size, mask_type="A",
                                        name="conv_0", **mask)]
            self.blocks += [MaskedConv2D(filters, kernel_size, mask_type="B",
                                         name=f"conv_{i}", **mask)
                            for i in range(1, num_layers)]
            if num_classes:
                self.conditions = [keras.layers.Dense(filters, use_bias=False,
                                                      name=f"condition_{i}",
                                                      dtype=self.dtype_policy)
                                   for i in range(num_layers)]
        self.head_hidden = MaskedConv2D(head_filters or filters, 1, mask_type="B",
                                        activation="relu", name="head_hidden", **mask)
        self.head_logits = MaskedConv2D(channels * self.categories, 1, mask_type="B",
                                        color_channels=channels, dtype="float32",
                                        data_format="channels_last", name="head_logits")
        self.bits_per_dim_metric = BitsPerDim(distribution, name="bits_per_dim")
        self._samplers = {}
        self._build_blocks()
        self(self._dummy_inputs())
        load_application_weights(self, weights, "PixelCNN", self.get_config())

    def get_config(self):
        config = super().get_config()
        config.update({
            "input_shape": self.image_shape,
            "num_layers": self.num_layers,
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "first_kernel_size": self.first_kernel_size,
            "gated": self.gated,
            "num_classes": self.num_classes,
            "distribution": self.distribution,
            "head_filters": self.head_filters,
        })
        return config

    # ----------------------------------------------------------------- network

    def _build_blocks(self):
        # the gated blocks are run through their `vertical` / `horizontal`
        # methods, so they are built here rather than by a first __call__
        if not self.gated:
            return
        rows, cols, channels = self.image_shape
        condition = [(None, self.num_classes)] if self.num_classes else []
        for i, block in enumerate(self.blocks):
            shape = (None, rows, cols, channels if i == 0 else self.filters)
            block.build([shape, shape] + condition)

    def _dummy_inputs(self):
        images = np.zeros((1,) + self.image_shape, "float32")
        if self.num_classes:
            return [images, np.zeros((1,), "int32")]
        return images

    def _split_inputs(self, inputs):
        if self.num_classes:
            if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
                raise ValueError(
                    "A class-conditional PixelCNN takes [images, labels]. "
                    f"Received: inputs of type {type(inputs).__name__}"
                )
            return inputs[0], inputs[1]
        if isinstance(inputs, (list, tuple)):
            inputs = inputs[0]
        return inputs, None

    def _one_hot(self, labels):
        if labels is None:
            return None
        labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
        return ops.one_hot(labels, self.num_classes, dtype=self.compute_dtype)

    def _normalize(self, images):
        images = ops.cast(images, self.compute_dtype)
        if self.distribution == "bernoulli":
            return images * 2.0 - 1.0
        return images / 127.5 - 1.0

    def _links(self, x, condition):
        """Runs the vertical stacks; returns each block's link to its horizontal stack."""
        links, v = [], x
        for block in self.blocks:
            v, link = block.vertical(v, condition)
            links.append(link)
        return links

    def _horizontal(self, x, links, condition):
        """Runs the horizontal stacks and the head on rows of `x` (and of `links`)."""
        h = x
        for block, link in zip(self.blocks, links):
            h = block.horizontal(h, link, condition)
        return self._head(h)

    def _plain(self, x, condition):
        h = x
        for i, conv in enumerate(self.blocks):
            h = conv(h)
            if self.num_classes:
                h = h + self.conditions[i](condition)[:, None, None, :]
            h = ops.relu(h)
        return self._head(h)

    def _head(self, h):
        logits = self.head_logits(self.head_hidden(ops.relu(h)))
        if self.categories == 1:
            return logits
        shape = ops.shape(logits)
        return ops.reshape(logits, (shape[0], shape[1], shape[2], self.channels,
                                    self.categories))

    def _check_images(self, images):
        shape = tuple(images.shape)
        if len(shape) != 4 or any(d is not None and d != e
                                  for d, e in zip(shape[1:], self.image_shape)):
            raise ValueError(
                f"PixelCNN '{self.name}' expects images of shape (batch,) + "
                f"{self.image_shape} (channels last, whatever the global image data "
                f"format). Received: images.shape={shape}"
            )

    def _logits(self, images, condition):
        self._check_images(images)
        x = self._normalize(images)
        if self.gated:
            return self._horizontal(x, self._links(x, condition), condition)
        return self._plain(x, condition)

    def call(self, inputs):
        images, labels = self._split_inputs(inputs)
        return self._logits(images, self._one_hot(labels))

    # ---------------------------------------------------------------- training

    def _targets(self, images):
        if self.distribution == "bernoulli":
            return ops.cast(images, "float32")
        return ops.cast(ops.round(ops.cast(images, "float32")), "int32")

    # ---------------------------------------------------------------- sampling

    def _window_logits(self, h, links, condition, valid_cols):
        """Logits of the last pixel of a window of one row `(n, 1, width, C)`."""
        for block, link in zip(self.blocks, links):
            h = ops.multiply(block.horizontal(h, link, condition), valid_cols)
        return self._head(h[:, :, -1:])[:, 0, 0]

    def _sample_rows(self, x, keep, u, condition, temperature, lookahead=1):
        """Cached sampling loop of the gated network (run compiled).

        The logits of pixel (i, j) depend on the rows above through the
        vertical stacks and on row i left of j through the horizontal stacks,
        each within `S = sum(kernel_size // 2)` rows / columns. So per row the
        vertical stacks run on a window of `S + 2` rows ending at row i, and per
        sub-pixel the horizontal stacks run on a window of `S + 1` columns of
        row i ending at column j. Positions of a window outside the image are
        zeroed after every block, as the zero padding of the whole image would
        be, so the logits equal those of the whole network.

        With `lookahead > 1` (binary images, one channel, eager backends) each
        row is sampled `lookahead` pixels at a time by
        `_sample_row_lookahead`.
        """
        n, rows, cols, channels = ops.shape(x)
        context = sum(block.kernel_size // 2 for block in self.blocks)
        height, width = context + 2, context + 1
        dtype = self.compute_dtype
        col_ids = ops.arange(cols)
        chan_ids = ops.arange(channels)
        window_rows = ops.arange(height)
        window_cols = ops.arange(width)

        def row_body(i, x):
            image = ops.pad(self._normalize(x), [[0, 0], [context + 1, 0], [0, 0], [0, 0]])
            v = ops.slice(image, (0, i, 0, 0), (n, height, cols, channels))
            valid_rows = ops.cast(window_rows + i - 1 - context >= 0, dtype)
            links = []
            for block in self.blocks:
                v, link = block.vertical(v, condition, valid_rows=valid_rows)
                links.append(ops.pad(link[:, -1:], [[0, 0], [0, 0], [context, 0], [0, 0]]))
            x_row = ops.slice(x, (0, i, 0, 0), (n, 1, cols, channels))
            keep_row = ops.slice(keep, (0, i, 0, 0), (n, 1, cols, channels))
            u_row = ops.slice(u, (0, i, 0, 0), (n, 1, cols, channels))

            def pixel_body(j, x_row):
                col = ops.cast(ops.equal(col_ids, j), "float32")
                valid_cols = ops.cast(window_cols + j - context >= 0,
                                      dtype)[None, None, :, None]
                window_links = [ops.slice(link, (0, 0, j, 0),
                                          (n, 1, width, ops.shape(link)[3]))
                                for link in links]
                for c in range(channels):
                    index_mask = (col[:, None] * ops.cast(ops.equal(chan_ids, c),
                                                          "float32"))[None, None]
                    row = ops.pad(self._normalize(x_row),
                                  [[0, 0], [0, 0], [context, 0], [0, 0]])
                    h = ops.slice(row, (0, 0, j, 0), (n, 1, width, channels))
                    logit = self._window_logits(h, window_links, condition,
                                                valid_cols)[:, c]
                    x_row = self._fill(x_row, keep_row, u_row, temperature, logit,
                                       index_mask)
                return x_row

            if lookahead > 1:
                x_row = self._sample_row_lookahead(x_row, keep_row, u_row, links,
                                                   condition, temperature, lookahead,
                                                   context)
            else:
                x_row = ops.fori_loop(0, cols, pixel_body, x_row)
            row = ops.cast(ops.equal(ops.arange(rows), i), "float32")[None, :, None, None]
            return x * (1.0 - row) + x_row * row

        return ops.fori_loop(0, rows, row_body, x)

    def _sample_row_lookahead(self, x_row, keep_row, u_row, links, condition,
                              temperature, lookahead, context):
        """Samples one row of a binary one-channel image `lookahead` pixels at a time.

        For a group of `d` pixels starting at column `j0`, pixel `j0 + m`
        has one conditional per value of the `m` pixels before it in the
        group, `2**m` in all (binary pixels). The `2**d - 1` windows of all of
        them run through the horizontal stacks as one batch; the `d` pixels
        are then drawn in order, each from the window that matches the values
        drawn (or kept) before it. The logits are those of the one-pixel loop,
        so the samples are the same, with `d` times fewer network calls: an
        eager backend pays per call, not per image in the batch. The column
        loop runs in Python, so this is for eager backends (PyTorch).
        """
        n, _, cols, _ = ops.shape(x_row)
        width = context + 1
        dtype = self.compute_dtype
        j0 = 0
        while j0 < cols:
            d = min(lookahead, cols - j0)
            starts, set_mask, set_value = lookahead_windows(d, context)
            windows = len(starts)
            index = (starts[:, None] + np.arange(width)[None, :]).reshape(-1)
            set_mask = ops.convert_to_tensor(set_mask[None, :, :, None])
            set_value = ops.convert_to_tensor(set_value[None, :, :, None])
            columns = starts[:, None] + np.arange(width)[None, :] + j0 - context
            valid = np.tile((columns >= 0).astype("float32")[:, None, :, None], (n, 1, 1, 1))

            row = ops.pad(self._normalize(x_row), [[0, 0], [0, 0], [context, 0], [0, 0]])
            span = ops.slice(row, (0, 0, j0, 0), (n, 1, d - 1 + width, 1))
            h = ops.reshape(ops.take(span, index, axis=2), (n, windows, width, 1))
            h = h * (1.0 - set_mask) + set_value * set_mask
            h = ops.reshape(ops.cast(h, dtype), (n * windows, 1, width, 1))
            window_links = []
            for link in links:
                channels = ops.shape(link)[3]
                part = ops.slice(link, (0, 0, j0, 0), (n, 1, d - 1 + width, channels))
                part = ops.take(part, index, axis=2)
                window_links.append(ops.reshape(part, (n * windows, 1, width, channels)))
            repeated = None if condition is None else ops.repeat(condition, windows, axis=0)
            logits = self._window_logits(h, window_links, repeated,
                                         ops.convert_to_tensor(valid, dtype))
            logits = ops.reshape(logits[:, 0], (n, windows))

            code = ops.zeros((n,), "int32")
            for m in range(d):
                logit = ops.take_along_axis(logits, (code + (2**m - 1))[:, None], axis=1)
                index_mask = np.zeros((1, 1, cols, 1), "float32")
                index_mask[0, 0, j0 + m, 0] = 1.0
                x_row = self._fill(x_row, keep_row, u_row, temperature, logit[:, 0],
                                   ops.convert_to_tensor(index_mask))
                code = code + ops.cast(x_row[:, 0, j0 + m, 0], "int32") * (2**m)
            j0 += d
        return x_row

    def _sample_loop(self, x, keep, u, condition, temperature, lookahead=1):
        """The fast loop of `AutoregressiveSampler` (run compiled).

        Gated: the row/column window loop `_sample_rows`; plain: the whole
        network per sub-pixel (`sample_full`).
        """
        if self.gated:
            return self._sample_rows(x, keep, u, condition, temperature, lookahead)
        return self.sample_full(x, keep, u, condition, temperature)

    def _eager_sampler_options(self):
        # eager (PyTorch): binary one-channel images are sampled LOOKAHEAD
        # pixels per network call (see `_sample_row_lookahead`)
        binary = self.distribution == "bernoulli" and self.channels == 1
        return {"lookahead": LOOKAHEAD if binary and self.gated else 1}
