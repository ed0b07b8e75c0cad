"""Image grids: samples and completions of generative models, saved as PNG."""

import numpy as np


def image_grid(images, cols=None, padding=1, pad_value=0.5):
    """Tiles images into one array.

    Args:
        images: `(n, rows, cols)` or `(n, rows, cols, channels)` with channels 1
            or 3, values in [0, 1] (scale 8-bit images by 1/255 first).
        cols: images per grid row (default: about sqrt(n)).
        padding: pixels between images.
        pad_value: grey level of the padding.

    Returns:
        A float array `(H, W)` (grey) or `(H, W, 3)` (RGB).

    Example:

    ```python
    grid = image_grid(model.sample(16, seed=0), cols=4)
    ```
    """
    images = np.asarray(images, "float32")
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim not in (3, 4) or len(images) == 0:
        raise ValueError(
            "`images` must be a non-empty (n, rows, cols[, channels]) array. "
            f"Received: images.shape={images.shape}"
        )
    n, height, width = images.shape[:3]
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    shape = (rows * (height + padding) + padding, cols * (width + padding) + padding)
    grid = np.full(shape + images.shape[3:], pad_value, "float32")
    for k, image in enumerate(images):
        r, c = divmod(k, cols)
        y, x = padding + r * (height + padding), padding + c * (width + padding)
        grid[y:y + height, x:x + width] = image
    return np.clip(grid, 0.0, 1.0)


def save_image_grid(images, path, cols=None, padding=1, scale=4, title=None,
                    row_labels=None):
    """Saves `image_grid(images, cols, padding)` as a PNG, upscaled `scale` times.

    Args:
        title: optional figure title; with it (or `row_labels`) the grid is
            drawn in a matplotlib figure instead of saved pixel for pixel.
        row_labels: optional text per grid row, left of the row.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image

    grid = image_grid(images, cols=cols, padding=padding)
    if title or row_labels:
        return _save_titled_grid(grid, path, title, row_labels,
                                 np.asarray(images).shape[1], padding)
    grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    if grid.ndim == 2:
        matplotlib.image.imsave(path, grid, cmap="gray", vmin=0.0, vmax=1.0)
    else:
        matplotlib.image.imsave(path, grid)
    return path


def _save_titled_grid(grid, path, title, row_labels, height, padding):
    import matplotlib.pyplot as plt

    rows, cols = grid.shape[:2]
    fig, ax = plt.subplots(figsize=(1.0 + cols / 40, 0.6 + rows / 40))
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0.0, vmax=1.0,
              interpolation="nearest")
    ax.set_xticks([])
    if row_labels:
        step = height + padding
        ax.set_yticks([padding + step * r + height / 2 for r in range(len(row_labels))])
        ax.set_yticklabels(row_labels, fontsize=8)
    else:
        ax.set_yticks([])
    if title:
        import textwrap

        ax.set_title(textwrap.fill(title, max(30, int(cols / 6))), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")  # row labels and title included
    plt.close(fig)
    return path
