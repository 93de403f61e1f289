"""Gap closing: a track lost for a few frames and found again near where it was gets its id
back. Pure functions over positions; the caller keeps the lost tracks and the detections.

The matching is one-to-one and minimises the total distance over all (lost track, detection)
pairs allowed: lost for at most ``max_gap`` frames (the frames between its last one and now)
and within ``max_gap_distance`` pixels of its last centroid (Hungarian assignment,
``scipy.optimize.linear_sum_assignment``; the most pairs first, then the least distance).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from .params import LineageParams


@dataclass(frozen=True)
class LostTrack:
    """A track not seen since ``last_frame``, where its centroid was ``(y, x)``."""

    id: int
    last_frame: int
    y: float
    x: float


def eligible(track: LostTrack, frame: int, params: LineageParams) -> bool:
    """Can ``track`` be found again on ``frame``? (missed at most ``max_gap`` frames)"""
    return track.last_frame < frame and frame - track.last_frame - 1 <= params.max_gap


def expired(lost: Iterable[LostTrack], frame: int, params: LineageParams) -> list[int]:
    """Ids of the lost tracks that can no longer come back on ``frame`` or later: they end
    on their ``last_frame``."""
    return [tr.id for tr in lost if frame - tr.last_frame - 1 > params.max_gap]


def match_lost(lost: Iterable[LostTrack], found: Mapping[int, tuple[float, float]], frame: int,
               params: LineageParams | None = None) -> dict[int, int]:
    """``{detection id: track id}`` for the new ``found`` ``{detection id: (y, x) centroid}``
    on ``frame`` that are lost tracks seen again (see the module rules)."""
    params = params or LineageParams()
    tracks = [tr for tr in lost if eligible(tr, frame, params)]
    dets = sorted(found)
    if params.max_gap == 0 or not tracks or not dets:
        return {}
    last = np.array([(tr.y, tr.x) for tr in tracks], np.float64)
    here = np.array([found[d] for d in dets], np.float64).reshape(-1, 2)
    dist = np.hypot(last[:, None, 0] - here[None, :, 0], last[:, None, 1] - here[None, :, 1])
    allowed = dist <= params.max_gap_distance
    # a forbidden pair costs more than any set of allowed pairs: the most matches come first
    big = params.max_gap_distance * min(dist.shape) + 1.0
    cost = np.where(allowed, dist, big)
    rows, cols = linear_sum_assignment(cost)
    return {dets[c]: tracks[r].id for r, c in zip(rows, cols) if allowed[r, c]}
