"""Masks -> a napari Labels layer, without losing anyone's work, one undo step per write.

The widget takes back only what it wrote itself in this session (see
:mod:`.labels_ownership`): writing object ``k``'s mask on a slice sets ``k`` where the
mask is on and the pixel is free (0) or already ``k``, and clears the pixels the widget
gave ``k`` there before that the mask no longer covers. Labels drawn by hand, loaded, or
written by another session, of any id, even ``k``, are left alone unless ``overwrite`` is
set (then the object's id on the slice becomes exactly its mask, over other labels).

Every call is ONE napari undo step (``Labels.data_setitem`` inside
``Labels.block_history()``), or, given a :class:`~.undo_step.LiveUndoStep`, shown at once
and part of that step (a propagation: one undo for the whole run).
"""

from __future__ import annotations

import contextlib

import numpy as np


def _full_index(lead: tuple[int, ...], mask: np.ndarray) -> tuple[np.ndarray, ...]:
    ys, xs = np.nonzero(mask)
    return tuple(np.full(len(ys), i, dtype=np.intp) for i in lead) + (ys, xs)


def _plane(layer, lead) -> np.ndarray:
    """The (H, W) slice as it is now (re-read: a zarr or dask layer returns copies)."""
    return np.asarray(layer.data[lead] if lead else layer.data)


@contextlib.contextmanager
def _writing(layer, ownership, live):
    """One undo step (or the live step's) and no paint event taken for the user's."""
    guard = ownership.writing() if ownership is not None else contextlib.nullcontext()
    history = layer.block_history() if live is None else contextlib.nullcontext()
    with guard, history:
        yield
    if live is not None:
        live.show()


def _put(layer, lead, where, value, live) -> None:
    if live is None:
        layer.data_setitem(_full_index(lead, where), value)
    else:
        live.put(lead, where, value)


def write_masks(layer, lead: tuple[int, ...], masks: dict[int, np.ndarray], overwrite: bool = False,
                ownership=None, live=None) -> dict[int, int]:
    """Write each object's (H, W) bool mask into the 2D slice ``layer.data[lead]``.

    ``ownership``: the widget's :class:`~.labels_ownership.Ownership` (None: the widget owns
    nothing there, so nothing is cleared unless ``overwrite``). ``live``: a
    :class:`~.undo_step.LiveUndoStep` to write into; None: this call is ONE undo step.
    Returns object id -> pixels it now holds on the slice (0: nothing visible, or every
    pixel was taken by others).
    """
    shape = _plane(layer, lead).shape
    for mask in masks.values():
        if mask.shape != shape:
            raise ValueError(f"mask of shape {mask.shape} does not fit the labels slice {shape}")
    owned = ownership.of(layer) if ownership is not None else None
    held: dict[int, int] = {}
    with _writing(layer, ownership, live):
        # first every object lets go of what its new mask leaves out, so that pixels one
        # object releases are free for another object of the same write
        for obj, mask in masks.items():
            drop = (_plane(layer, lead) == int(obj)) & ~mask
            if not overwrite:
                drop &= owned.mask(lead, obj, shape) if owned is not None else False
            if drop.any():
                _put(layer, lead, drop, 0, live)
        for obj, mask in masks.items():
            obj = int(obj)
            mine = _plane(layer, lead) == obj
            allowed = mask if overwrite else mask & ((_plane(layer, lead) == 0) | mine)
            add = allowed & ~mine
            if add.any():
                _put(layer, lead, add, obj, live)
            held[obj] = int(np.count_nonzero(allowed))
            if owned is not None:  # what it had and keeps, and what it got now
                owned.set(lead, obj, (owned.mask(lead, obj, shape) & mask & mine) | add)
    return held


def write_labels(layer, slices: dict[tuple[int, ...], np.ndarray], overwrite: bool = False, ownership=None,
                 live=None) -> int:
    """Paint whole labels images (automatic results) into 2D slices: ``slices`` maps a
    slice's leading index to an (H, W) labels image whose non-zero pixels are written.

    Without ``overwrite`` only free pixels (0) are written, so labels already there are
    kept; with it the new labels paint over them. Every slice of the call forms ONE undo
    step. The ids must be new to the layer (see :func:`napari_sam.app.ids.next_free_id`). The pixels written
    become the widget's in ``ownership`` (a click may then correct an automatic object).
    ``live``: a :class:`~.undo_step.LiveUndoStep` to write into (shown at once, part of
    that step: a run that writes frame after frame). Returns the pixels written.
    """
    planes = {}
    for lead, labels in slices.items():
        labels = np.asarray(labels)
        plane = _plane(layer, lead)
        if labels.shape != plane.shape:
            raise ValueError(f"labels of shape {labels.shape} do not fit the labels slice {plane.shape}")
        planes[lead] = (labels, plane)
    owned = ownership.of(layer) if ownership is not None else None
    written = 0
    with _writing(layer, ownership, live):
        for lead, (labels, plane) in planes.items():
            take = (labels != 0) & (plane != labels) if overwrite else (labels != 0) & (plane == 0)
            if take.any():
                if live is None:
                    layer.data_setitem(_full_index(lead, take), labels[take].astype(plane.dtype))
                else:
                    for value in np.unique(labels[take]):
                        live.put(lead, take & (labels == value), int(value))
                written += int(np.count_nonzero(take))
                if owned is not None:
                    owned.claim(lead, np.flatnonzero(take), labels.reshape(-1)[np.flatnonzero(take)])
    return written


def clear_object(layer, lead: tuple[int, ...], obj: int, ownership=None) -> int:
    """Take object ``obj`` off the slice: the pixels the widget gave it there, no other
    (one undo step). Returns pixels cleared."""
    if ownership is None:
        return 0
    owned = ownership.of(layer)
    plane = _plane(layer, lead)
    mine = (plane == int(obj)) & owned.mask(lead, obj, plane.shape)
    owned.set(lead, obj, np.zeros(plane.shape, bool))
    n = int(np.count_nonzero(mine))
    if n:
        with _writing(layer, ownership, None):
            layer.data_setitem(_full_index(lead, mine), 0)
    return n
