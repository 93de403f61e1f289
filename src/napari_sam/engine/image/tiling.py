"""Tiles at the image's own pixel size (micro-sam's ``tile_shape`` / ``halo`` names and meaning).

A tile is a *core* — the image cut into a regular grid of ``tile_shape`` pieces, the last row
and column smaller where the image does not divide evenly — plus ``halo`` pixels on each side
(clipped at the image border): the *outer* window that is embedded on its own at the model's
input size. Every pixel lies in exactly one core; the halos overlap, so an object cut by a core
edge is still whole in the outer window of the tile whose core holds it.

``tile_shape=None`` means no tiling (the whole image is shrunk to the model input, as without
tiles). ``"auto"`` (:func:`auto_tiling`) picks a tiling from the image and the model: outer
windows of the model's input size, so the image is seen at its own resolution (no shrinking),
with a halo of an eighth of the window (at least two object diameters when ``object_size`` is
given). An image no larger than one outer window is not tiled.

Bad values are refused with a ``ValueError`` naming them: a tile under 32 px, a halo that is
negative or more than half the tile. A tile larger than the image is clamped to the image (a
small image is one tile), so every image works with the same settings.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_TILE = 32


def _pair(value, name: str) -> tuple[int, int]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value, value)
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be (height, width) in pixels, got {value!r}") from None
    if (h, w) != tuple(float(v) for v in value):
        raise ValueError(f"{name} must be whole pixels, got {value!r}")
    return h, w


@dataclass(frozen=True)
class Tile:
    """One tile: ``index`` in row-major order, grid ``row``/``col``, and its ``core`` and
    ``outer`` windows as ``(y0, y1, x0, x1)`` in image pixels (end exclusive)."""

    index: int
    row: int
    col: int
    core: tuple[int, int, int, int]
    outer: tuple[int, int, int, int]

    @property
    def outer_slices(self) -> tuple[slice, slice]:
        y0, y1, x0, x1 = self.outer
        return slice(y0, y1), slice(x0, x1)

    @property
    def core_slices(self) -> tuple[slice, slice]:
        y0, y1, x0, x1 = self.core
        return slice(y0, y1), slice(x0, x1)

    @property
    def core_in_outer(self) -> tuple[slice, slice]:
        """The core as slices of the outer window."""
        oy, _, ox, _ = self.outer
        y0, y1, x0, x1 = self.core
        return slice(y0 - oy, y1 - oy), slice(x0 - ox, x1 - ox)

    @property
    def outer_shape(self) -> tuple[int, int]:
        y0, y1, x0, x1 = self.outer
        return y1 - y0, x1 - x0

    def contains(self, y: float, x: float) -> bool:
        """Whether image point (y, x) lies in this tile's core."""
        y0, y1, x0, x1 = self.core
        return y0 <= y < y1 and x0 <= x < x1


class TileGrid:
    """The tiles of an image of ``image_shape`` (h, w) for ``tile_shape`` and ``halo``."""

    def __init__(self, image_shape, tile_shape, halo=(0, 0)) -> None:
        ih, iw = (int(v) for v in tuple(image_shape)[:2])
        if ih < 1 or iw < 1:
            raise ValueError(f"image shape {tuple(image_shape)} has no pixels")
        th, tw = _pair(tile_shape, "tile_shape")
        hh, hw = _pair((0, 0) if halo is None else halo, "halo")
        if th < MIN_TILE or tw < MIN_TILE:
            raise ValueError(f"tile_shape {(th, tw)} is too small: tiles must be at least {MIN_TILE} px a side")
        if hh < 0 or hw < 0:
            raise ValueError(f"halo {(hh, hw)} must not be negative")
        if 2 * hh > th or 2 * hw > tw:
            raise ValueError(f"halo {(hh, hw)} is more than half of tile_shape {(th, tw)}: "
                             "each tile would be mostly halo")
        self.image_shape = (ih, iw)
        # a tile larger than the image is clamped to it: a small image is one tile
        self.tile_shape = (min(th, ih), min(tw, iw))
        self.halo = (hh, hw)
        self.rows = -(-ih // self.tile_shape[0])
        self.cols = -(-iw // self.tile_shape[1])
        self.tiles = [self._tile(r, c) for r in range(self.rows) for c in range(self.cols)]

    def _tile(self, r: int, c: int) -> Tile:
        (ih, iw), (th, tw), (hh, hw) = self.image_shape, self.tile_shape, self.halo
        y0, x0 = r * th, c * tw
        y1, x1 = min(y0 + th, ih), min(x0 + tw, iw)
        outer = (max(y0 - hh, 0), min(y1 + hh, ih), max(x0 - hw, 0), min(x1 + hw, iw))
        return Tile(r * self.cols + c, r, c, (y0, y1, x0, x1), outer)

    def __len__(self) -> int:
        return len(self.tiles)

    def __iter__(self):
        return iter(self.tiles)

    def __getitem__(self, i: int) -> Tile:
        return self.tiles[i]

    def tile_at(self, y: float, x: float) -> Tile:
        """The tile whose core holds image point (y, x) (clamped into the image)."""
        ih, iw = self.image_shape
        yi = min(max(int(y), 0), ih - 1)
        xi = min(max(int(x), 0), iw - 1)
        return self.tiles[(yi // self.tile_shape[0]) * self.cols + xi // self.tile_shape[1]]

    def signature(self) -> dict:
        """What a store records to refuse features made with another tiling."""
        return {"tile_shape": list(self.tile_shape), "halo": list(self.halo)}

    def describe(self) -> str:
        n = len(self)
        return (f"{n} tile{'s' if n != 1 else ''} ({self.rows} x {self.cols}) of "
                f"{self.tile_shape[0]} x {self.tile_shape[1]} px, halo {self.halo[0]} x {self.halo[1]} px")

    def __repr__(self) -> str:
        return f"TileGrid({self.image_shape}, tile_shape={self.tile_shape}, halo={self.halo})"


def auto_tiling(image_shape, input_size: int, object_size: float | None = None):
    """``(tile_shape, halo)`` for ``"auto"``, or ``(None, None)`` when one window holds the image.

    The outer window is the model's input size (the image is embedded at its own resolution);
    the halo an eighth of it, or two object diameters if more (capped at a quarter of the
    window), rounded to 16 px; the core is the rest.
    """
    ih, iw = (int(v) for v in tuple(image_shape)[:2])
    size = int(input_size)
    if max(ih, iw) <= size:
        return None, None
    halo = size // 8
    if object_size is not None:
        if not object_size > 0:
            raise ValueError(f"object_size must be a positive number of pixels, got {object_size!r}")
        halo = max(halo, int(2 * float(object_size)))
    halo = min(-(-halo // 16) * 16, size // 4)
    core = size - 2 * halo
    return (core, core), (halo, halo)


def resolve_tiling(tile_shape, halo, image_shape, input_size: int, object_size: float | None = None):
    """A :class:`TileGrid` for the public ``tile_shape`` / ``halo`` arguments, or ``None`` for
    no tiling. ``tile_shape`` None | "auto" | int | (h, w); ``halo`` None (0) | int | (h, w)."""
    if tile_shape is None:
        if halo not in (None, 0, (0, 0)):
            raise ValueError(f"halo {halo!r} given without tile_shape: give tile_shape too (or 'auto')")
        return None
    if isinstance(tile_shape, str):
        if tile_shape != "auto":
            raise ValueError(f"tile_shape must be None, 'auto' or (height, width), got {tile_shape!r}")
        tile_shape, auto_halo = auto_tiling(image_shape, input_size, object_size)
        if tile_shape is None:
            return None
        halo = auto_halo if halo is None else halo
    return TileGrid(image_shape, tile_shape, halo)
