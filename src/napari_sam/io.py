"""Reading microscopy stacks (TIFF incl. ImageJ / OME hyperstacks, zarr incl. OME-Zarr) lazily,
and writing labels frame by frame.

Axes are single letters as tifffile names them: T (time), Z, C (channel), Y, X, S (RGB
samples); Q / I / others are "unknown". :meth:`ImageSource.stack` turns any layout into what
the engine wants — ``(H, W)``, ``(H, W, 3)``, ``(N, H, W)`` or ``(N, H, W, 3)`` — as a lazy dask
array: singleton axes are dropped, a channel is picked, and exactly one axis (T or Z, or
one unknown axis) may remain as the stack axis.

Reading refuses what it cannot read whole — a truncated or damaged file, an unsupported pixel
type, an empty image — with :class:`InputError`, never a shorter stack or zeros.

Writers never hold the whole result: frames go to a new ``<output>.<pid>.partial`` as they
come and the file (or zarr folder) is renamed to its final name only when complete. Every
output is marked as napari-sam's (:data:`MARK`); an existing path is replaced only with
``overwrite`` and only when napari-sam wrote it (:func:`check_target`).
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
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
    """Open a TIFF or zarr image lazily. ``axes`` overrides the file's own axes. A file that
    cannot be read whole (damaged, truncated, an unsupported pixel type) is an InputError."""
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
    dtype = np.dtype(arr.dtype)
    if dtype.kind not in "biuf":
        raise InputError(f"{path}: pixel type {dtype} is not supported (integer, float or bool images)")
    if 0 in arr.shape:
        raise InputError(f"{path}: empty image of shape {tuple(arr.shape)}: no pixels")
    try:
        chunks = arr.chunks
    except Exception:  # noqa: BLE001  (a sharded zarr array has no single chunk shape)
        chunks = "auto"
    data = da.from_array(_Checked(arr, p), chunks=chunks, asarray=True, name=False,
                         meta=np.empty((0,) * arr.ndim, dtype))
    if axes is not None:
        if len(axes) != data.ndim:
            raise InputError(f"{path}: --axes {axes!r} has {len(axes)} letters, the data has {data.ndim} dimensions {data.shape}")
        file_axes = axes
    return ImageSource(p, data, file_axes, names)


class _Checked:
    """An array whose read errors name the file: damaged pixel data is bad input, not a crash."""

    def __init__(self, arr, path):
        self._arr, self._path = arr, path
        self.shape, self.dtype, self.ndim = tuple(arr.shape), np.dtype(arr.dtype), len(arr.shape)

    def __getitem__(self, key):
        try:
            return np.asarray(self._arr[key])
        except Exception as err:  # noqa: BLE001  (codecs and tifffile raise many kinds)
            raise InputError(f"{self._path}: cannot read the pixel data ({_why(err)})") from None


def _why(err) -> str:
    text = str(err).splitlines()[0][:120] if str(err) else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _chain_broken(tif) -> bool:
    """Whether the chain of pages (IFDs) ends in a pointer to nothing: pages went missing."""
    import struct

    fmt, fh = tif.tiff, tif.filehandle
    last = tif.pages[len(tif.pages) - 1]
    try:
        fh.seek(last.offset)
        n = struct.unpack(fmt.tagnoformat, fh.read(fmt.tagnosize))[0]
        fh.seek(last.offset + fmt.tagnosize + n * fmt.tagsize)
        return struct.unpack(fmt.offsetformat, fh.read(fmt.offsetsize))[0] != 0
    except (struct.error, OSError):
        return True


def _open_tiff(p: Path):
    import tifffile
    import zarr

    logger, sink = logging.getLogger("tifffile"), logging.NullHandler()
    logger.addHandler(sink)  # what tifffile finds wrong becomes one InputError, not stderr noise
    try:
        with tifffile.TiffFile(p) as tif:
            series = tif.series[0]
            axes = series.axes
            names = _ome_channel_names(tif)
            _check_complete(p, tif, series)
            store = series.aszarr()
        arr = zarr.open(store, mode="r")
        if hasattr(arr, "keys"):  # a multi-resolution series: level 0
            arr = arr["0"]
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001  (tifffile raises many kinds on a damaged file)
        raise InputError(f"{p}: not a readable TIFF ({_why(err)})") from None
    finally:
        logger.removeHandler(sink)
    return arr, _known_axes(axes, arr.shape), names


def _check_complete(p: Path, tif, series) -> None:
    """Refuse a file holding fewer images (2-D planes) than its metadata promises or than
    the series claims: a truncated stack must not read as a shorter one or as zeros."""
    page = series.keyframe
    plane = math.prod(page.shape)
    if plane == 0:
        raise InputError(f"{p}: empty image of shape {page.shape}: no pixels")
    in_series = math.prod(series.shape) // plane
    promised = _promised_planes(tif, plane)
    want = max(in_series, promised or 0)
    size = tif.filehandle.size
    if series.dataoffset is not None:  # contiguous data: count the planes that fit in the file
        held = max(0, size - series.dataoffset) // (plane * page.dtype.itemsize)
    else:
        held = 0
        for i in range(len(series)):
            try:
                pg = series[i]
            except IndexError:  # tifffile lost the chain of pages here
                break
            if pg is None or any(o + c > size for o, c in zip(pg.dataoffsets, pg.databytecounts)):
                break
            held += 1
        held *= max(1, in_series // max(1, len(series)))
    held = min(held, want)
    if held < want or in_series < want:
        raise InputError(f"{p}: truncated or damaged file: its metadata promises {want} image{'s' if want != 1 else ''} "
                         f"but the file holds only {held if held < want else in_series}")
    if promised is None and _chain_broken(tif):  # no promise to check against: the chain of pages
        raise InputError(f"{p}: truncated or damaged file: its chain of pages breaks after page {len(tif.pages)}")


def _promised_planes(tif, plane: int) -> int | None:
    """The number of 2-D images the file's own metadata (ImageJ, tifffile, OME) says it holds."""
    if tif.is_imagej:
        return int((tif.imagej_metadata or {}).get("images", 1))
    if tif.is_shaped and tif.shaped_metadata and "shape" in tif.shaped_metadata[0]:
        return math.prod(int(s) for s in tif.shaped_metadata[0]["shape"]) // plane
    if tif.is_ome and tif.ome_metadata:
        import xml.etree.ElementTree as ET

        root = ET.fromstring(tif.ome_metadata)
        pix = next((e for e in root.iter() if e.tag.endswith("}Pixels") or e.tag == "Pixels"), None)
        if pix is None:
            return None
        channels = [e for e in pix if e.tag.endswith("Channel")]
        spp = int(channels[0].get("SamplesPerPixel", 1)) if channels else 1
        n_c = len(channels) if channels else int(pix.get("SizeC", 1)) // max(1, spp)
        return int(pix.get("SizeZ", 1)) * int(pix.get("SizeT", 1)) * max(1, n_c)
    return None


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
        if hasattr(node, "keys") and not hasattr(node, "shape"):  # a group: OME-Zarr level 0
            return _ome_zarr_level0(p, node)
        dims = node.attrs.get("_ARRAY_DIMENSIONS") or node.attrs.get("axes")
        node.dtype, node.shape  # noqa: B018  (a damaged header fails here, not later)
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001  (any failure means: not a zarr we can read)
        raise InputError(f"{p}: not a readable zarr store ({_why(err)})") from None
    return node, _dims_axes(dims, node.shape), []


def _ome_zarr_level0(p: Path, node):
    attrs = dict(node.attrs)
    ome = attrs.get("ome") if isinstance(attrs.get("ome"), dict) else {}
    ms = attrs.get("multiscales") or ome.get("multiscales")
    first = ms[0] if isinstance(ms, list) and ms and isinstance(ms[0], dict) else {}
    datasets = first.get("datasets")
    path = datasets[0].get("path") if isinstance(datasets, list) and datasets and isinstance(datasets[0], dict) else None
    if not isinstance(path, str) or not path:
        raise InputError(f"{p}: a zarr group without OME-Zarr 'multiscales' datasets; point at the array itself")
    try:
        arr = node[path]
    except Exception:  # noqa: BLE001
        raise InputError(f"{p}: OME-Zarr level {path!r} is missing") from None
    if not hasattr(arr, "shape"):
        raise InputError(f"{p}: OME-Zarr level {path!r} is not an array")
    axes = first.get("axes")
    names = [a.get("name") if isinstance(a, dict) else a for a in axes] if isinstance(axes, list) else None
    omero = attrs.get("omero") if isinstance(attrs.get("omero"), dict) else {}
    chans = omero.get("channels") if isinstance(omero.get("channels"), list) else []
    return arr, _dims_axes(names, arr.shape), [str(c.get("label", "")) if isinstance(c, dict) else "" for c in chans]


def _dims_axes(dims, shape) -> str:
    """Axis letters from named dimensions (first letter of each name), else a guess."""
    if isinstance(dims, (list, tuple)) and len(dims) == len(shape) and all(isinstance(d, str) and d for d in dims):
        return _known_axes("".join(d[0] for d in dims), shape)
    return _guess(shape)


def _guess(shape) -> str:
    if len(shape) == 2:
        return "YX"
    if len(shape) == 3:
        return "YXS" if shape[-1] in (3, 4) else "QYX"
    return "Q" * len(shape)  # nothing to go on: --axes


# ---------------------------------------------------------------------------- writing
#: Every file napari-sam writes says so: TIFF Software tag "napari-sam" plus ``napari_sam: kind``
#: in the TIFF's description (or the zarr array's attributes). ``--overwrite`` replaces only these.
MARK, SOFTWARE = "napari_sam", "napari-sam"
WHAT = {"labels": "a labels file", "sample": "a demo sample", "table": "a table", "embeddings": "an embedding store"}


def written_by_napari_sam(path, kind: str, header=None) -> bool:
    """Whether ``path`` is napari-sam's own ``kind`` of output (see ``WHAT``); ``header``: the
    columns of a table."""
    p = Path(path)
    try:
        if kind == "table":
            with open(p, newline="") as f:
                return header is not None and f.readline().rstrip("\r\n") == ",".join(header)
        import zarr

        if kind == "embeddings":
            from .engine.embedding_store import ATTRS_KEY

            return p.is_dir() and ATTRS_KEY in zarr.open_group(str(p), mode="r").attrs
        if p.is_dir():
            return kind == "labels" and zarr.open_array(str(p), mode="r").attrs.get(MARK) == kind
        import tifffile

        with tifffile.TiffFile(p) as tif:
            meta = tif.shaped_metadata[0] if tif.is_shaped else (tif.imagej_metadata or {})
            return tif.pages[0].software == SOFTWARE and meta.get(MARK) == kind
    except Exception:  # noqa: BLE001  (unreadable: not ours)
        return False


def check_target(path, kind: str, overwrite: bool, header=None, note: str = "") -> None:
    """Refuse an output path before any work: its folder must exist; an existing path is
    replaced only with ``overwrite`` and only when napari-sam wrote it (an empty folder too)."""
    p = Path(path)
    if kind == "labels" and p.suffix.lower() not in (".tif", ".tiff", ".zarr"):
        raise InputError(f"{p}: write labels as .tif/.tiff or .zarr")
    if not p.parent.is_dir():
        raise InputError(f"{p.parent}: output folder does not exist")
    if not os.access(p.parent, os.W_OK):
        raise InputError(f"{p.parent}: no permission to write in this folder")
    if not (p.exists() or p.is_symlink()):
        return
    if not overwrite:
        raise InputError(f"{p}: output exists; use --overwrite to replace it{note}")
    if p.is_dir() and not any(p.iterdir()):
        return
    if not written_by_napari_sam(p, kind, header):
        raise InputError(f"{p}: not {WHAT[kind]} written by napari-sam; --overwrite replaces only napari-sam's "
                         f"own outputs: choose another output or remove it yourself{note}")


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


class _Partial:
    """One output written under a name of its own beside the target (``<name>.<pid>.partial``,
    created new, so nothing else is ever clobbered) and renamed to the target when complete."""

    def __init__(self, path, kind: str, overwrite: bool, folder: bool = False, header=None):
        self.path, self.kind, self.overwrite, self.header = Path(path), kind, overwrite, header
        check_target(self.path, kind, overwrite, header)
        for k in range(1000):
            self.tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}{f'-{k}' if k else ''}.partial")
            try:
                os.mkdir(self.tmp) if folder else open(self.tmp, "xb").close()
                break
            except FileExistsError:
                continue

    def commit(self) -> None:
        # the target may have changed while this ran: the same rule again, and the result is kept
        check_target(self.path, self.kind, self.overwrite, self.header, note=f" (this run's result: {self.tmp})")
        if self.path.exists() and (self.path.is_dir() or self.tmp.is_dir()):
            _remove(self.path)
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        _remove(self.tmp)


class LabelsWriter:
    """Write ``n_frames`` (H, W) int32 label frames in order to a TIFF or zarr ``path``
    (``None`` frames: one 2-D image). Use as a context manager: the output appears under its
    name only when every frame was written; on an error the partial file is removed.
    ``overwrite`` replaces only napari-sam's own labels (see :func:`check_target`)."""

    def __init__(self, path, frame_shape, n_frames: int | None, axes: str = "TYX", overwrite: bool = False):
        self.path = Path(path)
        self.kind = "zarr" if self.path.suffix.lower() == ".zarr" else "tiff"
        self.frame_shape = tuple(int(s) for s in frame_shape)
        self.n_frames = n_frames
        self.axes = axes if n_frames is not None else "YX"
        self._part = _Partial(self.path, "labels", overwrite, folder=self.kind == "zarr")
        self.tmp = self._part.tmp
        self.written = 0
        self._tif = None
        if self.kind == "tiff":
            import tifffile

            big = (n_frames or 1) * np.prod(self.frame_shape) * 4 > 2**31
            self._tif = tifffile.TiffWriter(self.tmp, bigtiff=bool(big))
        else:
            import zarr

            shape = self.frame_shape if n_frames is None else (n_frames, *self.frame_shape)
            chunks = self.frame_shape if n_frames is None else (1, *self.frame_shape)
            self._z = zarr.create_array(str(self.tmp), shape=shape, chunks=chunks, dtype=LABEL_DTYPE, fill_value=0,
                                        attributes={"_ARRAY_DIMENSIONS": list(self.axes.lower()), MARK: "labels"})

    def write(self, labels: np.ndarray) -> None:
        labels = np.asarray(labels)
        if labels.shape != self.frame_shape:
            raise ValueError(f"frame of shape {labels.shape}, expected {self.frame_shape}")
        if self.written >= (self.n_frames or 1):
            raise ValueError("all frames are already written")
        labels = labels.astype(LABEL_DTYPE, copy=False)
        if self.kind == "tiff":
            meta = {"axes": self.axes, MARK: "labels"} if self.written == 0 else None
            self._tif.write(labels, contiguous=True, metadata=meta, photometric="minisblack", software=SOFTWARE)
        elif self.n_frames is None:
            self._z[...] = labels
        else:
            self._z[self.written] = labels
        self.written += 1

    def finish(self) -> None:
        """Every frame written and the file closed, still under its partial name."""
        if self.written != (self.n_frames or 1):
            raise RuntimeError(f"{self.written} of {self.n_frames or 1} frames written")
        if self._tif is not None:
            self._tif.close()
            self._tif = None

    def commit(self) -> None:
        self.finish()
        self._part.commit()

    def abort(self) -> None:
        if self._tif is not None:
            with contextlib.suppress(Exception):  # the partial file goes anyway
                self._tif.close()
        self._part.abort()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.abort()
        return False


def _write_rows(f, header, rows) -> None:
    w = csv.writer(f)
    w.writerow(header)
    for row in rows:
        w.writerow([f"{v:.3f}" if isinstance(v, float) else v for v in row])


def write_csv(path, header, rows, overwrite: bool = False, commit: bool = True):
    """A CSV written under a partial name and renamed when complete (``commit=False``: left
    partial, returned, for :func:`commit_together`). ``overwrite`` replaces only a CSV with the
    same header."""
    part = _Partial(path, "table", overwrite, header=list(header))
    try:
        with open(part.tmp, "w", newline="") as f:
            _write_rows(f, header, rows)
    except BaseException:
        part.abort()
        raise
    if commit:
        part.commit()
    return part


def write_sample(path, image, axes: str) -> None:
    """A demo sample as an ImageJ TIFF marked as napari-sam's (replaces only an earlier sample)."""
    import tifffile

    part = _Partial(path, "sample", overwrite=True)
    try:
        tifffile.imwrite(part.tmp, image, imagej=True, metadata={"axes": axes, MARK: "sample"}, software=SOFTWARE)
        part.commit()
    except BaseException:
        part.abort()
        raise


def commit_together(parts) -> None:
    """Rename finished partial outputs (``LabelsWriter``/``write_csv(commit=False)``) to their
    names; if one fails, those renamed by this call are removed too: all or nothing."""
    done = []
    try:
        for part in parts:
            part.commit()
            done.append(part)
    except BaseException as err:
        for part in parts[len(done):]:
            part.abort()
        for part in done:
            _remove(part.path)
        new = nothing_kept(err, [p.path for p in parts])
        if new is err:
            raise
        raise new from err


def nothing_kept(err, paths):
    """``err`` (an OSError) saying that none of ``paths`` (the outputs of this run) were kept."""
    names = ", ".join(str(p) for p in paths)
    if not isinstance(err, OSError):
        return err
    msg = f"{err.strerror or err}; nothing kept: {names} not written"
    return type(err)(err.errno, msg, err.filename) if err.errno is not None else type(err)(msg)


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
    if not isinstance(data, list):
        raise InputError(f'{p}: JSON prompts must be a list of objects (or {{"objects": [...]}}), '
                         f"got {type(data).__name__}")
    out = []
    for i, e in enumerate(data, 1):
        if not isinstance(e, dict):
            raise InputError(f"{p}: entry {i} is {json.dumps(e)[:40]}, not an object with id, frame, points, labels, box")
        oid, frame = e.get("id", i), e.get("frame", 0)
        where = f"{p}: object {oid!r} (entry {i})"
        for name, v in (("id", oid), ("frame", frame)):
            if not (_is_number(v) and float(v).is_integer() and v >= (1 if name == "id" else 0)):
                raise InputError(f"{where}: {name} must be a whole number{' >= 1' if name == 'id' else ''}, got {v!r}")
        pts = e.get("points") or []
        if not (isinstance(pts, list) and all(isinstance(q, list) and len(q) == 2 and all(map(_is_number, q)) for q in pts)):
            raise InputError(f"{where}: points must be a list of [x, y] pairs, got {json.dumps(pts)[:40]}")
        labels = e.get("labels") or [1] * len(pts)
        if not (isinstance(labels, list) and len(labels) == len(pts) and all(v in (0, 1) and not isinstance(v, float)
                                                                               for v in labels)):
            raise InputError(f"{where}: labels must be a list of 1 (foreground) / 0 (background), one per point "
                             f"({len(pts)} points), got {json.dumps(labels)[:40]}")
        box = e.get("box")
        if box is not None and not (isinstance(box, list) and len(box) == 4 and all(map(_is_number, box))):
            raise InputError(f"{where}: box must be [x0, y0, x1, y1], got {json.dumps(box)[:40]}")
        out.append({"id": int(oid), "frame": int(frame), "points": pts, "labels": labels, "box": box})
    return out


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


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
