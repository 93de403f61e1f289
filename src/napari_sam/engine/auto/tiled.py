"""Segment everything tile by tile: large images at their own resolution, bounded memory.

For each tile of a :class:`~napari_sam.engine.image.tiling.TileGrid` (row-major order):

1. its outer window (core + halo) is read from the image alone (numpy, zarr, dask or a
   memory-mapped array: only that window is read) and mapped to 8-bit with the contrast limits
   of the **whole** image, found once before the first tile (:func:`image_contrast_limits`), so
   tiles do not differ in brightness; no float copy of the whole image is ever made;
2. the window is segmented on its own (its own embedding, or ``tile_features(i)``; a point
   grid of ``points_per_side``² over the whole outer window: points in the halo find the
   objects near the core edge that the tile owns);
3. its masks are merged into the labels by :mod:`.stitch`: masks cut by an inner window edge
   go, the rest become the window's labels by the one-image rule, the tile keeps those whose
   centroid lies in its core; a label lying mostly on labels an earlier tile painted is that
   object seen again, and is dropped; a label seen whole by one tile and in pieces by its
   owner replaces the pieces (``cover``: the share of each piece it must cover), and one
   lying on two or more earlier labels, holding half of each or more and little else, joins
   them into one (a seam split: an object's pieces owned on either side of a core edge);
   then (``join_touching``, on unless the segmenter's parameters say False) touching labels
   lying wholly inside the window are judged on the window's own features: a label takes back
   the bite its neighbour's label holds of it (:mod:`.seam`: the model, clicked inside the
   label, sees it whole and convex, and the neighbour is more convex without the bite), and
   those that are one object join (:mod:`.merge`: a convex union that the model, clicked at
   its centroid, gives back: the model's own splits and the tiling's);
4. the labels under the outer window are written to ``out`` (a numpy or zarr array, or a new
   int32 array), and ``progress(tiles_done, n_tiles)`` is called.

The halo should be at least the diameter of the largest object: an object centred on a core
edge is then whole in the tile that owns it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..frames import read
from ..image.preprocess import check_contrast_limits, robust_limits, to_uint8_rgb
from .merge import UnionJudge
from .seam import BiteJudge
from .stitch import TileStitcher

_BAND_PIXELS = 1 << 24  # pixels read at once while sampling the contrast limits
_SAMPLES = 1_000_000  # values the contrast limits are estimated from (as robust_limits)


def check_image(image) -> tuple[int, int]:
    """(H, W) of an (H, W) or (H, W, 1|3|4) array-like; a ValueError naming the shape else."""
    shape = tuple(int(s) for s in (image.shape if hasattr(image, "shape") else np.shape(image)))
    if not (len(shape) == 2 or (len(shape) == 3 and shape[-1] in (1, 3, 4))):
        raise ValueError(f"expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image, got shape {shape}")
    if shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"image has no pixels: shape {shape}")
    return shape[0], shape[1]


def image_contrast_limits(image) -> tuple[float, float]:
    """The limits :func:`~napari_sam.engine.image.preprocess.to_uint8_rgb` would pick for the
    whole image (uint8 (0, 255), bool (0, 1), else the robust percentiles of the same evenly
    strided sample of about a million values), read in bands of rows: the whole image is never
    held in memory."""
    dtype = np.dtype(image.dtype)
    if dtype == np.uint8:
        return (0.0, 255.0)
    if dtype == np.bool_:
        return (0.0, 1.0)
    shape = tuple(int(s) for s in image.shape)
    h, w = shape[:2]
    c = 1 if len(shape) == 2 else min(shape[2], 3)  # to_uint8_rgb drops an alpha channel
    per_row = w * c
    size = h * per_row
    step = size // _SAMPLES + 1 if size > _SAMPLES else 1
    rows = max(1, _BAND_PIXELS // max(w, 1))
    parts = []
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        lo, hi = r0 * per_row, r1 * per_row
        first = -(-lo // step) * step  # the first sampled flat index in this band
        if first >= hi:
            continue
        band = read(image[r0:r1])
        if band.ndim == 3:
            band = band[..., :c]
        parts.append(band.reshape(-1)[first - lo:hi - lo:step])
    return robust_limits(np.concatenate(parts))


def _window(image, tile) -> np.ndarray:
    ys, xs = tile.outer_slices
    return read(image[ys, xs])


def generate_tiled(segmenter, image, grid, contrast_limits=None,
                   tile_features: Callable[[int], dict | None] | None = None,
                   progress: Callable[[int, int], object] | None = None, out=None,
                   edge_margin: int = 2, duplicate: float = 0.5, orphan_overlap: float = 0.1,
                   cover: float = 0.7):
    """Labels of ``image`` segmented tile by tile over ``grid`` (see the module docstring).

    ``segmenter``: an :class:`~napari_sam.engine.auto.segmenter.AutomaticSegmenter` (its
    parameters apply to every tile). ``tile_features(i)``: tile ``i``'s encoder output made
    elsewhere (e.g. a tiled EmbeddingStore), or None to encode it here. ``out``: an (H, W)
    integer array (numpy, zarr) to write into, tile by tile (its old contents are replaced);
    None makes an int32 numpy array. Returns ``out``. An exception raised by ``progress``
    stops the run; the tiles done so far are already in ``out``.
    """
    hw = check_image(image)
    if tuple(grid.image_shape) != hw:
        raise ValueError(f"the tile grid is for an image of {grid.image_shape}, the image is {hw}")
    limits = check_contrast_limits(contrast_limits)
    if limits is None:
        limits = image_contrast_limits(image)
    out = _check_out(out, hw)
    p = segmenter.params
    judge = bites = None
    if p.join_touching is not False:
        judge = UnionJudge(segmenter.model, segmenter.transform)
        bites = BiteJudge(segmenter.model, segmenter.transform)  # as the untiled join_touching
    stitcher = TileStitcher(grid, hw, p.min_mask_region_area, edge_margin, duplicate, orphan_overlap, cover,
                            judge=judge, bites=bites)
    cleared = np.zeros(len(grid), bool)
    for tile in grid:
        _clear_cores(out, grid, tile, cleared)
        rgb = to_uint8_rgb(_window(image, tile), limits)
        feats = None if tile_features is None else tile_features(tile.index)
        if feats is None and judge is not None:  # encoded once: the grid and the judge share it
            feats = segmenter.transform.encode(rgb)
        stitcher.add(tile, segmenter.generate_records(rgb, features=feats), out, features=feats)
        if progress is not None:
            progress(tile.index + 1, len(grid))
    return out


def _check_out(out, hw):
    if out is None:
        return np.zeros(hw, np.int32)
    shape = tuple(int(s) for s in out.shape)
    if shape != tuple(hw):
        raise ValueError(f"out has shape {shape}, the labels are {tuple(hw)}")
    if np.dtype(out.dtype).kind not in "iu":
        raise ValueError(f"out must hold integers (labels), got dtype {np.dtype(out.dtype)}")
    return out


def write_whole(out, labels: np.ndarray):
    """``labels`` written into ``out`` (checked as in :func:`generate_tiled`); returns ``out``."""
    out = _check_out(out, labels.shape)
    if labels.size and int(labels.max()) > np.iinfo(np.dtype(out.dtype)).max:
        raise ValueError(f"{int(labels.max())} labels do not fit the output's dtype {np.dtype(out.dtype)}")
    out[...] = labels
    return out


def _clear_cores(out, grid, tile, cleared) -> None:
    """Zero the cores under ``tile``'s outer window not cleared yet: ``out``'s old contents
    go before anything is painted there, and nothing painted is cleared again."""
    oy0, oy1, ox0, ox1 = tile.outer
    r0, c0 = grid.tile_at(oy0, ox0).row, grid.tile_at(oy0, ox0).col
    r1, c1 = grid.tile_at(oy1 - 1, ox1 - 1).row, grid.tile_at(oy1 - 1, ox1 - 1).col
    for r in range(r0, r1 + 1):
        for c in range(c0, c1 + 1):
            i = r * grid.cols + c
            if not cleared[i]:
                ys, xs = grid[i].core_slices
                out[ys, xs] = 0
                cleared[i] = True
