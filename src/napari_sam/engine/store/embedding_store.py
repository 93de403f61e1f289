"""Per-frame image-encoder features of a stack, kept in a zarr group: resumable, shareable, checked.

Layout of the group (zarr v3; on disk a directory store, or in memory)::

    attrs["napari_sam_embeddings"] = {format_version, data, model, preprocess}
    checksum            (T,) uint64, chunk (1,)       0 until frame t is fully written, then
                                                      its checksum (``store_integrity``)
    features/<level>    (T, *shape) float32, chunk (1, *shape)   one array per encoder output

(chunk keys are flat, ``c.<t>.0.0``, so one listing of an array tells which frames it holds).

**Tiled** (``tile_shape`` / ``halo``, :mod:`napari_sam.engine.image.tiling`): one *slot* per
frame and tile, ``slot = t * n_tiles + i``, in place of the frame index above: the arrays are
``(T * n_tiles, *shape)``, one chunk per frame and tile, each tile's checksum written after its
features, so a tiled store resumes tile by tile. The record holds the tiling
(``attrs[...]["tiling"] = {tile_shape, halo}``; an untiled store has none): a store made with
other tiles (or none) is refused with a message saying so.

A frame's feature chunks are written first and its ``checksum`` chunk LAST; zarr's directory
store writes each chunk to a temporary file and renames it into place, so a reader (thread or
process) never sees a torn chunk, and a frame left half-written by a killed process reads as
missing and is recomputed. Two processes filling the same store at once at worst compute a
frame twice (identical bytes). Features are stored as float32, bit-exact for fp32, fp16 and
bf16 models, and returned in the model's own dtype.

Damage is not returned as features: a frame whose chunk is gone reads as missing (``missing()``,
``has()``); a frame whose features fail their checksum or cannot be decoded is encoded again on
``get()``, with a :class:`CorruptFrameWarning` naming the store; ``verify()`` checks every frame.
Unreadable metadata (a ``zarr.json``) raises :class:`StoreDamagedError` (a ``ValueError``)
naming the store, and changes nothing.

Opening a store made for other data, another model (name, family, config, weights) or other
preprocessing (kind, image size, contrast limits) raises ``ValueError`` naming what differs.
A store of format 1 (no checksums, so its frames cannot be verified) is rebuilt in place: its
features are dropped, with a warning, and encoded again as they are needed.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import zarr

from . import integrity
from ..frames import as_frame_stack, data_signature
from ..image.family import transform_for
from ..image.preprocess import estimate_contrast_limits, to_uint8_rgb
from ..image.tiled import FrameView
from ..image.tiling import TileGrid, resolve_tiling
from .integrity import CorruptFrameWarning, StoreDamagedError  # noqa: F401 (public)
from .record import (  # noqa: F401 (weights_hash: public here)
    ATTRS_KEY,
    FORMAT_VERSION,
    differences,
    model_identity,
    model_param,
    weights_hash,
)

_DTYPES = {str(d): d for d in (torch.float32, torch.float16, torch.bfloat16, torch.float64)}


class EmbeddingStore:
    """Image-encoder features of every frame of ``frames``, computed once, kept in zarr.

    ``path``: ``None`` (in memory), a directory path (created if missing), or a zarr ``Store``.
    ``frames``: (T, H, W[, C]) or one (H, W[, C]) image; numpy, zarr, dask — read lazily.
    ``contrast_limits``: (lo, hi) to map frames to 8 bit; ``None`` reuses the limits an existing
    store recorded, or for a new store estimates one pair for the whole stack
    (``preprocess.estimate_contrast_limits``), so every frame is mapped alike (every tile too).
    ``tile_shape`` / ``halo``: None (whole frames), ``"auto"`` or (h, w) pixels: the features
    of each tile's outer window, one chunk per frame and tile (:attr:`grid`, ``get(t, tile=i)``).
    """

    def __init__(self, path, model, frames, contrast_limits=None, tile_shape=None, halo=None):
        self.model = model
        self.frames = as_frame_stack(frames)
        #: the tiles of every frame, or None (whole frames)
        self.grid: TileGrid | None = resolve_tiling(tile_shape, halo, self.frames.frame_shape, int(model.image_size))
        self._n_tiles = 1 if self.grid is None else len(self.grid)
        self._slots = len(self.frames) * self._n_tiles
        self.path = Path(path) if isinstance(path, (str, os.PathLike)) else None
        self._where = repr(str(self.path)) if self.path else ("memory" if path is None else str(path))
        self.signature = data_signature(self.frames)
        self._model_info = model_identity(model)
        self._transform = transform_for(model)  # raises for an unknown family
        store, group, stored = integrity.open_store_group(path, self._where)
        self._meta = self._record(contrast_limits, stored)
        if group is None:  # a new store, unless another process makes it first
            group, stored = integrity.create_store_group(store, self._meta, path, self._where)
            if stored is not None and contrast_limits is None:
                self._meta = self._record(None, stored)
        if stored is not None:
            self._check_record(group, stored, contrast_limits is not None)
        self._group = group
        self._checksum = integrity.open_or_create(
            group, integrity.CHECKSUM_ARRAY, self._where, zarr.Array, shape=(self._slots,), chunks=(1,),
            dtype="uint64", fill_value=0, compressors=None, chunk_key_encoding=integrity.FLAT_KEYS,
        )
        if self._checksum.shape != (self._slots,) or self._checksum.dtype != np.uint64:
            raise integrity.damaged(
                self._where, f"its checksum array is {self._checksum.dtype} of shape {self._checksum.shape}, "
                f"expected uint64 of shape ({self._slots},)"
            )
        self._arrays = self._open_feature_arrays()
        self._levels_final = False  # True once the arrays are known to be all there

    # ---- opening -------------------------------------------------------------------------

    def _record(self, contrast_limits, stored: dict | None) -> dict:
        """What this store records (as JSON holds it); the contrast limits: those given, else
        those ``stored``, else one estimate for the whole stack."""
        if contrast_limits is not None:
            limits = [float(v) for v in contrast_limits]
            if len(limits) != 2:
                raise ValueError(f"contrast_limits must be (low, high), got {contrast_limits!r}")
        elif stored is not None and stored["preprocess"].get("contrast_limits"):
            limits = [float(v) for v in stored["preprocess"]["contrast_limits"]]
        else:
            limits = [float(v) for v in estimate_contrast_limits(self.frames)]
        record = {
            "format_version": FORMAT_VERSION,
            "data": self.signature,
            "model": self._model_info,
            "preprocess": {"kind": self._transform.frame_preprocess_kind, "image_size": self._model_info["image_size"],
                           "contrast_limits": limits},
        }
        if self.grid is not None:  # an untiled store records none (as stores made before tiles)
            record["tiling"] = self.grid.signature()
        return json.loads(json.dumps(record))

    def _check_record(self, group, stored: dict, limits_given: bool) -> None:
        """Refuse a store made for something else; rebuild one of format 1 (no checksums)."""
        version = stored.get("format_version")
        if version not in (1, FORMAT_VERSION):
            diffs = [f"format version {version} (this napari-sam writes {FORMAT_VERSION})"]
        else:
            diffs = differences(stored, self._meta, limits_given)
        if diffs:
            raise ValueError(
                f"the embedding store at {self._where} was made for something else — "
                + "; ".join(diffs)
                + ". Use another path, or delete that store to recompute."
            )
        if version == 1:
            integrity.rebuild_format_1(group, self._meta, self._where)

    def _open_feature_arrays(self) -> dict:
        fgroup = integrity.open_node(self._group, "features", self._where, zarr.Group)
        if fgroup is None:
            return {}
        arrays = {n: integrity.open_node(fgroup, n, self._where, zarr.Array) for n in integrity.member_names(fgroup)}
        return {n: a for n, a in sorted(arrays.items()) if a is not None}  # None: deleted meanwhile

    def _readable_arrays(self) -> dict:
        """The feature arrays, re-listed once after some frame is complete (then all exist)."""
        if not self._levels_final:
            self._arrays = self._open_feature_arrays()
            self._levels_final = True
        return self._arrays

    def _ensure_feature_arrays(self, feats: dict[str, np.ndarray], dtypes: dict[str, str]) -> None:
        """Open or create one array per feature level; other processes may race us (fine:
        creating the same array twice writes the same metadata)."""
        if self._levels_final and set(self._arrays) == set(feats):
            arrays = self._arrays
        else:
            fgroup = integrity.open_or_create(self._group, "features", self._where, zarr.Group)
            arrays = {}
            for name, value in feats.items():
                if "/" in name or not name:
                    raise ValueError(f"feature name {name!r} cannot be a zarr array name")
                arrays[name] = integrity.open_or_create(
                    fgroup, name, self._where, zarr.Array,
                    shape=(self._slots, *value.shape),
                    chunks=(1, *value.shape),
                    dtype="float32",
                    fill_value=0.0,
                    compressors=None,
                    chunk_key_encoding=integrity.FLAT_KEYS,
                    attributes={"torch_dtype": dtypes[name]},
                    config={"write_empty_chunks": True},
                )
            extra = sorted(integrity.member_names(fgroup) - set(feats))
            if extra:
                raise ValueError(f"the store holds feature levels {extra} this model does not make")
        for name, value in feats.items():
            if tuple(arrays[name].shape) != (self._slots, *value.shape):
                raise ValueError(
                    f"feature {name!r} of shape {value.shape} does not fit the store's array "
                    f"of shape {tuple(arrays[name].shape)}"
                )
        self._arrays, self._levels_final = arrays, True

    # ---- public --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def model_name(self) -> str | None:
        return self._model_info["name"]

    @property
    def contrast_limits(self) -> tuple[float, float]:
        """The (low, high) every frame is mapped to 8 bit with."""
        lo, hi = self._meta["preprocess"]["contrast_limits"]
        return (lo, hi)

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(H, W) of every frame."""
        return tuple(self.frames.frame_shape)

    @property
    def preprocess_kind(self) -> str:
        return self._meta["preprocess"]["kind"]

    @property
    def levels(self) -> dict[str, tuple[int, ...]]:
        """Feature name -> per-frame shape (without batch); empty until a frame is stored."""
        if not self._levels_final and integrity.read_flags(self._checksum).any():
            self._readable_arrays()
        return {k: tuple(a.shape[1:]) for k, a in self._arrays.items()}

    @property
    def device(self) -> torch.device:
        p = model_param(self.model)
        return p.device if p is not None else torch.device("cpu")

    def has(self, t: int, tile: int | None = None) -> bool:
        """Whether frame ``t`` (tiled: all its tiles, or tile ``tile``) is completely stored:
        its checksum and all its chunks are there (read fresh from the store; the features
        themselves are checked by :meth:`get`)."""
        return all(integrity.read_flag(self._checksum, s) != 0 and self._chunks_present(s)
                   for s in self._slots_of(t, tile))

    def _slots_done(self) -> np.ndarray:
        done = integrity.read_flags(self._checksum) != 0
        if done.any():
            arrays = self._readable_arrays()
            if not arrays:
                done[:] = False
            for arr in arrays.values():
                done &= integrity.frames_present(arr)
        return done

    def missing(self) -> list[int]:
        """Indices of the frames not completely stored (no checksum, or a chunk gone; tiled:
        any of its tiles), ascending."""
        done = self._slots_done().reshape(len(self), self._n_tiles).all(axis=1)
        return [int(i) for i in np.flatnonzero(~done)]

    def missing_tiles(self) -> list[tuple[int, int]]:
        """(frame, tile) of every tile not completely stored, in order (tile 0 when untiled)."""
        return [divmod(int(s), self._n_tiles) for s in np.flatnonzero(~self._slots_done())]

    def _slots_of(self, t: int, tile: int | None) -> list[int]:
        t = self.frames._index(t)
        if tile is None:
            return list(range(t * self._n_tiles, (t + 1) * self._n_tiles))
        if self.grid is None:
            raise ValueError(f"the embedding store at {self._where} is not tiled: call get(t) / has(t) without tile")
        if not isinstance(tile, (int, np.integer)) or not 0 <= int(tile) < self._n_tiles:
            raise IndexError(f"tile {tile!r} out of range for {self.grid.describe()}")
        return [t * self._n_tiles + int(tile)]

    def is_complete(self) -> bool:
        return not self.missing()

    def get(self, t: int, tile: int | None = None):
        """Frame ``t``'s features, batch 1, on the model's device and in its dtype.

        Read from the store when complete there and sound (they match their checksum);
        otherwise encoded now, stored, returned. A damaged frame is reported with a
        :class:`CorruptFrameWarning` naming the store and the frame.

        Tiled: ``tile=i`` gives the features of tile ``i``'s outer window (``grid[i]``);
        without ``tile``, a list of every tile's features in grid order.
        """
        slots = self._slots_of(t, tile)
        if self.grid is not None and tile is None:
            return [self._get_slot(s) for s in slots]
        return self._get_slot(slots[0])

    def _get_slot(self, slot: int) -> dict[str, torch.Tensor]:
        feats = self._read_checked(slot)
        if feats is None:
            feats = self._encode_and_store(slot)
        out, device = {}, self.device
        for k, v in feats.items():
            dtype = _DTYPES.get(self._arrays[k].attrs.get("torch_dtype"), torch.float32)
            out[k] = torch.from_numpy(np.ascontiguousarray(v))[None].to(device=device, dtype=dtype)
        return out

    def verify(self) -> list[int]:
        """Read every stored frame and check it against its checksum (this reads the whole
        store). The damaged frames are marked missing, so :meth:`missing` lists them and
        :meth:`precompute` encodes them again; returns them, ascending."""
        bad = set()
        for s in np.flatnonzero(self._slots_done()):
            _, problem = self._check(int(s))
            if problem is not None:
                self._checksum[int(s)] = 0
                bad.add(int(s) // self._n_tiles)
        return sorted(bad)

    def precompute_iter(self) -> Iterator[tuple[int, int]]:
        """Encode every missing frame, yielding ``(done, total)`` first once, then after each frame
        (tiled: after each tile, ``done`` and ``total`` counting tiles).

        ``done`` counts complete frames (tiles), whichever process stored them. Stop iterating (or
        ``close()`` the generator; napari's ``thread_worker`` quit) to cancel between frames:
        what is stored stays, and a later call resumes with the frames still missing.
        """
        for done, total, _ in self._steps():
            yield done, total

    def precompute(self, progress: Callable[[int, int], object] | None = None) -> int:
        """Encode every missing frame; ``progress(done, total)`` as in :meth:`precompute_iter`.

        Returns how many frames (tiled: tiles) this call encoded (0 when the store was already complete).
        """
        encoded = 0
        for done, total, new in self._steps():
            encoded += new
            if progress is not None:
                progress(done, total)
        return encoded

    # ---- work ----------------------------------------------------------------------------

    def _chunks_present(self, t: int) -> bool:
        arrays = self._readable_arrays()
        return bool(arrays) and all(integrity.chunk_present(a, t) for a in arrays.values())

    def _check(self, t: int) -> tuple[dict[str, np.ndarray] | None, str | None]:
        """(features, None) when slot ``t`` (a frame; tiled, a frame's tile) is stored and sound;
        (None, None) when it is not stored (no checksum, or a chunk gone); (None, what is
        wrong) when it is damaged."""
        want = integrity.read_flag(self._checksum, t)
        if want == 0:
            return None, None
        arrays = self._readable_arrays()
        try:
            feats = {k: a[t] for k, a in arrays.items()}
        except integrity.DECODE_ERRORS as e:
            return None, f"a chunk of its features cannot be read ({type(e).__name__}: {e})"
        if integrity.frame_checksum(t, feats) == want:
            return feats, None
        if not self._chunks_present(t):
            return None, None  # a deleted chunk reads as zeros: the frame is missing
        return None, integrity.mismatch(feats)

    def _read_checked(self, t: int) -> dict[str, np.ndarray] | None:
        feats, problem = self._check(t)
        if problem is not None:
            warnings.warn(
                CorruptFrameWarning(
                    f"the embedding store at {self._where}: {self._slot_name(t)} is damaged — {problem}; "
                    "encoding it again"
                ),
                stacklevel=3,
            )
        return feats

    def _slot_name(self, slot: int) -> str:
        if self.grid is None:
            return f"frame {slot}"
        t, i = divmod(slot, self._n_tiles)
        return f"frame {t} tile {i}"

    def _steps(self):
        total = self._slots
        todo = [int(s) for s in np.flatnonzero(~self._slots_done())]
        done = total - len(todo)
        yield done, total, False
        for s in todo:
            # another process may have stored it meanwhile
            new = not (integrity.read_flag(self._checksum, s) != 0 and self._chunks_present(s))
            if new:
                self._encode_and_store(s)
            done += 1
            yield done, total, new

    def _slot_rgb(self, slot: int) -> np.ndarray:
        """The 8-bit RGB image a slot's features are encoded from (a tile: only its outer
        window is read and converted)."""
        if self.grid is None:
            return to_uint8_rgb(self.frames[slot], self.contrast_limits)
        t, i = divmod(slot, self._n_tiles)
        return to_uint8_rgb(FrameView(self.frames, t)[self.grid[i].outer_slices], self.contrast_limits)

    def _encode_and_store(self, t: int) -> dict[str, np.ndarray]:
        rgb = self._slot_rgb(t)
        out = self._transform.encode(rgb, frame=True)
        if not isinstance(out, dict) or not out:
            raise TypeError("model.encode_image must return a non-empty dict of tensors")
        feats, dtypes = {}, {}
        for k, v in out.items():
            if v.shape[0] != 1:
                raise ValueError(f"encode_image gave {k!r} with batch {v.shape[0]} for one frame")
            dtypes[k] = str(v.dtype)
            feats[k] = v[0].detach().to("cpu", torch.float32).contiguous().numpy()
        self._ensure_feature_arrays(feats, dtypes)
        for k, v in feats.items():
            self._arrays[k][t] = v
        self._checksum[t] = integrity.frame_checksum(t, feats)  # last: the frame now reads as valid
        return feats

    def __repr__(self) -> str:
        done = len(self) - len(self.missing())
        tiles = "" if self.grid is None else f", {self.grid.describe()}"
        return (f"EmbeddingStore({self._where}, {self.model_name or self._model_info['family']}, "
                f"{done}/{len(self)} frames{tiles})")
