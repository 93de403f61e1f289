"""Manual lineage edits on a labels time-lapse (frames on axis 0; label value = track id).

Pure numpy, no Qt, no napari: each edit reads the labels and the ``{daughter: mother}`` map
and returns an :class:`Edit` (the pixels to relabel and the new map) or raises ValueError
saying why not; :mod:`.lineage_panel` applies it to the layer as ONE undo step.

* :func:`mark_division`: the mother ends on the frame before ``t``; the two cells clicked on
  frame ``t`` are her daughters. A daughter still under the mother's id (SAM 2 often keeps
  one, or both, under it) gets a new id from frame ``t`` on; a daughter that is another
  track keeps its id if it begins on ``t``, else its frames from ``t`` on get a new id.
* :func:`join_tracks`: the later of two tracks gets the earlier one's id.
* :func:`split_track`: from frame ``t`` on a track gets a new id.
* :func:`valid_parents`: the links that hold for the labels as they are now (an undo on the
  labels may leave links behind: they are dropped, not shown).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi


@dataclass
class Edit:
    """``changes``: ``(frame, flat pixel indices of that frame, new value)``; ``parents``:
    the whole new ``{daughter: mother}``; ``message``: what it did, for the status line."""

    changes: list[tuple[int, np.ndarray, int]] = field(default_factory=list)
    parents: dict[int, int] = field(default_factory=dict)
    message: str = ""


def frame_span(data, label: int) -> tuple[int, int] | None:
    """(first, last) frame holding ``label``, or None."""
    frames = [t for t in range(len(data)) if (np.asarray(data[t]) == label).any()]
    return (frames[0], frames[-1]) if frames else None


def valid_parents(data, parents) -> dict[int, int]:
    """The links of ``parents`` whose daughter and mother are both in ``data`` with the mother
    ending before the daughter begins."""
    if not parents:
        return {}
    wanted = {int(v) for pair in parents.items() for v in pair}
    first, last = {}, {}
    for t in range(len(data)):
        for v in np.unique(np.asarray(data[t])).tolist():
            if v in wanted:
                first.setdefault(v, t)
                last[v] = t
    return {int(d): int(m) for d, m in parents.items() if d in first and m in last and last[m] < first[d]}


def _relabel_from(data, label: int, t0: int, value: int, changes) -> None:
    for t in range(t0, len(data)):
        flat = np.flatnonzero(np.asarray(data[t]) == label)
        if len(flat):
            changes.append((t, flat, value))


def _centroid(mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask).mean(0)


def _both_under_mother(data, mother: int, t: int, picks, ids) -> list:
    """Both daughters carry the mother's id: frame ``t`` by the clicked connected parts,
    later frames part by part to the daughter whose last position is nearest."""
    frame = np.asarray(data[t]) == mother
    parts, _ = ndi.label(frame)
    k = [int(parts[p]) for p in picks]
    if k[0] == k[1]:
        raise ValueError(f"both clicks are on one connected region of label {mother} on frame {t}: "
                         "paint a gap between the daughters first")
    changes, last = [], [_centroid(parts == k[0]), _centroid(parts == k[1])]
    for tt in range(t, len(data)):
        frame = np.asarray(data[tt]) == mother
        parts, n = ndi.label(frame)
        got = [np.zeros(frame.shape, bool), np.zeros(frame.shape, bool)]
        for j in range(1, n + 1):
            part = parts == j
            if tt == t and j in k:
                i = k.index(j)
            else:
                c = _centroid(part)
                i = int(np.argmin([np.linalg.norm(c - p) for p in last]))
            got[i] |= part
        for i in (0, 1):
            if got[i].any():
                changes.append((tt, np.flatnonzero(got[i]), ids[i]))
                last[i] = _centroid(got[i])
    return changes


def mark_division(data, parents, mother: int, t: int, picks, first_free: int) -> Edit:
    """``mother`` divides: she ends on frame ``t - 1``, the cells at ``picks`` (two index
    tuples into frame ``t``) are her daughters. ``first_free``: the first id no object uses."""
    mother, t = int(mother), int(t)
    span = frame_span(data, mother)
    if mother < 1 or span is None:
        raise ValueError(f"label {mother} is not in the labels: select the mother first")
    if span[0] >= t:
        raise ValueError(f"label {mother} begins on frame {span[0]}: a mother must be there before frame {t}, "
                         "where her daughters begin")
    if len(picks) != 2:
        raise ValueError(f"a division has two daughters, got {len(picks)} clicks")
    frame = np.asarray(data[t])
    values = [int(frame[tuple(int(i) for i in p)]) for p in picks]
    if 0 in values:
        raise ValueError(f"click {values.index(0) + 1} on frame {t} is on the background: click on each daughter")
    if values[0] == values[1] and values[0] != mother:
        raise ValueError(f"both clicks are on label {values[0]}: click on each daughter")
    new = iter(range(int(first_free), int(first_free) + 3))
    changes, daughters = [], []
    under = [v == mother for v in values]
    if all(under):
        ids = [next(new), next(new)]
        changes += _both_under_mother(data, mother, t, [tuple(int(i) for i in p) for p in picks], ids)
        daughters = ids
    else:
        for v, is_mother in zip(values, under):
            if is_mother or frame_span(data, v)[0] < t:  # still the mother's, or a track from before
                d = next(new)
                _relabel_from(data, v, t, d, changes)
            else:
                d = v
            daughters.append(d)
        if not any(under):
            late = [tt for tt in range(t, len(data)) if (np.asarray(data[tt]) == mother).any()]
            if late:
                raise ValueError(f"label {mother} is still there on frame {late[0]} (not one of the clicked "
                                 "daughters): a mother ends where her daughters begin")
    out = {d: m for d, m in parents.items() if d not in daughters}
    if sum(under) == 1:  # her later daughters, if any, now come from the daughter that kept her frames
        keeper = daughters[under.index(True)]
        out = {d: (keeper if m == mother and d not in daughters else m) for d, m in out.items()}
    out.update({d: mother for d in daughters})
    return Edit(changes, out, f"label {mother} divides on frame {t} into {daughters[0]} and {daughters[1]}")


def join_tracks(data, parents, a: int, b: int) -> Edit:
    """The later of tracks ``a`` and ``b`` gets the earlier one's id (one cell, seen again)."""
    a, b = int(a), int(b)
    if a == b:
        raise ValueError(f"pick two different tracks to join (both are {a})")
    spans = {lab: frame_span(data, lab) for lab in (a, b)}
    for lab, sp in spans.items():
        if lab < 1 or sp is None:
            raise ValueError(f"label {lab} is not in the labels")
    early, late = sorted((a, b), key=lambda lab: spans[lab])
    if spans[late][0] <= spans[early][1]:
        lo, hi = spans[late][0], min(spans[early][1], spans[late][1])
        raise ValueError(f"tracks {early} and {late} are both there on frames {lo}-{hi}: only tracks one after "
                         "the other can be joined")
    kids = sorted(d for d, m in parents.items() if m == early)
    if kids:
        raise ValueError(f"track {early} divides into {' and '.join(map(str, kids))}: join the later track to a daughter")
    changes = []
    _relabel_from(data, late, 0, early, changes)
    out = {d: (early if m == late else m) for d, m in parents.items() if d != late}
    return Edit(changes, out, f"track {late} joined to track {early} (frames {spans[early][0]}-{spans[late][1]})")


def split_track(data, parents, label: int, t: int, first_free: int) -> Edit:
    """From frame ``t`` on track ``label`` gets the new id ``first_free``; its daughters follow."""
    label, t = int(label), int(t)
    span = frame_span(data, label)
    if label < 1 or span is None:
        raise ValueError(f"label {label} is not in the labels: select the track to split")
    if span[0] >= t or span[1] < t:
        raise ValueError(f"track {label} is on frames {span[0]}-{span[1]}: go to a frame after its first "
                         "and up to its last to split it there")
    new = int(first_free)
    changes = []
    _relabel_from(data, label, t, new, changes)
    out = {d: (new if m == label else m) for d, m in parents.items()}
    return Edit(changes, out, f"track {label} split: from frame {t} on it is track {new}")
