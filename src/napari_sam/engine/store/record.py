"""What an EmbeddingStore records about the data, model and preprocessing it was made for.

The record lives in the store's root attributes (``attrs["napari_sam_embeddings"]``); opening
a store for anything else is refused with a list of what differs (:func:`differences`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math

import numpy as np
import torch

#: 1: a ``complete`` uint8 flag per frame, no checksums. 2: a ``checksum`` per frame.
FORMAT_VERSION = 2
ATTRS_KEY = "napari_sam_embeddings"
_WEIGHT_SAMPLES = 1024  # values read from every weight tensor for the weights hash


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


def model_param(model) -> torch.Tensor | None:
    """The model's first floating-point parameter or buffer (its device and dtype)."""
    for p in itertools.chain(model.parameters(), model.buffers()):  # lazily: the first one found
        if p.is_floating_point():
            return p
    return None


def model_identity(model) -> dict:
    """What a store records about the model that made it."""
    p = model_param(model)
    return {
        "name": getattr(model, "name", None),
        "family": model.family,
        "image_size": int(model.image_size),
        "config": _jsonable(getattr(model, "config", None)),
        "dtype": str(p.dtype) if p is not None else None,
        "weights_hash": weights_hash(model),
    }


def is_record(stored) -> bool:
    """Whether ``stored`` has the record's shape (a mapping of the expected sections)."""
    return isinstance(stored, dict) and all(
        isinstance(stored.get(k), dict) for k in ("data", "model", "preprocess")
    )


def _fmt(v) -> str:
    return str(tuple(v)) if isinstance(v, list) else repr(v)


def _same_limits(a, b) -> bool:
    try:
        return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12) for x, y in zip(a, b))
    except TypeError:
        return False


def differences(stored: dict, wanted: dict, limits_given: bool) -> list[str]:
    """Human-readable list of what differs between a store's record and what is asked for
    (the format version aside: the caller decides what an older format means)."""
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
            a, b = stored[section].get(key), wanted[section][key]
            same = _same_limits(a, b) if key == "contrast_limits" else a == b
            if not same:
                what = label if key == "contrast_limits" else f"{label} {key.replace('_', ' ')}"
                if key == "sample_hash":
                    what = "data content (sampled pixels differ)"
                out.append(f"{what}: store has {_fmt(a)}, asked for {_fmt(b)}")
    a, b = stored.get("tiling"), wanted.get("tiling")
    if a != b:
        out.append(f"tiling: the store was made with {_tiling(a)}, asked for {_tiling(b)}")
    return out


def _tiling(t) -> str:
    if not t:
        return "no tiles (whole frames)"
    return f"tiles of {_fmt(t.get('tile_shape'))} px with halo {_fmt(t.get('halo'))} px"
