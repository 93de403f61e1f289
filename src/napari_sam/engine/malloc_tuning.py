"""Keep freed tensor buffers in the process heap between clicks (glibc only).

A click allocates a few tensors of 4-50 MB (upscaled features, masks at the image size) and
frees them again. With glibc's defaults the freed top of the heap is handed back to the OS
and the next click faults every page in again; in a virtual machine that costs as much as the
decoder's arithmetic (measured: 35 -> 29 ms per SAM 1 click at 1024 px on a 2-core VM). Two
``mallopt`` settings stop it: buffers up to 32 MB come from the heap, and up to 512 MB of free
heap is kept for reuse instead of being trimmed. Memory is reused, not grown; larger buffers
are still mapped and unmapped on their own.

This changes the allocator of the whole process (napari and every other plugin in it), so
nothing in the engine applies it on its own: an application opts in by calling
:func:`tune_malloc` once at start-up — the ``napari-sam`` command line and the dock widget
may, and the benchmarks do where they measure our speed. ``NAPARI_SAM_MALLOC_TUNING=0``
makes the call a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 512 * 1024 * 1024
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's upper limit on 64-bit

_applied: bool | None = None  # None: not tried yet


def tune_malloc() -> bool:
    """Apply the settings (once per process; later calls return the first answer); True if
    glibc took them. Call it explicitly: see the module docstring."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if os.environ.get("NAPARI_SAM_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
