"""The tile grid: every pixel in exactly one core, halos clipped, bad values refused."""

import numpy as np
import pytest

from napari_sam.engine.image.tiling import TileGrid, auto_tiling, resolve_tiling


@pytest.mark.parametrize("shape,tile,halo", [((1000, 700), (256, 256), (32, 16)), ((64, 64), (64, 64), (0, 0)),
                                             ((300, 513), (100, 128), (50, 64))])
def test_cores_cover_every_pixel_once_and_outer_windows_hold_their_cores(shape, tile, halo):
    grid = TileGrid(shape, tile, halo)
    count = np.zeros(shape, np.int32)
    for t in grid:
        count[t.core_slices] += 1
        oy0, oy1, ox0, ox1 = t.outer
        y0, y1, x0, x1 = t.core
        assert oy0 == max(y0 - halo[0], 0) and oy1 == min(y1 + halo[0], shape[0])
        assert ox0 == max(x0 - halo[1], 0) and ox1 == min(x1 + halo[1], shape[1])
        # the core seen through the outer window is the same pixels
        img = np.arange(shape[0] * shape[1]).reshape(shape)
        assert np.array_equal(img[t.outer_slices][t.core_in_outer], img[t.core_slices])
        assert grid.tile_at((y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2) is t
    assert count.min() == 1 and count.max() == 1
    assert len(grid) == -(-shape[0] // min(tile[0], shape[0])) * -(-shape[1] // min(tile[1], shape[1]))


def test_a_tile_larger_than_the_image_is_clamped_to_one_tile():
    grid = TileGrid((100, 80), (512, 512), (64, 64))
    assert len(grid) == 1 and grid[0].core == (0, 100, 0, 80) and grid[0].outer == (0, 100, 0, 80)
    assert grid.tile_shape == (100, 80)


@pytest.mark.parametrize("tile,halo,words", [((16, 64), (0, 0), "at least 32"), ((64, 64), (33, 0), "half"),
                                             ((64, 64), (-1, 0), "negative"), ((64.5, 64), (0, 0), "whole"),
                                             ("big", (0, 0), "(height, width)")])
def test_bad_tilings_are_refused_by_name(tile, halo, words):
    with pytest.raises(ValueError, match=words if words[0] != "(" else r"\(height, width\)"):
        TileGrid((500, 500), tile, halo)


def test_auto_sees_the_image_at_its_own_resolution():
    assert auto_tiling((200, 250), 256) == (None, None)
    tile, halo = auto_tiling((2048, 2048), 256)
    assert tile[0] + 2 * halo[0] == 256 and halo == (32, 32)
    tile, halo = auto_tiling((4096, 4096), 1024, object_size=100)
    assert halo == (208, 208) and tile == (608, 608)  # two diameters, rounded to 16 px
    assert resolve_tiling("auto", None, (200, 200), 256) is None
    assert len(resolve_tiling("auto", None, (512, 512), 256)) == 9  # 192-px cores
    assert resolve_tiling(None, None, (512, 512), 256) is None
    with pytest.raises(ValueError, match="without tile_shape"):
        resolve_tiling(None, (16, 16), (512, 512), 256)
    with pytest.raises(ValueError, match="'auto'"):
        resolve_tiling("huge", None, (512, 512), 256)
