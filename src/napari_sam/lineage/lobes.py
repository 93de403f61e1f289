"""A mask shaped like two touching cells: two lobes joined by a narrow neck (numpy in, numpy out).

A dividing cell pinches in two (anaphase, telophase), and a tracker that follows the mother
often keeps one mask over both daughters while they still touch or lie close: the mask is
then one piece with a waist. :func:`neck_split` cuts such a mask at the waist.

The measure is the mask's distance transform (each pixel's distance to the background): each
lobe has a peak (about its radius), the neck a saddle (about the neck's half-width). The
mask is two lobes when, thresholding the distance transform from low to high, it first falls
apart into two pieces each holding a peak of at least ``min_radius``, at a level at most
``max_neck`` x the lower peak; the lobes are then the two basins of a watershed seeded with
those pieces. One round or oval cell has a single peak (or a ridge that never falls apart
into two comparable peaks), so it is never cut.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

EIGHT = np.ones((3, 3), bool)


def neck_split(mask: np.ndarray, max_neck: float = 0.5, min_radius: float = 2.0,
               min_area: int = 25, min_ratio: float = 0.4) -> tuple[np.ndarray, np.ndarray, float] | None:
    """``(lobe_a, lobe_b, neck)`` when the 2D ``mask`` is one cell-sized piece made of two
    lobes (see the module doc): ``neck`` = the neck's half-width over the lower peak (0:
    touching at a point, 1: no waist); each lobe at least ``min_area`` pixels and the smaller
    at least ``min_ratio`` x the larger. Else None. Only the mask's largest 8-connected piece
    is looked at; the lobes are masks of the input's shape (``a``: the one whose first pixel
    in row-major order comes first)."""
    from skimage.segmentation import watershed

    mask = np.asarray(mask, bool)
    if mask.ndim != 2 or not mask.any():
        return None
    parts, n = ndi.label(mask, structure=EIGHT)
    if n > 1:
        mask = parts == np.argmax(np.bincount(parts.ravel())[1:]) + 1
    (box,) = ndi.find_objects(mask.astype(np.uint8))
    box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
    crop = mask[box]
    dist = ndi.distance_transform_edt(crop)
    for markers, neck in _peak_pairs(dist, max_neck, min_radius):
        basins = watershed(-dist, markers, mask=crop)
        a, b = basins == 1, basins == 2
        small, large = sorted((int(a.sum()), int(b.sum())))
        if small < min_area or small < min_ratio * large:
            continue  # a bump, not a lobe: look higher up for a waist between two cells
        out = []
        for part in (a, b):
            full = np.zeros(mask.shape, bool)
            full[box] = part
            out.append(full)
        if np.argmax(out[1].ravel()) < np.argmax(out[0].ravel()):
            out.reverse()
        return out[0], out[1], neck
    return None


def _peak_pairs(dist: np.ndarray, max_neck: float, min_radius: float):
    """From low levels up, the markers (1, 2) of the two highest pieces the distance
    transform falls apart into (each peak >= ``min_radius``) and the neck ratio (level over
    the lower peak), each level where that ratio is <= ``max_neck``."""
    for level in np.arange(0.5, max_neck * float(dist.max()) + 0.25, 0.5):
        pieces, n = ndi.label(dist > level, structure=EIGHT)
        if n < 2:
            continue
        peaks = ndi.maximum(dist, pieces, index=np.arange(1, n + 1))
        big = np.flatnonzero(peaks >= max(min_radius, level + 1.0))
        if len(big) < 2:
            continue
        two = big[np.argsort(peaks[big])[::-1][:2]]
        neck = level / float(peaks[two].min())
        if neck > max_neck:
            continue
        markers = np.zeros(dist.shape, np.int32)
        markers[pieces == two[0] + 1] = 1
        markers[pieces == two[1] + 1] = 2
        yield markers, float(neck)
