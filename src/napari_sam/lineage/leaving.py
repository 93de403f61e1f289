"""Leaving the field: a cell that leaves ends its track, instead of a small border mask
lingering under its id. Pure functions over one track's mask and its past areas.

:func:`track_state` says, for one track on one frame:

* ``"left"``: its mask touches the border (within ``border_margin`` px of an edge) and is
  smaller than ``leave_fraction`` x the median of its past areas, or it is empty and it
  touched the border on its last frame: the track ends on the frame before (that small
  mask is dropped);
* ``"lost"``: empty, away from the border: a gap-closing candidate (:mod:`.gaps`);
* ``"present"``: otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .params import LineageParams


def touches_border(mask: np.ndarray, margin: int = 1) -> bool:
    """Has ``mask`` a pixel within ``margin`` pixels of any edge (1: on the outermost ones)?"""
    mask = np.asarray(mask, bool)
    inner = tuple(slice(margin, max(s - margin, margin)) for s in mask.shape)
    return bool(mask.sum() > np.count_nonzero(mask[inner]))


def track_state(mask: np.ndarray, past_areas: Sequence[int], was_at_border: bool,
                params: LineageParams | None = None) -> str:
    """``"present"``, ``"left"`` or ``"lost"`` (see the module rules). ``past_areas``: the
    track's areas on its earlier frames (e.g. the last ten); ``was_at_border``: whether its
    mask touched the border on its last frame."""
    params = params or LineageParams()
    area = int(np.count_nonzero(mask))
    if area == 0:
        return "left" if was_at_border else "lost"
    if past_areas and touches_border(mask, params.border_margin):
        if area < params.leave_fraction * float(np.median(np.asarray(past_areas, np.float64))):
            return "left"
    return "present"
