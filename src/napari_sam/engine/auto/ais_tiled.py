"""AIS tile by tile: micro-sam's ``TiledInstanceSegmentationWithDecoder`` (1.8.14).

micro-sam stitches the decoder's **per-pixel outputs**, not labels: each tile's outer window
(core + halo, micro-sam's meaning, see :mod:`napari_sam.engine.image.tiling`) is embedded at
the model's input size, the decoder turns that embedding into foreground / centre distance /
boundary distance maps at the window's size, and the tile's **core** of those maps is written
into three image-sized maps. The seeded watershed then runs once on the stitched maps, so an
object across a core edge is one label: there are no seams to mend. (micro-sam's command
line runs that watershed block-wise with elf, blocks of ``tile_shape`` with the halo: an
approximation of the one-image watershed done here; measured agreement in
tests/engine/test_ais_tiled.py.)

:func:`generate_ais_tiled`, for each tile of a :class:`~napari_sam.engine.image.tiling.TileGrid`
in row-major order:

1. its outer window is read from the image alone (numpy, zarr, dask, memory-mapped) and mapped
   to 8 bit with the contrast limits of the **whole** image (given, or found once before the
   first tile by :func:`~napari_sam.engine.auto.tiled.image_contrast_limits`), as the
   point-grid tiled path and the tiled EmbeddingStore do;
2. the window's maps are predicted (from ``tile_features(i)`` where given, e.g. a tiled
   EmbeddingStore, else encoded now) and its core is copied into the stitched maps
   (:class:`StitchedMaps`); ``progress(tiles_done, n_tiles)`` is called after each tile, the
   last one once the labels are written.

Memory: the three stitched maps are float32 at the image's size (12 bytes a pixel, as in
micro-sam), besides the watershed's own arrays.

Cancel: an exception raised by ``progress`` (or anywhere in the tile loop) stops the run; when
an ``out`` array was given, the labels of the tiles done so far are written into their cores
first (the watershed on their maps alone), the other cores of ``out`` are left untouched.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..frames import read
from ..image.preprocess import check_contrast_limits, to_uint8_rgb
from .tiled import _check_out, check_image, image_contrast_limits

#: ``(rgb_or_None, features_or_None, (h, w)) -> (3, h, w)`` float32 maps of one window.
PredictMaps = Callable[[np.ndarray | None, dict | None, tuple[int, int]], np.ndarray]
#: ``(3, H, W) maps -> (H, W) int32 labels 1..n`` (the AIS watershed with its parameters).
LabelMaps = Callable[[np.ndarray], np.ndarray]


class StitchedMaps:
    """The decoder's three maps over a whole image, filled core by core (micro-sam's
    ``foreground[inner_bb] = output[0][local_bb]``)."""

    def __init__(self, grid) -> None:
        self.grid = grid
        self.maps = np.zeros((3, *grid.image_shape), np.float32)
        self.done = np.zeros(len(grid), bool)

    def add(self, tile, window_maps) -> None:
        """Copy the core of ``window_maps`` ((3, h, w) at ``tile``'s outer window) into place."""
        window_maps = np.asarray(window_maps)
        if window_maps.shape != (3, *tile.outer_shape):
            raise ValueError(f"tile {tile.index}: maps of shape {window_maps.shape}, its outer window is "
                             f"{tile.outer_shape} (expected (3, h, w))")
        ys, xs = tile.core_slices
        cy, cx = tile.core_in_outer
        self.maps[:, ys, xs] = window_maps[:, cy, cx]
        self.done[tile.index] = True

    def labels_done(self, label_maps: LabelMaps) -> tuple[np.ndarray, int]:
        """``(labels, rows)``: labels of the done tiles over image rows ``0:rows`` (the rows
        of tile-grid rows holding a done tile), 0 outside the done cores, ids 1..n."""
        from skimage.segmentation import relabel_sequential

        done = [t for t in self.grid if self.done[t.index]]
        if not done:
            return np.zeros((0, self.grid.image_shape[1]), np.int32), 0
        rows = max(t.core[1] for t in done)
        labels = np.asarray(label_maps(self.maps[:, :rows]))
        keep = np.zeros(labels.shape, bool)
        for t in done:
            keep[t.core_slices] = True
        labels = np.where(keep, labels, 0)
        labels, _, _ = relabel_sequential(labels)
        return labels.astype(np.int32, copy=False), rows


def generate_ais_tiled(predict_maps: PredictMaps, label_maps: LabelMaps, image, grid, contrast_limits=None,
                       tile_features: Callable[[int], dict | None] | None = None,
                       progress: Callable[[int, int], object] | None = None, out=None):
    """Labels of ``image`` by AIS tile by tile over ``grid`` (see the module docstring).

    ``predict_maps`` / ``label_maps``: the decoder on one window and the watershed (an
    :class:`~napari_sam.engine.auto.ais.AisSegmenter` gives both). ``tile_features(i)``: tile
    ``i``'s encoder output, or None to encode it here. ``out``: an (H, W) integer array
    (numpy, zarr) the labels are written into and returned; None makes an int32 array.
    """
    hw = check_image(image)
    if tuple(grid.image_shape) != hw:
        raise ValueError(f"the tile grid is for an image of {grid.image_shape}, the image is {hw}")
    out_given = out is not None
    out = _check_out(out, hw)
    limits = check_contrast_limits(contrast_limits)
    if limits is None:
        limits = image_contrast_limits(image)
    stitched = StitchedMaps(grid)
    n = len(grid)
    try:
        for tile in grid:
            feats = None if tile_features is None else tile_features(tile.index)
            rgb = None
            if feats is None:
                ys, xs = tile.outer_slices
                rgb = to_uint8_rgb(read(image[ys, xs]), limits)
            stitched.add(tile, predict_maps(rgb, feats, tile.outer_shape))
            if progress is not None and tile.index + 1 < n:
                progress(tile.index + 1, n)
    except Exception:
        if out_given:
            _write_done(out, stitched, label_maps)
        raise
    labels = np.asarray(label_maps(stitched.maps))
    _write(out, (slice(None), slice(None)), labels)
    if progress is not None:
        progress(n, n)
    return out


def _write_done(out, stitched: StitchedMaps, label_maps: LabelMaps) -> None:
    labels, _ = stitched.labels_done(label_maps)
    for t in stitched.grid:
        if stitched.done[t.index]:
            _write(out, t.core_slices, labels[t.core_slices])


def _write(out, where, labels: np.ndarray) -> None:
    if labels.size and int(labels.max()) > np.iinfo(np.dtype(out.dtype)).max:
        raise ValueError(f"{int(labels.max())} labels do not fit the output's dtype {np.dtype(out.dtype)}")
    out[where] = labels
