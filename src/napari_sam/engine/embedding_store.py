"""Per-frame image-encoder features of a stack, kept in a zarr group: resumable, shareable.

Layout of the group (zarr v3; on disk a directory store, or in memory)::

    attrs["napari_sam_embeddings"] = {format_version, data, model, preprocess}
    complete            (T,) uint8, chunk (1,)        1 once frame t is fully written
    features/<level>    (T, *shape) float32, chunk (1, *shape)   one array per encoder output

A frame's feature chunks are written first and its ``complete`` chunk LAST; zarr's directory
store writes each chunk to a temporary file and renames it into place, so a reader (thread or
process) never sees a torn chunk, and a frame left half-written by a killed process reads as
missing and is recomputed. Two processes filling the same store at once at worst compute a
frame twice (identical bytes). Features are stored as float32, bit-exact for fp32, fp16 and
bf16 models, and returned in the model's own dtype.

Opening a store made for other data, another model (name, family, config, weights) or other
preprocessing (kind, image size, contrast limits) raises ``ValueError`` naming what differs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import zarr
import zarr.errors
from zarr.abc.store import Store

from .frames import as_frame_stack, data_signature
from .preprocess import estimate_contrast_limits, preprocess_for, to_uint8_rgb

FORMAT_VERSION = 1
ATTRS_KEY = "napari_sam_embeddings"
#: How each family's frames are turned into encoder input (see ``preprocess.preprocess_for``).
PREPROCESS_KIND = {"sam1": "sam1-image-predictor", "sam2": "sam2-video-loader"}
_WEIGHT_SAMPLES = 1024  # values read from every weight tensor for the weights hash

_DTYPES = {str(d): d for d in (torch.float32, torch.float16, torch.bfloat16, torch.float64)}


def _jsonable(obj):
    """``obj`` as plain JSON values (dataclasses and mappings recursed; tuples -> lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bool, int, float, str)) or obj is None:
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    text = repr(obj)
    return type(obj).__qualname__ if " at 0x" in text else text  # no addresses: they change


def weights_hash(model: torch.nn.Module) -> str:
    """BLAKE2b-128 over every state_dict entry's name, shape, dtype and up to 1024 values taken
    at an even stride from the flattened tensor. Tells one checkpoint from another cheaply."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in model.state_dict().items():
        flat = t.detach().reshape(-1)
        step = max(1, flat.numel() // _WEIGHT_SAMPLES)
        sample = flat[::step][:_WEIGHT_SAMPLES].to("cpu")
        if sample.is_floating_point() or sample.is_complex():
            sample = sample.to(torch.float64 if sample.dtype == torch.float64 else torch.float32)
        h.update(repr((name, tuple(t.shape), str(t.dtype))).encode())
        h.update(sample.contiguous().numpy().tobytes())
    return h.hexdigest()


def _model_param(model) -> torch.Tensor | None:
    for p in list(model.parameters()) + list(model.buffers()):
        if p.is_floating_point():
            return p
    return None


def model_identity(model) -> dict:
    """What a store records about the model that made it."""
    p = _model_param(model)
    return {
        "name": getattr(model, "name", None),
        "family": model.family,
        "image_size": int(model.image_size),
        "config": _jsonable(getattr(model, "config", None)),
        "dtype": str(p.dtype) if p is not None else None,
        "weights_hash": weights_hash(model),
    }


def _fmt(v) -> str:
    return str(tuple(v)) if isinstance(v, list) else repr(v)


def _differences(stored: dict, wanted: dict, limits_given: bool) -> list[str]:
    """Human-readable list of what differs between a store's record and what is asked for."""
    if stored.get("format_version") != wanted["format_version"]:
        return [f"format version {stored.get('format_version')} (this napari-sam writes {FORMAT_VERSION})"]
    out = []
    checks = [
        ("data", ["shape", "dtype", "version", "sample_hash"], "data"),
        ("model", ["name", "family", "image_size", "config", "dtype", "weights_hash"], "model"),
        ("preprocess", ["kind", "image_size"], "preprocessing"),
    ]
    if limits_given:
        checks.append(("preprocess", ["contrast_limits"], "contrast limits"))
    for section, keys, label in checks:
        for key in keys:
            a, b = stored.get(section, {}).get(key), wanted[section][key]
            if key == "contrast_limits":
                same = a is not None and all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12) for x, y in zip(a, b))
            else:
                same = a == b
            if not same:
                what = label if key == "contrast_limits" else f"{label} {key.replace('_', ' ')}"
                if key == "sample_hash":
                    what = "data content (sampled pixels differ)"
                out.append(f"{what}: store has {_fmt(a)}, asked for {_fmt(b)}")
    return out


class EmbeddingStore:
    """Image-encoder features of every frame of ``frames``, computed once, kept in zarr.

    ``path``: ``None`` (in memory), a directory path (created if missing), or a zarr ``Store``.
    ``frames``: (T, H, W[, C]) or one (H, W[, C]) image; numpy, zarr, dask — read lazily.
    ``contrast_limits``: (lo, hi) to map frames to 8 bit; ``None`` reuses the limits an existing
    store recorded, or for a new store estimates one pair for the whole stack
    (``preprocess.estimate_contrast_limits``), so every frame is mapped alike.
    """

    def __init__(self, path, model, frames, contrast_limits=None):
        self.model = model
        self.frames = as_frame_stack(frames)
        self.path = Path(path) if isinstance(path, (str, os.PathLike)) else None
        self.signature = data_signature(self.frames)
        self._model_info = model_identity(model)
        family = self._model_info["family"]
        if family not in PREPROCESS_KIND:
            raise ValueError(f"unknown model family {family!r}")
        group, stored = self._open_group(path)
        if contrast_limits is not None:
            limits = [float(v) for v in contrast_limits]
            if len(limits) != 2:
                raise ValueError(f"contrast_limits must be (low, high), got {contrast_limits!r}")
        elif stored is not None and stored.get("preprocess", {}).get("contrast_limits"):
            limits = [float(v) for v in stored["preprocess"]["contrast_limits"]]
        else:
            limits = [float(v) for v in estimate_contrast_limits(self.frames)]
        self._meta = {
            "format_version": FORMAT_VERSION,
            "data": self.signature,
            "model": self._model_info,
            "preprocess": {
                "kind": PREPROCESS_KIND[family],
                "image_size": self._model_info["image_size"],
                "contrast_limits": limits,
            },
        }
        self._meta = json.loads(json.dumps(self._meta))  # the exact form the attributes hold
        if stored is None:
            self._claim(group)
        else:
            diffs = _differences(stored, self._meta, contrast_limits is not None)
            if diffs:
                where = f"at {str(self.path)!r}" if self.path else "given"
                raise ValueError(
                    f"the embedding store {where} was made for something else — "
                    + "; ".join(diffs)
                    + ". Use another path, or delete that store to recompute."
                )
        self._group = group
        self._complete = self._open_complete(group)
        self._arrays = self._open_feature_arrays(group)
        self._levels_final = False  # True once the arrays are known to be all there

    # ---- opening -------------------------------------------------------------------------

    def _open_group(self, path):
        """(group, stored record or None). Refuses folders that hold something else."""
        if path is None:
            return zarr.open_group(zarr.storage.MemoryStore(), mode="a"), None
        if isinstance(path, Store):
            store = path
        elif isinstance(path, (str, os.PathLike)):
            p = Path(path)
            if p.exists() and not p.is_dir():
                raise ValueError(f"embedding store path {str(p)!r} is a file, not a folder")
            if p.is_dir() and not (p / "zarr.json").exists() and any(p.iterdir()):
                raise ValueError(f"{str(p)!r} is a non-empty folder that is not a zarr store")
            store = zarr.storage.LocalStore(p)
        else:
            raise TypeError(f"path must be None, a folder path or a zarr Store, got {type(path).__name__}")
        try:
            group = zarr.open_group(store, mode="a")
        except (zarr.errors.ContainsArrayError, zarr.errors.NodeTypeValidationError) as e:
            raise ValueError(f"{str(path)!r} holds a zarr array, not an embedding store") from e
        stored = group.attrs.get(ATTRS_KEY)
        if stored is None and any(True for _ in group.keys()):
            raise ValueError(f"{str(path)!r} is a zarr group that is not an embedding store")
        return group, stored

    def _claim(self, group) -> None:
        group.attrs[ATTRS_KEY] = self._meta

    def _open_complete(self, group):
        try:
            return group.create_array(
                "complete", shape=(len(self),), chunks=(1,), dtype="uint8", fill_value=0, compressors=None
            )
        except zarr.errors.ContainsArrayError:
            arr = group["complete"]
            if arr.shape != (len(self),):
                raise ValueError(f"store's 'complete' array has shape {arr.shape}, expected ({len(self)},)")
            return arr

    def _open_feature_arrays(self, group) -> dict:
        if "features" not in group:
            return {}
        return {name: arr for name, arr in group["features"].arrays()}

    def _readable_arrays(self) -> dict:
        """The feature arrays, re-listed once after some frame is complete (then all exist)."""
        if not self._levels_final:
            self._arrays = self._open_feature_arrays(self._group)
            self._levels_final = True
        return self._arrays

    def _ensure_feature_arrays(self, feats: dict[str, np.ndarray], dtypes: dict[str, str]) -> None:
        """Open or create one array per feature level; other processes may race us (fine:
        creating the same array twice writes the same metadata)."""
        if self._levels_final and set(self._arrays) == set(feats):
            arrays = self._arrays
        else:
            try:
                fgroup = self._group.create_group("features")
            except zarr.errors.ContainsGroupError:
                fgroup = self._group["features"]
            arrays = {}
            for name, value in feats.items():
                if "/" in name or not name:
                    raise ValueError(f"feature name {name!r} cannot be a zarr array name")
                try:
                    arrays[name] = fgroup.create_array(
                        name,
                        shape=(len(self), *value.shape),
                        chunks=(1, *value.shape),
                        dtype="float32",
                        fill_value=0.0,
                        compressors=None,
                        attributes={"torch_dtype": dtypes[name]},
                        config={"write_empty_chunks": True},
                    )
                except zarr.errors.ContainsArrayError:
                    arrays[name] = fgroup[name]
            extra = sorted({name for name, _ in fgroup.arrays()} - set(feats))
            if extra:
                raise ValueError(f"the store holds feature levels {extra} this model does not make")
        for name, value in feats.items():
            if tuple(arrays[name].shape) != (len(self), *value.shape):
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
        if not self._levels_final and self._complete[:].any():
            self._readable_arrays()
        return {k: tuple(a.shape[1:]) for k, a in self._arrays.items()}

    @property
    def device(self) -> torch.device:
        p = _model_param(self.model)
        return p.device if p is not None else torch.device("cpu")

    def has(self, t: int) -> bool:
        """Whether frame ``t``'s features are completely stored (read fresh from the store)."""
        return bool(self._complete[self.frames._index(t)])

    def missing(self) -> list[int]:
        """Indices of the frames not yet completely stored, ascending."""
        return [int(i) for i in np.flatnonzero(self._complete[:] == 0)]

    def is_complete(self) -> bool:
        return not self.missing()

    def get(self, t: int) -> dict[str, torch.Tensor]:
        """Frame ``t``'s features, batch 1, on the model's device and in its dtype.

        Read from the store when complete there; otherwise encoded now, stored, returned.
        """
        t = self.frames._index(t)
        if self.has(t):
            feats = {k: a[t] for k, a in self._readable_arrays().items()}
        else:
            feats = self._encode_and_store(t)
        out = {}
        for k, v in feats.items():
            dtype = _DTYPES.get(self._arrays[k].attrs.get("torch_dtype"), torch.float32)
            out[k] = torch.from_numpy(np.ascontiguousarray(v))[None].to(device=self.device, dtype=dtype)
        return out

    def precompute_iter(self) -> Iterator[tuple[int, int]]:
        """Encode every missing frame, yielding ``(done, total)`` first once, then after each frame.

        ``done`` counts complete frames, whichever process stored them. Stop iterating (or
        ``close()`` the generator; napari's ``thread_worker`` quit) to cancel between frames:
        what is stored stays, and a later call resumes with the frames still missing.
        """
        for done, total, _ in self._steps():
            yield done, total

    def precompute(self, progress: Callable[[int, int], object] | None = None) -> int:
        """Encode every missing frame; ``progress(done, total)`` as in :meth:`precompute_iter`.

        Returns how many frames this call encoded (0 when the store was already complete).
        """
        encoded = 0
        for done, total, new in self._steps():
            encoded += new
            if progress is not None:
                progress(done, total)
        return encoded

    # ---- work ----------------------------------------------------------------------------

    def _steps(self):
        total = len(self)
        todo = self.missing()
        done = total - len(todo)
        yield done, total, False
        for t in todo:
            new = not self.has(t)  # another process may have stored it meanwhile
            if new:
                self._encode_and_store(t)
            done += 1
            yield done, total, new

    def _encode_and_store(self, t: int) -> dict[str, np.ndarray]:
        rgb = to_uint8_rgb(self.frames[t], self.contrast_limits)
        x = preprocess_for(self.model, rgb)
        p = _model_param(self.model)
        if p is not None:
            x = x.to(device=p.device, dtype=p.dtype)
        with torch.inference_mode():
            out = self.model.encode_image(x)
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
        self._complete[t] = 1  # last: the frame now reads as valid
        return feats

    def __repr__(self) -> str:
        where = str(self.path) if self.path else "memory"
        done = len(self) - len(self.missing())
        return f"EmbeddingStore({where}, {self.model_name or self._model_info['family']}, {done}/{len(self)} frames)"
