"""File input and output of the command line: lazy image readers, napari-sam's own marked
outputs (written under a partial name, renamed when complete), prompt files.

* :mod:`.readers` — :func:`open_image` -> :class:`ImageSource` (TIFF / zarr, axes, channels);
* :mod:`.outputs` — :class:`LabelsWriter`, :func:`write_csv`, :func:`write_sample`,
  :func:`check_target`, :func:`commit_together`, :func:`nothing_kept`;
* :mod:`.prompt_files` — :func:`read_prompts`;
* :class:`InputError` (a ``ValueError``): input a command cannot use, named in the message.
"""

from .errors import InputError
from .outputs import (
    LABEL_DTYPE,
    MARK,
    SOFTWARE,
    WHAT,
    LabelsWriter,
    check_target,
    commit_together,
    nothing_kept,
    write_csv,
    write_sample,
    written_by_napari_sam,
)
from .prompt_files import read_prompts
from .readers import KNOWN, ImageSource, open_image

__all__ = [
    "KNOWN", "LABEL_DTYPE", "MARK", "SOFTWARE", "WHAT", "ImageSource", "InputError", "LabelsWriter", "check_target",
    "commit_together", "nothing_kept", "open_image", "read_prompts", "write_csv", "write_sample",
    "written_by_napari_sam",
]
