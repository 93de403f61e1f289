"""Masks -> a napari Labels layer, without losing anyone's work, one undo step per write.

An object owns the pixels that carry its id. Writing object ``k``'s mask on a slice sets
``k`` where the mask is on and the pixel is free (0) or already ``k``, and clears ``k``'s
pixels the mask no longer covers. Pixels of other objects, and labels that were there
before, are left alone unless ``overwrite`` is set. Every call goes through
``Labels.data_setitem`` inside ``Labels.block_history()``, so napari's undo (Ctrl+Z on the
Labels layer) takes back exactly one write.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def _full_index(lead: tuple[int, ...], mask: np.ndarray) -> tuple[np.ndarray, ...]:
    ys, xs = np.nonzero(mask)
    return tuple(np.full(len(ys), i, dtype=np.intp) for i in lead) + (ys, xs)


def write_masks(layer, lead: tuple[int, ...], masks: dict[int, np.ndarray], overwrite: bool = False) -> dict[int, int]:
    """Write each object's (H, W) bool mask into the 2D slice ``layer.data[lead]``.

    All objects of the call form ONE undo step. Returns object id -> pixels it now holds on
    the slice (0: nothing visible, or every pixel was taken by others).
    """
    held: dict[int, int] = {}
    plane = layer.data[lead] if lead else layer.data
    cur = np.asarray(plane)
    for mask in masks.values():
        if mask.shape != cur.shape:
            raise ValueError(f"mask of shape {mask.shape} does not fit the labels slice {cur.shape}")
    with layer.block_history():
        # first every object lets go of what its new mask leaves out, so that pixels one
        # object releases are free for another object of the same write
        for obj, mask in masks.items():
            drop = (np.asarray(plane) == int(obj)) & ~mask
            if drop.any():
                layer.data_setitem(_full_index(lead, drop), 0)
        for obj, mask in masks.items():
            obj = int(obj)
            cur = np.asarray(plane)
            mine = cur == obj
            allowed = mask if overwrite else mask & ((cur == 0) | mine)
            add = allowed & ~mine
            if add.any():
                layer.data_setitem(_full_index(lead, add), obj)
            held[obj] = int(np.count_nonzero(allowed))
    return held


def write_labels(layer, slices: dict[tuple[int, ...], np.ndarray], overwrite: bool = False) -> int:
    """Paint whole labels images (automatic results) into 2D slices: ``slices`` maps a
    slice's leading index to an (H, W) labels image whose non-zero pixels are written.

    Without ``overwrite`` only free pixels (0) are written, so labels already there are
    kept; with it the new labels paint over them. Every slice of the call forms ONE undo
    step. The ids must be new to the layer (see :func:`next_free_id`). Returns the pixels
    written.
    """
    planes = {}
    for lead, labels in slices.items():
        labels = np.asarray(labels)
        plane = np.asarray(layer.data[lead] if lead else layer.data)
        if labels.shape != plane.shape:
            raise ValueError(f"labels of shape {labels.shape} do not fit the labels slice {plane.shape}")
        planes[lead] = (labels, plane)
    written = 0
    with layer.block_history():
        for lead, (labels, plane) in planes.items():
            take = labels != 0 if overwrite else (labels != 0) & (plane == 0)
            if take.any():
                layer.data_setitem(_full_index(lead, take), labels[take].astype(plane.dtype))
                written += int(np.count_nonzero(take))
    return written


def clear_object(layer, lead: tuple[int, ...], obj: int) -> int:
    """Remove object ``obj`` from the slice (one undo step). Returns pixels cleared."""
    plane = np.asarray(layer.data[lead] if lead else layer.data)
    mine = plane == int(obj)
    n = int(np.count_nonzero(mine))
    if n:
        with layer.block_history():
            layer.data_setitem(_full_index(lead, mine), 0)
    return n


def next_free_id(layer, used=()) -> int:
    """One more than the largest id in the layer or in ``used``."""
    top = int(np.max(layer.data)) if layer is not None and np.size(layer.data) else 0
    return max([top, *[int(u) for u in used]]) + 1


def centroid_tracks(labels: np.ndarray, objects=None, video_axis: int = 0) -> np.ndarray:
    """Napari Tracks data for ``objects`` (``None``: every label in ``labels``): rows
    (object, frame, *centroid) with the centroid over every other axis of the frame (e.g.
    (y, x), or (z, y, x) of a 4D layer), in the labels' data coordinates. Frames where an
    object is absent are skipped."""
    wanted = None if objects is None else {int(o) for o in objects}
    data = np.moveaxis(np.asarray(labels), video_axis, 0)
    rows = []
    for t, vol in enumerate(data):
        ids = [int(o) for o in np.unique(vol) if o != 0]
        present = [o for o in ids if wanted is None or o in wanted]
        if not present:
            continue
        centers = ndi.center_of_mass(np.ones_like(vol, dtype=np.uint8), vol, present)
        rows += [(o, t, *c) for o, c in zip(present, centers)]
    if not rows:
        return np.empty((0, data.ndim + 1))
    return np.asarray(rows, float)
