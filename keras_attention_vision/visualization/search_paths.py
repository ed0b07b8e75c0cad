"""Pictures of visual search: the fixation paths of searches, with the target's box."""

import numpy as np

from keras_attention_vision.visualization.glimpses import location_to_pixels


def plot_search_paths(scenes, targets, target_boxes, paths, path, fovea_size=12,
                      max_scenes=4, title=None):
    """Saves a PNG of fixation paths: one row per strategy, one column per scene.

    Each panel shows the scene, the target's box (green, dashed), the
    fixations in order (numbered squares of the fovea's size joined by a
    line) up to the first "found" (a red square when it is away from the
    target, a green one when it is on it) or to the last fixation (giving
    up); the panel's title names the strategy, the target class and the
    outcome.

    Args:
        scenes: `(N, H, W)` or `(N, H, W, 1)` scenes in `[0, 1]`.
        targets: `(N,)` target classes.
        target_boxes: `(N, 4)` pixel boxes `(y_min, x_min, y_max, x_max)`,
            zeros when the target is absent.
        paths: `{strategy name: (locations (N, K, 2) in [-1, 1], found (N, K))}`,
            drawn in this order as rows.
        path: where the PNG goes.
        fovea_size: side in pixels of the squares drawn at the fixations.
        max_scenes: how many scenes (columns) to draw.
        title: optional figure title.

    Returns:
        `path`.

    Example:

    ```python
    out = agent.search(scenes, targets, boxes, return_paths=True)
    plot_search_paths(scenes, targets, boxes,
                      {"agent": (out["locations"], out["found"])}, "search.png")
    ```
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    scenes = np.asarray(scenes)
    if scenes.ndim == 4:
        scenes = scenes[..., 0]
    boxes = np.asarray(target_boxes)
    n = min(len(scenes), max_scenes)
    height, width = scenes.shape[1:3]
    fig, axes = plt.subplots(len(paths), n, figsize=(2.8 * n, 3.0 * len(paths)),
                             squeeze=False)
    for row, (name, (locations, found)) in enumerate(paths.items()):
        locations, found = np.asarray(locations), np.asarray(found)
        for i in range(n):
            ax = axes[row, i]
            ax.imshow(scenes[i], cmap="gray", vmin=0, vmax=1)
            y0, x0, y1, x1 = boxes[i]
            present = y1 > y0
            if present:
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                       color="lime", lw=1.5, ls="--"))
            said = np.flatnonzero(found[i] > 0.5)
            stop = said[0] if len(said) else found.shape[1] - 1
            centres = location_to_pixels(locations[i, :stop + 1], height, width) - 0.5
            ax.plot(centres[:, 1], centres[:, 0], "-", color="orange", lw=1)
            for t, (cy, cx) in enumerate(centres):
                last_found = len(said) and t == stop
                on_target = present and y0 <= cy + 0.5 < y1 and x0 <= cx + 0.5 < x1
                colour = ("lime" if on_target else "red") if last_found else "orange"
                ax.add_patch(Rectangle((cx - fovea_size / 2, cy - fovea_size / 2),
                                       fovea_size, fovea_size, fill=False, color=colour,
                                       lw=2 if last_found else 1))
                ax.text(cx, cy, str(t + 1), color="yellow", fontsize=7, ha="center",
                        va="center")
            if len(said):
                outcome = f"found at {stop + 1}" + ("" if present and on_target
                                                     else " (wrong)")
            else:
                outcome = "gave up" + (" (missed)" if present else " (right)")
            ax.set_title(f"{name}: target {int(targets[i])}"
                         f"{'' if present else ' (absent)'}\n{outcome}", fontsize=8)
            ax.set_xlim(-0.5, width - 0.5)
            ax.set_ylim(height - 0.5, -0.5)
            if row == len(paths) - 1:  # outer axes only: no label under a title
                ax.set_xlabel("x (pixels)", fontsize=7)
            if i == 0:
                ax.set_ylabel("y (pixels)", fontsize=7)
            ax.tick_params(labelsize=6)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(h_pad=1.2)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
