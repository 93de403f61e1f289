"""A cell dividing under one mask that shows no waist (the automatic tracker, :mod:`.tracking`).

SAM 2 often keeps one mask over both daughters while they touch, and that mask is not always
pinched (the waist rule, :func:`~napari_sam.lineage.lobes.neck_split`): it can be one convex
piece. What it always shows is the change of shape: a cell rounded up to divide becomes,
from one frame to the next, a mask about as large but about twice as long as wide (the two
daughters side by side along the spindle axis). A cell that only moves or deforms changes
its shape over several frames, not at once, and a mask that takes over a neighbour grows.

:func:`stretch_splits` finds the tracks whose mask did that (elongation at least
``division_stretch`` and at least ``division_stretch_rise`` x the frame before, the area
within ``division_cover`` .. 1 / ``division_cover`` of the frame before) and cuts each across
its long axis (:func:`axis_cut`). The tracker does not cut at once (SAM 2 follows two
halves of one blob poorly): it notes the frame, and when the track splits later (any rule)
places the division there (:func:`back_to`: the held frames in between shared between the
daughters); when that frame is about to leave the look-back buffer, or on the movie's last
frame, a mask still two cells' shape is cut (:func:`due_cuts`) and divides on the noted frame.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .tracking_lookback import elongation


def axis_cut(mask: np.ndarray, min_area: int = 1, min_ratio: float = 0.0) -> tuple[np.ndarray, np.ndarray] | None:
    """Cut ``mask`` across its long (principal) axis into two parts: where it is narrowest
    in its middle 40 % along that axis when it narrows there (a width under 0.9 x the
    median width of that stretch), else through its centroid; ``a`` is the part whose first
    pixel in row-major order comes first. None when a part is under
    ``min_area`` pixels or the smaller under ``min_ratio`` x the larger."""
    mask = np.asarray(mask, bool)
    ys, xs = np.nonzero(mask)
    if len(ys) < 3:
        return None
    pts = np.stack([ys, xs], 1).astype(float)
    pts -= pts.mean(0)
    _, vecs = np.linalg.eigh(np.cov(pts.T))
    proj = pts @ vecs[:, 1]  # position along the long axis, 0 at the centroid
    lo = float(proj.min())
    width = np.bincount(np.floor(proj - lo).astype(int)).astype(float)  # pixels per 1 px slice
    width = np.convolve(width, np.ones(3) / 3, mode="same")
    n = len(width)
    a, b = int(round(0.3 * n)), int(round(0.7 * n))
    cut = 0.0
    if b - a >= 3:
        k = a + int(np.argmin(width[a:b]))
        if width[k] < 0.9 * float(np.median(width[a:b])):
            cut = lo + k + 0.5
    first = proj < cut
    part_a, part_b = np.zeros(mask.shape, bool), np.zeros(mask.shape, bool)
    part_a[ys[first], xs[first]] = True
    part_b[ys[~first], xs[~first]] = True
    small, large = sorted((int(part_a.sum()), int(part_b.sum())))
    if small < max(min_area, 1) or small < min_ratio * large:
        return None
    if np.argmax(part_b.ravel()) < np.argmax(part_a.ravel()):
        part_a, part_b = part_b, part_a
    return part_a, part_b


def stretched(before: np.ndarray, now: np.ndarray, params) -> bool:
    """Whether a track's mask ``now`` is its mask ``before`` (the frame before) stretched at
    once into two cells' shape (module doc; ``division_stretch``, ``division_stretch_rise``,
    ``division_cover``)."""
    p = params
    if not p.division_stretch or not before.any() or not now.any():
        return False
    ratio = now.sum() / before.sum()
    if not p.division_cover <= ratio <= 1 / p.division_cover:
        return False
    el = elongation(now)
    return el >= p.division_stretch and el >= p.division_stretch_rise * elongation(before)


def stretch_splits(book, buffer, raw: np.ndarray, t: int, skip=()) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """``(mother, part_a, part_b)`` for each track (not in ``skip``) that may divide on frame
    ``t`` whose mask there (``raw``: labels before any cut, its largest piece) is its mask on
    the frame before (``buffer``) :func:`stretched`, cut by :func:`axis_cut`."""
    p = book.p
    out = []
    if not p.divisions or not p.division_stretch:
        return out
    prev = buffer.get(t - 1)
    if prev is None:
        return out
    for k, box in enumerate(ndi.find_objects(raw), start=1):
        if box is None or k in skip or not book.may_divide(k, t):
            continue
        now = _largest(raw == k)
        if not stretched(prev == k, now, p):
            continue
        got = axis_cut(now, p.split_min_area, p.split_min_ratio)
        if got is not None:
            out.append((k, *got))
    return out


def _largest(mask: np.ndarray) -> np.ndarray:
    parts, n = ndi.label(mask, structure=np.ones((3, 3), bool))
    return mask if n < 2 else parts == np.argmax(np.bincount(parts.ravel())[1:]) + 1


def due_cuts(pending: dict, raw: np.ndarray, t: int, last: int, params, skip=()) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """The stretched tracks whose division is due on frame ``t``: those in ``pending``
    (``{track: frame it stretched}``, not in ``skip``) whose frame is about to leave the
    look-back buffer (``division_lookback`` frames ago) or ``t`` is the ``last`` frame:
    ``(track, part_a, part_b)``, the track's mask on ``t`` cut by :func:`axis_cut` while it is
    still two cells' shape (``division_stretch``); a track whose mask is round again (it was
    no division, or another rule will tell) is dropped from ``pending``."""
    p = params
    out = []
    for k, s in list(pending.items()):
        if k in skip or (t - s < p.division_lookback and t < last):
            continue
        now = _largest(raw == k)
        got = axis_cut(now, p.split_min_area, p.split_min_ratio) if now.any() and elongation(now) >= p.division_stretch else None
        if got is None:
            del pending[k]
        else:
            out.append((k, *got))
    return out


def back_to(buffer, mother: int, t: int, parts, s: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """The held frames ``t - 1`` down to ``s`` (the frame ``mother`` stretched), each with the
    mother's (uncut) mask shared between the daughters ``parts`` (masks on ``t``), newest
    first (as :func:`~.tracking_lookback.walk_back` gives them); it stops early at a frame
    not held or without a mask to share."""
    from .tracking_lookback import share_mask

    a, b = parts
    out = []
    for f in range(t - 1, s - 1, -1):
        if buffer.held(f) is None:
            break
        m = buffer.mask(f, mother)
        shared = None if m is None or not m.any() else share_mask(m, a, b)
        if shared is None:
            break
        a, b = shared
        out.append((f, a, b))
    return out
