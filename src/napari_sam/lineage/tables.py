"""The lineage as tables and graphs: the tracks CSV with a ``parent`` column, napari's Tracks
layer data, and GEFF (the Graph Exchange File Format, the ``geff`` package).

The tracks CSV and the Tracks layer use the label values as ids (as the labels image does: a
cell lost for a few frames keeps its id, the rows simply skip those frames); ``parent`` is the
mother's id for every row of a daughter, 0 otherwise. GEFF nodes are the CTC tracks' frames
(:mod:`.model`: a gap is a link from the run before it), so a GEFF and a CTC folder written
from the same labels describe the same graph.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ._files import PendingFolder, committed, staged
from .model import Lineage
from .regions import check_labels_frame, region_stats

TRACK_CSV_COLUMNS = ("frame", "id", "y", "x", "area", "parent")
GEFF_ENTRIES = {"nodes", "edges", ".zattrs", ".zgroup", "zarr.json", ".zmetadata"}


def track_rows(frames: Sequence, parents: Mapping[int, int] | None = None) -> list[tuple]:
    """Rows ``(frame, id, y, x, area, parent)`` of 2D labels ``frames``, by frame then id;
    ``y, x`` the centroid in pixels, ``parent`` from ``{daughter: mother}`` (0: none)."""
    parents = {int(d): int(m) for d, m in (parents or {}).items()}
    rows = []
    for t in range(len(frames)):
        frame = check_labels_frame(frames[t], f"frame {t}")
        if frame.ndim != 2:
            raise ValueError(f"frame {t}: the tracks table is for 2D frames, got shape {frame.shape}")
        ids, cents, areas = region_stats(frame)
        rows.extend((t, int(i), float(c[0]), float(c[1]), int(a), parents.get(int(i), 0))
                    for i, c, a in zip(ids, cents, areas))
    return rows


def write_track_csv(path, rows: Sequence[tuple]) -> None:
    """Write :func:`track_rows` rows with a header line (:data:`TRACK_CSV_COLUMNS`)."""
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(TRACK_CSV_COLUMNS)
        out.writerows((t, i, f"{y:.3f}", f"{x:.3f}", a, p) for t, i, y, x, a, p in rows)


def napari_tracks(rows: Sequence[tuple]) -> tuple[np.ndarray, dict[int, list[int]]]:
    """``(data (N, 4) [id, t, y, x], graph {daughter: [mother]})`` for napari's Tracks layer."""
    data = np.array([(i, t, y, x) for t, i, y, x, _a, _p in rows], np.float64).reshape(-1, 4)
    graph = {int(i): [int(p)] for _t, i, _y, _x, _a, p in rows if p}
    return data, graph


def lineage_graph(frames: Sequence, parents: Mapping[int, int] | None = None):
    """``(networkx.DiGraph, lineage)``: a node per (frame, track) with ``t``, ``z`` (3D
    frames), ``y``, ``x`` (centroid, pixels), ``area``, ``track_id`` (CTC track), ``label``
    (value in ``frames``) and ``lineage_id`` (the root track); an edge from each node to the
    track's next frame, and from a track's last node to each daughter's first, with
    ``division`` True when the mother has two or more daughters (False: a gap)."""
    import networkx as nx

    lineage = Lineage.from_labels(frames, parents)
    root = {}
    for tr in sorted(lineage, key=lambda tr: tr.begin):
        root[tr.id] = root[tr.parent] if tr.parent else tr.id
    graph = nx.DiGraph()
    node: dict[tuple[int, int], int] = {}
    for t in range(len(frames)):
        frame = lineage.relabel(t, check_labels_frame(frames[t], f"frame {t}"))
        ids, cents, areas = region_stats(frame)
        axes = ("z", "y", "x")[3 - frame.ndim:]
        for i, c, a in zip(ids.tolist(), cents, areas.tolist()):
            tr = lineage[i]
            node[(t, i)] = n = len(node)
            graph.add_node(n, t=t, **{ax: float(v) for ax, v in zip(axes, c)}, area=a, track_id=i,
                           label=tr.source, lineage_id=root[i])
            if t > tr.begin:
                graph.add_edge(node[(t - 1, i)], n, division=False)
    divisions = lineage.divisions()
    for tr in lineage:
        if tr.parent:
            mom = lineage[tr.parent]
            graph.add_edge(node[(mom.end, mom.id)], node[(tr.begin, tr.id)], division=mom.id in divisions)
    return graph, lineage


def recognise_geff(folder: Path) -> str | None:
    """None if ``folder`` is a GEFF zarr group with nothing else inside, else why not."""
    import geff

    extra = sorted(e.name for e in Path(folder).iterdir() if e.name not in GEFF_ENTRIES)
    if extra:
        return f"it holds {extra[0]!r}"
    try:
        geff.GeffMetadata.read(str(folder))
    except Exception as err:  # noqa: BLE001 - any failure means "not a geff"
        return f"no GEFF metadata: {type(err).__name__}"
    return None


def stage_geff(path, frames: Sequence, parents: Mapping[int, int] | None = None, *,
               overwrite: bool = False) -> tuple[PendingFolder, Lineage]:
    """The :func:`lineage_graph` of ``frames`` + ``parents`` written as a GEFF zarr folder (axes
    t, [z,] y, x in frames and pixels), not yet in place: ``(pending, lineage)``, as
    :func:`.ctc.stage_ctc`. Needs the ``geff`` package."""
    import geff

    graph, lineage = lineage_graph(frames, parents)
    spatial = ["z", "y", "x"][3 - np.asarray(frames[0]).ndim:]
    meta = geff.GeffMetadata(directed=True, track_node_props={"tracklet": "track_id", "lineage": "lineage_id"},
                             node_props_metadata={}, edge_props_metadata={})

    def fill(tmp: Path) -> None:
        tmp.rmdir()  # geff.write refuses any existing path; it makes the folder itself
        geff.write(graph, str(tmp), metadata=meta, axis_names=["t", *spatial],
                   axis_types=["time"] + ["space"] * len(spatial))

    return staged(path, overwrite, recognise_geff, "GEFF", fill), lineage


def write_geff(path, frames: Sequence, parents: Mapping[int, int] | None = None, *,
               overwrite: bool = False) -> Lineage:
    """:func:`stage_geff` and commit: the GEFF ``path`` appears complete or not at all."""
    return committed(*stage_geff(path, frames, parents, overwrite=overwrite))
