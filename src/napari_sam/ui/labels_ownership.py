"""Which pixels of a Labels layer this widget wrote in this session, per slice and object.

The widget may take back only what it wrote: a new mask of object ``k`` on a slice clears
the pixels of ``k`` that the widget itself set there before and the new mask leaves out,
never a pixel of ``k`` that was drawn by hand, loaded from a file or written by another
session. A pixel counts as the widget's while it still holds the id the widget wrote; once
the user paints over it (napari's ``paint`` event: brush, fill, polygon, eraser) it is the
user's for good, even if painted back with the same id.

Records are sparse (flat pixel indices of the (H, W) slice), so a long stack with many
objects costs memory in proportion to the pixels written, not to the stack.
"""

from __future__ import annotations

import contextlib
import weakref

import numpy as np

_EMPTY = np.empty(0, np.int64)


class OwnedPixels:
    """The pixels one Labels layer got from this widget: ``(lead, obj) -> flat indices``
    into the (H, W) slice ``layer.data[lead]``."""

    def __init__(self):
        self._rec: dict[tuple, np.ndarray] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self._rec.values())

    def mask(self, lead: tuple, obj: int, shape: tuple[int, int]) -> np.ndarray:
        """(H, W) bool: where the widget wrote ``obj`` on slice ``lead`` (and may clear)."""
        out = np.zeros(int(np.prod(shape)), bool)
        out[self._rec.get((tuple(lead), int(obj)), _EMPTY)] = True
        return out.reshape(shape)

    def set(self, lead: tuple, obj: int, mask: np.ndarray) -> None:
        """``obj`` now owns exactly ``mask`` on slice ``lead``."""
        flat = np.flatnonzero(mask).astype(np.int64)
        key = (tuple(lead), int(obj))
        if len(flat):
            self._rec[key] = flat
        else:
            self._rec.pop(key, None)

    def claim(self, lead: tuple, flat: np.ndarray, ids: np.ndarray) -> None:
        """The widget wrote ``ids[i]`` at flat pixel ``flat[i]`` of slice ``lead``."""
        flat, ids = np.asarray(flat, np.int64), np.asarray(ids)
        if not len(flat):
            return
        self._release(tuple(lead), flat)  # a pixel holds one id: it is no other object's now
        order = np.argsort(ids, kind="stable")
        ids, flat = ids[order], flat[order]
        cuts = np.flatnonzero(np.diff(ids)) + 1
        for group_ids, group in zip(np.split(ids, cuts), np.split(flat, cuts)):
            key = (tuple(lead), int(group_ids[0]))
            self._rec[key] = np.union1d(self._rec.get(key, _EMPTY), group)

    def release(self, index: tuple[np.ndarray, ...], plane_shape: tuple[int, int]) -> None:
        """Forget full-layer pixels ``index`` (a tuple of index arrays, one per axis):
        someone else changed them."""
        index = tuple(np.asarray(i, np.int64).ravel() for i in index)
        if not len(index[-1]):
            return
        lead_axes, (ys, xs) = index[:-2], index[-2:]
        flat = ys * int(plane_shape[1]) + xs
        if not lead_axes:
            self._release((), flat)
            return
        leads = np.stack(lead_axes, axis=1)
        for lead in np.unique(leads, axis=0):
            on = np.all(leads == lead, axis=1)
            self._release(tuple(int(i) for i in lead), flat[on])

    def clear(self) -> None:
        """The widget owns nothing here any more (it will clear nothing)."""
        self._rec.clear()

    def _release(self, lead: tuple, flat: np.ndarray) -> None:
        for key in [k for k in self._rec if k[0] == lead]:
            kept = self._rec[key][~np.isin(self._rec[key], flat)]
            if len(kept):
                self._rec[key] = kept
            else:
                del self._rec[key]


def _atom_index(atom, shape) -> tuple[np.ndarray, ...] | None:
    """The full-layer pixels a napari history atom changed, or None if its form is unknown.

    napari stores ``(indices, old, new)`` for ``data_setitem`` and a masked bounding box
    (``slice_key``, ``mask``) for brush, fill and polygon edits."""
    if isinstance(atom, tuple) and len(atom) == 3 and isinstance(atom[0], tuple) and len(atom[0]) == len(shape):
        return tuple(np.asarray(i) for i in atom[0])
    key, mask = getattr(atom, "slice_key", None), getattr(atom, "mask", False)
    if isinstance(key, tuple) and len(key) == len(shape) and all(isinstance(s, slice) for s in key):
        starts = [s.indices(n)[0] for s, n in zip(key, shape)]
        box = tuple(len(range(*s.indices(n))) for s, n in zip(key, shape))
        if mask is None:
            mask = np.ones(box, bool)
        mask = np.asarray(mask, bool)
        if mask.ndim < len(shape):  # painted-dims-only mask: add the length-1 axes
            mask = mask.reshape(box)
        return tuple(i + s for i, s in zip(np.nonzero(mask), starts))
    return None


class Ownership:
    """:class:`OwnedPixels` per Labels layer for one widget; listens to each layer's
    ``paint`` event so that pixels the user edits stop being the widget's."""

    def __init__(self):
        self._layers: dict[int, tuple[weakref.ref, OwnedPixels, object]] = {}
        self._own_writes = 0

    def of(self, layer) -> OwnedPixels:
        entry = self._layers.get(id(layer))
        if entry is not None and entry[0]() is layer:
            return entry[1]
        owned = OwnedPixels()
        me, ref = weakref.ref(self), weakref.ref(layer)

        def painted(event):
            this = me()
            lay = ref()
            if this is not None and lay is not None and not this._own_writes:
                this._user_painted(lay, owned, getattr(event, "value", None))

        layer.events.paint.connect(painted)
        self._layers[id(layer)] = (ref, owned, painted)
        return owned

    @contextlib.contextmanager
    def writing(self):
        """Edits made inside are the widget's own (their paint events are not the user's)."""
        self._own_writes += 1
        try:
            yield
        finally:
            self._own_writes -= 1

    def _user_painted(self, layer, owned: OwnedPixels, item) -> None:
        shape = tuple(layer.data.shape)
        atoms = item if isinstance(item, list) else [item]  # napari sends the undo item: a list
        for atom in atoms:
            index = _atom_index(atom, shape)
            if index is None:  # an edit napari describes in a way we do not know: be safe
                owned.clear()
                return
            owned.release(index, shape[-2:])

    def close(self) -> None:
        """Stop listening (widget closed); the records are dropped."""
        for ref, _, painted in self._layers.values():
            layer = ref()
            if layer is not None:
                with contextlib.suppress(TypeError, ValueError, RuntimeError):
                    layer.events.paint.disconnect(painted)
        self._layers.clear()

