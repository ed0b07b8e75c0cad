"""image_grid: tiling against a layout written by hand."""

import numpy as np
import pytest

from keras_attention_vision.visualization.image_grid import image_grid, save_image_grid


def test_tiles_in_raster_order_with_padding():
    images = np.stack([np.full((2, 3), v, "float32") for v in (0.1, 0.2, 0.3)])
    grid = image_grid(images, cols=2, padding=1, pad_value=1.0)
    assert grid.shape == (1 + 2 * 3, 1 + 2 * 4)
    np.testing.assert_allclose(grid[1:3, 1:4], 0.1)
    np.testing.assert_allclose(grid[1:3, 5:8], 0.2)
    np.testing.assert_allclose(grid[4:6, 1:4], 0.3)
    np.testing.assert_allclose(grid[4:6, 5:8], 1.0)  # empty cell is padding
    np.testing.assert_allclose(grid[0], 1.0)


def test_rgb_and_png(tmp_path):
    images = np.random.default_rng(0).uniform(size=(4, 5, 5, 3))
    assert image_grid(images).shape == (13, 13, 3)
    path = save_image_grid(images, str(tmp_path / "grid.png"))
    assert (tmp_path / "grid.png").stat().st_size > 0 and path.endswith(".png")


def test_bad_shape():
    with pytest.raises(ValueError, match=r"images.shape=\(5,\)"):
        image_grid(np.zeros(5))
