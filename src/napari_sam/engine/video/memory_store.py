"""Per-object, per-frame SAM 2 outputs: the few a propagation needs in RAM, all of them on disk.

The official video predictor keeps every tracked frame's output of every object in memory
(``non_cond_frame_outputs``: bf16 memory features, object pointer, object score and the
low-resolution mask logits), so its state grows with the number of frames. Here each output
is written once to a flat record file per object (``os.pwrite``, not a memory map, so the
pages do not count towards the process's resident memory) and only the outputs the next
frames can still attend to stay in RAM (:meth:`FrameOutputStore.keep`). Anything else — a
correction on a frame tracked long ago, a propagation restarted elsewhere — reads the exact
same values back from disk.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class FrameOutput:
    """One object's output on one frame, as the official ``compact_current_out``.

    ``maskmem``: (mem_dim, h, w) bfloat16 memory features — (tokens, mem_dim) for a model
    with a spatial perceiver (EdgeTAM: 512 x 64), see ``model.memory_shape`` — (None until encoded);
    ``obj_ptr``: (C,) float32; ``score``: () float32 object-score logit; ``low_res``:
    (S/4, S/4) float32 mask logits after hole filling (None when not loaded).
    """

    maskmem: torch.Tensor | None
    obj_ptr: torch.Tensor
    score: torch.Tensor
    low_res: torch.Tensor | None


class FrameOutputStore:
    """Non-conditioning outputs of every object on every frame, spilled to disk.

    ``num_frames``: T; ``maskmem_shape``: (mem_dim, h, w) or (tokens, mem_dim); ``ptr_dim``: C;
    ``low_res``: S/4.
    ``directory``: where the record files go (a fresh temporary directory, removed when the
    store is closed or garbage-collected, if None).
    """

    def __init__(self, num_frames: int, maskmem_shape, ptr_dim: int, low_res: int, directory=None):
        self.num_frames = int(num_frames)
        self.maskmem_shape = tuple(int(s) for s in maskmem_shape)
        self.ptr_dim = int(ptr_dim)
        self.low_res = int(low_res)
        self._mm_bytes = 2 * int(np.prod(self.maskmem_shape))
        self._ptr_bytes = 4 * self.ptr_dim
        self._lr_bytes = 4 * self.low_res * self.low_res
        self.record_bytes = self._mm_bytes + self._ptr_bytes + 4 + self._lr_bytes
        parent = None if directory is None else os.fspath(directory)
        if parent is not None:
            os.makedirs(parent, exist_ok=True)
        self.directory = tempfile.mkdtemp(prefix="napari_sam_video_", dir=parent)
        self._fds: dict[object, int] = {}
        self._present: dict[object, np.ndarray] = {}
        self._ram: dict[object, dict[int, FrameOutput]] = {}
        self._next_file = 0
        self._files: dict[object, str] = {}
        self._finalizer = weakref.finalize(self, _cleanup, self._fds, self.directory)

    # ---- objects -------------------------------------------------------------------------
    def add_object(self, key) -> None:
        if key in self._fds:
            return
        path = os.path.join(self.directory, f"obj{self._next_file}.bin")
        self._next_file += 1
        self._fds[key] = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o600)
        self._files[key] = path
        self._present[key] = np.zeros(self.num_frames, dtype=bool)
        self._ram[key] = {}

    def remove_object(self, key) -> None:
        fd = self._fds.pop(key, None)
        if fd is None:
            return
        os.close(fd)
        try:
            os.remove(self._files.pop(key))
        except OSError:
            pass
        del self._present[key], self._ram[key]

    def clear(self) -> None:
        for key in list(self._fds):
            self.remove_object(key)

    def close(self) -> None:
        """Remove the files (the store is unusable afterwards)."""
        self.clear()
        self._finalizer()

    # ---- records -------------------------------------------------------------------------
    def has(self, key, t: int) -> bool:
        present = self._present.get(key)
        return present is not None and 0 <= t < self.num_frames and bool(present[t])

    def frames(self, key) -> np.ndarray:
        """Frame indices holding an output of ``key``."""
        return np.flatnonzero(self._present[key])

    def put(self, key, t: int, out: FrameOutput) -> None:
        """Store ``out`` (maskmem and low_res required) on disk; keep it in RAM too."""
        if out.maskmem is None or out.low_res is None:
            raise ValueError("a stored output needs its memory features and mask logits")
        mm = out.maskmem.detach().to("cpu", torch.bfloat16).contiguous().reshape(-1)
        parts = [
            mm.view(torch.int16).numpy().tobytes(),
            out.obj_ptr.detach().to("cpu", torch.float32).contiguous().numpy().tobytes(),
            out.score.detach().to("cpu", torch.float32).reshape(1).numpy().tobytes(),
            out.low_res.detach().to("cpu", torch.float32).contiguous().numpy().tobytes(),
        ]
        data = b"".join(parts)
        assert len(data) == self.record_bytes, (len(data), self.record_bytes)
        os.pwrite(self._fds[key], data, t * self.record_bytes)
        self._present[key][t] = True
        self._ram[key][t] = FrameOutput(out.maskmem.to(torch.bfloat16), out.obj_ptr, out.score, None)

    def get(self, key, t: int) -> FrameOutput:
        """Memory features, pointer and score of ``key`` on frame ``t`` (RAM, else disk)."""
        hit = self._ram[key].get(t)
        if hit is not None:
            return hit
        if not self.has(key, t):
            raise KeyError(f"no stored output for object {key!r} on frame {t}")
        n = self._mm_bytes + self._ptr_bytes + 4
        raw = os.pread(self._fds[key], n, t * self.record_bytes)
        out = self._decode(bytearray(raw), with_low_res=False)
        self._ram[key][t] = out
        return out

    def get_low_res(self, key, t: int) -> torch.Tensor:
        """The (S/4, S/4) mask logits of ``key`` on frame ``t``, read from disk."""
        if not self.has(key, t):
            raise KeyError(f"no stored output for object {key!r} on frame {t}")
        off = t * self.record_bytes + self._mm_bytes + self._ptr_bytes + 4
        raw = bytearray(os.pread(self._fds[key], self._lr_bytes, off))
        return torch.frombuffer(raw, dtype=torch.float32).reshape(self.low_res, self.low_res)

    def discard(self, key, t: int) -> None:
        """Forget ``key``'s output on frame ``t`` (the bytes stay; they are never read)."""
        if key in self._present and 0 <= t < self.num_frames:
            self._present[key][t] = False
            self._ram[key].pop(t, None)

    def keep(self, key, frames) -> None:
        """Drop from RAM every output of ``key`` not on ``frames`` (they stay on disk)."""
        ram = self._ram[key]
        for t in [t for t in ram if t not in frames]:
            del ram[t]

    def ram_frames(self, key) -> list[int]:
        return sorted(self._ram[key])

    def _decode(self, raw: bytearray, with_low_res: bool) -> FrameOutput:
        mm_end = self._mm_bytes
        ptr_end = mm_end + self._ptr_bytes
        maskmem = torch.frombuffer(raw[:mm_end], dtype=torch.bfloat16).reshape(self.maskmem_shape)
        ptr = torch.frombuffer(raw[mm_end:ptr_end], dtype=torch.float32)
        score = torch.frombuffer(raw[ptr_end : ptr_end + 4], dtype=torch.float32).reshape(())
        low = None
        if with_low_res:
            low = torch.frombuffer(raw[ptr_end + 4 :], dtype=torch.float32).reshape(self.low_res, self.low_res)
        return FrameOutput(maskmem, ptr, score, low)


def _cleanup(fds: dict, directory: str) -> None:
    for fd in list(fds.values()):
        try:
            os.close(fd)
        except OSError:
            pass
    fds.clear()
    shutil.rmtree(directory, ignore_errors=True)
