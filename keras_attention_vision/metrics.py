"""Metrics of the package's experiments.

- likelihood of images: `bernoulli_nll`, `categorical_nll`, `bits_per_dim` and
  the `BitsPerDim` Keras metric (bits/dim = NLL / (D ln 2), D = number of
  sub-pixels of an image).
"""

import math
import numbers

import keras
from keras import ops

from keras_attention_vision.api_export import kav_export

__all__ = [
    "BitsPerDim",
    "bernoulli_nll",
    "bits_per_dim",
    "categorical_nll",
    "image_nll",
]

LN2 = math.log(2.0)
DISTRIBUTIONS = ("bernoulli", "categorical")


def _sum_over_examples(values):
    """Sums every axis but the first: one value per example."""
    return ops.sum(ops.reshape(values, (ops.shape(values)[0], -1)), axis=-1)


def bernoulli_nll(targets, logits):
    """Negative log-likelihood (nats) of binary images under Bernoulli logits.

    Args:
        targets: 0/1 values, shape `(batch, ...)`.
        logits: logits of P(x = 1), the shape of `targets`.

    Returns:
        A float32 tensor `(batch,)`: the NLL of each example, summed over all
        its dimensions.
    """
    logits = ops.cast(logits, "float32")
    targets = ops.cast(targets, "float32")
    # -[t log s(l) + (1 - t) log(1 - s(l))] = softplus(l) - t * l
    return _sum_over_examples(ops.softplus(logits) - targets * logits)


def categorical_nll(targets, logits):
    """Negative log-likelihood (nats) of integer sub-pixels under categorical logits.

    Args:
        targets: integer values in `[0, K)`, shape `(batch, ...)`.
        logits: shape `targets.shape + (K,)`.

    Returns:
        A float32 tensor `(batch,)`: the NLL of each example, summed over all
        its dimensions.
    """
    logits = ops.cast(logits, "float32")
    targets = ops.cast(targets, "int32")
    log_probs = ops.log_softmax(logits, axis=-1)
    picked = ops.take_along_axis(log_probs, ops.expand_dims(targets, -1), axis=-1)
    return -_sum_over_examples(picked)


def image_nll(targets, logits, distribution="bernoulli"):
    """`bernoulli_nll` or `categorical_nll`, by name."""
    if distribution == "bernoulli":
        return bernoulli_nll(targets, logits)
    if distribution == "categorical":
        return categorical_nll(targets, logits)
    raise ValueError(
        f"`distribution` must be one of {DISTRIBUTIONS}. Received: distribution={distribution!r}"
    )


def bits_per_dim(nll, num_dims):
    """Converts an NLL in nats to bits per dimension: `nll / (num_dims ln 2)`."""
    return nll / (num_dims * LN2)


@kav_export("keras_attention_vision.metrics.BitsPerDim")
class BitsPerDim(keras.metrics.Mean):
    """Mean bits per dimension of images under the model's output logits.

    `y_true` holds the images (0/1 for `"bernoulli"`, integers in `[0, K)` for
    `"categorical"`); `y_pred` holds the logits (same shape, plus a last axis of
    K classes for `"categorical"`). Each example's NLL is summed over its D
    dimensions and divided by `D ln 2`.

    Args:
        distribution: `"bernoulli"` or `"categorical"`.
        name: metric name.
        dtype: metric dtype.

    Example:

    ```python
    model.compile("adam", loss=..., metrics=[BitsPerDim("bernoulli")])
    ```
    """

    def __init__(self, distribution="bernoulli", name="bits_per_dim", dtype=None):
        if distribution not in DISTRIBUTIONS:
            raise ValueError(
                f"`distribution` must be one of {DISTRIBUTIONS}. "
                f"Received: distribution={distribution!r}"
            )
        super().__init__(name=name, dtype=dtype)
        self.distribution = distribution

    def update_state(self, y_true, y_pred, sample_weight=None):
        nll = image_nll(y_true, y_pred, self.distribution)
        num_dims = math.prod(y_true.shape[1:])
        return super().update_state(bits_per_dim(nll, num_dims), sample_weight)

    def get_config(self):
        config = super().get_config()
        config["distribution"] = self.distribution
        return config


# Weakly supervised localisation of attention maps (Jetley et al., 2018), in NumPy.
# Boxes are `(y_min, x_min, y_max, x_max)` in image pixels, max exclusive, as
# `keras_attention_vision.datasets.make_cluttered_mnist` returns them.

INTERPOLATIONS = ("bilinear", "nearest")
REDUCTIONS = ("mean", "none")


def _maps_and_boxes(maps, boxes):
    import numpy as np

    maps = np.asarray(maps, "float64")
    if maps.ndim == 4 and maps.shape[-1] == 1:
        maps = maps[..., 0]
    boxes = np.asarray(boxes)
    if maps.ndim != 3 or boxes.shape != (len(maps), 4):
        raise ValueError(
            "`maps` must be (N, h, w) (or (N, h, w, 1)) and `boxes` (N, 4) as "
            f"(y_min, x_min, y_max, x_max). Received: maps.shape={maps.shape}, "
            f"boxes.shape={boxes.shape}"
        )
    return maps, boxes


def _image_shape(maps, image_shape):
    if image_shape is None:
        return maps.shape[1:3]
    image_shape = tuple(image_shape)[:2]
    if len(image_shape) != 2 or not all(
            isinstance(d, numbers.Integral) and d > 0 for d in image_shape):
        raise ValueError(
            f"`image_shape` must be (H, W) with positive ints. Received: image_shape={image_shape}"
        )
    return tuple(int(d) for d in image_shape)


def _reduce(values, reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"`reduction` must be one of {REDUCTIONS}. Received: reduction={reduction!r}"
        )
    return float(values.mean()) if reduction == "mean" else values


def _interpolation_matrix(out_size, in_size, interpolation):
    """`(out_size, in_size)` weights of 1D resampling with half-pixel centres."""
    import numpy as np

    centres = (np.arange(out_size) + 0.5) * in_size / out_size
    weights = np.zeros((out_size, in_size))
    if interpolation == "nearest":
        weights[np.arange(out_size), np.minimum(centres.astype(int), in_size - 1)] = 1.0
        return weights
    source = np.clip(centres - 0.5, 0.0, in_size - 1)
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, in_size - 1)
    frac = source - low
    np.add.at(weights, (np.arange(out_size), low), 1.0 - frac)
    np.add.at(weights, (np.arange(out_size), high), frac)
    return weights


def upsample_maps(maps, size, interpolation="bilinear"):
    """Resizes attention maps `(N, h, w)` to `(N, H, W)` (half-pixel centres).

    Args:
        maps: `(N, h, w)` or `(N, h, w, 1)` maps.
        size: `(H, W)`.
        interpolation: `"bilinear"` (as `keras.ops.image.resize`) or `"nearest"`.

    Returns:
        A float64 NumPy array `(N, H, W)`.
    """
    import numpy as np

    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"`interpolation` must be one of {INTERPOLATIONS}. "
            f"Received: interpolation={interpolation!r}"
        )
    maps = np.asarray(maps, "float64")
    if maps.ndim == 4 and maps.shape[-1] == 1:
        maps = maps[..., 0]
    rows = _interpolation_matrix(size[0], maps.shape[1], interpolation)
    cols = _interpolation_matrix(size[1], maps.shape[2], interpolation)
    return np.einsum("Yy,nyx,Xx->nYX", rows, maps, cols)


def pointing_game(maps, boxes, image_shape=None, reduction="mean"):
    """The pointing game: does each map's maximum fall inside the object's box?

    The cell `(i, j)` of the map's maximum (the first one in row-major order
    on ties) is mapped to its centre in image pixels,
    `((i + 0.5) H / h, (j + 0.5) W / w)`, and scores 1 when that point lies in
    `[y_min, y_max) x [x_min, x_max)`.

    Args:
        maps: attention (or saliency) maps `(N, h, w)` or `(N, h, w, 1)`, at
            any resolution.
        boxes: `(N, 4)` ground-truth boxes `(y_min, x_min, y_max, x_max)` in
            image pixels, max exclusive (the format of
            `datasets.make_cluttered_mnist`).
        image_shape: `(H, W)` of the images the boxes refer to; default: the
            maps' own size.
        reduction: `"mean"` (the hit rate, a float) or `"none"` (one 0/1 per
            example).

    Returns:
        The hit rate in `[0, 1]`, or a float array `(N,)` of hits.

    Example:

    ```python
    maps = attention_maps_model(model).predict(canvases)[-1]
    hit_rate = pointing_game(maps, boxes, image_shape=canvases.shape[1:3])
    ```
    """
    import numpy as np

    maps, boxes = _maps_and_boxes(maps, boxes)
    height, width = _image_shape(maps, image_shape)
    flat = maps.reshape(len(maps), -1).argmax(axis=-1)
    i, j = np.unravel_index(flat, maps.shape[1:3])
    y = (i + 0.5) * height / maps.shape[1]
    x = (j + 0.5) * width / maps.shape[2]
    hits = ((boxes[:, 0] <= y) & (y < boxes[:, 2]) & (boxes[:, 1] <= x) & (x < boxes[:, 3]))
    return _reduce(hits.astype("float64"), reduction)


def attention_iou(maps, boxes, threshold=0.5, image_shape=None, interpolation="bilinear",
                  reduction="mean"):
    """IoU of each binarised, upsampled map with the object's box.

    The weakly supervised segmentation measure of the paper's Object
    Discovery experiment: the map is upsampled to the image,
    binarised, and compared with the ground truth by intersection over
    union. Here the ground truth is the box, and a pixel is kept when its
    value is at least `threshold` times the map's maximum (the paper does not
    state its binarisation threshold; this relative one is ours).

    Args:
        maps: `(N, h, w)` or `(N, h, w, 1)` maps.
        boxes: `(N, 4)` boxes `(y_min, x_min, y_max, x_max)` in image pixels,
            max exclusive.
        threshold: fraction of each map's maximum in `[0, 1]`.
        image_shape: `(H, W)` of the images; default: the maps' own size.
        interpolation: `"bilinear"` or `"nearest"` upsampling.
        reduction: `"mean"` (a float) or `"none"` (an array `(N,)`).

    Returns:
        The mean IoU, or the IoU of each example.

    Example:

    ```python
    iou = attention_iou(maps, boxes, threshold=0.5, image_shape=(60, 60))
    ```
    """
    import numpy as np

    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not (
            0.0 <= threshold <= 1.0):
        raise ValueError(
            f"`threshold` must be a number in [0, 1]. Received: threshold={threshold!r}"
        )
    maps, boxes = _maps_and_boxes(maps, boxes)
    height, width = _image_shape(maps, image_shape)
    if maps.shape[1:3] != (height, width):
        maps = upsample_maps(maps, (height, width), interpolation)
    peak = maps.reshape(len(maps), -1).max(axis=-1)
    masks = maps >= threshold * peak[:, None, None]
    rows = np.arange(height)[None, :, None]
    cols = np.arange(width)[None, None, :]
    b = boxes[:, :, None, None]
    in_box = (b[:, 0] <= rows) & (rows < b[:, 2]) & (b[:, 1] <= cols) & (cols < b[:, 3])
    intersection = (masks & in_box).sum(axis=(1, 2))
    union = (masks | in_box).sum(axis=(1, 2))
    return _reduce(intersection / np.maximum(union, 1), reduction)


def glimpse_hits(locations, boxes, image_shape, reduction="mean"):
    """The pointing game of hard attention: which glimpse centres fall inside the box?

    A location `l` in `[-1, 1]` is the pixel `(l + 1) / 2 * size` of its axis
    (the convention of `layers.GlimpseSensor`), and scores 1 when that point
    lies in `[y_min, y_max) x [x_min, x_max)`.

    Args:
        locations: `(N, T, 2)` glimpse locations `(y, x)` in `[-1, 1]`, as
            `RecurrentAttentionModel.rollout` returns them.
        boxes: `(N, 4)` boxes `(y_min, x_min, y_max, x_max)` in image pixels,
            max exclusive (the format of `datasets.make_cluttered_mnist`).
        image_shape: `(H, W)` of the images.
        reduction: `"mean"` (the share of all glimpses inside, a float) or
            `"none"` (a 0/1 float array `(N, T)`: per image and glimpse).

    Returns:
        A float in `[0, 1]`, or a float array `(N, T)`. `hits.any(axis=1)`
        says which images had at least one glimpse on the object.

    Raises:
        ValueError: `locations` not `(N, T, 2)`, `boxes` not `(N, 4)`,
            `image_shape` not two positive ints, or no location to average.

    Example:

    ```python
    out = model.rollout(canvases)  # the mean path
    hits = glimpse_hits(out["locations"], boxes, (100, 100), reduction="none")
    found = hits.any(axis=1).mean()
    ```
    """
    import numpy as np

    locations, boxes = np.asarray(locations, "float64"), np.asarray(boxes)
    if locations.ndim != 3 or locations.shape[-1] != 2 or boxes.shape != (len(locations), 4):
        raise ValueError(
            "`locations` must be (N, T, 2) and `boxes` (N, 4) as (y_min, x_min, y_max, "
            f"x_max). Received: locations.shape={locations.shape}, boxes.shape={boxes.shape}"
        )
    if (not isinstance(image_shape, (tuple, list)) or len(image_shape) != 2
            or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool)
                       and d > 0 for d in image_shape)):
        raise ValueError("`image_shape` must be (H, W), two positive ints (not a "
                         f"shape with channels). Received: image_shape={image_shape!r}")
    if reduction == "mean" and locations.size == 0:
        raise ValueError("`glimpse_hits` with reduction='mean' needs at least one "
                         f"location. Received: locations.shape={locations.shape}")
    height, width = (int(d) for d in image_shape)
    y = (locations[..., 0] + 1.0) * (height / 2.0)
    x = (locations[..., 1] + 1.0) * (width / 2.0)
    b = boxes[:, None, :]
    hits = (b[..., 0] <= y) & (y < b[..., 2]) & (b[..., 1] <= x) & (x < b[..., 3])
    return _reduce(hits.astype("float64"), reduction)


__all__ += ["attention_iou", "glimpse_hits", "pointing_game", "upsample_maps"]


# Captioning (Xu et al., 2015): BLEU through nltk, and attention correctness.

def _caption_words(caption):
    if isinstance(caption, str):
        return caption.lower().split()
    return [str(w).lower() for w in caption]


def bleu_scores(references, hypotheses, max_order=4, smoothing=False):
    """Corpus BLEU-1..`max_order` of captions, computed by nltk's `corpus_bleu`.

    BLEU-n is the geometric mean of the clipped 1..n-gram precisions over the
    corpus times the brevity penalty (closest reference length), with uniform
    weights, as the captioning papers report it. coco-caption's scorer
    tokenises differently (PTB tokeniser), so its numbers on raw text can
    differ slightly; on lower-cased, space-separated captions they agree.

    Args:
        references: one list of reference captions per image (strings, or
            lists of words).
        hypotheses: one generated caption per image (a string or a list of
            words).
        max_order: the largest n-gram order (1 to 4).
        smoothing: apply nltk's smoothing method 1 (for sentence-level or very
            small corpora); `False` is the papers' unsmoothed corpus BLEU.

    Returns:
        `{"bleu1": ..., "bleu4": ...}` as floats in `[0, 1]`.

    Example:

    ```python
    bleu_scores([["a red circle", "there is a red circle"]], ["a red circle"])
    ```
    """
    from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu

    if isinstance(max_order, bool) or not isinstance(max_order, int) or not (
            1 <= max_order <= 4):
        raise ValueError(f"`max_order` must be an int in [1, 4]. Received: max_order={max_order!r}")
    if len(references) != len(hypotheses) or not len(hypotheses):
        raise ValueError("Need one list of references per hypothesis, at least one. "
                         f"Received: {len(references)} references, {len(hypotheses)} hypotheses")
    refs = []
    for i, group in enumerate(references):
        if isinstance(group, str) or not len(group):
            raise ValueError(f"references[{i}] must be a non-empty list of captions. "
                             f"Received: references[{i}]={group!r}")
        refs.append([_caption_words(r) for r in group])
    hyps = [_caption_words(h) for h in hypotheses]
    smooth = SmoothingFunction().method1 if smoothing else None
    return {
        f"bleu{n}": float(corpus_bleu(refs, hyps, weights=tuple([1.0 / n] * n),
                                      smoothing_function=smooth))
        for n in range(1, max_order + 1)
    }


def _object_phrase_and_box(obj):
    if isinstance(obj, dict):
        words = [obj[k] for k in ("colour", "shape") if k in obj] if "phrase" not in obj \
            else str(obj["phrase"]).split()
        return [w.lower() for w in words], tuple(obj["box"])
    phrase, box = obj
    return str(phrase).lower().split(), tuple(box)


def attention_correctness(attention, captions, objects, image_shape, words="name",
                          reduction="mean"):
    """Is the attention on the object the decoder names when it names it?

    For each generated caption, each time the decoder emits the last word of
    an object's phrase (e.g. "circle" in "... a red circle ...", the words
    before it matching the rest of the phrase, "red"), the attention map of
    that step (`words="name"`), or of every word of the phrase ("red" and
    "circle", `words="phrase"`), is scored against the object's box:
    `correct` is 1 when the
    map's maximum lies inside the box (`pointing_game`: the centre of the
    arg-max cell), and `mass` is the share of the attention inside the box
    (each cell's weight spread over its pixels). A word that matches no
    object of the image, or several, is not scored.

    Args:
        attention: one array `(words, h, w)` per caption, the weights of the
            step that emitted each word (`ShowAttendTell.generate`'s
            `attention`).
        captions: the generated captions (strings or lists of words), aligned
            with `attention`.
        objects: per caption, the image's objects: dicts with `colour`,
            `shape` and `box` (as `datasets.make_shapes_captions`), or with
            `phrase` and `box`, or `(phrase, box)` pairs. Boxes are
            `(y_min, x_min, y_max, x_max)` in pixels, max exclusive.
        image_shape: `(H, W)` of the images.
        words: `"name"` (score the step that emits the phrase's last word,
            the shape's name) or `"phrase"` (every word of the phrase).
        reduction: `"mean"` or `"none"` (the per-word arrays).

    Returns:
        `{"correctness": ..., "mass": ..., "words": count}`: the hit rate and
        the mean share of the attention inside the box (NaN with no scored
        word), or with `reduction="none"` the arrays of every scored word.

    Example:

    ```python
    out = model.generate(images)
    scores = attention_correctness(out["attention"], out["captions"],
                                   data["objects"], image_shape=(32, 32))
    ```
    """
    import numpy as np

    if reduction not in REDUCTIONS:
        raise ValueError(f"`reduction` must be one of {REDUCTIONS}. "
                         f"Received: reduction={reduction!r}")
    if words not in ("name", "phrase"):
        raise ValueError(f"`words` must be 'name' or 'phrase'. Received: words={words!r}")
    if not len(attention) == len(captions) == len(objects):
        raise ValueError("`attention`, `captions` and `objects` must have one entry per "
                         f"caption. Received: lengths {len(attention)}, {len(captions)}, "
                         f"{len(objects)}")
    height, width = _image_shape(np.zeros((1, 1, 1)), image_shape)
    correct, mass = [], []
    for maps, caption, found in zip(attention, captions, objects):
        tokens = _caption_words(caption)
        maps = np.asarray(maps, "float64")
        if maps.ndim != 3 or len(maps) < len(tokens):
            raise ValueError("Each attention entry must be (words, h, w) with a map per "
                             f"word. Received: shape={maps.shape} for caption={caption!r}")
        phrases = [_object_phrase_and_box(o) for o in found]
        for t, word in enumerate(tokens):
            matches = [(phrase, box) for phrase, box in phrases
                       if phrase and phrase[-1] == word and t + 1 >= len(phrase)
                       and tokens[t + 1 - len(phrase):t + 1] == phrase]
            if len(matches) != 1:
                continue
            phrase, box = matches[0]
            steps = [t] if words == "name" else range(t + 1 - len(phrase), t + 1)
            for s in steps:
                correct.append(pointing_game(maps[s:s + 1], np.asarray([box]),
                                             (height, width), reduction="none")[0])
                up = upsample_maps(maps[s:s + 1], (height, width), "nearest")[0]
                y0, x0, y1, x1 = box
                mass.append(up[y0:y1, x0:x1].sum() / max(up.sum(), 1e-12))
    correct, mass = np.asarray(correct, "float64"), np.asarray(mass, "float64")
    if reduction == "none":
        return {"correctness": correct, "mass": mass, "words": len(correct)}
    return {"correctness": float(correct.mean()) if len(correct) else float("nan"),
            "mass": float(mass.mean()) if len(mass) else float("nan"),
            "words": len(correct)}


__all__ += ["attention_correctness", "bleu_scores"]
