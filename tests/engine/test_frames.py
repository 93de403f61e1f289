"""FrameStack: shape rules, lazy per-frame reads, and the data signature."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import zarr

from napari_sam.engine import frames as frames_mod
from napari_sam.engine.frames import FrameStack, as_frame_stack, data_signature


class CountingArray:
    """A real array-like that records every index it is read with (to prove laziness)."""

    def __init__(self, data):
        self._data = data
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim
        self.reads = []

    def __getitem__(self, key):
        self.reads.append(key)
        return self._data[key]


def _stack(t=5, h=37, w=50, seed=0, dtype=np.uint16):
    return np.random.default_rng(seed).integers(0, 4000, (t, h, w)).astype(dtype)


@pytest.mark.parametrize(
    "shape, single, n, channels",
    [
        ((30, 40), True, 1, None),
        ((30, 40, 3), True, 1, 3),
        ((30, 40, 4), True, 1, 4),
        ((6, 30, 40), False, 6, None),
        ((6, 30, 40, 3), False, 6, 3),
        ((3, 30, 40), False, 3, None),
    ],
)
def test_shape_rules(shape, single, n, channels):
    a = np.zeros(shape, np.uint8)
    s = FrameStack(a)
    assert (s.single, len(s), s.channels, s.frame_shape) == (single, n, channels, (30, 40))
    assert s[0].shape == (shape if single else shape[1:])
    assert s[-1].shape == s[0].shape
    assert as_frame_stack(s) is s


@pytest.mark.parametrize("shape", [(5,), (2, 3, 30, 40), (2, 30, 40, 5), (1, 2, 3, 4, 3), (0, 10, 10)])
def test_bad_shapes_refused(shape):
    with pytest.raises(ValueError):
        FrameStack(np.zeros(shape, np.uint8))


def test_index_errors():
    s = FrameStack(_stack())
    with pytest.raises(IndexError):
        s[5]
    with pytest.raises(TypeError):
        s[1.0]


def test_reads_one_frame_at_a_time():
    data = _stack(t=8)
    arr = CountingArray(data)
    s = FrameStack(arr)
    np.testing.assert_array_equal(s[3], data[3])
    assert arr.reads == [3]


@pytest.mark.parametrize("kind", ["zarr", "dask"])
def test_zarr_and_dask_frames_equal_numpy(kind):
    data = _stack()
    if kind == "zarr":
        z = zarr.create_array(zarr.storage.MemoryStore(), shape=data.shape, chunks=(1, 16, 16), dtype=data.dtype)
        z[:] = data
        src = z
    else:
        src = da.from_array(data, chunks=(1, 20, 20))
    s = FrameStack(src)
    for t in range(len(s)):
        assert isinstance(s[t], np.ndarray)
        np.testing.assert_array_equal(s[t], data[t])
    assert data_signature(src) == data_signature(data)


def test_signature_fields_and_determinism():
    data = _stack()
    sig = data_signature(data)
    assert sig["shape"] == [5, 37, 50] and sig["dtype"] == "uint16"
    assert sig["sample_steps"] == [1, 1]  # small frames: every pixel is hashed
    assert len(sig["sample_hash"]) == 32
    assert data_signature(data.copy()) == sig
    # byte order is not content: big-endian data with equal values signs the same
    assert data_signature(data.astype(">u2")) == sig


def test_signature_sees_changes():
    data = _stack()
    base = data_signature(data)["sample_hash"]
    changed = data.copy()
    changed[4, 36, 49] += 1  # one pixel of the last frame
    assert data_signature(changed)["sample_hash"] != base
    assert data_signature(data[::-1].copy())["sample_hash"] != base  # frame order
    assert data_signature(data.astype(np.int32))["dtype"] == "int32"
    assert data_signature(data[:4])["shape"] == [4, 37, 50]


def test_signature_samples_large_frames_on_a_grid():
    data = np.random.default_rng(1).integers(0, 255, (2, 300, 130)).astype(np.uint8)
    sig = data_signature(data)
    assert sig["sample_steps"] == [5, 3]  # ceil(300/64), ceil(130/64)
    on_grid, off_grid = data.copy(), data.copy()
    on_grid[1, 295, 129] ^= 1  # 295 = 59*5, 129 = 43*3: sampled
    off_grid[1, 296, 129] ^= 1  # row 296 is not sampled — the documented blind spot
    assert data_signature(on_grid)["sample_hash"] != sig["sample_hash"]
    assert data_signature(off_grid)["sample_hash"] == sig["sample_hash"]


def test_signature_reads_in_bounded_blocks(monkeypatch):
    data = _stack(t=10)
    full = data_signature(data)
    frame_bytes = data[0].nbytes
    monkeypatch.setattr(frames_mod, "_HASH_BLOCK_BYTES", 3 * frame_bytes)
    arr = CountingArray(data)
    assert data_signature(arr) == full  # independent of the block size
    spans = [min(k[0].stop, 10) - k[0].start for k in arr.reads]
    assert spans == [3, 3, 3, 1]


def test_single_image_signs_like_a_stack_of_one():
    img = _stack(t=1)[0]
    s1, s2 = data_signature(img), data_signature(img[None])
    assert s1["shape"] == s2["shape"] == [1, 37, 50]
    assert s1 == s2  # one image and a stack of one frame hold the same pixels
