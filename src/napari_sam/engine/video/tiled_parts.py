"""Pieces of the tiled video session: lazy tile views of a stack, a tiled store's features of
one tile, where an object fits best, and the user's prompts kept in image pixels.

See :mod:`~napari_sam.engine.video.tiled` for how they are put together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..frames import FrameStack, read

#: Logits outside an object's tile window (SAM 2's own "no object" score: far below 0, finite
#: so ``argmax`` / ``max`` / sigmoid behave).
OUTSIDE = -1024.0


class TileFrames:
    """Lazy (T, h, w[, C]) view of one window ``(y0, y1, x0, x1)`` of every frame of ``stack``:
    reading frame ``t`` reads only that window (zarr / dask chunks outside it are not read)."""

    def __init__(self, stack: FrameStack, window) -> None:
        self.stack = stack
        self.window = tuple(int(v) for v in window)
        y0, y1, x0, x1 = self.window
        self.shape = (len(stack), y1 - y0, x1 - x0, *stack.shape[3:])
        self.dtype = stack.dtype
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, t):
        if not isinstance(t, (int, np.integer)):
            raise TypeError(f"a tile view reads one frame at a time, got index {t!r}")
        y0, y1, x0, x1 = self.window
        if self.stack.single:
            return read(self.stack.data[y0:y1, x0:x1])
        return read(self.stack.data[int(t), y0:y1, x0:x1])


class TileEmbeddings:
    """One tile of a tiled ``EmbeddingStore`` as the per-tile session's features: ``get(t)``
    is ``store.get(t, tile=index)``."""

    def __init__(self, store, index: int) -> None:
        self.store, self.index = store, int(index)
        self.model = store.model
        self.contrast_limits = tuple(store.contrast_limits)

    def __len__(self) -> int:
        return len(self.store)

    def get(self, t: int):
        return self.store.get(t, tile=self.index)


def same_grid(a, b) -> bool:
    return (a is not None and b is not None and tuple(a.image_shape) == tuple(b.image_shape)
            and a.signature() == b.signature())


def bbox_of(mask: np.ndarray):
    """(y0, y1, x0, x1) (end exclusive) of the True pixels, or None when there are none."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


class Placement:
    """Where an object fits best in a grid, and when it has come too near its window's edge.

    An object's *room* in a tile is its least distance from an edge of the tile's outer window
    that is not the image border, in units of ``guard`` = half the halo (at least 1 px) on
    that axis; the image border gives unlimited room. An object is *near the edge* with room
    under 1 (under half a halo from a cut edge), and is then handed to the tile giving it the
    most room, if that is more than it has now.
    """

    def __init__(self, grid) -> None:
        self.grid = grid
        self.guard = tuple(max(h // 2, 1) for h in grid.halo)

    def room(self, tile, box) -> float:
        by0, by1, bx0, bx1 = box
        y0, y1, x0, x1 = tile.outer
        ih, iw = self.grid.image_shape
        gy, gx = self.guard
        sides = [(by0 - y0) / gy if y0 > 0 else math.inf,
                 (y1 - by1) / gy if y1 < ih else math.inf,
                 (bx0 - x0) / gx if x0 > 0 else math.inf,
                 (x1 - bx1) / gx if x1 < iw else math.inf]
        return min(sides)

    def candidates(self, box):
        """Tiles whose outer window meets ``box`` (the neighbours of the tiles it lies in)."""
        g = self.grid
        by0, by1, bx0, bx1 = box
        r0, c0 = g.tile_at(by0, bx0).row, g.tile_at(by0, bx0).col
        r1, c1 = g.tile_at(by1 - 1, bx1 - 1).row, g.tile_at(by1 - 1, bx1 - 1).col
        rows = range(max(r0 - 1, 0), min(r1 + 1, g.rows - 1) + 1)
        cols = range(max(c0 - 1, 0), min(c1 + 1, g.cols - 1) + 1)
        return [g.tiles[r * g.cols + c] for r in rows for c in cols]

    def best(self, box) -> int:
        """Index of the tile giving ``box`` the most room (ties: the one whose core holds the
        box centre, then the lowest index)."""
        cy, cx = (box[0] + box[1] - 1) / 2, (box[2] + box[3] - 1) / 2
        return max(self.candidates(box), key=lambda t: (self.room(t, box), t.contains(cy, cx), -t.index)).index

    def fits(self, index: int, box) -> bool:
        """Whether ``box`` lies inside tile ``index``'s window without touching a cut edge."""
        return self.room(self.grid[index], box) > 0

    def handover(self, index: int, box) -> int | None:
        """The tile to hand an object of ``box`` in tile ``index`` to, or None to keep it."""
        here = self.room(self.grid[index], box)
        if here >= 1:
            return None
        best = self.best(box)
        return best if best != index and self.room(self.grid[best], box) > here else None


@dataclass
class PointsRecord:
    """Clicks and / or a box of one object on one frame, in image pixels (x, y)."""

    points: np.ndarray | None  # (N, 2) float
    labels: np.ndarray | None  # (N,) int
    box: np.ndarray | None  # (4,) x0, y0, x1, y1

    def extent(self):
        xy = [a.reshape(-1, 2) for a in (self.points, self.box) if a is not None and a.size]
        xy = np.concatenate(xy)
        x0, y0 = np.floor(xy.min(0)).astype(int)
        x1, y1 = np.floor(xy.max(0)).astype(int) + 1
        return int(y0), int(y1), int(x0), int(x1)

    def send(self, session, t: int, obj_id, window) -> np.ndarray:
        y0, _, x0, _ = window
        shift = np.array([x0, y0], np.float64)
        pts = None if self.points is None else self.points - shift
        box = None if self.box is None else self.box - np.tile(shift, 2)
        return session.add_prompts(t, obj_id, points=pts, labels=self.labels, box=box, clear=True)


@dataclass
class MaskRecord:
    """A mask of one object on one frame, kept as its bounding-box crop."""

    box: tuple[int, int, int, int] | None  # (y0, y1, x0, x1) in image pixels; None: empty
    crop: np.ndarray | None  # bool, the box's pixels

    @classmethod
    def of(cls, mask: np.ndarray, offset=(0, 0)) -> MaskRecord:
        box = bbox_of(mask)
        if box is None:
            return cls(None, None)
        y0, y1, x0, x1 = box
        oy, ox = offset
        return cls((y0 + oy, y1 + oy, x0 + ox, x1 + ox), mask[y0:y1, x0:x1].copy())

    def extent(self):
        return self.box

    def in_window(self, window) -> np.ndarray:
        """The mask cut to ``window`` (the part outside it is dropped)."""
        wy0, wy1, wx0, wx1 = window
        out = np.zeros((wy1 - wy0, wx1 - wx0), bool)
        if self.box is None:
            return out
        y0, y1, x0, x1 = self.box
        ty0, ty1, tx0, tx1 = max(y0, wy0), min(y1, wy1), max(x0, wx0), min(x1, wx1)
        if ty0 < ty1 and tx0 < tx1:
            out[ty0 - wy0 : ty1 - wy0, tx0 - wx0 : tx1 - wx0] = self.crop[ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0]
        return out

    def send(self, session, t: int, obj_id, window) -> np.ndarray:
        return session.add_mask(t, obj_id, self.in_window(window))
