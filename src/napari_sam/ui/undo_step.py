"""Many writes to a Labels layer, shown as they come, undone as ONE napari undo step.

A propagation writes frame after frame for as long as it runs; the user must see each frame
at once, may paint or press Ctrl+Z meanwhile, and must get the whole run back with one
undo. Holding ``Labels.block_history()`` open for the run would swallow the user's own
strokes into the run's step (napari commits everything staged when a stroke ends), so the
run writes straight into the data (no history, the view refreshed) and records each changed
pixel's value before and after. :meth:`LiveUndoStep.commit` then turns the pixels that
still hold the run's values into one history item: it puts their old values back and
writes the new ones through ``Labels.data_setitem`` inside one ``block_history()``, in one
main-thread call, so nothing is ever seen in between. Pixels the user changed in the
meantime are theirs: they are left out of the step and keep what the user gave them.
"""

from __future__ import annotations

import contextlib

import numpy as np


def _merge(prev, flat, old, new):
    """Combine two records of one slice: the first old value, the last new value."""
    if prev is None:
        return flat, old, new
    f = np.concatenate([prev[0], flat])
    o = np.concatenate([prev[1], old])
    n = np.concatenate([prev[2], new])
    uniq, first = np.unique(f, return_index=True)
    _, last_rev = np.unique(f[::-1], return_index=True)
    return uniq, o[first], n[len(f) - 1 - last_rev]


class LiveUndoStep:
    """Writes into ``layer`` that become one undo step on :meth:`commit` (see module doc).

    ``ownership``: the widget's :class:`~.labels_ownership.Ownership`, so the commit's own
    paint event is not taken for the user's.
    """

    def __init__(self, layer, ownership=None):
        self.layer = layer
        self.ownership = ownership
        self.committed = False
        self._rec: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._shape: dict[tuple, tuple[int, int]] = {}

    def __len__(self) -> int:
        return sum(len(r[0]) for r in self._rec.values())

    def put(self, lead: tuple, where: np.ndarray, value: int) -> None:
        """Set the (H, W) bool ``where`` of slice ``lead`` to ``value``, now, without history."""
        if self.committed:
            raise RuntimeError("this undo step is committed: start a new one")
        plane = np.asarray(self.layer.data[lead] if lead else self.layer.data)
        flat = np.flatnonzero(where & (plane != value)).astype(np.int64)
        if not len(flat):
            return
        old = plane.reshape(-1)[flat].copy()
        ys, xs = np.unravel_index(flat, plane.shape)
        self.layer.data[self._index(lead, ys, xs)] = value
        new = np.full(len(flat), value, dtype=old.dtype)
        self._rec[lead] = _merge(self._rec.get(lead), flat, old, new)
        self._shape[lead] = plane.shape

    def show(self) -> None:
        """Refresh the view after a batch of :meth:`put` s."""
        self.layer.refresh()

    def stroke_in_progress(self) -> bool:
        """Whether the user holds a brush stroke on the layer now (napari stages its edits;
        a commit now would merge into the stroke's undo step)."""
        return bool(getattr(self.layer, "_block_history", False))  # napari's own flag, read only

    def commit(self) -> int:
        """Make the recorded writes one undo step (idempotent). Returns the pixels in it."""
        if self.committed:
            return 0
        self.committed = True
        layer, total = self.layer, 0
        items = []
        for lead, (flat, old, new) in self._rec.items():
            plane = np.asarray(layer.data[lead] if lead else layer.data)
            still = (plane.reshape(-1)[flat] == new) & (old != new)
            if still.any():
                ys, xs = np.unravel_index(flat[still], self._shape[lead])
                items.append((self._index(lead, ys, xs), old[still], new[still]))
        self._rec.clear()
        if not items:
            return 0
        guard = self.ownership.writing() if self.ownership is not None else contextlib.nullcontext()
        with guard, layer.block_history():
            for index, old, new in items:
                layer.data[index] = old  # back to before the run, unseen (no refresh) ...
                layer.data_setitem(index, new, refresh=False)  # ... and forward, recorded
                total += len(old)
        layer.refresh()
        return total

    @staticmethod
    def _index(lead, ys, xs):
        return tuple(np.full(len(ys), i, dtype=np.intp) for i in lead) + (ys.astype(np.intp), xs.astype(np.intp))



class OpenSteps:
    """The runs whose :class:`LiveUndoStep` is not committed yet (a propagation, a Track
    everything): each is committed when its run ends, and all of them when the widget closes."""

    def __init__(self):
        self._steps: list[LiveUndoStep] = []

    def __len__(self) -> int:
        return len(self._steps)

    def add(self, step: LiveUndoStep) -> LiveUndoStep:
        if step not in self._steps:
            self._steps.append(step)
        return step

    def close(self, step: LiveUndoStep, wait: bool = True) -> None:
        """Make a run's writes one undo step. While the user holds a brush stroke on the
        layer (napari stages it), wait for the stroke to end, so the two stay apart."""
        if wait and step.stroke_in_progress():
            from qtpy.QtCore import QTimer

            QTimer.singleShot(50, lambda: self.close(step))
            return
        if step in self._steps:
            self._steps.remove(step)
        step.commit()

    def close_all(self) -> None:
        for step in list(self._steps):
            self.close(step, wait=False)
