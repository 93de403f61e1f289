"""Writing outputs: labels frame by frame, tables, demo samples — never over anyone's files.

Writers never hold the whole result: frames go to a new ``<output>.<pid>.partial`` as they
come and the file (or zarr folder) is renamed to its final name only when complete. Every
output is marked as napari-sam's (:data:`MARK`); an existing path is replaced only with
``overwrite`` and only when napari-sam wrote it (:func:`check_target`). Outputs that belong
together (labels and their tracks table) are renamed together or not at all
(:func:`commit_together`).
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
from pathlib import Path

import numpy as np

from .errors import InputError

LABEL_DTYPE = np.int32

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
                return header is not None and _same_table(f.readline().rstrip("\r\n").split(","), list(header))
        import zarr

        if kind == "embeddings":
            from ..engine.store.embedding_store import ATTRS_KEY

            return p.is_dir() and ATTRS_KEY in zarr.open_group(str(p), mode="r").attrs
        if p.is_dir():
            return kind == "labels" and zarr.open_array(str(p), mode="r").attrs.get(MARK) == kind
        import tifffile

        with tifffile.TiffFile(p) as tif:
            meta = tif.shaped_metadata[0] if tif.is_shaped else (tif.imagej_metadata or {})
            return tif.pages[0].software == SOFTWARE and meta.get(MARK) == kind
    except Exception:  # noqa: BLE001  (unreadable: not ours)
        return False


def _same_table(found: list[str], header: list[str]) -> bool:
    """Whether a table's first line is ``header``; the tracks table with and without its
    ``parent`` column (added with the lineage) counts as the same table."""
    strip = (lambda cols: cols[:-1] if cols[-1:] == ["parent"] else cols)
    return found == header or strip(found) == strip(header)


def check_writable_parent(path) -> None:
    """Refuse an output whose folder does not exist or cannot be written, before any work."""
    parent = Path(path).parent
    if not parent.is_dir():
        raise InputError(f"{parent}: output folder does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(f"{parent}: no permission to write in this folder")


def check_target(path, kind: str, overwrite: bool, header=None, note: str = "") -> None:
    """Refuse an output path before any work: its folder must exist; an existing path is
    replaced only with ``overwrite`` and only when napari-sam wrote it (an empty folder too)."""
    p = Path(path)
    if kind == "labels" and p.suffix.lower() not in (".tif", ".tiff", ".zarr"):
        raise InputError(f"{p}: write labels as .tif/.tiff or .zarr")
    check_writable_parent(p)
    if not (p.exists() or p.is_symlink()):
        return
    if not overwrite:
        raise InputError(f"{p}: output exists; use --overwrite to replace it{note}")
    if p.is_dir() and not any(p.iterdir()):
        return
    if not written_by_napari_sam(p, kind, header):
        raise InputError(f"{p}: not {WHAT[kind]} written by napari-sam; --overwrite replaces only napari-sam's "
                         f"own outputs: choose another output or remove it yourself{note}")


def remove_path(p: Path) -> None:
    """Remove a file, a link or a whole folder (only ever called on what napari-sam wrote)."""
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
            remove_path(self.path)
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        remove_path(self.tmp)


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
            remove_path(part.path)
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
