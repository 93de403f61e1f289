"""Writing a folder so that nothing half-written looks complete: into a temporary sibling
folder first, renamed into place when complete. An existing folder is replaced only with
``overwrite`` and only when it is recognised as one of ours (the caller's ``recognise``).

:class:`PendingFolder` has the ``path`` / ``commit()`` / ``abort()`` of the project's other
partial outputs, so several outputs can be committed together (``io.commit_together``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from ..io.outputs import remove_path

Recognise = Callable[[Path], "str | None"]  # None: recognised; else why not


def check_folder(target: Path, overwrite: bool, recognise: Recognise, kind: str) -> None:
    """Refuse replacing ``target`` unless it is absent, empty, or (with ``overwrite``) a ``kind``
    that ``recognise`` knows (FileExistsError naming why)."""
    if not (target.exists() or target.is_symlink()):
        return
    if not target.is_dir():
        raise FileExistsError(f"{target}: exists and is not a folder; choose another path for the {kind}")
    if not any(target.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(f"{target}: folder exists and is not empty; pass overwrite=True "
                              f"(--overwrite) to replace a {kind} there")
    why = recognise(target)
    if why is not None:
        raise FileExistsError(f"{target}: not replaced, it is not a {kind} ({why}); choose another path")


class PendingFolder:
    """A folder being written at ``tmp`` (``.NAME.PID.partial`` beside ``path``, new and empty)
    that becomes ``path`` on :meth:`commit` (the target is checked again first) or disappears
    on :meth:`abort`. Refusals (an existing target) raise FileExistsError at construction."""

    def __init__(self, path, overwrite: bool, recognise: Recognise, kind: str):
        self.path, self.overwrite, self.recognise, self.kind = Path(path), overwrite, recognise, kind
        check_folder(self.path, overwrite, recognise, kind)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
        if self.tmp.exists():  # left by a crashed run of this process id: ours by its name
            remove_path(self.tmp)
        self.tmp.mkdir()

    def commit(self) -> None:
        try:
            check_folder(self.path, self.overwrite, self.recognise, self.kind)
            if self.path.exists() or self.path.is_symlink():
                old = self.path.with_name(f".{self.path.name}.{os.getpid()}.old")
                remove_path(old)
                os.replace(self.path, old)
                try:
                    os.replace(self.tmp, self.path)
                except BaseException:
                    os.replace(old, self.path)  # put the old one back
                    raise
                remove_path(old)
            else:
                os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def staged(path, overwrite: bool, recognise: Recognise, kind: str, fill: Callable[[Path], None]) -> PendingFolder:
    """A :class:`PendingFolder` filled by ``fill(tmp)``, not committed; removed on any error."""
    pending = PendingFolder(path, overwrite, recognise, kind)
    try:
        fill(pending.tmp)
    except BaseException:
        pending.abort()
        raise
    return pending


def committed(pending: PendingFolder, lineage):
    """Commit a staged export now; its lineage (what ``write_ctc`` / ``write_geff`` return)."""
    pending.commit()
    return lineage

