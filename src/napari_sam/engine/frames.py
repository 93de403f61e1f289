"""Lazy, uniform access to a stack of frames, and a cheap content signature of it.

A :class:`FrameStack` wraps any array-like (numpy, zarr, dask, ...) holding

* one image: ``(H, W)`` or ``(H, W, C)`` with ``C`` in (3, 4)  -> a stack of one frame;
* a stack:   ``(T, H, W)`` or ``(T, H, W, C)`` with ``C`` in (3, 4).

A 3-d array whose last axis is 3 or 4 is read as one colour image, not as a stack. Frames are
read one at a time (``stack[t]`` -> numpy), never the whole stack at once.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

SIGNATURE_VERSION = 1
#: The content hash reads about this many samples along each image axis of every frame.
SAMPLES_PER_AXIS = 64
_HASH_BLOCK_BYTES = 64 * 1024 * 1024  # raw bytes read per block of frames while hashing


def read(x) -> np.ndarray:
    """``x`` as a numpy array. A dask array is computed in the calling thread: inside a
    ``dask.distributed`` worker the default would send its graph back to the scheduler (which
    cannot serialise it, and the process-wide ``dask.config`` cannot be switched safely per
    thread)."""
    if hasattr(x, "dask") and hasattr(x, "compute"):
        x = x.compute(scheduler="synchronous")
    return np.asarray(x)


def _is_array_like(x) -> bool:
    return all(hasattr(x, a) for a in ("shape", "dtype", "__getitem__"))


class FrameStack:
    """Read-only, lazy (T, H, W[, C]) view of an image or an image stack.

    Attributes: ``data`` (the wrapped object), ``single`` (True if ``data`` is one image),
    ``shape`` (always the T-first shape), ``dtype``, ``frame_shape`` ((H, W)), ``channels``
    (None for grey, else C).
    """

    def __init__(self, frames):
        if isinstance(frames, FrameStack):
            frames = frames.data
        if not _is_array_like(frames):
            frames = np.asarray(frames)  # lists and the like: already in memory
        shape = tuple(int(s) for s in frames.shape)
        nd = len(shape)
        colour = nd >= 3 and shape[-1] in (3, 4)
        if nd == 2 or (nd == 3 and colour):
            self.single = True
            shape = (1, *shape)
        elif nd == 3 or (nd == 4 and colour):
            self.single = False
        else:
            raise ValueError(
                "frames must be (H, W), (H, W, 3|4), (T, H, W) or (T, H, W, 3|4); "
                f"got shape {tuple(frames.shape)}"
            )
        if min(shape[:3]) < 1:
            raise ValueError(f"frames hold no pixels: shape {tuple(frames.shape)}")
        self.data = frames
        self.shape = shape
        self.dtype = np.dtype(frames.dtype)
        self.frame_shape = shape[1:3]
        self.channels = shape[3] if len(shape) == 4 else None
        self.ndim = len(shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, t: int) -> np.ndarray:
        """Frame ``t`` as a numpy array, (H, W) or (H, W, C)."""
        t = self._index(t)
        return read(self.data if self.single else self.data[t])

    def _index(self, t) -> int:
        if not isinstance(t, (int, np.integer)):
            raise TypeError(f"frame index must be an int, got {type(t).__name__}")
        n = len(self)
        t = int(t)
        if not -n <= t < n:
            raise IndexError(f"frame {t} out of range for {n} frame(s)")
        return t % n

    def sample_steps(self) -> tuple[int, int]:
        """Row and column steps of the sampling grid the content hash reads."""
        h, w = self.frame_shape
        return max(1, math.ceil(h / SAMPLES_PER_AXIS)), max(1, math.ceil(w / SAMPLES_PER_AXIS))

    def signature(self) -> dict:
        """Shape, dtype and a content hash of the frames; see :func:`data_signature`."""
        return data_signature(self)

    def __repr__(self) -> str:
        return f"FrameStack(shape={self.shape}, dtype={self.dtype}, single={self.single})"


def as_frame_stack(frames) -> FrameStack:
    """``frames`` as a :class:`FrameStack` (returned unchanged if it already is one)."""
    return frames if isinstance(frames, FrameStack) else FrameStack(frames)


def data_signature(frames) -> dict:
    """A cheap fingerprint of a stack, for telling whether stored features belong to it.

    Covers: the T-first shape, the dtype, and a BLAKE2b-128 hash over a strided grid of every
    frame: pixels ``[::sy, ::sx]`` (all channels) with ``sy = ceil(H / 64)``, ``sx = ceil(W / 64)``
    — about 64 x 64 samples a frame — in native byte order. A change that touches only pixels
    off that grid is not seen; any change of shape, dtype, frame order or of a sampled pixel is.
    Reads every frame once (in blocks), never the whole stack at once.
    """
    stack = as_frame_stack(frames)
    sy, sx = stack.sample_steps()
    native = stack.dtype.newbyteorder("=")
    hasher = hashlib.blake2b(digest_size=16)
    hasher.update(repr((SIGNATURE_VERSION, stack.shape, native.str, sy, sx)).encode())
    frame_bytes = max(1, stack.dtype.itemsize * math.prod(stack.shape[1:]))
    block = max(1, min(len(stack), _HASH_BLOCK_BYTES // frame_bytes))
    for start in range(0, len(stack), block):
        if stack.single:
            sample = read(stack.data[::sy, ::sx])[None]
        else:
            sample = read(stack.data[start : start + block, ::sy, ::sx])
        hasher.update(np.ascontiguousarray(sample, dtype=native).tobytes())
    return {
        "version": SIGNATURE_VERSION,
        "shape": list(stack.shape),
        "dtype": stack.dtype.name,
        "sample_hash": hasher.hexdigest(),
        "sample_steps": [sy, sx],
    }
