"""Object ids: the next free one, automatic results moved past the ids in use, and each
object's centroid per frame (the widget's Tracks layer and the command line's tracks table).

Automatic runs number their objects 1..n. Written into labels that already hold objects (a
layer with hand-drawn or earlier labels, prompted objects), they are shifted past every id in
use — :func:`next_free_id` — and must still fit the labels' dtype (:func:`shift_past`).
"""

from __future__ import annotations

import numpy as np

TABLE_COLUMNS = ("frame", "id", "y", "x", "area")


def next_free_id(labels=None, used=()) -> int:
    """One more than the largest id in ``labels`` (an array, or None) or in ``used``."""
    top = int(np.max(labels)) if labels is not None and np.size(labels) else 0
    return max([top, *[int(u) for u in used]]) + 1


def shift_ids(labels: np.ndarray, offset: int) -> np.ndarray:
    """Ids 1..n -> offset+1..offset+n (0 stays background), as int64."""
    labels = np.asarray(labels, dtype=np.int64)
    return np.where(labels > 0, labels + int(offset), 0)


def id_limit(dtype) -> int:
    """The largest id labels of ``dtype`` hold (a float layer: int32's)."""
    dtype = np.dtype(dtype)
    return int(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 2**31 - 1


def shift_past(slices: dict, first_free: int, dtype) -> dict:
    """Every labels image of ``slices`` (key -> (H, W) ids 1..n) with its ids moved to start at
    ``first_free``; ValueError when the largest would not fit ``dtype``."""
    offset = int(first_free) - 1
    top = max((int(np.max(lab, initial=0)) for lab in slices.values()), default=0)
    if offset + top > id_limit(dtype):
        raise ValueError(f"ids up to {offset + top} do not fit the labels' {np.dtype(dtype)}; use a new labels layer")
    return {key: shift_ids(lab, offset) for key, lab in slices.items()}


def object_centroids(labels: np.ndarray) -> list[tuple]:
    """``(id, *centroid, area)`` of every non-zero id of an n-D labels array, ids ascending;
    the centroid in the array's index coordinates (e.g. (y, x), or (z, y, x))."""
    labels = np.asarray(labels)
    flat = labels.ravel()
    if not flat.size:
        return []
    ids, inverse = np.unique(flat, return_inverse=True)
    inverse = inverse.ravel()
    area = np.bincount(inverse, minlength=len(ids))
    sums = []
    for axis, size in enumerate(labels.shape):  # one coordinate array at a time
        stride = int(np.prod(labels.shape[axis + 1:], dtype=np.int64))
        coord = (np.arange(flat.size, dtype=np.int64) // stride) % size
        sums.append(np.bincount(inverse, coord.astype(float), minlength=len(ids)))
    return [(int(k), *(float(s[i] / area[i]) for s in sums), int(area[i])) for i, k in enumerate(ids) if k != 0]


def table_rows(t: int, labels: np.ndarray) -> list[tuple]:
    """Tracks-table rows ``(frame, id, centroid y, centroid x, area)`` of one (H, W) labels frame."""
    return [(int(t), *row) for row in object_centroids(labels)]


def centroid_tracks(labels: np.ndarray, objects=None, video_axis: int = 0) -> np.ndarray:
    """Napari Tracks data for ``objects`` (``None``: every label): rows ``(object, frame,
    *centroid)`` with the centroid over every other axis of the frame, in the labels' data
    coordinates. Frames where an object is absent are skipped."""
    wanted = None if objects is None else {int(o) for o in objects}
    data = np.moveaxis(np.asarray(labels), video_axis, 0)
    rows = [(k, t, *c[:-1]) for t, vol in enumerate(data) for k, *c in object_centroids(vol)
            if wanted is None or k in wanted]
    if not rows:
        return np.empty((0, data.ndim + 1))
    return np.asarray(rows, float)
