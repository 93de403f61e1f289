"""How an image layer splits into 2D frames for the engine, and layer-to-layer coordinates.

An image layer of ``ndim`` dimensions (napari's count: colour channels of an RGB layer not
included) ends in (y, x). Its leading axes are one *video axis* (the frames a VideoSession
walks through: z of a stack, t of a time-lapse) and the others, whose indices form a *stack
key* (e.g. the z of a (t, z, y, x) layer tracked over t). A 2D layer is one stack of one frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StackGeometry:
    """Leading-axis bookkeeping of one image layer."""

    shape: tuple[int, ...]  # the layer's full data shape (RGB: channels last included)
    ndim: int  # napari ndim (no colour axis)
    rgb: bool
    video_axis: int | None  # None for 2D

    @classmethod
    def of(cls, layer, video_axis: int | None = 0) -> StackGeometry:
        shape = tuple(int(s) for s in _level0(layer).shape)
        ndim = int(layer.ndim)
        if ndim < 2:
            raise ValueError("an image layer with at least 2 dimensions is needed")
        if ndim == 2:
            video_axis = None
        else:
            video_axis = 0 if video_axis is None else int(video_axis)
            if not 0 <= video_axis < ndim - 2:
                raise ValueError(f"video axis {video_axis} is not a leading axis of a {ndim}D layer")
        return cls(shape, ndim, bool(getattr(layer, "rgb", False)), video_axis)

    @property
    def lead(self) -> int:
        return self.ndim - 2

    @property
    def n_frames(self) -> int:
        return 1 if self.video_axis is None else self.shape[self.video_axis]

    @property
    def frame_hw(self) -> tuple[int, int]:
        return self.shape[self.ndim - 2], self.shape[self.ndim - 1]

    @property
    def key_axes(self) -> tuple[int, ...]:
        return tuple(a for a in range(self.lead) if a != self.video_axis)

    def stack_keys(self) -> list[tuple[int, ...]]:
        """Every stack key (one per stack of frames), in C order."""
        sizes = [self.shape[a] for a in self.key_axes]
        return [tuple(int(i) for i in k) for k in np.ndindex(*sizes)] if sizes else [()]

    def split(self, lead_index) -> tuple[tuple[int, ...], int]:
        """Leading-axes index -> (stack key, frame)."""
        lead_index = tuple(int(i) for i in lead_index)
        key = tuple(lead_index[a] for a in self.key_axes)
        frame = 0 if self.video_axis is None else lead_index[self.video_axis]
        return key, frame

    def join(self, key, frame: int) -> tuple[int, ...]:
        """(stack key, frame) -> leading-axes index (the 2D slice's index in the layer)."""
        out, it = [], iter(key)
        for a in range(self.lead):
            out.append(int(frame) if a == self.video_axis else int(next(it)))
        return tuple(out)

    def frames(self, layer, key=()) -> FrameView:
        """The frames of stack ``key`` as a lazy (T, H, W[, C]) array-like for the engine."""
        return FrameView(_level0(layer), self, tuple(key))


def _level0(layer):
    data = layer.data
    return data[0] if getattr(layer, "multiscale", False) else data


class FrameView:
    """A lazy (T, H, W[, C]) window on a layer's data: the video axis first, the stack key
    fixed. Indexing reads only what it is asked for (numpy, zarr, dask alike)."""

    def __init__(self, data, geometry: StackGeometry, key: tuple[int, ...]):
        self._data = data
        self._geo = geometry
        self._key = key
        g = geometry
        tail = g.shape[g.ndim - 2 :]
        self.shape = (tail if g.video_axis is None else (g.n_frames, *tail))
        self.dtype = np.dtype(data.dtype)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        out = np.asarray(self[...])
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, index):
        if not isinstance(index, tuple):
            index = (index,)
        if any(i is Ellipsis for i in index):
            pos = next(k for k, i in enumerate(index) if i is Ellipsis)
            fill = self.ndim - (len(index) - 1)
            index = index[:pos] + (slice(None),) * fill + index[pos + 1 :]
        index = index + (slice(None),) * (self.ndim - len(index))
        g = self._geo
        if g.video_axis is None:
            return np.asarray(self._data[g.join(self._key, 0) + index])
        frame_index, rest = index[0], index[1:]
        full, it = [], iter(self._key)
        for a in range(g.lead):
            full.append(frame_index if a == g.video_axis else next(it))
        return np.asarray(self._data[tuple(full) + rest])


# ---------------------------------------------------------------------------- coordinates


def _to_world_nd(position, world_ndim: int, fill) -> np.ndarray:
    """Align a world position to ``world_ndim`` axes (napari aligns layers on trailing axes)."""
    position = np.asarray(position, float)
    if len(position) == world_ndim:
        return position
    if len(position) > world_ndim:
        return position[-world_ndim:]
    fill = np.asarray(fill, float)
    return np.concatenate([fill[-world_ndim:][: world_ndim - len(position)], position])


def layer_to_layer(src, dst, coords, fill=None) -> np.ndarray:
    """(N, src.ndim) data coordinates of layer ``src`` -> (N, dst.ndim) data coordinates of
    ``dst`` through world space: each layer's scale, translate, rotate, affine apply.
    ``fill``: world position used for axes ``src`` lacks (e.g. the viewer's dims point)."""
    coords = np.atleast_2d(np.asarray(coords, float))
    if fill is None:
        fill = np.zeros(dst.ndim)
    out = np.empty((len(coords), dst.ndim))
    for i, c in enumerate(coords):
        world = np.asarray(src.data_to_world(c), float)
        out[i] = np.asarray(dst.world_to_data(_to_world_nd(world, dst.ndim, fill)), float)[-dst.ndim :]
    return out
