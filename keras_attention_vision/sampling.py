"""Autoregressive sampling shared by the image models (PixelCNN, Image Transformer, ...).

An autoregressive image model factorises `p(x) = prod_t p(x_{o(t)} | x_{o(<t)})`
over the sub-pixels of an image in some generation order `o`: PixelCNN's is
raster order (rows, columns, then channels), the Image Transformer's with 2D
local attention is block by block. `AutoregressiveSampler` is a mixin that
gives such a model ONE `sample`, ONE `complete`, the naive reference loop they
are checked against, and the compiled fast loop per backend. A model
implements this small interface:

- `image_shape`: `(rows, cols, channels)`, channels last.
- `categories`: `1` (one Bernoulli logit per sub-pixel, values in {0, 1}) or
  the number `K` of categories (values in `0 ... K - 1`).
- `_logits(images, condition)`: the logits of every sub-pixel given the whole
  image, `(n, rows, cols, channels)` (Bernoulli) or `(n, rows, cols, channels,
  K)`; causal in the generation order (the logits of sub-pixel `o(t)` read
  only `o(<t)`).
- `sampling_order()` (optional): the generation order as an int array of the
  flat indices `(row * cols + col) * channels + channel` of the sub-pixels;
  default: raster order.
- `_sampling_condition(n, class_labels, **conditions)` (optional): the
  `condition` passed to `_logits` (a tensor, a tuple of tensors or None);
  default: one-hot class labels when `num_classes` is set.
- `_sample_loop(x, keep, u, condition, temperature, **options)` (optional):
  the fast loop, run compiled; it must give the logits `_logits` gives. The
  default recomputes the whole network per sub-pixel (`sample_full`), in the
  generation order.
- `_eager_sampler_options()` (optional): keyword arguments of `_sample_loop`
  on eager backends (PyTorch).
- `eager_sampler_threads` (optional class attribute): `None` (default), or
  the number of intra-op threads PyTorch uses while the eager loop runs (set
  back afterwards). A loop whose every step computes a few tiny tensors (one
  position per image) gains nothing from parallel kernels and loses a lot to
  them on a busy machine: on 2 shared cores under load, one `torch.softmax`
  of a `(4, 1, 294)` tensor took 4.9-14.9 ms with 2 threads and 1.9 us with 1.

Every draw is an inverse-CDF draw from a uniform number that NumPy generates
from the seed beforehand, one per sub-pixel, so the naive and the fast loops
give the same samples for the same seed (up to float rounding at a CDF
boundary, which the tests do not meet).
"""


import keras
import numpy as np
from keras import ops

from keras_attention_vision.distribution import replica_scaled
from keras_attention_vision.layers.validation import check_positive_int
from keras_attention_vision.losses import InputsOnlyFitMixin, weighted_mean
from keras_attention_vision.metrics import LN2, image_nll


class AutoregressiveSampler:
    """Mixin: `sample`, `complete` and the samplers of an autoregressive image model.

    See the module docstring for the interface the model implements. The
    mixin keeps one compiled sampler per backend in `self._samplers` (a dict
    the model creates in `__init__`).
    """

    # ------------------------------------------------------------- interface

    def sampling_order(self):
        """Generation order: flat sub-pixel indices `(row * cols + col) * C + c`."""
        return np.arange(int(np.prod(self.image_shape)))

    def _sampling_condition(self, n, class_labels=None, **conditions):
        """The `condition` of `_logits` for `n` images (default: class labels)."""
        if conditions:
            raise ValueError(f"{type(self).__name__} takes no conditioning other than "
                             f"`class_labels`. Received: {sorted(conditions)}")
        return self._class_condition(n, class_labels)

    eager_sampler_threads = None

    def _eager_sampler_options(self):
        return {}

    def _sample_loop(self, x, keep, u, condition, temperature):
        return self.sample_full(x, keep, u, condition, temperature)

    # --------------------------------------------------------------- helpers

    def _class_condition(self, n, class_labels):
        """One-hot labels `(n, num_classes)`, or None for an unconditional model."""
        if not getattr(self, "num_classes", None):
            return None
        if class_labels is None:
            raise ValueError(
                f"This {type(self).__name__} is class-conditional: pass `class_labels`. "
                "Received: class_labels=None"
            )
        labels = np.asarray(class_labels, "int32")
        if labels.ndim > 1 or labels.size not in (1, n):
            raise ValueError(
                f"`class_labels` must be one int or {n} ints, one per "
                f"image. Received: class_labels with shape {labels.shape}"
            )
        bad = labels[(labels < 0) | (labels >= self.num_classes)]
        if bad.size:
            # one_hot would make them all-zero rows: an image of no class
            raise ValueError(
                f"`class_labels` must be in [0, {self.num_classes}) (num_classes="
                f"{self.num_classes}). Received: class_labels={class_labels!r} "
                f"(out of range: {sorted(set(bad.tolist()))})"
            )
        labels = np.broadcast_to(labels, (n,))
        return self._one_hot(ops.convert_to_tensor(labels))

    def _draw(self, logit, u, temperature):
        """Inverse-CDF sample of one sub-pixel from its logits and uniform `u`."""
        logit = ops.cast(logit, "float32") / temperature
        if self.categories == 1:
            return ops.cast(u < ops.sigmoid(logit), "float32")
        cdf = ops.cumsum(ops.softmax(logit, axis=-1), axis=-1)
        count = ops.sum(ops.cast(cdf < u[:, None], "float32"), axis=-1)
        return ops.minimum(count, float(self.categories - 1))

    def _fill(self, x, keep, u, temperature, logit, index_mask):
        """Writes the sample of `logit` at `index_mask` where `keep` is False.

        `x`, `keep`, `u` are `(n, rows, cols, C)`; `index_mask` is a one-hot
        `(1, rows, cols, C)` float32 of the sub-pixel; `logit` its logits.
        """
        picked_u = ops.sum(u * index_mask, axis=(1, 2, 3))
        picked_known = ops.sum(x * index_mask, axis=(1, 2, 3))
        picked_keep = ops.sum(keep * index_mask, axis=(1, 2, 3))
        value = self._draw(logit, picked_u, temperature)
        value = picked_keep * picked_known + (1.0 - picked_keep) * value
        return x * (1.0 - index_mask) + value[:, None, None, None] * index_mask

    def _pick(self, logits, index_mask):
        """The logits of the sub-pixel at `index_mask` (a one-hot (1,H,W,C))."""
        if self.categories == 1:
            return ops.sum(logits * index_mask, axis=(1, 2, 3))
        return ops.sum(logits * index_mask[..., None], axis=(1, 2, 3))

    # ----------------------------------------------------------------- loops

    def sample_full(self, x, keep, u, condition, temperature):
        """Compiled loop recomputing the whole network per sub-pixel, in order."""
        n, rows, cols, channels = ops.shape(x)
        flat = ops.arange(rows * cols * channels)
        order = ops.convert_to_tensor(np.asarray(self.sampling_order(), "int32"))

        def body(t, x):
            p = ops.take(order, t)
            index_mask = ops.reshape(ops.cast(ops.equal(flat, p), "float32"),
                                     (1, rows, cols, channels))
            logits = self._logits(x, condition)
            return self._fill(x, keep, u, temperature, self._pick(logits, index_mask),
                              index_mask)

        return ops.fori_loop(0, rows * cols * channels, body, x)

    def _naive_loop(self, x, keep, u, condition, temperature):
        """The reference: a Python loop calling the whole model per sub-pixel."""
        x = ops.convert_to_numpy(x).copy()
        n = x.shape[0]
        keep_np = ops.convert_to_numpy(keep).reshape(n, -1)
        u_np = ops.convert_to_numpy(u).reshape(n, -1)
        temperature = float(ops.convert_to_numpy(temperature))
        flat = x.reshape(n, -1)  # a view of x
        for p in self.sampling_order():
            if keep_np[:, p].all():  # known in every image: nothing to draw
                continue
            logits = ops.convert_to_numpy(self._logits(ops.convert_to_tensor(x),
                                                       condition))
            logit = logits.reshape((n, flat.shape[1]) + logits.shape[4:])[:, p]
            value = ops.convert_to_numpy(
                self._draw(ops.convert_to_tensor(logit),
                           ops.convert_to_tensor(u_np[:, p]), temperature))
            flat[:, p] = np.where(keep_np[:, p] > 0, flat[:, p], value)
        return x

    def _compiled_sampler(self):
        backend = keras.backend.backend()
        if backend in self._samplers:
            return self._samplers[backend]
        loop = self._sample_loop
        if backend == "tensorflow":
            import tensorflow as tf

            sampler = tf.function(loop, jit_compile=True, reduce_retracing=True)
        elif backend == "jax":
            import jax

            variables = list(self.weights)

            def stateless(values, *args):
                with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                    return loop(*args)

            jitted = jax.jit(stateless)

            def sampler(*args):
                return jitted([v.value for v in variables], *args)
        elif backend == "torch":
            import torch

            options = self._eager_sampler_options()
            threads = self.eager_sampler_threads

            def sampler(*args):
                before = torch.get_num_threads()
                if threads:
                    torch.set_num_threads(threads)
                try:
                    with torch.no_grad():
                        return loop(*args, **options)
                finally:
                    torch.set_num_threads(before)
        else:
            sampler = loop
        self._samplers[backend] = sampler
        return sampler

    # ------------------------------------------------------------ public API

    def _prepare(self, images, keep, seed, class_labels, temperature, **conditions):
        """`(x, keep, u, condition, temperature)` tensors of a sampling run."""
        rng = np.random.default_rng(seed)
        u = rng.uniform(size=images.shape).astype("float32")
        condition = self._sampling_condition(len(images), class_labels, **conditions)
        if not temperature > 0:
            raise ValueError(
                f"`temperature` must be > 0. Received: temperature={temperature!r}"
            )
        images = np.where(keep, images, 0.0).astype("float32")
        return (ops.convert_to_tensor(images), ops.convert_to_tensor(keep),
                ops.convert_to_tensor(u), condition,
                ops.convert_to_tensor(np.float32(temperature)))

    def complete(self, images, mask, seed=None, class_labels=None, temperature=1.0,
                 naive=False, **conditions):
        """Fills in the sub-pixels of `images` where `mask` is False.

        They are drawn one by one in the model's generation order
        (`sampling_order()`), each from its conditional given the image so
        far (kept sub-pixels included, wherever they are).

        Args:
            images: `(n, rows, cols, channels)` images (values as in training).
            mask: boolean, broadcastable to `images` by NumPy's rules (shapes
                aligned on the right: `(rows, cols, 1)`, `(1, rows, cols, 1)`,
                `(n, rows, cols, channels)`, ...): True where the sub-pixel is
                known and kept. A mask per image without a channel axis needs
                one: `mask[..., None]`.
            seed: int seed of the NumPy random numbers (same seed, same result).
            class_labels: int labels `(n,)` (or one int) for a conditional model.
            temperature: logits are divided by it before sampling.
            naive: use the reference loop that calls the whole model eagerly for
                every sub-pixel (slow; for checks and benchmarks).
            **conditions: other conditioning the model takes (e.g.
                `low_resolution=` for a super-resolution Image Transformer).

        Returns:
            A float32 NumPy array of the completed images.
        """
        images = np.asarray(images, "float32")
        if images.ndim != 4 or images.shape[1:] != tuple(self.image_shape):
            raise ValueError(
                f"`images` must have shape (n,) + {tuple(self.image_shape)}. "
                f"Received: images.shape={images.shape}"
            )
        mask = np.asarray(mask, bool)
        try:
            keep = np.broadcast_to(mask, images.shape).astype("float32")
        except ValueError:
            raise ValueError(
                "`mask` must be broadcastable to `images` by NumPy's rules (shapes "
                "aligned on the right; add a channel axis with mask[..., None]). "
                f"Received: mask.shape={mask.shape}, images.shape={images.shape}"
            ) from None
        args = self._prepare(images, keep, seed, class_labels, temperature, **conditions)
        if naive:
            return self._naive_loop(*args)
        return ops.convert_to_numpy(self._compiled_sampler()(*args))

    def sample(self, n, seed=None, class_labels=None, temperature=1.0, naive=False,
               **conditions):
        """Draws `n` images, sub-pixel by sub-pixel in the generation order.

        Args:
            n: number of images.
            seed: int seed of the NumPy random numbers (same seed, same samples).
            class_labels: int labels `(n,)` (or one int) for a conditional model.
            temperature: logits are divided by it before sampling.
            naive: use the slow reference loop (see `complete`).
            **conditions: other conditioning the model takes (see `complete`).

        Returns:
            A float32 NumPy array `(n, rows, cols, channels)`: 0/1 values for
            a Bernoulli model, integers in `[0, categories - 1]` otherwise.
        """
        check_positive_int("n", n)
        images = np.zeros((n,) + tuple(self.image_shape), "float32")
        return self.complete(images, np.zeros(images.shape, bool), seed=seed,
                             class_labels=class_labels, temperature=temperature,
                             naive=naive, **conditions)


class AutoregressiveImageModel(InputsOnlyFitMixin, AutoregressiveSampler):
    """Mixin: training and likelihood of an autoregressive image model, plus sampling.

    On top of `AutoregressiveSampler`, for a `keras.Model` that is trained on
    images alone: the loss is the NLL in nats per dimension (`image_nll` of
    `keras_attention_vision.metrics`), reduced as Keras's losses reduce
    (`weighted_mean`: `sum(nll * w) / batch_size`), and `bits_per_dim_metric`
    (a `BitsPerDim`) is updated with the sample weights. `fit` / `evaluate`
    keep `sample_weight` without targets (`losses.InputsOnlyFitMixin`) and
    refuse images outside the distribution's values. The model also
    implements:

    - `distribution`: `"bernoulli"` or `"categorical"` (see `image_nll`);
    - `num_dims`: sub-pixels per image;
    - `_split_inputs(inputs)`: a tuple whose first item is the images;
    - `bits_per_dim_metric`: a `BitsPerDim` metric.
    """

    def _targets(self, images):
        if self.distribution == "bernoulli":
            return ops.cast(images, "float32")
        return ops.cast(ops.round(ops.cast(images, "float32")), "int32")

    def _check_image_values(self, images):
        """Raises a `ValueError` when NumPy images lie outside the distribution's values.

        `"bernoulli"` models take images in {0, 1}; `"categorical"` ones values
        in [0, 255]. Other values would give a meaningless (even negative)
        loss. Only concrete (NumPy) arrays are checked.
        """
        if not isinstance(images, np.ndarray) or images.size == 0:
            return
        if self.distribution == "bernoulli":
            bad = ~np.isin(images, (0, 1))
            expected = "binary images with values in {0, 1}"
        else:
            bad = (images < 0) | (images > 255)
            expected = "images with values in [0, 255]"
        if bad.any():
            raise ValueError(
                f"{type(self).__name__} with distribution={self.distribution!r} takes "
                f"{expected}. Received: images with values in "
                f"[{images.min():g}, {images.max():g}], e.g. {images[bad].flat[0]:g}"
            )

    def _check_fit_inputs(self, x):
        self._check_image_values(x[0] if isinstance(x, (list, tuple)) else x)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                     training=True):
        images = self._split_inputs(x)[0]
        nll = image_nll(self._targets(images), y_pred, self.distribution)
        # nats per dimension, reduced as Keras's "sum_over_batch_size"
        loss = weighted_mean(nll / self.num_dims, sample_weight)
        if self.losses:  # scaled per replica as Keras scales them (tf.distribute)
            loss = loss + replica_scaled(ops.sum(self.losses))
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        images = self._split_inputs(x)[0]
        self.bits_per_dim_metric.update_state(self._targets(images), y_pred,
                                              sample_weight)
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def log_prob(self, images, class_labels=None, batch_size=256, **conditions):
        """Log-likelihood of each image in nats (a NumPy array `(n,)`).

        Divide by `-D ln 2` for bits per dimension. `class_labels` and the
        other `conditions` (arrays with one row per image) as in `sample`;
        a class-conditional model also takes `[images, labels]`, the inputs
        of `fit` and `evaluate`.
        """
        if (isinstance(images, (list, tuple)) and len(images) == 2
                and getattr(self, "num_classes", None) and class_labels is None):
            images, class_labels = images
        images = np.asarray(images)
        self._check_image_values(images)
        out = []
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size].astype("float32")
            part = slice(start, start + batch_size)
            labels = None if class_labels is None else np.asarray(class_labels)[part]
            extra = {key: np.asarray(value)[part] for key, value in conditions.items()}
            condition = self._sampling_condition(len(batch), labels, **extra)
            logits = self._logits(ops.convert_to_tensor(batch), condition)
            nll = image_nll(self._targets(batch), logits, self.distribution)
            out.append(ops.convert_to_numpy(nll))
        return -np.concatenate(out)

    def bits_per_dim(self, images, class_labels=None, batch_size=256, **conditions):
        """Mean bits per dimension of `images`: mean NLL / (D ln 2)."""
        nll = -self.log_prob(images, class_labels, batch_size, **conditions)
        return float(np.mean(nll) / (self.num_dims * LN2))
