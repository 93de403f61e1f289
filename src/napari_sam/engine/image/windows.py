"""Which window of a tiled image answers a prompt (pure geometry, image pixels, no model).

A window is ``(y0, y1, x0, x1)`` (end exclusive), like a :class:`~.tiling.Tile`'s ``outer``.
A prompt's *extent* is the box around all its points and its box, ``(y0, y1, x0, x1)`` with
inclusive pixel coordinates. The *margin* of an extent in a window is the smallest distance
from the extent to a window edge, where an edge on the image border does not count (nothing
lies beyond it): an object at the image border is as well seen in a window ending there.

:func:`choose_window` takes the candidate window holding the extent with the most margin, if
that margin is at least ``need``; otherwise :func:`centred_window` makes a window of the
tiles' outer size centred on the extent (larger when the extent needs more), to be embedded
on demand.
"""

from __future__ import annotations

import math

import numpy as np

Window = tuple[int, int, int, int]

#: The least margin (px) a prompt needs in its window when the halo is smaller than twice this.
MIN_MARGIN = 16


def prompt_extent(points=None, box=None) -> tuple[float, float, float, float]:
    """``(y0, y1, x0, x1)`` around (N, 2) (x, y) ``points`` and a (4,) x0 y0 x1 y1 ``box``."""
    xs, ys = [], []
    if points is not None:
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        xs += [p[:, 0].min(), p[:, 0].max()]
        ys += [p[:, 1].min(), p[:, 1].max()]
    if box is not None:
        b = np.asarray(box, dtype=np.float64).reshape(4)
        xs += [b[0], b[2]]
        ys += [b[1], b[3]]
    if not xs:
        raise ValueError("a prompt extent needs points or a box")
    return float(min(ys)), float(max(ys)), float(min(xs)), float(max(xs))


def margin(extent, window: Window, image_shape) -> float:
    """Least distance (px) from ``extent`` to an edge of ``window`` that is not on the image
    border (``inf`` when every edge is); negative when the extent sticks out of the window."""
    sides = []
    for (e0, e1), (w0, w1), size in (((extent[0], extent[1]), (window[0], window[1]), image_shape[0]),
                                     ((extent[2], extent[3]), (window[2], window[3]), image_shape[1])):
        if w0 > 0 or e0 < w0:  # an inner edge, or the extent sticks out past the border
            sides.append(e0 - w0)
        if w1 < size or e1 > w1 - 1:
            sides.append(w1 - 1 - e1)
    return min(sides) if sides else math.inf


def required_margin(halo) -> int:
    """The margin a prompt needs: half the (smaller) halo, at least :data:`MIN_MARGIN` px."""
    return max(min(int(v) for v in halo) // 2, MIN_MARGIN)


def choose_window(extent, candidates, image_shape, need: float):
    """The candidate window (any hashable with ``window[:4] == (y0, y1, x0, x1)``) holding
    ``extent`` with the most margin, or None when none has at least ``need``. Ties go to the
    first candidate."""
    best, best_margin = None, -math.inf
    for cand in candidates:
        m = margin(extent, tuple(cand[:4]), image_shape)
        if m > best_margin:
            best, best_margin = cand, m
    return best if best_margin >= need else None


def _centred_span(lo: float, hi: float, size: int, limit: int) -> tuple[int, int]:
    size = min(size, limit)
    start = int(round((lo + hi + 1) / 2.0 - size / 2.0))
    start = min(max(start, 0), limit - size)
    return start, start + size


def centred_window(extent, outer_shape, image_shape, need: float) -> Window:
    """A window of ``outer_shape`` (h, w) centred on ``extent`` and kept inside the image;
    larger on an axis where the extent plus ``need`` on both sides does not fit (then the
    window is shrunk to the model input, at a lower resolution, but holds the whole prompt)."""
    ey0, ey1, ex0, ex1 = extent
    ih, iw = image_shape
    h = max(int(outer_shape[0]), int(math.ceil(ey1 - ey0 + 1 + 2 * need)))
    w = max(int(outer_shape[1]), int(math.ceil(ex1 - ex0 + 1 + 2 * need)))
    y0, y1 = _centred_span(ey0, ey1, h, ih)
    x0, x1 = _centred_span(ex0, ex1, w, iw)
    return (y0, y1, x0, x1)
