"""Reading microscopy stacks (TIFF incl. ImageJ / OME hyperstacks, zarr incl. OME-Zarr) lazily.

Axes are single letters as tifffile names them: T (time), Z, C (channel), Y, X, S (RGB
samples); Q / I / others are "unknown". :meth:`ImageSource.stack` turns any layout into what
the engine wants — ``(H, W)``, ``(H, W, 3)``, ``(N, H, W)`` or ``(N, H, W, 3)`` — as a lazy dask
array: singleton axes are dropped, a channel is picked, and exactly one axis (T or Z, or
one unknown axis) may remain as the stack axis.

Reading refuses what it cannot read whole — a truncated or damaged file, an unsupported pixel
type, an empty image — with :class:`InputError`, never a shorter stack or zeros.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from .errors import InputError

KNOWN = set("TZCYXS")


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
