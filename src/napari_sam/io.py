"""Reading microscopy stacks (TIFF incl. ImageJ / OME hyperstacks, zarr incl. OME-Zarr) lazily,
and writing labels frame by frame.

Axes are single letters as tifffile names them: T (time), Z, C (channel), Y, X, S (RGB
samples); Q / I / others are "unknown". :meth:`ImageSource.stack` turns any layout into what
the engine wants — ``(H, W)``, ``(H, W, 3)``, ``(N, H, W)`` or ``(N, H, W, 3)`` — as a lazy dask
array: singleton axes are dropped, a channel is picked, and exactly one axis (T or Z, or
one unknown axis) may remain as the stack axis.

Writers never hold the whole result: frames go to ``<output>.partial`` as they come and the
file (or zarr folder) is renamed to its final name only when complete.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np

KNOWN = set("TZCYXS")
LABEL_DTYPE = np.int32


class InputError(ValueError):
    """Input the command cannot use; the message says what and how to fix it."""


# ---------------------------------------------------------------------------- reading
class ImageSource:
    """An opened image: ``data`` (lazy dask array), ``axes`` (letters, one per dimension)."""

    def __init__(self, path, data, axes: str, channel_names=None):
        self.path = str(path)
        self.data = data
        self.axes = axes.upper()
        self.channel_names = channel_names or []
        if len(self.axes) != data.ndim:
            raise InputError(f"{self.path}: axes {axes!r} do not fit the data's {data.ndim} dimensions {data.shape}")

    @property
    def sizes(self) -> dict[str, int]:
        return dict(zip(self.axes, self.data.shape))

    def stack(self, axis: str | None = None, channel=None, index: dict[str, int] | None = None):
        """``(array, stack_axis)``: the lazy frames and the letter of the stack axis (None for
        one image). ``axis``: which axis runs through the frames when several could;
        ``channel``: index (or name) of the channel, or "rgb" for three colour channels;
        ``index``: fixed positions of other axes, e.g. ``{"Z": 3}``."""
        arr, axes = self.data, self.axes
        if "Y" not in axes or "X" not in axes:
            raise InputError(f"{self.path}: unknown axes {axes!r} (no Y and X); give them with --axes, e.g. --axes TYX")
        if len(set(axes)) != len(axes):
            raise InputError(f"{self.path}: repeated axis letters in {axes!r}; give the axes with --axes")
        index = {k.upper(): int(v) for k, v in (index or {}).items()}
        rgb = False
        if "C" in axes and "C" not in index:
            c = self.sizes["C"]
            if isinstance(channel, str) and channel.lower() == "rgb":
                if c not in (3, 4):
                    raise InputError(f"{self.path}: --channel rgb needs 3 colour channels, the image has {c}")
                rgb = True
            elif channel is not None:
                index["C"] = self._channel_index(channel, c)
            elif c > 1:
                names = f" ({', '.join(self.channel_names)})" if self.channel_names else ""
                raise InputError(f"{self.path}: {c} channels{names}; choose one with --channel N (0-based) or --channel rgb")
        for letter, i in index.items():
            if letter not in axes:
                raise InputError(f"{self.path}: --index {letter}={i}: no axis {letter} in {axes!r}")
            if not 0 <= i < self.sizes[letter]:
                raise InputError(f"{self.path}: --index {letter}={i} out of range (size {self.sizes[letter]})")
        sel = tuple(index.get(a, slice(None)) for a in axes)
        arr = arr[sel]
        axes = "".join(a for a in axes if a not in index)
        if rgb:
            arr, axes = _move(arr, axes, "C", "S")
        if "S" in axes:
            s = arr.shape[axes.index("S")]
            if s not in (1, 3, 4):
                raise InputError(f"{self.path}: {s} samples per pixel; only grey or RGB(A) is supported")
            if s == 1:
                arr, axes = _drop(arr, axes, "S")
        for letter in [a for a in axes if a not in "YXS"]:  # singletons go
            if arr.shape[axes.index(letter)] == 1:
                arr, axes = _drop(arr, axes, letter)
        rest = [a for a in axes if a not in "YXS"]
        if len(rest) > 1:
            if axis is None or axis.upper() not in rest:
                sizes = ", ".join(f"{a}={arr.shape[axes.index(a)]}" for a in rest)
                raise InputError(f"{self.path}: several stack axes ({sizes}); choose one with --axis and fix the others "
                                 f"with --index, e.g. --axis {rest[0]} --index {rest[1]}=0")
            raise InputError(f"{self.path}: fix the other axes with --index, e.g. --index "
                             + ",".join(f"{a}=0" for a in rest if a != axis.upper()))
        if rest and axis is not None and axis.upper() != rest[0]:
            raise InputError(f"{self.path}: --axis {axis}: the stack axis here is {rest[0]}")
        order = rest + ["Y", "X"] + (["S"] if "S" in axes else [])
        arr = arr.transpose([axes.index(a) for a in order])
        if "S" in axes and arr.shape[-1] == 4:
            arr = arr[..., :3]
        return arr, (rest[0] if rest else None)

    def _channel_index(self, channel, size: int) -> int:
        if isinstance(channel, str) and not channel.lstrip("-").isdigit():
            if channel in self.channel_names:
                return self.channel_names.index(channel)
            raise InputError(f"{self.path}: no channel named {channel!r}; channels: {', '.join(self.channel_names) or 'unnamed'}")
        i = int(channel)
        if not 0 <= i < size:
            raise InputError(f"{self.path}: --channel {i} out of range ({size} channels, 0-based)")
        return i


def _drop(arr, axes, letter):
    i = axes.index(letter)
    return arr[(slice(None),) * i + (0,)], axes.replace(letter, "")


def _move(arr, axes, letter, new):
    i = axes.index(letter)
    arr = arr.transpose([j for j in range(arr.ndim) if j != i] + [i])
    return arr, axes.replace(letter, "") + new


def open_image(path, axes: str | None = None) -> ImageSource:
    """Open a TIFF or zarr image lazily. ``axes`` overrides the file's own axes."""
    import dask.array as da

    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such file or folder")
    names = []
    if p.is_dir() or p.suffix.lower() == ".zarr":
        arr, file_axes, names = _open_zarr(p)
    elif p.suffix.lower() in (".tif", ".tiff", ".btf", ".tf8"):
        arr, file_axes, names = _open_tiff(p)
    else:
        raise InputError(f"{path}: unsupported file type {p.suffix!r} (TIFF or zarr)")
    data = da.from_zarr(arr)
    if axes is not None:
        if len(axes) != data.ndim:
            raise InputError(f"{path}: --axes {axes!r} has {len(axes)} letters, the data has {data.ndim} dimensions {data.shape}")
        file_axes = axes
    return ImageSource(p, data, file_axes, names)


def _open_tiff(p: Path):
    import tifffile
    import zarr

    try:
        with tifffile.TiffFile(p) as tif:
            series = tif.series[0]
            axes = series.axes
            names = _ome_channel_names(tif)
            store = series.aszarr()
    except Exception as err:  # noqa: BLE001  (tifffile raises many kinds on a damaged file)
        raise InputError(f"{p}: not a readable TIFF ({type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''})") from None
    arr = zarr.open(store, mode="r")
    if hasattr(arr, "keys"):  # a multi-resolution series: level 0
        arr = arr["0"]
    return arr, _known_axes(axes, arr.shape), names


def _ome_channel_names(tif) -> list[str]:
    xml = tif.ome_metadata
    if not xml:
        return []
    import re

    return re.findall(r'<Channel[^>]*?Name="([^"]*)"', xml)


def _known_axes(axes: str, shape) -> str:
    """tifffile's letters; an unnamed first axis of a 3-D stack stays unknown ('Q')."""
    return "".join(a if a in KNOWN else "Q" for a in axes.upper())


def _open_zarr(p: Path):
    import zarr

    try:
        node = zarr.open(str(p), mode="r")
    except Exception as err:  # noqa: BLE001  (any failure means: not a zarr we can read)
        raise InputError(f"{p}: not a readable zarr store ({type(err).__name__})") from None
    if hasattr(node, "keys") and not hasattr(node, "shape"):  # a group: OME-Zarr level 0
        ms = node.attrs.get("multiscales") or (node.attrs.get("ome", {}) or {}).get("multiscales")
        if not ms:
            raise InputError(f"{p}: a zarr group without OME-Zarr 'multiscales'; point at the array itself")
        arr = node[ms[0]["datasets"][0]["path"]]
        axes = "".join(a["name"] if isinstance(a, dict) else a for a in ms[0].get("axes", []))
        names = [c.get("label", "") for c in (node.attrs.get("omero", {}) or {}).get("channels", [])]
        return arr, (axes.upper() if len(axes) == arr.ndim else _guess(arr.shape)), names
    dims = node.attrs.get("_ARRAY_DIMENSIONS") or node.attrs.get("axes")
    if dims and len(dims) == node.ndim:
        return node, "".join(str(d)[0] for d in dims).upper(), []
    return node, _guess(node.shape), []


def _guess(shape) -> str:
    if len(shape) == 2:
        return "YX"
    if len(shape) == 3:
        return "YXS" if shape[-1] in (3, 4) else "QYX"
    return "Q" * len(shape)  # nothing to go on: --axes


# ---------------------------------------------------------------------------- writing
def _check_target(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise InputError(f"{path}: output exists; use --overwrite to replace it")
    if not path.parent.exists():
        raise InputError(f"{path.parent}: output folder does not exist")


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def _remove(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p)
    elif p.exists():
        p.unlink()


class LabelsWriter:
    """Write ``n_frames`` (H, W) int32 label frames in order to a TIFF or zarr ``path``
    (``None`` frames: one 2-D image). Use as a context manager: the output appears under its
    name only when every frame was written; on an error the partial file is removed."""

    def __init__(self, path, frame_shape, n_frames: int | None, axes: str = "TYX", overwrite: bool = False):
        self.path = Path(path)
        _check_target(self.path, overwrite)
        self.kind = "zarr" if self.path.suffix.lower() == ".zarr" else "tiff"
        if self.kind == "tiff" and self.path.suffix.lower() not in (".tif", ".tiff"):
            raise InputError(f"{self.path}: write labels as .tif/.tiff or .zarr")
        self.frame_shape = tuple(int(s) for s in frame_shape)
        self.n_frames = n_frames
        self.axes = axes if n_frames is not None else "YX"
        self.tmp = _partial(self.path)
        _remove(self.tmp)
        self.written = 0
        if self.kind == "tiff":
            import tifffile

            big = (n_frames or 1) * np.prod(self.frame_shape) * 4 > 2**31
            self._tif = tifffile.TiffWriter(self.tmp, bigtiff=bool(big))
        else:
            import zarr

            shape = self.frame_shape if n_frames is None else (n_frames, *self.frame_shape)
            chunks = self.frame_shape if n_frames is None else (1, *self.frame_shape)
            self._z = zarr.create_array(str(self.tmp), shape=shape, chunks=chunks, dtype=LABEL_DTYPE, fill_value=0,
                                        attributes={"_ARRAY_DIMENSIONS": list(self.axes.lower())})

    def write(self, labels: np.ndarray) -> None:
        labels = np.asarray(labels)
        if labels.shape != self.frame_shape:
            raise ValueError(f"frame of shape {labels.shape}, expected {self.frame_shape}")
        if self.written >= (self.n_frames or 1):
            raise ValueError("all frames are already written")
        labels = labels.astype(LABEL_DTYPE, copy=False)
        if self.kind == "tiff":
            meta = {"axes": self.axes} if self.written == 0 else None
            self._tif.write(labels, contiguous=True, metadata=meta, photometric="minisblack")
        elif self.n_frames is None:
            self._z[...] = labels
        else:
            self._z[self.written] = labels
        self.written += 1

    def commit(self) -> None:
        if self.written != (self.n_frames or 1):
            raise RuntimeError(f"{self.written} of {self.n_frames or 1} frames written")
        if self.kind == "tiff":
            self._tif.close()
        _remove(self.path)
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if self.kind == "tiff":
            with contextlib.suppress(Exception):  # the partial file goes anyway
                self._tif.close()
        _remove(self.tmp)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.abort()
        return False


def write_csv(path, header, rows, overwrite: bool = False) -> None:
    """A CSV written to ``<path>.partial`` and renamed when complete."""
    path = Path(path)
    _check_target(path, overwrite)
    tmp = _partial(path)
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for row in rows:
            w.writerow([f"{v:.3f}" if isinstance(v, float) else v for v in row])
    os.replace(tmp, path)


# ---------------------------------------------------------------------------- prompt files
def read_prompts(path, frame_shape, n_frames: int) -> dict[int, dict[int, dict]]:
    """``{frame: {object id: {"points": [(x, y)], "labels": [1|0], "box": (x0, y0, x1, y1) | None}}}``.

    CSV: a header with ``x, y`` (clicks; optional ``label`` 1/0, default 1) and/or
    ``x0, y0, x1, y1`` (a box); optional ``id`` (default: one object per row) and ``frame``
    (default 0). A napari Points layer export (``axis-0, axis-1[, axis-2]``: (frame,) y, x)
    gives one object per point. JSON: a list of ``{"id", "frame", "points", "labels", "box"}``.
    Everything is checked against the image: frame range and points / boxes inside.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{path}: prompt file not found")
    try:
        entries = _json_prompts(p) if p.suffix.lower() == ".json" else _csv_prompts(p)
    except InputError:
        raise
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(f"{path}: cannot read prompts ({err})") from None
    if not entries:
        raise InputError(f"{path}: no prompts in the file")
    h, w = frame_shape
    out: dict[int, dict[int, dict]] = {}
    for e in entries:
        t, oid = int(e.get("frame", 0)), int(e["id"])
        if not 0 <= t < n_frames:
            raise InputError(f"{path}: prompt file does not match the image: frame {t} but the image has {n_frames} frame(s)")
        obj = out.setdefault(t, {}).setdefault(oid, {"points": [], "labels": [], "box": None})
        for (x, y), lab in zip(e.get("points", []), e.get("labels", [])):
            if not (-0.5 <= x <= w - 0.5 and -0.5 <= y <= h - 0.5):
                raise InputError(f"{path}: prompt file does not match the image: point (x={x:g}, y={y:g}) "
                                 f"outside the {w}x{h} (width x height) frame")
            obj["points"].append((float(x), float(y)))
            obj["labels"].append(int(lab))
        if e.get("box") is not None:
            x0, y0, x1, y1 = (float(v) for v in e["box"])
            if x1 < x0 or y1 < y0 or x1 < 0 or y1 < 0 or x0 > w - 1 or y0 > h - 1:
                raise InputError(f"{path}: prompt file does not match the image: box {[x0, y0, x1, y1]} in a {w}x{h} frame")
            obj["box"] = (x0, y0, x1, y1)
    return out


def _json_prompts(p: Path) -> list[dict]:
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{p}: not valid JSON ({err.__class__.__name__})") from None
    if isinstance(data, dict):
        data = data.get("objects", [])
    out = []
    for i, e in enumerate(data):
        pts = e.get("points") or []
        labels = e.get("labels") or [1] * len(pts)
        if len(labels) != len(pts):
            raise InputError(f"{p}: object {e.get('id', i + 1)} has {len(pts)} points but {len(labels)} labels")
        out.append({"id": e.get("id", i + 1), "frame": e.get("frame", 0), "points": pts, "labels": labels, "box": e.get("box")})
    return out


def _csv_prompts(p: Path) -> list[dict]:
    with open(p, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return []
    cols = {c.strip().lower() for c in rows[0]}
    rows = [{k.strip().lower(): (v or "").strip() for k, v in r.items() if k} for r in rows]
    axis_cols = sorted(c for c in cols if c.startswith("axis-"))
    out = []
    if axis_cols:  # napari points export: (frame,) y, x; one object per point
        for i, r in enumerate(rows):
            vals = [float(r[c]) for c in axis_cols]
            frame = round(vals[-3]) if len(vals) >= 3 else 0
            out.append({"id": i + 1, "frame": frame, "points": [(vals[-1], vals[-2])], "labels": [1]})
        return out
    has_pt, has_box = {"x", "y"} <= cols, {"x0", "y0", "x1", "y1"} <= cols
    if not (has_pt or has_box):
        raise InputError(f"{p}: CSV needs columns x,y (clicks) and/or x0,y0,x1,y1 (boxes); found {sorted(cols)}")
    for i, r in enumerate(rows):
        e = {"id": int(r["id"]) if r.get("id") else i + 1, "frame": int(float(r["frame"])) if r.get("frame") else 0,
             "points": [], "labels": []}
        if has_pt and r.get("x") and r.get("y"):
            e["points"] = [(float(r["x"]), float(r["y"]))]
            e["labels"] = [int(float(r["label"])) if r.get("label") else 1]
        if has_box and r.get("x0"):
            e["box"] = [float(r[k]) for k in ("x0", "y0", "x1", "y1")]
        out.append(e)
    return out
