"""Which frames a propagation visits, in order: the one rule behind the progress bar and the
run itself.

``start`` given: from there; not given: from the earliest frame holding a prompt of any object
(:func:`first_prompted_frame`). ``"forward"`` visits ``start .. end`` (``max_frames`` past
``start`` at most), ``"backward"`` ``start .. 0`` downwards (nothing from frame 0), ``"both"``
forward then backward, the start frame in both passes. This is what
:meth:`napari_sam.engine.video.session.VideoSession.propagate` yields for an explicit
``start``; callers resolve ``start`` here and pass it on, so count and run cannot disagree
(``tests/app/test_frame_range.py`` checks it against the session).
"""

from __future__ import annotations

DIRECTIONS = ("forward", "backward", "both")


def check_direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    return direction


def propagation_frames(n_frames: int, direction: str, start: int, max_frames: int | None = None) -> list[int]:
    """The frames a propagation over ``n_frames`` frames yields, in order."""
    check_direction(direction)
    n = int(n_frames)
    if not 0 <= int(start) < n:
        raise ValueError(f"start frame {start} out of range: the stack has {n} frame(s)")
    if max_frames is not None and int(max_frames) < 0:
        raise ValueError(f"max_frames must be >= 0, got {max_frames}")
    start = int(start)
    limit = n if max_frames is None else int(max_frames)
    forward = list(range(start, min(start + limit, n - 1) + 1))
    backward = list(range(start, max(start - limit, 0) - 1, -1)) if start > 0 else []
    return {"forward": forward, "backward": backward, "both": forward + backward}[direction]


def first_prompted_frame(session) -> int | None:
    """The earliest frame holding a prompt of any object of a VideoSession (None: no prompt)."""
    frames = [f for obj in session.obj_ids for f in session.prompted_frames(obj)]
    return min(frames) if frames else None


def resolve_start(session, start: int | None) -> int:
    """``start``, or the first prompted frame of ``session`` (0 without session or prompt)."""
    if start is not None:
        return int(start)
    first = None if session is None else first_prompted_frame(session)
    return 0 if first is None else first
