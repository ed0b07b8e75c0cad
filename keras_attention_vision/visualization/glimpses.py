"""Pictures of the RAM glimpse path: where the model looked, and what it saw."""

import numpy as np


def location_to_pixels(locations, height, width):
    """Maps `(y, x)` locations in `[-1, 1]` to pixel centres, as `GlimpseSensor` does.

    Args:
        locations: array `(..., 2)` of `(y, x)` in `[-1, 1]`.
        height, width: image size in pixels.

    Returns:
        Array `(..., 2)` of `(row, column)` pixel coordinates.
    """
    locations = np.asarray(locations, "float64")
    return np.stack([(locations[..., 0] + 1) / 2 * height,
                     (locations[..., 1] + 1) / 2 * width], axis=-1)


def plot_glimpse_paths(images, locations, path, glimpses=None, patch_size=8,
                       num_scales=1, scale_factor=2, labels=None, predictions=None,
                       max_images=6,
                       title="Glimpse paths (red line; squares: retina scales, numbered "
                             "in order) and the glimpse read at each step"):
    """Saves a PNG: each image with its glimpse path, and the glimpses it read.

    Args:
        images: `(N, H, W)` or `(N, H, W, 1)` images (channels last).
        locations: `(N, T, 2)` glimpse locations `(y, x)` in `[-1, 1]`.
        path: where the PNG goes.
        glimpses: optional `(N, T, num_scales, g, g, C)` retina outputs; the
            finest scale of each step is drawn beside the image.
        patch_size, num_scales, scale_factor: the retina, to draw the squares.
        labels, predictions: optional class ids shown in the titles.
        max_images: how many images to draw.
        title: the figure title (`None`: none).

    Returns:
        `path`.

    Example:

    ```python
    probs, locations = model(x[:6], return_locations=True)
    plot_glimpse_paths(x[:6], locations, "glimpses.png", patch_size=8)
    ```
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    figure_title = title  # `title` is reused per image below
    images = np.asarray(images)
    if images.ndim == 4:
        images = images[..., 0]
    locations = np.asarray(locations)
    n = min(len(images), max_images)
    steps = locations.shape[1]
    columns = 1 + (steps if glimpses is not None else 0)
    fig, axes = plt.subplots(n, columns, figsize=(2.0 * columns, 2.0 * n), squeeze=False)
    height, width = images.shape[1:3]
    colours = plt.cm.viridis(np.linspace(0, 1, steps))
    for i in range(n):
        ax = axes[i, 0]
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=1)
        centres = location_to_pixels(locations[i], height, width) - 0.5
        ax.plot(centres[:, 1], centres[:, 0], "-", color="red", lw=1)
        for t, (cy, cx) in enumerate(centres):
            for k in range(num_scales):
                side = patch_size * scale_factor**k
                ax.add_patch(Rectangle((cx - side / 2, cy - side / 2), side, side,
                                       fill=False, color=colours[t], lw=1))
            ax.text(cx, cy, str(t + 1), color="yellow", fontsize=7, ha="center",
                    va="center")
        title = []
        if labels is not None:
            title.append(f"label {int(labels[i])}")
        if predictions is not None:
            title.append(f"pred {int(predictions[i])}")
        ax.set_title(", ".join(title), fontsize=8)
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_ylim(height - 0.5, -0.5)
        ax.axis("off")
        if glimpses is not None:
            for t in range(steps):
                patch = np.asarray(glimpses[i, t, 0])[..., 0]
                axes[i, t + 1].imshow(patch, cmap="gray", vmin=0, vmax=1)
                axes[i, t + 1].set_title(f"glimpse {t + 1}", fontsize=7)
                axes[i, t + 1].axis("off")
    if figure_title:
        import textwrap

        fig.suptitle(textwrap.fill(figure_title, 28 * columns), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
