"""GEFF export (read back with the geff package and traccuracy's GEFF loader), the tracks CSV
with its parent column, and napari Tracks data."""

from __future__ import annotations

import csv

import geff
import numpy as np
import pytest

from napari_sam.lineage import lineage_graph, napari_tracks, track_rows, write_ctc, write_geff, write_track_csv

PARENTS = {2: 1, 3: 1}


def division_and_gap(T=8) -> np.ndarray:
    lab = np.zeros((T, 32, 40), np.int32)
    lab[0:3, 2:10, 2:10] = 1  # 8x8, centroid (5.5, 5.5)
    lab[3:, 2:10, 0:8] = 2  # centroid (5.5, 3.5)
    lab[3:, 2:10, 14:22] = 3  # centroid (5.5, 17.5)
    lab[0:2, 20:28, 20:28] = 4  # gap on frames 2-3
    lab[4:, 20:28, 22:30] = 4
    return lab


def test_geff_nodes_and_edges(tmp_path):
    write_geff(tmp_path / "t.geff", division_and_gap(), PARENTS)
    graph, meta = geff.read(str(tmp_path / "t.geff"))
    assert meta.directed and [a.name for a in meta.axes] == ["t", "y", "x"]
    assert [a.type for a in meta.axes] == ["time", "space", "space"]
    assert meta.track_node_props == {"tracklet": "track_id", "lineage": "lineage_id"}
    nodes = {(d["t"], d["track_id"]): d for _, d in graph.nodes(data=True)}
    # 3 frames of 1, 5 + 5 of the daughters, 2 + 4 of label 4 (tracks 4 and 5)
    assert len(nodes) == 19 and graph.number_of_edges() == 2 + 4 + 4 + 1 + 3 + 2 + 1
    n = nodes[(0, 1)]
    assert (n["y"], n["x"], n["area"], n["label"], n["lineage_id"]) == (5.5, 5.5, 64, 1, 1)
    assert (nodes[(3, 3)]["x"], nodes[(3, 3)]["lineage_id"]) == (17.5, 1)
    assert (nodes[(4, 5)]["label"], nodes[(4, 5)]["x"], nodes[(4, 5)]["lineage_id"]) == (4, 25.5, 4)
    node_of = {(d["t"], d["track_id"]): k for k, d in graph.nodes(data=True)}
    at = lambda n: (graph.nodes[n]["track_id"], graph.nodes[n]["t"])  # noqa: E731
    edges = {at(a) + at(b): d["division"] for a, b, d in graph.edges(data=True)}
    assert edges[(1, 2, 2, 3)] is True and edges[(1, 2, 3, 3)] is True
    assert edges[(4, 1, 5, 4)] is False  # the gap: a link over frames 2-3
    assert edges[(2, 3, 2, 4)] is False
    assert sum(edges.values()) == 2 and graph.has_edge(node_of[(0, 1)], node_of[(1, 1)])


def test_geff_and_ctc_give_traccuracy_the_same_graph(tmp_path):
    from traccuracy.loaders import load_ctc_data, load_geff_data

    write_geff(tmp_path / "t.geff", division_and_gap(), PARENTS)
    write_ctc(tmp_path / "ctc", division_and_gap(), PARENTS)
    g = load_geff_data(str(tmp_path / "t.geff"))
    c = load_ctc_data(str(tmp_path / "ctc"))
    def key(tg, n):
        d = tg.graph.nodes[n]
        return (d["t"], round(d["y"], 3), round(d["x"], 3))

    assert {key(g, n) for n in g.graph.nodes} == {key(c, n) for n in c.graph.nodes}
    assert {(key(g, a), key(g, b)) for a, b in g.graph.edges} == {(key(c, a), key(c, b)) for a, b in c.graph.edges}
    assert len(g.get_divisions()) == len(c.get_divisions()) == 1


def test_geff_of_3d_frames_has_a_z_axis(tmp_path):
    lab = np.zeros((2, 4, 6, 6), np.int32)
    lab[:, 1:3, 0:2, 0:2] = 1
    write_geff(tmp_path / "z.geff", lab)
    graph, meta = geff.read(str(tmp_path / "z.geff"))
    assert [a.name for a in meta.axes] == ["t", "z", "y", "x"]
    assert [(d["z"], d["y"], d["x"], d["area"]) for _, d in graph.nodes(data=True)] == [(1.5, 0.5, 0.5, 8)] * 2


def test_geff_refuses_existing_and_overwrites_only_a_geff(tmp_path):
    path = tmp_path / "t.geff"
    write_geff(path, division_and_gap(), PARENTS)
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        write_geff(path, division_and_gap()[:2])
    assert geff.read(str(path))[0].number_of_nodes() == 19
    write_geff(path, division_and_gap()[:2], overwrite=True)
    assert geff.read(str(path))[0].number_of_nodes() == 4
    (path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"not a GEFF \(it holds 'notes.txt'\)"):
        write_geff(path, division_and_gap(), overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.geff"]


def test_lineage_graph_without_geff_package_parts():
    graph, lineage = lineage_graph(division_and_gap(), PARENTS)
    assert lineage.rows()[-1] == (5, 4, 7, 4)
    assert graph.number_of_nodes() == 19


def test_track_rows_have_the_parent_column(tmp_path):
    rows = track_rows(division_and_gap(), PARENTS)
    assert rows[0] == (0, 1, 5.5, 5.5, 64, 0)
    assert (3, 2, 5.5, 3.5, 64, 1) in rows and (3, 3, 5.5, 17.5, 64, 1) in rows
    # ids are the label values: label 4 keeps its id over its gap, no rows on frames 2-3
    assert [(t, i) for t, i, *_ in rows if i == 4] == [(0, 4), (1, 4), (4, 4), (5, 4), (6, 4), (7, 4)]
    assert len(rows) == 19
    write_track_csv(tmp_path / "tracks.csv", rows)
    with open(tmp_path / "tracks.csv") as fh:
        table = list(csv.reader(fh))
    assert table[0] == ["frame", "id", "y", "x", "area", "parent"]
    assert table[1] == ["0", "1", "5.500", "5.500", "64", "0"] and len(table) == 20
    with pytest.raises(ValueError, match="for 2D frames"):
        track_rows(np.zeros((1, 2, 3, 3), np.int32))


def test_napari_tracks_data_and_graph():
    data, graph = napari_tracks(track_rows(division_and_gap(), PARENTS))
    assert data.shape == (19, 4)
    np.testing.assert_array_equal(data[0], [1, 0, 5.5, 5.5])
    assert graph == {2: [1], 3: [1]}
