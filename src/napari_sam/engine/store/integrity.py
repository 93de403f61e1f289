"""Integrity of an EmbeddingStore: one checksum per frame, chunk presence, damage messages.

A frame's checksum is a CRC-32 over the frame index, the levels' names and shapes and their
little-endian float32 bytes (:func:`frame_checksum`), stored with bit 32 set: a stored checksum
is never 0, and 0 (the fill value) means "not complete". It is written in the frame's own chunk
of the ``checksum`` array after the features, so it is also the frame's completion flag, and it
is checked on every read. zlib's CRC-32 runs at 1-3 GB/s: about 1.5 ms for a SAM 1 frame at
1024 px (4 MiB), 5-8 ms for SAM 2 (16 MiB), against seconds to encode one (ViT-B: ~50 s on
two CPU cores) and a few ms to read it.

zarr is lenient with damage: a deleted chunk reads as the fill value, and ``create_array`` /
``create_group`` silently replace an unreadable ``zarr.json``. Hence :func:`open_node`, which
opens first and reports unreadable metadata instead of replacing it.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import zarr
import zarr.errors
import zarr.storage
from zarr.abc.store import Store
from zarr.core.sync import sync

from .record import ATTRS_KEY, is_record

CHECKSUM_ARRAY = "checksum"
COMPLETE_BIT = 1 << 32
#: What zarr raises on a chunk or a metadata document it cannot decode (truncated, garbage).
DECODE_ERRORS = (ValueError, TypeError, KeyError, EOFError, OSError, RuntimeError)
#: Flat chunk keys ("c.<t>.0.0"): one directory listing tells which frames are stored.
FLAT_KEYS = {"name": "default", "separator": "."}


class CorruptFrameWarning(UserWarning):
    """A stored frame failed its check (or could not be decoded) and is encoded again."""


class StoreDamagedError(ValueError):
    """A store's metadata cannot be read; the store is left as it is."""


def damaged(where: str, what: str, err: BaseException | None = None) -> StoreDamagedError:
    why = f" ({type(err).__name__}: {err})" if err is not None else ""
    return StoreDamagedError(
        f"the embedding store at {where} is damaged: {what}{why}. Nothing was changed; "
        "delete that folder to compute its features again."
    )


def frame_checksum(t: int, feats: Mapping[str, np.ndarray]) -> int:
    """Frame ``t``'s checksum (never 0) over its features as the store holds them: a CRC-32 of
    the frame index, the levels' names and shapes, then each level's bytes, in name order."""
    levels = {name: np.ascontiguousarray(feats[name], dtype="<f4") for name in sorted(feats)}
    crc = zlib.crc32(repr(("napari-sam frame", int(t), [(k, v.shape) for k, v in levels.items()])).encode())
    for v in levels.values():
        crc = zlib.crc32(memoryview(v.reshape(-1).view(np.uint8)), crc)
    return COMPLETE_BIT | crc


def mismatch(feats: Mapping[str, np.ndarray]) -> str:
    """Why features failed their checksum, in words (naming levels that hold NaN or inf)."""
    bad = [k for k in sorted(feats) if not np.isfinite(feats[k]).all()]
    if bad:
        return f"its features hold NaN or inf ({', '.join(bad)}) and do not match their checksum"
    return "its features do not match the checksum written with them"


def read_flags(arr: zarr.Array) -> np.ndarray:
    """Every frame's stored checksum; a chunk that cannot be decoded reads as 0 (missing)."""
    try:
        return np.asarray(arr[:], dtype=np.uint64)
    except DECODE_ERRORS:
        return np.array([read_flag(arr, t) for t in range(arr.shape[0])], dtype=np.uint64)


def read_flag(arr: zarr.Array, t: int) -> int:
    try:
        return int(arr[t])
    except DECODE_ERRORS:
        return 0


def _chunk_key(arr: zarr.Array, t: int) -> str:
    return f"{arr.path}/{arr.metadata.encode_chunk_key((t,) + (0,) * (arr.ndim - 1))}"


async def _collect(names) -> list[str]:
    return [n async for n in names]


def chunk_present(arr: zarr.Array, t: int) -> bool:
    """Whether frame ``t``'s chunk of ``arr`` (one frame per chunk) is in the store."""
    return bool(sync(arr.store.exists(_chunk_key(arr, t))))


def frames_present(arr: zarr.Array) -> np.ndarray:
    """(T,) bool: which frames' chunks of ``arr`` are in the store (one listing)."""
    if arr.metadata.chunk_key_encoding.separator == ".":
        keys = {f"{arr.path}/{n}" for n in sync(_collect(arr.store.list_dir(arr.path)))}
    else:  # nested keys (not written by this version): a recursive listing
        keys = set(sync(_collect(arr.store.list_prefix(arr.path + "/"))))
    return np.array([_chunk_key(arr, t) in keys for t in range(arr.shape[0])], dtype=bool)


def member_names(group: zarr.Group) -> set[str]:
    """Names of ``group``'s members (entries with a ``zarr.json``; not a directory store's
    temporary files), listed without reading (or trusting) their metadata."""
    names = sync(_collect(group.store.list_dir(group.path)))
    return {n for n in names if n != "zarr.json" and _meta_exists(group, n)}


def _meta_exists(group: zarr.Group, name: str) -> bool:
    prefix = f"{group.path}/" if group.path else ""
    return bool(sync(group.store.exists(f"{prefix}{name}/zarr.json")))


def open_node(group: zarr.Group, name: str, where: str, kind: type):
    """``group[name]`` (a ``kind``: zarr.Array or zarr.Group), or None when there is none.
    Unreadable metadata raises :class:`StoreDamagedError`; nothing is replaced."""
    label = f"{group.path}/{name}" if group.path else name
    for attempt in range(2):
        try:
            node = group[name]
            break
        except KeyError:
            if not _meta_exists(group, name):
                return None
            if attempt:  # still unreadable: not just made by another process meanwhile
                raise damaged(where, f"{label}/zarr.json cannot be read") from None
        except DECODE_ERRORS as e:
            raise damaged(where, f"{label}/zarr.json cannot be read", e) from e
    if not isinstance(node, kind):
        raise damaged(where, f"{label}/zarr.json describes a {type(node).__name__}, not a {kind.__name__}")
    return node


def open_or_create(group: zarr.Group, name: str, where: str, kind: type, **spec):
    """Open ``group[name]`` or, when absent, create it (``create_array(**spec)`` or
    ``create_group``); another process creating it at the same time is fine."""
    node = open_node(group, name, where, kind)
    if node is not None:
        return node
    try:
        if kind is zarr.Group:
            return group.create_group(name)
        return group.create_array(name, **spec)
    except (zarr.errors.ContainsArrayError, zarr.errors.ContainsGroupError):
        return open_node(group, name, where, kind)


def open_store_group(path, where: str):
    """(zarr store, root group or None when there is none yet, its napari-sam record or None)
    at ``path`` (None: a new store in memory; a folder path; a zarr ``Store``). Refuses what
    holds something else, or is damaged; opens without ever creating or rewriting anything."""
    if path is None:
        return zarr.storage.MemoryStore(), None, None
    if isinstance(path, Store):
        store = path
    elif isinstance(path, (str, os.PathLike)):
        p = Path(path)
        if p.exists() and not p.is_dir():
            raise ValueError(f"embedding store path {str(p)!r} is a file, not a folder")
        # zarr writes each file as "<name>.<uuid>.partial" and renames it: a store another
        # thread or process is creating right now holds only such files for a moment
        if p.is_dir() and not (p / "zarr.json").exists() and any(not c.name.endswith(".partial") for c in p.iterdir()):
            raise ValueError(f"{str(p)!r} is a non-empty folder that is not a zarr store")
        store = zarr.storage.LocalStore(p)
    else:
        raise TypeError(f"path must be None, a folder path or a zarr Store, got {type(path).__name__}")
    for attempt in range(2):
        try:
            group = zarr.open_group(store, mode="r+")
            break
        except zarr.errors.GroupNotFoundError:
            if not sync(store.exists("zarr.json")):
                return store, None, None
            if attempt:  # still unreadable: not just made by another process meanwhile
                raise damaged(where, "its zarr.json cannot be read") from None
        except (zarr.errors.ContainsArrayError, zarr.errors.NodeTypeValidationError) as e:
            raise ValueError(f"{str(path)!r} holds a zarr array, not an embedding store") from e
        except DECODE_ERRORS as e:
            raise damaged(where, "its zarr.json cannot be read", e) from e
    stored = group.attrs.get(ATTRS_KEY)
    members = member_names(group)
    if stored is None and members:
        if members & {"features", CHECKSUM_ARRAY, "complete"}:
            raise damaged(where, "its zarr.json holds no napari-sam record")
        raise ValueError(f"{str(path)!r} is a zarr group that is not an embedding store")
    if stored is not None and not is_record(stored):
        raise damaged(where, f"the record in its zarr.json is not readable: {stored!r:.200}")
    return store, group, stored


def create_store_group(store, record: dict, path, where: str):
    """(root group, None) of a new store written with ``record`` in one go (so no reader ever
    sees it without one), or (group, its record) when another process has just made it."""
    try:
        return zarr.create_group(store, attributes={ATTRS_KEY: record}), None
    except zarr.errors.ContainsGroupError:
        _, group, stored = open_store_group(store if path is None else path, where)
        if group is None or stored is None:
            raise damaged(where, "its zarr.json cannot be read") from None
        return group, stored


def rebuild_format_1(group: zarr.Group, record: dict, where: str) -> None:
    """A format-1 store has no checksums: nothing it holds can be verified. Record the new
    format first (so other processes open it as such), then drop the old arrays."""
    import warnings

    group.attrs[ATTRS_KEY] = record
    old = open_node(group, "complete", where, zarr.Array)
    done = int(np.count_nonzero(read_flags(old))) if old is not None else 0
    for name in ("complete", "features"):
        try:
            del group[name]
        except KeyError:
            pass
    warnings.warn(
        f"the embedding store at {where} was written by an earlier napari-sam without "
        f"checksums, so its {done} stored frame(s) cannot be verified; they are dropped and "
        "re-encoded as they are needed (or by precompute())",
        UserWarning,
        stacklevel=4,
    )
