"""The lineage steps of the automatic tracker (:mod:`.tracking`): divisions, gap closing and
cells leaving the field, over the pure rules of :mod:`napari_sam.lineage`.

:class:`LineageBook` keeps what the rules need about every track (the frame it began, its
last place, its recent areas, whether it touched the border, how long it has been missing)
and the parent links found; the tracker asks it, frame by frame, which tracks divide
(:meth:`LineageBook.own_splits`, :meth:`LineageBook.detection_splits`), which lost tracks
new detections are (:meth:`LineageBook.lost` for :func:`~napari_sam.lineage.match_lost`) and
which tracks end (:meth:`LineageBook.observe`). The book never touches the SAM 2 session: the
tracker removes and prompts objects.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from scipy import ndimage as ndi

from ...lineage import Lineage, LostTrack, split_by_detections, split_mask, touches_border, track_state
from ...lineage.lobes import neck_split
from ...lineage.regions import region_stats

AREA_HISTORY = 10  # frames of past areas the leaving rule compares with


class LineageBook:
    """Per-track state of one tracking run; ``params``: the tracker's ``TrackingParams``."""

    def __init__(self, params):
        self.p = params
        self.parents: dict[int, int] = {}
        self.born: dict[int, int] = {}
        self.seen: set[int] = set()
        self.ended: set[int] = set()
        self.areas: dict[int, deque] = {}
        self.at_border: dict[int, bool] = {}
        self.last: dict[int, tuple[int, float, float]] = {}
        self.absent: dict[int, int] = {}

    # ------------------------------------------------------------------ tracks begin and end
    def start(self, obj_id: int, t: int, parent: int = 0) -> None:
        """A track begins on frame ``t``; ``parent`` (a track seen before) is its mother."""
        self.born[obj_id] = t
        if parent and parent in self.seen:
            self.parents[obj_id] = parent

    def end(self, obj_id: int) -> None:
        self.ended.add(obj_id)
        self.absent.pop(obj_id, None)

    def may_divide(self, obj_id: int, t: int) -> bool:
        """A track divides only if it was in the labels before (the mother keeps >= 1 frame),
        and a daughter not within ``division_min_cycle`` frames of her birth."""
        born = self.born.get(obj_id, t)
        if obj_id in self.parents and t - born < self.p.division_min_cycle:
            return False
        return bool(self.p.divisions) and obj_id in self.seen and born < t

    # ------------------------------------------------------------------ divisions
    def own_splits(self, raw: np.ndarray, t: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """``(mother, mask_a, mask_b)`` for each track whose mask on frame ``t`` (``raw``:
        labels before ``keep_largest_regions``) fell apart into two daughters (``split_mask``)."""
        out = []
        if not self.p.divisions:
            return out
        for k, box in enumerate(ndi.find_objects(raw), start=1):
            if box is None or not self.may_divide(k, t):
                continue
            pair = split_mask(raw[box] == k, self.p)
            if pair is None:
                continue
            full = []
            for part in pair:
                m = np.zeros(raw.shape, bool)
                m[box] = part
                full.append(m)
            out.append((k, full[0], full[1]))
        return out

    def waist_splits(self, raw: np.ndarray, t: int, skip=()) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """``(mother, lobe_a, lobe_b)`` for each track (not in ``skip``) whose mask on frame
        ``t`` is one piece of two lobes with a waist (``neck_split``, ``division_max_neck``)."""
        out = []
        p = self.p
        if not p.divisions or not p.division_max_neck:
            return out
        for k, box in enumerate(ndi.find_objects(raw), start=1):
            if box is None or k in skip or not self.may_divide(k, t):
                continue
            box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
            got = neck_split(raw[box] == k, p.division_max_neck, min_area=p.split_min_area, min_ratio=p.split_min_ratio)
            if got is None:
                continue
            full = []
            for part in got[:2]:
                m = np.zeros(raw.shape, bool)
                m[box] = part
                full.append(m)
            out.append((k, full[0], full[1]))
        return out

    def detection_splits(self, raw: np.ndarray, detections: np.ndarray, t: int) -> list[tuple[int, int, int]]:
        """``(mother, detection a, detection b)`` for each track whose mask on frame ``t``
        holds two comparable detections (``split_by_detections``)."""
        out, used = [], set()
        if not self.p.divisions:
            return out
        for k in np.unique(raw[raw > 0]).tolist():
            if not self.may_divide(k, t):
                continue
            pair = split_by_detections(raw == k, detections, self.p)
            if pair is not None and not used & set(pair):
                used.update(pair)
                out.append((k, *pair))
        return out

    # ------------------------------------------------------------------ gaps and leaving
    def lost(self, t: int) -> list[LostTrack]:
        """The tracks missing on the frames just before ``t`` that may still come back."""
        return [LostTrack(k, *self.last[k]) for k, n in self.absent.items()
                if n >= 1 and k not in self.ended and k in self.last and self.last[k][0] < t]

    def observe(self, t: int, labels: np.ndarray, ids) -> tuple[np.ndarray, list[int]]:
        """Book frame ``t``'s labels of the session's objects ``ids``: returns the labels
        without the masks of cells that left (a new array only if one is dropped) and the ids
        whose track ends here (left the field, or missing too long: the tracker removes them
        from the session). A track missing for more than ``max_gap`` frames (gap closing on)
        or ``forget_after`` frames (gap closing off; None: never) ends."""
        p = self.p
        limit = p.max_gap if p.max_gap > 0 else p.forget_after
        stats = {int(k): (y, x, int(a)) for k, (y, x), a in zip(*region_stats(labels))}
        out, gone = labels, []
        for k in ids:
            if k in self.ended:
                continue
            mask = out == k if k in stats else np.zeros(labels.shape, bool)
            if p.leaving:
                state = track_state(mask, list(self.areas.get(k, ())), self.at_border.get(k, False), p)
            else:
                state = "present" if k in stats else "lost"
            if state == "left":
                if k in stats:
                    out = out.copy() if out is labels else out
                    out[mask] = 0
                gone.append(k)
                self.end(k)
            elif state == "lost":
                self.absent[k] = self.absent.get(k, 0) + 1
                if limit is not None and self.absent[k] > limit:
                    gone.append(k)
                    self.end(k)
            else:
                y, x, area = stats[k]
                self.absent[k] = 0
                self.areas.setdefault(k, deque(maxlen=AREA_HISTORY)).append(area)
                self.at_border[k] = touches_border(mask, p.border_margin)
                self.last[k] = (t, y, x)
                self.seen.add(k)
        return out, gone


def lineage_from_rows(rows, parents, n_frames: int) -> Lineage:
    """The :class:`~napari_sam.lineage.Lineage` of a run's tracks-table ``rows`` (frame, id,
    ...) and ``parents``, without the labels: each frame becomes a one-row labels frame of its
    ids (all a lineage needs), so gaps split tracks exactly as ``Lineage.from_labels`` does."""
    per_frame: list[list[int]] = [[] for _ in range(max(n_frames, 1))]
    for row in rows:
        per_frame[int(row[0])].append(int(row[1]))
    width = max((len(ids) for ids in per_frame), default=0) or 1
    frames = np.zeros((len(per_frame), 1, width), np.int64)
    for t, ids in enumerate(per_frame):
        frames[t, 0, :len(ids)] = ids
    return Lineage.from_labels(frames, parents)
