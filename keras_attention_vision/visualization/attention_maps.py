"""Attention maps (or Grad-CAM / saliency maps) upsampled and overlaid on the input images."""

import numpy as np

from keras_attention_vision.metrics import upsample_maps


def overlay_maps(maps, image_shape, interpolation="bilinear"):
    """Upsamples `(n, h, w)` maps to `image_shape` and min-max scales each to `[0, 1]`.

    A constant map (e.g. an untrained, uniform attention) becomes all zeros.

    Returns:
        A float array `(n, H, W)`.
    """
    up = upsample_maps(maps, tuple(image_shape)[:2], interpolation)
    flat = up.reshape(len(up), -1)
    low, span = flat.min(axis=-1), np.ptp(flat, axis=-1)
    return (up - low[:, None, None]) / np.where(span > 0, span, 1.0)[:, None, None]


def save_attention_overlays(images, maps, path, map_names=None, titles=None, boxes=None,
                            interpolation="bilinear", alpha=0.5, suptitle=None):
    """Saves a PNG: one row per image, the input then each map overlaid on it.

    Args:
        images: `(n, H, W)`, `(n, H, W, 1)` or `(n, H, W, 3)` images in `[0, 1]`.
        maps: one `(n, h, w)` array or a list of them (e.g. the outputs of
            `attention_maps_model`, or Grad-CAM maps), at any resolution; each
            is upsampled to the image and min-max scaled.
        path: the PNG file to write.
        map_names: a column title per map (default `"map 1"`, ...).
        titles: optional title per image (shown above its input column).
        boxes: optional `(n, 4)` ground-truth boxes `(y_min, x_min, y_max,
            x_max)`, max exclusive, drawn in green on every panel.
        interpolation: `"bilinear"` or `"nearest"` upsampling.
        alpha: opacity of the map over the image.
        suptitle: optional title of the whole figure.

    Returns:
        The path written.

    Example:

    ```python
    maps = attention_maps_model(model).predict(canvases[:6])
    save_attention_overlays(canvases[:6], maps, "attention.png",
                            map_names=["layer 7", "layer 10", "layer 13"], boxes=boxes[:6])
    ```
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = np.asarray(images, "float32")
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim not in (3, 4) or len(images) == 0:
        raise ValueError("`images` must be a non-empty (n, H, W[, C]) array. "
                         f"Received: images.shape={images.shape}")
    if not isinstance(maps, (list, tuple)):
        maps = [maps]
    n, height, width = images.shape[:3]
    for m in maps:
        if len(np.asarray(m)) != n:
            raise ValueError(f"Every map array must hold {n} maps, one per image. "
                             f"Received: shapes {[np.asarray(m).shape for m in maps]}")
    overlays = [overlay_maps(m, (height, width), interpolation) for m in maps]
    map_names = list(map_names or [f"map {k + 1}" for k in range(len(maps))])
    cols = 1 + len(maps)
    fig, axes = plt.subplots(n, cols, figsize=(2.3 * cols, 2.3 * n), squeeze=False)
    gray = {"cmap": "gray", "vmin": 0, "vmax": 1} if images.ndim == 3 else {}
    for r in range(n):
        for c in range(cols):
            ax = axes[r, c]
            ax.imshow(images[r], **gray)
            if c == 0:
                ax.set_title(titles[r] if titles else "input", fontsize=8)
                ax.set_ylabel("y (pixels)", fontsize=7)
            else:
                ax.imshow(overlays[c - 1][r], cmap="jet", alpha=alpha, vmin=0, vmax=1)
                ax.set_title(map_names[c - 1], fontsize=8)
            if boxes is not None:
                y0, x0, y1, x1 = np.asarray(boxes)[r]
                ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0,
                                           fill=False, edgecolor="lime", linewidth=1))
            if r == n - 1:
                ax.set_xlabel("x (pixels)", fontsize=7)
            ax.tick_params(labelsize=6)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
