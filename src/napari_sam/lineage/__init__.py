"""Cell lineage for tracked time-lapses: tracks that begin, end and divide.

Qt-free and torch-free (numpy, scipy, tifffile; ``geff`` for GEFF export only).

* :mod:`.model`: :class:`Track`, :class:`Lineage` (CTC tracks ``L B E P`` from labels frames
  and a ``{daughter: mother}`` map; a gap splits a track, validation names the culprit).
* :mod:`.ctc`: Cell Tracking Challenge folders, :func:`write_ctc` / :func:`read_ctc`.
* :mod:`.tables`: tracks CSV rows with ``parent``, napari Tracks data, GEFF export.
* :mod:`.divisions`, :mod:`.lobes`, :mod:`.gaps`, :mod:`.leaving`: the tracking rules as pure functions,
  with their parameters in :class:`LineageParams`.
"""

from __future__ import annotations

from ._files import PendingFolder
from .ctc import mask_name, read_ctc, read_tracks, stage_ctc, write_ctc
from .divisions import separation, split_by_detections, split_mask
from .gaps import LostTrack, expired, match_lost
from .leaving import touches_border, track_state
from .lobes import neck_split
from .model import Lineage, Track
from .params import LineageParams
from .tables import (TRACK_CSV_COLUMNS, lineage_graph, napari_tracks, stage_geff, track_rows, write_geff,
                     write_track_csv)

__all__ = [
    "TRACK_CSV_COLUMNS",
    "Lineage",
    "PendingFolder",
    "LineageParams",
    "LostTrack",
    "Track",
    "expired",
    "lineage_graph",
    "mask_name",
    "match_lost",
    "napari_tracks",
    "neck_split",
    "read_ctc",
    "read_tracks",
    "separation",
    "split_by_detections",
    "split_mask",
    "stage_ctc",
    "stage_geff",
    "touches_border",
    "track_state",
    "track_rows",
    "write_ctc",
    "write_geff",
    "write_track_csv",
]
