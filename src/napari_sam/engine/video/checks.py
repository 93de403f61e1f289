"""Argument checks shared by the whole-frame and the tiled video sessions (one wording)."""

from __future__ import annotations

import numpy as np

DIRECTIONS = ("forward", "backward", "both")


def frame_index(frame, num_frames: int) -> int:
    """``frame`` as an int index into a stack of ``num_frames``, or a ValueError naming it."""
    if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)):
        raise ValueError(f"frame index must be an int, got {frame!r}")
    if not 0 <= int(frame) < num_frames:
        raise ValueError(f"frame index {int(frame)} out of range: the stack has {num_frames} frame(s)")
    return int(frame)


def propagate_args(direction, start, max_frames, num_frames: int):
    """The checked ``(start, max_frames)`` of a ``propagate`` call (``start`` None stays None)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if start is not None:
        start = frame_index(start, num_frames)
    if max_frames is not None and (not isinstance(max_frames, (int, np.integer)) or max_frames < 0):
        raise ValueError(f"max_frames must be a non-negative int, got {max_frames!r}")
    return start, max_frames


def prompt_args(frame, points, labels, box, clear: bool, frame_shape, num_frames: int):
    """The checked ``(t, points, labels, box)`` of an ``add_prompts`` call."""
    from ..image.prompts import check_box, check_points

    t = frame_index(frame, num_frames)
    pts, lab = check_points(points, labels, frame_shape)
    b = check_box(box, frame_shape)
    if pts is None and b is None:
        raise ValueError("give points (with labels) or a box")
    if b is not None and not clear:
        raise ValueError("a box replaces the frame's prompts: use clear=True")
    return t, pts, lab, b


def pass_frames(reverse: bool, start: int, limit: int, num_frames: int) -> range:
    """The frames one propagation pass visits from ``start``, at most ``limit`` beyond it."""
    if reverse:
        end = max(start - limit, 0)
        return range(start, end - 1, -1) if start > 0 else range(0)
    return range(start, min(start + limit, num_frames - 1) + 1)


def end_args(object_score_threshold, stop_after_absent):
    """The checked ``(object_score_threshold, stop_after_absent)`` of a session (objects that end)."""
    try:
        threshold = float(object_score_threshold)
    except (TypeError, ValueError):
        raise ValueError(f"object_score_threshold must be a number (an object-score logit), "
                         f"got {object_score_threshold!r}") from None
    if not np.isfinite(threshold):
        raise ValueError(f"object_score_threshold must be finite, got {object_score_threshold!r}")
    if stop_after_absent is not None and (isinstance(stop_after_absent, bool)
                                          or not isinstance(stop_after_absent, (int, np.integer))
                                          or stop_after_absent < 1):
        raise ValueError(f"stop_after_absent must be None or an int >= 1 (absent frames in a row), "
                         f"got {stop_after_absent!r}")
    return threshold, None if stop_after_absent is None else int(stop_after_absent)
