"""The lineage of a labels time-lapse: tracks ``(id, begin, end, parent)`` as the Cell Tracking
Challenge defines them.

A track is one label over a *continuous* run of frames ``begin..end``; ``parent`` is the track
it comes from (0: none). A division is a track with two (or more) daughter tracks; a track with
exactly one daughter is the same cell seen again after a gap.

:meth:`Lineage.from_labels` builds the lineage of labels frames plus a ``{daughter: mother}``
map of label values. A label that is missing on some frames (a gap) is split there: its first
run keeps the label value as track id, each later run gets a new id (above every label in the
frames) with the run before it as parent, as the CTC format requires. :meth:`Lineage.relabel`
turns a frame's label values into those track ids; :meth:`Lineage.joined` undoes the split.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .regions import check_labels_frame, present_labels


@dataclass(frozen=True)
class Track:
    """One CTC track: ``id`` over frames ``begin..end`` (both included), daughter of ``parent``
    (0: none). ``label``: the value it has in the labels it was built from (0: same as ``id``)."""

    id: int
    begin: int
    end: int
    parent: int = 0
    label: int = 0

    @property
    def source(self) -> int:
        return self.label or self.id

    def row(self) -> tuple[int, int, int, int]:
        """The ``L B E P`` line of ``res_track.txt``."""
        return (self.id, self.begin, self.end, self.parent)


class Lineage:
    """A validated set of tracks. ``origin`` names where each track came from (a file's line,
    a label; best with the track id in it) for the error messages; by default "track ID"."""

    def __init__(self, tracks: Iterable[Track], origin: Mapping[int, str] | None = None):
        self.tracks: dict[int, Track] = {}
        self.origin = dict(origin or {})
        for tr in tracks:
            if tr.id in self.tracks:
                raise ValueError(f"{self.where(tr.id)}: track id {tr.id} appears twice")
            self.tracks[tr.id] = tr
        self.tracks = dict(sorted(self.tracks.items()))
        _validate(self.tracks, self.where)
        self._children: dict[int, list[int]] = {}
        for tr in self.tracks.values():
            if tr.parent:
                self._children.setdefault(tr.parent, []).append(tr.id)
        self._relabel: dict[int, list[Track]] = {}
        for tr in self.tracks.values():
            if tr.source != tr.id:
                self._relabel.setdefault(tr.source, []).append(tr)

    # ------------------------------------------------------------------ reading
    def where(self, track_id: int) -> str:
        """Where a track came from, for messages: a file's line, a label, or "track ID"."""
        return self.origin.get(track_id, f"track {track_id}")

    def __len__(self) -> int:
        return len(self.tracks)

    def __iter__(self):
        return iter(self.tracks.values())

    def __getitem__(self, track_id: int) -> Track:
        return self.tracks[track_id]

    def __contains__(self, track_id) -> bool:
        return track_id in self.tracks

    def __eq__(self, other) -> bool:
        return isinstance(other, Lineage) and self.rows() == other.rows()

    def __repr__(self) -> str:
        return f"Lineage({len(self)} tracks, {len(self.divisions())} divisions)"

    def rows(self) -> list[tuple[int, int, int, int]]:
        """``(L, B, E, P)`` per track, by id: the lines of ``res_track.txt``."""
        return [tr.row() for tr in self.tracks.values()]

    @property
    def parents(self) -> dict[int, int]:
        """``{daughter track: mother track}`` for every track with a parent."""
        return {tr.id: tr.parent for tr in self.tracks.values() if tr.parent}

    @property
    def n_frames(self) -> int:
        return max((tr.end for tr in self.tracks.values()), default=-1) + 1

    def children(self, track_id: int) -> list[int]:
        return list(self._children.get(track_id, []))

    def divisions(self) -> dict[int, tuple[int, ...]]:
        """``{mother: daughters}`` for the tracks with two or more daughters."""
        return {m: tuple(c) for m, c in sorted(self._children.items()) if len(c) >= 2}

    def active(self, t: int) -> list[int]:
        """Ids of the tracks present on frame ``t``."""
        return [tr.id for tr in self.tracks.values() if tr.begin <= t <= tr.end]

    def relabel(self, t: int, frame) -> np.ndarray:
        """Frame ``t`` of the labels the lineage was built from, with track ids as values
        (a label after a gap gets its later track's id). Returns a new array only if needed."""
        frame = np.asarray(frame)
        out = frame
        for label, tracks in self._relabel.items():
            for tr in tracks:
                if tr.begin <= t <= tr.end:
                    if out is frame:
                        dtype = np.promote_types(frame.dtype, np.min_scalar_type(max(self.tracks)))
                        out = frame.astype(dtype, copy=True)
                    out[frame == label] = tr.id
        return out

    def joined(self) -> tuple[dict[int, int], dict[int, int]]:
        """Undo the gap split: ``(label_of {track id: label}, parents {daughter label: mother
        label})``. A track that is its parent's only daughter continues the parent's label;
        the other parent links are the divisions, in label values."""
        label_of: dict[int, int] = {}
        for tr in sorted(self.tracks.values(), key=lambda tr: (tr.begin, tr.id)):
            only = tr.parent and len(self._children[tr.parent]) == 1
            label_of[tr.id] = label_of[tr.parent] if only else tr.id
        parents = {label_of[tr.id]: label_of[tr.parent] for tr in self.tracks.values()
                   if tr.parent and len(self._children[tr.parent]) >= 2}
        return label_of, parents

    # ------------------------------------------------------------------ building
    @classmethod
    def from_labels(cls, frames: Sequence, parents: Mapping[int, int] | None = None) -> Lineage:
        """The lineage of ``frames`` (a (T, ...) array or a sequence of 2D / 3D labels frames,
        read one at a time) with ``parents`` ``{daughter label: mother label}`` (0: none).

        Raises ValueError for frames that are not labels (or differ in shape), for a parent
        link naming a label that is not in the frames, a cycle, or a mother that is still
        present on or after the frame its daughter begins."""
        runs: dict[int, list[list[int]]] = {}
        shape = None
        n = len(frames)
        if n == 0:
            raise ValueError("no frames: a lineage needs at least one labels frame")
        for t in range(n):
            frame = check_labels_frame(frames[t], f"frame {t}")
            if shape is None:
                shape = frame.shape
            elif frame.shape != shape:
                raise ValueError(f"frame {t}: shape {frame.shape} differs from frame 0's {shape}")
            for lab in present_labels(frame).tolist():
                seg = runs.setdefault(lab, [])
                if seg and seg[-1][1] == t - 1:
                    seg[-1][1] = t
                else:
                    seg.append([t, t])
        parents = {int(d): int(m) for d, m in (parents or {}).items() if int(m) != 0}
        for d, m in parents.items():
            for what, lab in (("daughter", d), ("mother", m)):
                if lab not in runs:
                    raise ValueError(f"parents {{{d}: {m}}}: {what} label {lab} is not in the frames")
        next_id = max(runs, default=0) + 1
        later = sorted((seg[0], lab, k) for lab, segs in runs.items() for k, seg in enumerate(segs) if k)
        ids = {(lab, 0): lab for lab in runs}
        for _, lab, k in later:
            ids[(lab, k)] = next_id
            next_id += 1
        tracks, origin = [], {}
        for lab, segs in runs.items():
            for k, (b, e) in enumerate(segs):
                if k:
                    parent = ids[(lab, k - 1)]
                elif lab in parents:
                    parent = ids[(parents[lab], len(runs[parents[lab]]) - 1)]
                else:
                    parent = 0
                tid = ids[(lab, k)]
                tracks.append(Track(tid, b, e, parent, lab))
                origin[tid] = f"label {lab} after a gap (track {tid}, frames {b}-{e})" if k else f"label {lab}"
        return cls(tracks, origin)

    @classmethod
    def from_rows(cls, rows: Iterable[Sequence[int]], origin: Mapping[int, str] | None = None) -> Lineage:
        """A lineage from ``(L, B, E, P)`` rows (``res_track.txt``'s lines)."""
        return cls((Track(int(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows), origin)


def _validate(tracks: dict[int, Track], name) -> None:
    for tr in tracks.values():
        if tr.id < 1:
            raise ValueError(f"{name(tr.id)}: track id must be a positive integer, got {tr.id}")
        if tr.begin < 0 or tr.end < tr.begin:
            raise ValueError(f"{name(tr.id)}: begin {tr.begin} and end {tr.end} (need 0 <= begin <= end)")
        if tr.parent < 0:
            raise ValueError(f"{name(tr.id)}: negative parent {tr.parent}")
        if tr.parent and tr.parent not in tracks:
            raise ValueError(f"{name(tr.id)}: parent {tr.parent} is not a track")
    acyclic: set[int] = set()
    for tr in tracks.values():
        chain, seen, cur = [tr.id], {tr.id}, tr.parent
        while cur and cur not in acyclic:
            chain.append(cur)
            if cur in seen:
                loop = " -> ".join(map(str, chain[chain.index(cur):]))
                raise ValueError(f"{name(tr.id)}: parent links form a cycle: {loop}")
            seen.add(cur)
            cur = tracks[cur].parent
        acyclic.update(seen)
    for tr in tracks.values():
        if tr.parent and tracks[tr.parent].end >= tr.begin:
            mom = tracks[tr.parent]
            raise ValueError(f"{name(tr.id)}: its parent, {name(mom.id)}, ends at frame {mom.end}, "
                             f"not before it begins at frame {tr.begin}")
