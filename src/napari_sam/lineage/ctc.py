"""Cell Tracking Challenge (CTC) result folders: ``maskTTT.tif`` per frame (uint16 labels,
3 digits, 4 when there are more than 1000 frames) and ``res_track.txt``, one ``L B E P`` line
per track (label, begin frame, end frame, parent label or 0).

:func:`write_ctc` writes labels + ``{daughter: mother}`` (a label with a gap becomes two tracks,
see :mod:`.model`) into a temporary sibling folder renamed into place when complete; an existing
non-empty folder is replaced only with ``overwrite=True`` and only when it is a CTC folder.
:func:`stage_ctc` writes it without the rename, for committing with a run's other outputs.
:func:`read_ctc` reads one back and checks it whole: every error names the file and line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ._files import PendingFolder, committed, staged
from .model import Lineage
from .regions import check_labels_frame, present_labels

TRACK_FILE = "res_track.txt"
MASK_RE = re.compile(r"mask(\d+)\.tif")
MAX_LABEL = np.iinfo(np.uint16).max


def mask_name(t: int, n_frames: int) -> str:
    """File name of frame ``t``: ``mask007.tif``, or ``mask0007.tif`` past 1000 frames."""
    return f"mask{t:0{3 if n_frames <= 1000 else 4}d}.tif"


def recognise_ctc(folder: Path) -> str | None:
    """None if ``folder`` holds only ``mask*.tif`` files and ``res_track.txt``, else why not."""
    names = []
    for entry in Path(folder).iterdir():
        if not entry.is_file() or not (MASK_RE.fullmatch(entry.name) or entry.name == TRACK_FILE):
            return f"it holds {entry.name!r}"
        names.append(entry.name)
    return None if TRACK_FILE in names else f"it has no {TRACK_FILE}"


def stage_ctc(path, frames: Sequence, parents: Mapping[int, int] | None = None, *,
              overwrite: bool = False) -> tuple[PendingFolder, Lineage]:
    """Write labels ``frames`` ((T, ...) array or sequence of frames, read twice, one frame at
    a time) with ``parents`` ``{daughter label: mother label}`` as a CTC folder, not yet in
    place: ``(pending, lineage)``; ``pending.commit()`` renames it to ``path`` (or use
    ``io.commit_together`` with the other outputs of a run). The lineage's track ids are the
    labels in the masks."""
    import tifffile

    lineage = Lineage.from_labels(frames, parents)
    top = max(lineage.tracks, default=0)
    if top > MAX_LABEL:
        raise ValueError(f"{path}: track id {top} does not fit the CTC masks' uint16 (at most {MAX_LABEL})")
    n = len(frames)

    def fill(tmp: Path) -> None:
        for t in range(n):
            frame = lineage.relabel(t, check_labels_frame(frames[t], f"frame {t}"))
            tifffile.imwrite(tmp / mask_name(t, n), frame.astype(np.uint16))
        (tmp / TRACK_FILE).write_text("".join(f"{tr.id} {tr.begin} {tr.end} {tr.parent}\n" for tr in lineage))

    return staged(path, overwrite, recognise_ctc, "CTC folder", fill), lineage


def write_ctc(path, frames: Sequence, parents: Mapping[int, int] | None = None, *,
              overwrite: bool = False) -> Lineage:
    """:func:`stage_ctc` and commit: the CTC folder ``path`` appears complete or not at all."""
    return committed(*stage_ctc(path, frames, parents, overwrite=overwrite))


def read_tracks(path) -> Lineage:
    """The lineage in a ``res_track.txt``; ValueError naming the file and line when a line is
    not ``L B E P`` (four integers), repeats a label, names an unknown parent, closes a cycle,
    or has a parent that does not end before it begins."""
    path = Path(path)
    rows, origin = [], {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        where = f"{path} line {number}"
        try:
            values = [int(f) for f in fields]
        except ValueError:
            values = []
        if len(values) != 4:
            raise ValueError(f"{where}: expected 'L B E P' (four integers), got {line.strip()!r}")
        if values[0] in origin:
            raise ValueError(f"{where}: track {values[0]} is already on {origin[values[0]]}")
        origin[values[0]] = f"{where} (track {values[0]})"
        rows.append(values)
    return Lineage.from_rows(rows, origin)


def _mask_files(folder: Path) -> list[Path]:
    found = {}
    for entry in folder.iterdir():
        m = MASK_RE.fullmatch(entry.name)
        if m and entry.is_file():
            t = int(m.group(1))
            if t in found:
                raise ValueError(f"{folder}: frame {t} is in both {found[t].name} and {entry.name}")
            found[t] = entry
    if not found:
        raise ValueError(f"{folder}: no maskTTT.tif files (not a CTC result folder)")
    n = max(found) + 1
    missing = [t for t in range(n) if t not in found]
    if missing:
        width = len(MASK_RE.fullmatch(next(iter(found.values())).name).group(1))
        names = ", ".join(f"mask{t:0{width}d}.tif" for t in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"{folder}: {len(missing)} frame(s) missing: {names}")
    return [found[t] for t in range(n)]


def read_ctc(path, join_gaps: bool = False) -> tuple[np.ndarray, Lineage | dict[int, int]]:
    """Read a CTC folder: ``(labels (T, ...) uint16, lineage)``, checked against each other
    (each label present exactly on its track's frames). With ``join_gaps`` a track that is
    its parent's only daughter gets its parent's label back (a gap, as :func:`write_ctc`
    writes it) and the second item is ``{daughter label: mother label}`` of the divisions:
    ``write_ctc(p, labels, parents)`` then ``read_ctc(p, join_gaps=True)`` gives back
    ``labels, parents``."""
    import tifffile

    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder (a CTC result is a folder of maskTTT.tif and {TRACK_FILE})")
    files = _mask_files(folder)
    track_file = folder / TRACK_FILE
    if not track_file.is_file():
        raise ValueError(f"{folder}: no {TRACK_FILE}")
    lineage = read_tracks(track_file)
    line = lineage.where
    late = [tr for tr in lineage if tr.end >= len(files)]
    if late:
        raise ValueError(f"{line(late[0].id)}: track {late[0].id} ends at frame {late[0].end}, "
                         f"but the folder has {len(files)} frames (0-{len(files) - 1})")
    labels = None
    for t, f in enumerate(files):
        try:
            frame = check_labels_frame(tifffile.imread(f), str(f))
        except (OSError, ValueError) as err:
            raise ValueError(f"{f}: cannot read it as a labels image ({err})") from err
        if labels is None:
            labels = np.zeros((len(files),) + frame.shape, np.uint16)
        elif frame.shape != labels.shape[1:]:
            raise ValueError(f"{f}: shape {frame.shape} differs from {files[0].name}'s {labels.shape[1:]}")
        _check_frame(t, f, present_labels(frame), lineage, line)
        labels[t] = frame
    if not join_gaps:
        return labels, lineage
    label_of, parents = lineage.joined()
    for tr in lineage:
        if label_of[tr.id] != tr.id:
            labels[tr.begin:tr.end + 1][labels[tr.begin:tr.end + 1] == tr.id] = label_of[tr.id]
    return labels, parents


def _check_frame(t: int, f: Path, present, lineage: Lineage, line) -> None:
    present = set(present.tolist())
    for lab in sorted(present):
        if lab not in lineage:
            raise ValueError(f"{f}: label {lab} is not in {TRACK_FILE}")
        tr = lineage[lab]
        if not tr.begin <= t <= tr.end:
            raise ValueError(f"{f}: label {lab} is outside its track's frames {tr.begin}-{tr.end} ({line(lab)})")
    for tid in lineage.active(t):
        if tid not in present:
            tr = lineage[tid]
            raise ValueError(f"{line(tid)}: track {tid} (frames {tr.begin}-{tr.end}) is missing from {f.name}")

