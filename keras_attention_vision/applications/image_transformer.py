"""Image Transformer (Parmar et al., 2018): local self-attention decoder, fast sampling."""

import math

import keras
import numpy as np
from keras import ops

from keras_attention_vision.api_export import kav_export
from keras_attention_vision.layers import attention_core
from keras_attention_vision.layers.local_self_attention import (
    LocalSelfAttention1D,
    LocalSelfAttention2D,
    generation_order,
)
from keras_attention_vision.layers.positional_encoding import (
    PositionalEncoding2D,
    sinusoids,
)
from keras_attention_vision.layers.validation import (
    check_bool,
    check_choice,
    check_int_tuple,
    check_non_negative_int,
    check_number,
    check_positive_int,
)
from keras_attention_vision.metrics import BitsPerDim
from keras_attention_vision.presets import (
    check_weights_argument,
    load_application_weights,
    preset_arguments,
)
from keras_attention_vision.sampling import AutoregressiveImageModel

CATEGORIES = 256
ATTENTIONS = ("1d", "2d")
LOW_RESOLUTION_POSITIONS = ("aligned", "grid")


def _check_image_shape(name, shape):
    shape = tuple(shape) if isinstance(shape, (list, tuple)) else shape
    if not isinstance(shape, tuple) or len(shape) != 3 or not all(
        isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape
    ):
        raise ValueError(f"`{name}` must be (rows, cols, channels) of positive ints. "
                         f"Received: {name}={shape!r}")
    return shape


def _indices(*values):
    """An int32 vector of scalars, Python ints and tensors mixed."""
    return ops.stack([ops.cast(v, "int32") for v in values])


@kav_export("keras_attention_vision.applications.ImageTransformerLayer")
class ImageTransformerLayer(keras.layers.Layer):
    """What follows the self-attention in a layer of the Image Transformer.

    Section 3.3 of the paper (post-norm residuals, dropout on each branch):
    `h = LayerNorm(h + Dropout(attended))`; with an encoder output `e`,
    `h = LayerNorm(h + Dropout(MultiHeadAttention(h, e)))`; then
    `h = LayerNorm(h + Dropout(W2 relu(W1 h)))`. Every position is computed
    on its own (the attention is computed by the caller), so the fast sampler
    runs it on one position.

    Args:
        hidden_size: channels `d` of `h`.
        filter_size: hidden units of the feed-forward network.
        num_heads: heads of the cross-attention (when `cross_attention`).
        dropout: residual dropout rate.
        cross_attention: whether the layer attends to an encoder output.
        **kwargs: base layer arguments.

    Call arguments:
        h: `(batch, ..., d)` channels-last positions.
        attended: the self-attention output, the shape of `h`.
        encoded: `None`, or the encoder output `(batch, L, d)`.
        cross_mask: `None`, or booleans `(1 or batch, positions of h, L)`:
            where the cross-attention may look.
        training: enables the dropout.

    Returns:
        The new `h`, the shape of `h`.
    """

    def __init__(self, hidden_size, filter_size, num_heads, dropout=0.0,
                 cross_attention=False, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)
        self.filter_size = check_positive_int("filter_size", filter_size)
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.dropout = check_number("dropout", dropout, minimum=0.0)
        self.cross_attention = check_bool("cross_attention", cross_attention)
        d, policy = hidden_size, self.dtype_policy
        self.attention_norm = keras.layers.LayerNormalization(name="attention_norm",
                                                              dtype=policy)
        if cross_attention:
            self.cross = keras.layers.MultiHeadAttention(num_heads, d // num_heads,
                                                         name="cross_attention",
                                                         dtype=policy)
            self.cross_norm = keras.layers.LayerNormalization(name="cross_norm",
                                                              dtype=policy)
        self.ffn_hidden = keras.layers.Dense(filter_size, activation="relu",
                                             name="ffn_hidden", dtype=policy)
        self.ffn_output = keras.layers.Dense(d, name="ffn_output", dtype=policy)
        self.ffn_norm = keras.layers.LayerNormalization(name="ffn_norm", dtype=policy)
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=policy)

    def build(self, input_shape):
        d = self.hidden_size
        self.attention_norm.build((None, d))
        self.ffn_hidden.build((None, d))
        self.ffn_output.build((None, self.filter_size))
        self.ffn_norm.build((None, d))
        if self.cross_attention:
            self.cross.build((None, None, d), (None, None, d))
            self.cross_norm.build((None, d))
        self.built = True

    def get_config(self):
        config = super().get_config()
        config.update({"hidden_size": self.hidden_size, "filter_size": self.filter_size,
                       "num_heads": self.num_heads, "dropout": self.dropout,
                       "cross_attention": self.cross_attention})
        return config

    def call(self, h, attended, encoded=None, training=None, cross_mask=None):
        h = self.attention_norm(h + self.dropout_layer(attended, training=training))
        if self.cross_attention:
            shape = ops.shape(h)
            flat = ops.reshape(h, (shape[0], -1, self.hidden_size))
            crossed = ops.reshape(self.cross(flat, encoded, attention_mask=cross_mask,
                                             training=training), shape)
            h = self.cross_norm(h + self.dropout_layer(crossed, training=training))
        ff = self.ffn_output(self.ffn_hidden(h))
        return self.ffn_norm(h + self.dropout_layer(ff, training=training))

    def inference_step(self, h, attended, encoded=None, cross_mask=None):
        """`call` at inference, running the sub-layers' `call` directly.

        Skips `Layer.__call__` (its bookkeeping costs more than the tiny
        tensors of one sampling step on eager PyTorch); no dropout. Needs a
        built layer whose compute dtype is its variable dtype.
        """
        h = self.attention_norm.call(h + attended)
        if self.cross_attention:
            shape = ops.shape(h)
            flat = ops.reshape(h, (shape[0], -1, self.hidden_size))
            crossed = ops.reshape(self.cross(flat, encoded, attention_mask=cross_mask,
                                             training=False), shape)
            h = self.cross_norm.call(h + crossed)
        ff = self.ffn_output.call(self.ffn_hidden.call(h))
        return self.ffn_norm.call(h + ff)

    def compute_output_shape(self, input_shape, *args, **kwargs):
        return input_shape


@kav_export("keras_attention_vision.applications.ImageTransformer")
class ImageTransformer(AutoregressiveImageModel, keras.Model):
    """Image Transformer: a decoder of local self-attention layers over sub-pixels.

    From "Image Transformer" (Parmar et al., 2018). `p(x) = prod_t p(x_{o(t)} |
    x_{o(<t)})` over the sub-pixels in the generation order `o` of the local
    attention, each a 256-way categorical (section 3.1, "categorical"
    output). **Channels**: every sub-pixel is its own position, as in the
    paper: an `(rows, cols, C)` image is the `(rows, cols * C)` grid of its
    sub-pixels (R, G, B side by side), and the value of sub-pixel `c` is
    embedded by its own table of 256 rows (`Embedding(256 * C, d)`). The
    decoder input at a position is the embedding of the sub-pixel *before*
    it in the generation order (zeros at the first), plus the 2D positional
    encoding of the grid (`PositionalEncoding2D`, sinusoids or learned), plus
    a learned class embedding when `num_classes` is set (section 4).

    `attention="2d"`: `num_layers` causal `LocalSelfAttention2D` layers with
    query blocks of `query_shape` and a `memory_flange` on the sub-pixel grid;
    the generation order is the layer's (`generation_order`: query blocks in
    raster order, raster order inside a block), which is *not* plain raster
    order unless the blocks are one row. `attention="1d"`: the grid flattened
    in raster order, causal `LocalSelfAttention1D` layers with blocks of
    `query_length` attending to the `memory_length` positions before them;
    raster order. Each layer is the paper's (section 3.3): attention, then
    `ImageTransformerLayer` (residual + layer norm, feed-forward, dropout).
    `sampling_order()` returns the order; the model is causal in it.

    **Super-resolution** (section 4.2, "conditional image generation"): with
    `low_resolution_shape`, an encoder of `encoder_layers` non-causal
    self-attention layers runs over the sub-pixels of a low-resolution image
    (its own embeddings and positional encoding; the attention block is the
    whole low-resolution grid), and every decoder layer attends to its output
    (cross-attention after the self-attention, as in the paper's
    encoder-decoder). The inputs are then `[images, low_resolution]`;
    `super_resolve(low_resolution)` samples high-resolution images. The
    encoder's positions (`low_resolution_positions`): `"aligned"` (default)
    encodes each low-resolution pixel at the centre of the high-resolution
    area it covers, in the decoder's coordinates (low-resolution row `i` of
    a `f`-times smaller image is row `f * (i + 1/2) - 1/2`; sub-pixel columns
    likewise), with the decoder's sinusoids (or its learned row and column
    embeddings, at the nearest row and column), so that a decoder query can
    find the low-resolution pixel under it by position; `"grid"` encodes
    the low-resolution grid's own row and column indices (0, 1, 2, ...), on
    a scale unrelated to the decoder's. The paper does not say which it used.
    `cross_attention_radius=r` (not in the paper) further restricts each
    decoder position to the `(2r + 1) x (2r + 1)` low-resolution pixels
    around the one it lies in, and `low_resolution_values=True` (not in the
    paper) adds to each low-resolution embedding a linear map of its value:
    the block means of a downscaled image take many grey levels, each too
    rare for its own embedding row to learn quickly what it means.

    `fit(images)` trains it on images alone (NLL in nats per dimension,
    reduced as Keras's losses reduce, `sample_weight` included; bits/dim
    reported as `bits_per_dim`), as `PixelCNN` does (shared
    `AutoregressiveImageModel`). `sample`, `complete` and `super_resolve`
    fill sub-pixels in the generation order with a fast sampler: keys and
    values of every layer are cached, and each step computes one position per
    layer, attending to the cached memory window of its query block
    (compiled with `tf.function` + XLA on TensorFlow and `jax.jit` on JAX;
    eager under `torch.no_grad` and one intra-op thread on PyTorch, whose
    parallel kernels only slow down the tiny tensors of a step). `naive=True`
    runs the whole
    model per sub-pixel instead; both give the same samples for a seed.

    The model is channels-last inside whatever
    `keras.config.image_data_format()` (inner layers pinned): images are
    `(batch, rows, cols, channels)` with integer values in [0, 255].

    Args:
        input_shape: `(rows, cols, channels)`, channels last (1 grey, 3 RGB).
        attention: `"2d"` (local 2D blocks) or `"1d"` (raster-order blocks).
        num_layers: decoder layers.
        hidden_size: channels `d` of every position (a multiple of 4 and of
            `num_heads`).
        num_heads: attention heads (`key_dim = hidden_size // num_heads`).
        filter_size: hidden units of the feed-forward networks (default
            `2 * hidden_size`).
        query_shape: `(qh, qw)` query block of the 2D attention, on the
            `(rows, cols * channels)` sub-pixel grid.
        memory_flange: `(fh, fw)` rows above and columns left/right of a block
            that it also attends to (2D).
        query_length: query block of the 1D attention.
        memory_length: positions before a block that it also attends to (1D).
        dropout: residual dropout rate.
        num_classes: `None`, or the number of classes to condition on (the
            inputs are then `[images, labels]`, last).
        low_resolution_shape: `None`, or the `(rows, cols, channels)` of the
            low-resolution images of super-resolution.
        encoder_layers: layers of the super-resolution encoder.
        low_resolution_positions: `"aligned"` or `"grid"`, the positional
            encoding of the super-resolution encoder (see above).
        cross_attention_radius: `None` (every decoder position attends to
            every low-resolution sub-pixel, as in the paper), or `r`: only to
            those within `r` low-resolution rows and columns of the pixel it
            lies in (a boolean mask on the cross-attention; not in the paper).
        low_resolution_values: also add a learned linear map of each
            low-resolution value (scaled to [-1, 1]) to its embedding, so that
            nearby grey levels start out close (not in the paper).
        learned_positions: learned row/column embeddings instead of sinusoids.
        weights: `None`, a preset name (the arguments not passed are the
            preset's, those passed must match it), or the
            path of a weights file (`.weights.h5`) saved
            from a model of the same configuration.
        name: model name.

    Call arguments:
        inputs: images `(batch, rows, cols, channels)`, or a list `[images,
            low_resolution, labels]` with the items the model takes.
        training: enables dropout.

    Returns:
        Logits `(batch, rows, cols, channels, 256)` (float32).

    Example:

    ```python
    model = ImageTransformer(input_shape=(28, 28, 1), attention="2d",
                             query_shape=(7, 7), memory_flange=(7, 7))
    model.compile(optimizer="adam")
    model.fit(images, epochs=10, batch_size=32)  # uint8 values, 0 ... 255
    samples = model.sample(4, seed=0)
    ```
    """

    # PyTorch eager sampler: every step computes one position per image
    eager_sampler_threads = 1

    @preset_arguments("ImageTransformer")
    def __init__(self, input_shape=(28, 28, 1), attention="2d", num_layers=4,
                 hidden_size=64, num_heads=4, filter_size=None, query_shape=(8, 8),
                 memory_flange=(8, 8), query_length=64, memory_length=128, dropout=0.0,
                 num_classes=None, low_resolution_shape=None, encoder_layers=2,
                 learned_positions=False, low_resolution_positions="aligned",
                 cross_attention_radius=None, low_resolution_values=False,
                 weights=None, name="image_transformer", **kwargs):
        check_weights_argument(weights, "ImageTransformer")
        super().__init__(name=name, **kwargs)
        input_shape = _check_image_shape("input_shape", input_shape)
        check_choice("attention", attention, ATTENTIONS)
        check_positive_int("num_layers", num_layers)
        check_positive_int("hidden_size", hidden_size)
        check_positive_int("num_heads", num_heads)
        check_positive_int("filter_size", filter_size, allow_none=True)
        query_shape = check_int_tuple("query_shape", query_shape, 2, minimum=1)
        memory_flange = check_int_tuple("memory_flange", memory_flange, 2, minimum=0)
        check_positive_int("query_length", query_length)
        check_non_negative_int("memory_length", memory_length)
        check_number("dropout", dropout, minimum=0.0)
        if dropout >= 1.0:
            raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")
        check_positive_int("num_classes", num_classes, allow_none=True)
        if low_resolution_shape is not None:
            low_resolution_shape = _check_image_shape("low_resolution_shape",
                                                      low_resolution_shape)
            if low_resolution_shape[-1] != input_shape[-1]:
                raise ValueError(
                    "`low_resolution_shape` must have the channels of `input_shape`. "
                    f"Received: low_resolution_shape={low_resolution_shape}, "
                    f"input_shape={input_shape}")
        check_positive_int("encoder_layers", encoder_layers)
        check_bool("learned_positions", learned_positions)
        check_choice("low_resolution_positions", low_resolution_positions,
                     LOW_RESOLUTION_POSITIONS)
        if cross_attention_radius is not None:
            check_non_negative_int("cross_attention_radius", cross_attention_radius)
        check_bool("low_resolution_values", low_resolution_values)
        if hidden_size % 4 or hidden_size % num_heads:
            raise ValueError(
                "`hidden_size` must be a multiple of 4 (positional encoding: half the "
                "row, half the column, sine and cosine) and of `num_heads`. Received: "
                f"hidden_size={hidden_size}, num_heads={num_heads}")
        rows, cols, channels = input_shape
        self.image_shape = input_shape
        self.attention = attention
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.filter_size = filter_size
        self.query_shape = query_shape
        self.memory_flange = memory_flange
        self.query_length = query_length
        self.memory_length = memory_length
        self.dropout = dropout
        self.num_classes = num_classes
        self.low_resolution_shape = low_resolution_shape
        self.encoder_layers = encoder_layers
        self.learned_positions = learned_positions
        self.low_resolution_positions = low_resolution_positions
        self.cross_attention_radius = cross_attention_radius
        self.low_resolution_values = low_resolution_values
        self.channels = channels
        self.categories = CATEGORIES
        self.distribution = "categorical"
        self.num_dims = math.prod(input_shape)
        # the sub-pixel grid the attention runs on
        self.grid = (rows, cols * channels) if attention == "2d" else \
            (1, self.num_dims)

        d, policy, key_dim = hidden_size, self.dtype_policy, hidden_size // num_heads
        ffn = filter_size or 2 * hidden_size
        self.embedding = keras.layers.Embedding(CATEGORIES * channels, d,
                                                name="embedding", dtype=policy)
        self.positions = PositionalEncoding2D(learned=learned_positions,
                                              data_format="channels_last",
                                              name="positions", dtype=policy)
        if num_classes:
            self.class_embedding = keras.layers.Dense(d, use_bias=False,
                                                      name="class_embedding",
                                                      dtype=policy)
        cross = low_resolution_shape is not None
        self.attentions, self.tails = [], []
        for i in range(num_layers):
            if attention == "2d":
                layer = LocalSelfAttention2D(num_heads, key_dim, query_shape=query_shape,
                                             memory_flange=memory_flange, causal=True,
                                             data_format="channels_last",
                                             name=f"attention_{i}", dtype=policy)
            else:
                layer = LocalSelfAttention1D(num_heads, key_dim,
                                             query_length=query_length,
                                             memory_length=memory_length, causal=True,
                                             name=f"attention_{i}", dtype=policy)
            self.attentions.append(layer)
            self.tails.append(ImageTransformerLayer(d, ffn, num_heads, dropout,
                                                    cross_attention=cross,
                                                    name=f"layer_{i}", dtype=policy))
        if cross:
            low_rows, low_cols, _ = low_resolution_shape
            self.low_grid = (low_rows, low_cols * channels)
            self.low_embedding = keras.layers.Embedding(CATEGORIES * channels, d,
                                                        name="low_embedding",
                                                        dtype=policy)
            if low_resolution_values:
                self.low_values = keras.layers.Dense(d, name="low_values", dtype=policy)
                self.low_values.build((None, 1))
            if low_resolution_positions == "grid":  # "aligned" reads the decoder's
                self.low_positions = PositionalEncoding2D(
                    learned=learned_positions, data_format="channels_last",
                    name="low_positions", dtype=policy)
            self.encoder_attentions = [
                LocalSelfAttention2D(num_heads, key_dim, query_shape=self.low_grid,
                                     memory_flange=(0, 0), data_format="channels_last",
                                     name=f"encoder_attention_{i}", dtype=policy)
                for i in range(encoder_layers)]
            self.encoder_tails = [
                ImageTransformerLayer(d, ffn, num_heads, dropout,
                                      name=f"encoder_layer_{i}", dtype=policy)
                for i in range(encoder_layers)]
            # the aligned encoder positions read the decoder's (learned) ones
            self.positions.build((None,) + self.grid + (d,))
        self.head = keras.layers.Dense(CATEGORIES, name="head", dtype="float32")
        self.bits_per_dim_metric = BitsPerDim("categorical", name="bits_per_dim")
        self._samplers = {}
        order = self.sampling_order()
        # previous[p]: 1 + the position generated before p (0: none, zeros)
        self._previous = np.zeros(self.num_dims, "int32")
        self._previous[order[1:]] = order[:-1] + 1
        self(self._dummy_inputs())
        load_application_weights(self, weights, "ImageTransformer", self.get_config())

    def get_config(self):
        config = super().get_config()
        config.update({
            "input_shape": self.image_shape,
            "attention": self.attention,
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "num_heads": self.num_heads,
            "filter_size": self.filter_size,
            "query_shape": self.query_shape,
            "memory_flange": self.memory_flange,
            "query_length": self.query_length,
            "memory_length": self.memory_length,
            "dropout": self.dropout,
            "num_classes": self.num_classes,
            "low_resolution_shape": self.low_resolution_shape,
            "encoder_layers": self.encoder_layers,
            "learned_positions": self.learned_positions,
            "low_resolution_positions": self.low_resolution_positions,
            "cross_attention_radius": self.cross_attention_radius,
            "low_resolution_values": self.low_resolution_values,
        })
        return config

    # ----------------------------------------------------------------- inputs

    def sampling_order(self):
        """Flat sub-pixel indices `(row * cols + col) * C + c` in generation order."""
        if self.attention == "1d":
            return np.arange(self.num_dims)
        return generation_order(*self.grid, self.query_shape)

    def _dummy_inputs(self):
        inputs = [np.zeros((1,) + self.image_shape, "float32")]
        if self.low_resolution_shape is not None:
            inputs.append(np.zeros((1,) + self.low_resolution_shape, "float32"))
        if self.num_classes:
            inputs.append(np.zeros((1,), "int32"))
        return inputs if len(inputs) > 1 else inputs[0]

    def _split_inputs(self, inputs):
        """`(images, low_resolution or None, labels or None)` from the inputs."""
        wanted = 1 + (self.low_resolution_shape is not None) + bool(self.num_classes)
        if wanted == 1:
            if isinstance(inputs, (list, tuple)):
                inputs = inputs[0]
            return inputs, None, None
        if not isinstance(inputs, (list, tuple)) or len(inputs) != wanted:
            names = ["images"] + (["low_resolution"] if self.low_resolution_shape
                                  else []) + (["labels"] if self.num_classes else [])
            raise ValueError(
                f"ImageTransformer '{self.name}' takes [{', '.join(names)}]. Received: "
                f"inputs of type {type(inputs).__name__}"
                + (f" with {len(inputs)} items" if isinstance(inputs, (list, tuple))
                   else ""))
        low = inputs[1] if self.low_resolution_shape is not None else None
        labels = inputs[-1] if self.num_classes else None
        return inputs[0], low, labels

    def _one_hot(self, labels):
        if labels is None:
            return None
        labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
        return ops.one_hot(labels, self.num_classes, dtype=self.compute_dtype)

    def _sampling_condition(self, n, class_labels=None, low_resolution=None,
                            **conditions):
        if conditions:
            raise ValueError("ImageTransformer takes `class_labels` and "
                             f"`low_resolution`. Received: {sorted(conditions)}")
        low = None
        if self.low_resolution_shape is not None:
            if low_resolution is None:
                raise ValueError("This ImageTransformer does super-resolution: pass "
                                 "`low_resolution`. Received: low_resolution=None")
            low = np.asarray(low_resolution, "float32")
            if low.shape != (n,) + self.low_resolution_shape:
                raise ValueError(
                    f"`low_resolution` must have shape ({n},) + "
                    f"{self.low_resolution_shape}. Received: "
                    f"low_resolution.shape={low.shape}")
            low = ops.convert_to_tensor(low)
        elif low_resolution is not None:
            raise ValueError("This ImageTransformer takes no `low_resolution` (build it "
                             "with `low_resolution_shape`). Received: low_resolution "
                             f"with shape {np.shape(low_resolution)}")
        return (self._class_condition(n, class_labels), low)

    def _check_images(self, images, shape, name):
        got = tuple(images.shape)
        if len(got) != 4 or any(d is not None and d != e
                                for d, e in zip(got[1:], shape)):
            raise ValueError(
                f"ImageTransformer '{self.name}' expects {name} of shape (batch,) + "
                f"{shape} (channels last, whatever the global image data format). "
                f"Received: {name}.shape={got}")

    def _tokens(self, images, channels):
        """`(n, rows, cols, C)` values -> `(n, rows * cols * C)` embedding ids."""
        values = ops.cast(ops.round(ops.cast(images, "float32")), "int32")
        values = values + CATEGORIES * ops.arange(channels, dtype="int32")
        return ops.reshape(values, (ops.shape(values)[0], -1))

    # ---------------------------------------------------------------- network

    def _encode(self, low):
        """Encoder output `(n, h * w * C, d)` of low-resolution images."""
        self._check_images(low, self.low_resolution_shape, "low_resolution")
        h = self.low_embedding(self._tokens(low, self.channels))
        if self.low_resolution_values:
            values = ops.reshape(ops.cast(low, self.compute_dtype), (-1, 1))
            values = self.low_values(values / 127.5 - 1.0)
            h = h + ops.reshape(values, ops.shape(h))
        h = ops.reshape(h, (-1,) + self.low_grid + (self.hidden_size,))
        if self.low_resolution_positions == "aligned":
            h = h + ops.cast(self._aligned_low_positions(), h.dtype)[None]
        else:
            h = self.low_positions(h)
        for attention, tail in zip(self.encoder_attentions, self.encoder_tails):
            h = tail(h, attention(h), None)
        return ops.reshape(h, (ops.shape(h)[0], -1, self.hidden_size))

    def _low_resolution_coordinates(self):
        """Decoder-grid coordinates `(rows, cols)` of every low-resolution sub-pixel.

        Two float32 arrays of the low-resolution grid's shape `(low rows, low
        cols * C)`: the centre of the high-resolution area each low-resolution
        pixel covers, row `i` of an `f`-times smaller image at `f * (i + 1/2) -
        1/2` and sub-pixel column `j * C + c` at `(f * (j + 1/2) - 1/2) * C + c`.
        With `attention="1d"` the decoder grid is one row of sub-pixels in
        raster order: row 0, and the raster index of the pixel nearest the centre.
        """
        rows, cols, channels = self.image_shape
        low_rows, low_cols, _ = self.low_resolution_shape
        row = rows / low_rows * (np.arange(low_rows) + 0.5) - 0.5
        j, c = np.divmod(np.arange(low_cols * channels), channels)
        col = cols / low_cols * (j + 0.5) - 0.5
        row, col = np.meshgrid(row, col, indexing="ij")
        if self.attention == "1d":
            col = (np.floor(row + 0.5) * cols + np.floor(col + 0.5)) * channels + c
            row = np.zeros_like(row)
        else:
            col = col * channels + c
        return row.astype("float32"), col.astype("float32")

    def _cross_mask(self):
        """`None`, or booleans `(1, D, L)`: decoder sub-pixel -> visible low ones.

        Decoder sub-pixels in raster order of `(rows, cols, C)`, low-resolution
        ones likewise; visible: within `cross_attention_radius` low-resolution
        rows and columns of the low-resolution pixel under the decoder's.
        """
        if self.low_resolution_shape is None or self.cross_attention_radius is None:
            return None
        rows, cols, _ = self.image_shape
        low_rows, low_cols, _ = self.low_resolution_shape
        r, c, _ = np.indices(self.image_shape).reshape(3, -1)
        i, j, _ = np.indices(self.low_resolution_shape).reshape(3, -1)
        under_i, under_j = r * low_rows // rows, c * low_cols // cols
        radius = self.cross_attention_radius
        mask = ((np.abs(i[None] - under_i[:, None]) <= radius)
                & (np.abs(j[None] - under_j[:, None]) <= radius))
        return mask[None]

    def _aligned_low_positions(self):
        """`(low rows, low cols * C, d)`: the decoder's encoding at aligned coordinates."""
        row, col = (a.reshape(-1) for a in self._low_resolution_coordinates())
        half = self.hidden_size // 2
        if self.learned_positions:
            rows, cols = self.grid
            row = np.clip(np.round(row), 0, rows - 1).astype("int32")
            col = np.clip(np.round(col), 0, cols - 1).astype("int32")
            row_code = ops.take(self.positions.row_embeddings, row, axis=0)
            col_code = ops.take(self.positions.column_embeddings, col, axis=0)
        else:
            wavelength = self.positions.max_wavelength
            row_code = sinusoids(row, half, wavelength)
            col_code = sinusoids(col, half, wavelength)
        return ops.reshape(ops.concatenate([row_code, col_code], axis=-1),
                           self.low_grid + (self.hidden_size,))

    def _decode(self, embedded, condition, training=None):
        """Logits from the embedded sub-pixels `(n, D, d)` (unshifted).

        Shifts them by one step of the generation order, adds positions and
        the class, runs the decoder and the head.
        """
        onehot, low = condition if condition is not None else (None, None)
        encoded = None if low is None else self._encode(low)
        n, d = ops.shape(embedded)[0], self.hidden_size
        padded = ops.concatenate([ops.zeros((n, 1, d), embedded.dtype), embedded], axis=1)
        h = ops.take(padded, ops.convert_to_tensor(self._previous), axis=1)
        h = self.positions(ops.reshape(h, (n,) + self.grid + (d,)))
        if onehot is not None:
            h = h + self.class_embedding(onehot)[:, None, None, :]
        cross_mask = self._cross_mask()
        if cross_mask is not None:
            cross_mask = ops.convert_to_tensor(cross_mask)
        for attention, tail in zip(self.attentions, self.tails):
            if self.attention == "1d":
                attended = ops.reshape(
                    attention(ops.reshape(h, (n, self.num_dims, d)), training=training),
                    ops.shape(h))
            else:
                attended = attention(h, training=training)
            h = tail(h, attended, encoded, training=training, cross_mask=cross_mask)
        logits = self.head(h)
        return ops.reshape(logits, (n,) + self.image_shape + (CATEGORIES,))

    def _logits(self, images, condition, training=None):
        self._check_images(images, self.image_shape, "images")
        return self._decode(self.embedding(self._tokens(images, self.channels)),
                            condition, training)

    def call(self, inputs, training=None):
        images, low, labels = self._split_inputs(inputs)
        return self._logits(images, (self._one_hot(labels), low), training)

    # --------------------------------------------------------------- sampling

    def _geometry(self):
        """Query block, flange, memory window and padded cache size on the grid."""
        if self.attention == "2d":
            query, flange = self.query_shape, self.memory_flange
        else:
            query, flange = (1, self.query_length), (0, self.memory_length)
        qh, qw = query
        mh, mw = self.attentions[0].memory_extent
        rows, cols = self.grid
        # window of block (bi, bj): padded rows bi*qh ... + mh, cols bj*qw ... + mw
        padded = (-(-rows // qh) - 1) * qh + mh, (-(-cols // qw) - 1) * qw + mw
        return query, flange, (mh, mw), padded

    def _sample_loop(self, x, keep, u, condition, temperature):
        """Fast sampler: cached keys/values, one position per layer per step.

        Step `t` fills sub-pixel `p = o(t)`. Its decoder input is the
        embedding of `x[o(t - 1)]` plus its position (and class); in every
        layer, its key and value are written into the layer's cache (a padded
        copy of the sub-pixel grid), its query attends to the cached memory
        window of its query block, masked to the real positions generated no
        later than `p` (the causal mask of the layer), and the rest of the
        layer runs on that one position. Positions generated before `p` were
        computed with the same inputs, so their cached keys and values are
        those of the whole model: the logits are the whole model's.
        """
        onehot, low = condition
        encoded = None if low is None else self._encode(low)
        n = ops.shape(x)[0]
        d, heads = self.hidden_size, self.num_heads
        key_dim = d // heads
        rows, cols = self.grid
        (qh, qw), (fh, fw), (mh, mw), (prow, pcol) = self._geometry()
        order = np.asarray(self.sampling_order(), "int32")
        rank = np.full((prow, pcol), self.num_dims, "int32")  # padding: never visible
        rank[fh:fh + rows, fw:fw + cols] = np.argsort(order).reshape(rows, cols)
        rank = ops.convert_to_tensor(rank)
        previous = ops.convert_to_tensor(np.concatenate([[0], order[:-1]]).astype("int32"))
        order_t = ops.convert_to_tensor(order)
        flat_ids = ops.arange(self.num_dims, dtype="int32")
        positions = ops.reshape(
            self.positions(ops.zeros((1,) + self.grid + (d,), self.compute_dtype)),
            (self.num_dims, d))
        classes = None if onehot is None else self.class_embedding(onehot)
        dtype = self.compute_dtype
        zeros = ops.zeros((n, prow, pcol, heads, key_dim), dtype)
        cache = ([zeros] * self.num_layers, [zeros] * self.num_layers)
        # Eager PyTorch: call the sub-layers' `call` directly; `Layer.__call__`
        # costs more than the step's tiny tensors (not under mixed precision,
        # where `__call__` casts the variables).
        direct = (keras.backend.backend() == "torch"
                  and self.compute_dtype == self.variable_dtype)

        def run(layer):
            return layer.call if direct else layer

        cross_masks = self._cross_mask()
        if cross_masks is not None:
            cross_masks = ops.convert_to_tensor(cross_masks[0])

        def tail_step(tail, h, attended, p):
            mask = None if cross_masks is None else \
                ops.reshape(ops.take(cross_masks, p, axis=0), (1, 1, -1))
            if direct:
                return tail.inference_step(h, attended, encoded, cross_mask=mask)
            return tail(h, attended, encoded, training=False, cross_mask=mask)

        def body(t, state):
            x, keys, values = state
            p = ops.take(order_t, t)
            q = ops.take(previous, t)
            value = ops.take(ops.reshape(x, (n, self.num_dims)), q, axis=1)
            token = ops.cast(value, "int32") + CATEGORIES * (q % self.channels)
            first = ops.cast(ops.greater(t, 0), dtype)
            h = run(self.embedding)(token) * first + ops.take(positions, p, axis=0)[None]
            if classes is not None:
                h = h + classes
            h = ops.reshape(h, (n, 1, 1, d))
            r, c = p // cols, p % cols
            at = _indices(0, r + fh, c + fw, 0, 0)
            start = _indices(0, (r // qh) * qh, (c // qw) * qw, 0, 0)
            visible = ops.slice(rank, start[1:3], (mh, mw)) <= t
            visible = ops.reshape(visible, (1, 1, mh * mw))
            new_keys, new_values = [], []
            for i, (layer, tail) in enumerate(zip(self.attentions, self.tails)):
                k = ops.slice_update(keys[i], at, run(layer.key_dense)(h))
                v = ops.slice_update(values[i], at, run(layer.value_dense)(h))
                new_keys.append(k)
                new_values.append(v)

                def window(cache):
                    w = ops.slice(cache, start, (n, mh, mw, heads, key_dim))
                    w = ops.transpose(w, (0, 3, 1, 2, 4))
                    return ops.reshape(w, (n * heads, mh * mw, key_dim))

                query = ops.reshape(run(layer.query_dense)(h), (n * heads, 1, key_dim))
                out, _ = attention_core.attend(query, window(k), window(v),
                                               scale=float(key_dim) ** -0.5,
                                               mask=visible)
                out = ops.reshape(ops.cast(out, dtype), (n, 1, 1, heads, key_dim))
                h = tail_step(tail, h, run(layer.output_dense)(out), p)
            logit = run(self.head)(h)[:, 0, 0]
            index_mask = ops.reshape(ops.cast(ops.equal(flat_ids, p), "float32"),
                                     (1,) + self.image_shape)
            x = self._fill(x, keep, u, temperature, logit, index_mask)
            return x, new_keys, new_values

        return ops.fori_loop(0, self.num_dims, body, (x,) + cache)[0]

    def super_resolve(self, low_resolution, seed=None, class_labels=None,
                      temperature=1.0, naive=False):
        """Samples high-resolution images given low-resolution ones (section 4.2).

        Args:
            low_resolution: `(n,) + low_resolution_shape` images, values in
                [0, 255].
            seed, class_labels, temperature, naive: as in `sample`.

        Returns:
            A float32 NumPy array `(n,) + input_shape` of integer values.
        """
        if self.low_resolution_shape is None:
            raise ValueError("This ImageTransformer has no super-resolution encoder "
                             "(build it with `low_resolution_shape`). Received: "
                             "low_resolution_shape=None")
        low = np.asarray(low_resolution, "float32")
        return self.sample(len(low), seed=seed, class_labels=class_labels,
                           temperature=temperature, naive=naive, low_resolution=low)
