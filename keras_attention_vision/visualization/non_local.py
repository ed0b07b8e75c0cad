"""Pictures of non-local attention: where one position of a map looks."""

import numpy as np


def attention_for_query(scores, query_index, key_map_shape):
    """Row `query_index` of `(N_q, N_k)` weights, reshaped to the key map.

    Args:
        scores: `(N_q, N_k)` weights of one example (rows sum to 1 with the
            softmax modes).
        query_index: flattened index of the query position.
        key_map_shape: `(h, w)` of the (possibly sub-sampled) key map.
    """
    return np.asarray(scores)[query_index].reshape(key_map_shape)


def save_non_local_attention(images, scores, query_points, map_shape, key_map_shape,
                             path, titles=None,
                             suptitle="Non-local attention: the weights of the query "
                                      "position (red +) over the image"):
    """Saves, per image, the attention of chosen query positions over the image.

    Args:
        images: `(n, H, W)` or `(n, H, W, 1)` images in `[0, 1]`.
        scores: `(n, N_q, N_k)` weights returned by a block with
            `return_attention_scores=True`.
        query_points: per image, a `(row, col)` position on the query map.
        map_shape: `(h, w)` of the query map.
        key_map_shape: `(h_k, w_k)` of the key map.
        path: the PNG file to write.
        titles: optional title per image.
        suptitle: the figure title (`None`: none).

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = np.asarray(images, "float32")
    if images.ndim == 4:
        images = images[..., 0]
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(2.2 * n, 4.6), squeeze=False)
    height, width = images.shape[1:3]
    for k in range(n):
        row, col = query_points[k]
        weights = attention_for_query(scores[k], row * map_shape[1] + col, key_map_shape)
        axes[0, k].imshow(images[k], cmap="gray", vmin=0, vmax=1)
        y = (row + 0.5) * height / map_shape[0]
        x = (col + 0.5) * width / map_shape[1]
        axes[0, k].plot([x], [y], "r+", markersize=12, mew=2)
        axes[0, k].set_title(titles[k] if titles else f"query ({row}, {col})", fontsize=8)
        axes[1, k].imshow(images[k], cmap="gray", vmin=0, vmax=1)
        axes[1, k].imshow(weights, cmap="jet", alpha=0.5,
                          extent=(0, width, height, 0), interpolation="bilinear")
        axes[1, k].set_title("attention", fontsize=8)
        for ax in axes[:, k]:
            ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
