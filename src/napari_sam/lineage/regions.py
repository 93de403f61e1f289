"""Per-frame object measurements (centroid, area) of a labels frame, without a loop per object."""

from __future__ import annotations

import numpy as np


def check_labels_frame(frame, where: str) -> np.ndarray:
    """``frame`` as an integer array with no negative values, or ValueError naming ``where``."""
    arr = np.asarray(frame)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{where}: labels must be integers, got {arr.dtype}")
    if arr.ndim not in (2, 3):
        raise ValueError(f"{where}: a labels frame must be 2D (y, x) or 3D (z, y, x), got shape {arr.shape}")
    if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
        raise ValueError(f"{where}: negative label {int(arr.min())}")
    return arr


def present_labels(frame: np.ndarray) -> np.ndarray:
    """Sorted nonzero label values of a frame."""
    values = np.unique(frame)
    return values[values > 0].astype(np.int64)


def region_stats(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ids (n,), centroids (n, ndim) in pixels, areas (n,))`` of the nonzero labels of one
    frame, ids ascending; the centroid is the mean pixel position, in the frame's axis order."""
    flat = np.asarray(frame).ravel().astype(np.int64)
    n = int(flat.max(initial=0)) + 1
    area = np.bincount(flat, minlength=n)
    ids = np.flatnonzero(area[1:]) + 1
    cents = np.empty((len(ids), frame.ndim), np.float64)
    for axis, size in enumerate(frame.shape):
        shape = [1] * frame.ndim
        shape[axis] = size
        coord = np.broadcast_to(np.arange(size, dtype=np.float64).reshape(shape), frame.shape).ravel()
        cents[:, axis] = np.bincount(flat, coord, minlength=n)[ids] / area[ids]
    return ids.astype(np.int64), cents, area[ids].astype(np.int64)
