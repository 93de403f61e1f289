"""Is this a division? Pure functions over one frame's masks (numpy in, numpy out).

* :func:`split_mask`: a track's own mask fell apart into two well-separated parts of
  comparable size (SAM 2 following a mother often covers both daughters).
* :func:`split_by_detections`: a re-detection (segment everything) found two objects inside
  what was one track's mask, even if they still touch.
Both return the two daughters (masks or detection ids) or None; the caller ends the mother
track on the previous frame and starts two daughter tracks with it as parent.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .params import LineageParams

EIGHT = np.ones((3, 3), bool)


def separation(a: np.ndarray, b: np.ndarray) -> float:
    """Empty pixels between two masks: the distance of their nearest pixel centres minus 1
    (0: they touch side by side; inf if either is empty)."""
    if not a.any() or not b.any():
        return float("inf")
    both = a | b
    box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in ndi.find_objects(both.astype(np.uint8))[0])
    dist = ndi.distance_transform_edt(~a[box])
    return float(dist[b[box]].min()) - 1.0


def _comparable(area_a: int, area_b: int, params: LineageParams) -> bool:
    small, large = sorted((area_a, area_b))
    return small >= params.split_min_area and small >= params.split_min_ratio * large


def split_mask(mask: np.ndarray, params: LineageParams | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """The two daughters ``(mask_a, mask_b)`` (bool, the mask's shape; ``a`` the one whose
    first pixel in row-major order comes first) when the 2D ``mask`` consists of exactly two
    8-connected parts of at least ``split_min_area`` pixels (smaller ones are ignored) that
    have comparable areas (``split_min_ratio``) and are ``split_min_separation`` apart;
    else None."""
    params = params or LineageParams()
    mask = np.asarray(mask, bool)
    if not params.divisions or mask.ndim != 2:
        return None
    parts, n = ndi.label(mask, structure=EIGHT)
    if n < 2:
        return None
    areas = np.bincount(parts.ravel())[1:]
    big = np.flatnonzero(areas >= params.split_min_area) + 1
    if len(big) != 2 or not _comparable(*areas[big - 1], params):
        return None
    a, b = parts == big[0], parts == big[1]
    if separation(a, b) < params.split_min_separation:
        return None
    return a, b


def split_by_detections(mask: np.ndarray, detections: np.ndarray,
                        params: LineageParams | None = None) -> tuple[int, int] | None:
    """The two detection ids ``(d1 < d2)`` when exactly two detections of at least
    ``split_min_area`` pixels lie inside ``mask`` (each with at least ``split_min_cover`` of
    its pixels in it) and have comparable areas; else None. ``detections``: labels of the same
    shape as ``mask``."""
    params = params or LineageParams()
    mask = np.asarray(mask, bool)
    detections = np.asarray(detections)
    if detections.shape != mask.shape:
        raise ValueError(f"detections have shape {detections.shape}, the mask {mask.shape}")
    if not params.divisions or not mask.any():
        return None
    flat = detections.ravel().astype(np.int64)
    n = int(flat.max(initial=0)) + 1
    area = np.bincount(flat, minlength=n)
    inside = np.bincount(flat[mask.ravel()], minlength=n)
    ids = [d for d in range(1, n) if area[d] >= params.split_min_area and inside[d] >= params.split_min_cover * area[d]]
    if len(ids) != 2 or not _comparable(area[ids[0]], area[ids[1]], params):
        return None
    return ids[0], ids[1]
