"""Finding the daughter a track lost (the automatic tracker, :mod:`.tracking`).

When a cell divides, SAM 2 following the mother often keeps only one daughter: the track's
mask shrinks to about half of what it was the frame before, and the other daughter, beside
it, belongs to no track. :func:`sister_point` says where that daughter should be: the mother
sat between her two daughters, so the lost one lies about as far from the mother's last
centroid as the kept one, on the other side. :func:`probe` asks the session what is there
(a positive click on that point, a negative one on the kept daughter, for a throw-away
object removed right after: the session's tracks are untouched) and :func:`sister_mask`
keeps the answer only if it is a cell like the kept daughter: of comparable size, mostly
outside the track's mask and not under another track. The tracker then treats the pair as a
division (placed back on the frame it happened and checked as any other split).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

PROBE_ID = "_sister_probe"  # the throw-away object's id (no track has a string id)


def sister_point(before: np.ndarray, now: np.ndarray, shape) -> tuple[float, float] | None:
    """``(y, x)`` where the lost daughter should be: the kept daughter's centroid (``now``)
    mirrored through the mother's centroid on the frame before (``before``); None when that
    point lies outside the frame."""
    (py, px), (cy, cx) = ndi.center_of_mass(before), ndi.center_of_mass(now)
    y, x = 2 * py - cy, 2 * px - cx
    if not (0 <= y <= shape[0] - 1 and 0 <= x <= shape[1] - 1):
        return None
    return float(y), float(x)


def probe(session, t: int, point, kept: np.ndarray) -> np.ndarray | None:
    """The session's mask (bool) for a click on ``point`` (y, x) on frame ``t``, with a
    negative click on the centroid of ``kept``; None if the session cannot be prompted with
    clicks. The throw-away object is removed before returning."""
    add = getattr(session, "add_prompts", None)
    if add is None:
        return None
    ky, kx = ndi.center_of_mass(kept)
    try:
        logits = add(t, PROBE_ID, points=np.array([[point[1], point[0]], [kx, ky]], np.float32),
                     labels=np.array([1, 0], np.int32))
    finally:
        if PROBE_ID in getattr(session, "obj_ids", ()):
            session.remove_object(PROBE_ID)
    return np.asarray(logits) > 0


def sister_mask(answer: np.ndarray, kept: np.ndarray, tracked: np.ndarray, mother: int, params) -> np.ndarray | None:
    """The lost daughter's mask from the session's ``answer``: its largest piece, outside
    every track's pixels (``tracked`` labels, the mother's id ``mother``), when that is a cell
    like ``kept``: comparable areas (``split_min_area``, ``split_min_ratio``), under a fifth
    of it inside the mother's mask and under ``max_covered`` of it under other tracks. Else None."""
    if answer is None or not answer.any():
        return None
    answer = _largest(answer)
    area = int(answer.sum())
    under = tracked[answer]
    if (under == mother).sum() > 0.2 * area or ((under > 0) & (under != mother)).sum() > params.max_covered * area:
        return None
    mask = answer & (tracked == 0)
    small, large = sorted((int(mask.sum()), int(kept.sum())))
    if small < params.split_min_area or small < params.split_min_ratio * large:
        return None
    return mask


def sister_splits(session, book, buffer, raw: np.ndarray, t: int, skip=()) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """``(mother, kept, sister)`` for each track (not in ``skip``) whose mask on frame ``t``
    (``raw``: labels before any cut) shrank to at most ``division_area_drop`` x its mask on
    the frame before (``buffer``'s uncut one) and whose lost daughter the session finds
    (:func:`sister_point`, :func:`probe`, :func:`sister_mask`)."""
    p = book.p
    out = []
    if not p.divisions or not p.division_area_drop:
        return out
    for k, box in enumerate(ndi.find_objects(raw), start=1):
        if box is None or k in skip or not book.may_divide(k, t):
            continue
        before = buffer.mask(t - 1, k)
        now = _largest(raw == k)
        if before is None or not before.any() or now.sum() > p.division_area_drop * before.sum():
            continue
        point = sister_point(before, now, raw.shape)
        if point is None or raw[int(round(point[0])), int(round(point[1]))] != 0:
            continue  # outside the frame, or on a tracked cell
        sister = sister_mask(probe(session, t, point, now), now, raw, k, p)
        if sister is not None:
            out.append((k, now, sister))
    return out


def _largest(mask: np.ndarray) -> np.ndarray:
    parts, n = ndi.label(mask, structure=np.ones((3, 3), bool))
    return mask if n < 2 else parts == np.argmax(np.bincount(parts.ravel())[1:]) + 1
