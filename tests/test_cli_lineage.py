"""``napari-sam track --ctc DIR --geff PATH`` (issue #17): the lineage written from the same
labels and the tracker's parents as the labels file and the tracks CSV, committed with them;
existing folders refused unless ``--overwrite`` and then replaced only when they are a CTC
folder / GEFF; every refusal before any work.

One real run (the bundled model, segment everything on a 5-frame generated time-lapse with
divisions) is shared by the round-trip tests; the refusals stop before the model is loaded.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile
from conftest import cli_refused as _refused

from napari_sam import cli
from napari_sam.data import synthetic
from napari_sam.lineage import read_ctc

AUTO = ["--points-per-side", "8", "--min-mask-region-area", "10", "--every", "2"]
MODEL = ["--model", "embedded", "--device", "cpu", "--quiet"]


def _movie(path):
    movie = synthetic.timelapse(n_frames=5, shape=(64, 64), n_objects=3, seed=3, division_time=(3, 5))
    tifffile.imwrite(path, movie.image, imagej=True, metadata={"axes": "TYX"})
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("lineage_cli")
    src = _movie(d / "movie.tif")
    out = {"src": src, "labels": d / "labels.tif", "tracks": d / "tracks.csv", "ctc": d / "ctc", "geff": d / "t.geff"}
    argv = ["track", src, "-o", out["labels"], "--tracks", out["tracks"], "--ctc", out["ctc"], "--geff", out["geff"],
            *AUTO, *MODEL]
    out["argv"] = [str(a) for a in argv]
    assert cli.main(out["argv"]) == 0
    return out


def _table(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], np.array(rows[1:], float).reshape(-1, len(rows[0]))


def _snapshot(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_ctc_folder_reads_back_to_the_labels_and_the_tables_parents(run):
    labels = tifffile.imread(run["labels"])
    header, rows = _table(run["tracks"])
    assert header == ["frame", "id", "y", "x", "area", "parent"]
    parents = {int(i): int(p) for i, p in rows[:, [1, 5]] if p}
    back, back_parents = read_ctc(run["ctc"], join_gaps=True)
    assert back.dtype == np.uint16 and back.shape == labels.shape == (5, 64, 64)
    np.testing.assert_array_equal(back, labels)
    assert back_parents == parents
    _, lineage = read_ctc(run["ctc"])
    assert lineage.n_frames == 5 and len(lineage) >= len(np.unique(labels[labels > 0]))
    # the table says what the labels say: one row per (frame, label), areas included
    for t in range(5):
        ids, areas = np.unique(labels[t][labels[t] > 0], return_counts=True)
        sel = rows[rows[:, 0] == t]
        assert sel[:, 1].astype(int).tolist() == ids.tolist() and sel[:, 4].astype(int).tolist() == areas.tolist()
    folder = run["labels"].parent
    assert not [p.name for p in folder.iterdir() if "partial" in p.name]


def test_geff_has_a_node_per_labelled_cell_and_frame_and_the_ctc_tracks(run):
    import geff

    graph, meta = geff.read(str(run["geff"]))
    _, rows = _table(run["tracks"])
    assert graph.number_of_nodes() == len(rows) > 0
    _, lineage = read_ctc(run["ctc"])
    nodes = dict(graph.nodes(data=True))
    per_track = {}
    for attrs in nodes.values():
        per_track.setdefault(int(attrs["track_id"]), []).append(int(attrs["t"]))
    assert {k: (min(v), max(v)) for k, v in per_track.items()} == {tr.id: (tr.begin, tr.end) for tr in lineage}
    # an edge from each node to its track's next frame, one per parent link
    links = sum(tr.end - tr.begin for tr in lineage) + sum(1 for tr in lineage if tr.parent)
    assert graph.number_of_edges() == links


def test_overwrite_replaces_its_own_ctc_folder_and_geff(run):
    before = _snapshot(run["ctc"])
    assert cli.main(run["argv"] + ["--overwrite"]) == 0
    assert _snapshot(run["ctc"]) == before  # same run, same files: replaced by an equal folder
    back, _ = read_ctc(run["ctc"], join_gaps=True)
    np.testing.assert_array_equal(back, tifffile.imread(run["labels"]))


def test_existing_folders_are_refused_before_any_work(tmp_path, capsys):
    """Refusals come before the model is loaded: a checkpoint that cannot load never fails."""
    src = _movie(tmp_path / "movie.tif")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    model = ["--model", "sam2.1_hiera_tiny", "--checkpoint", bad, "--device", "cpu", "--quiet"]
    base = ["track", src, "-o", tmp_path / "l.tif", "--tracks", tmp_path / "t.csv", *model]
    foreign = tmp_path / "results"
    foreign.mkdir()
    (foreign / "mask000.tif").write_bytes(b"x")
    (foreign / "notes.txt").write_text("my own notes")
    keep = _snapshot(foreign)
    _refused(capsys, [*base, "--ctc", foreign], str(foreign), "not empty", "--overwrite")
    _refused(capsys, [*base, "--ctc", foreign, "--overwrite"], "not a CTC folder", "notes.txt")
    _refused(capsys, [*base, "--geff", foreign, "--overwrite"], "not a GEFF")
    afile = tmp_path / "a.geff"
    afile.write_text("x")
    _refused(capsys, [*base, "--geff", afile], "is not a folder")
    _refused(capsys, [*base, "--ctc", tmp_path / "no" / "ctc"], "folder does not exist")
    _refused(capsys, [*base, "--ctc", tmp_path / "l.tif"], "used twice")
    _refused(capsys, [*base, "--ctc", tmp_path / "c", "--geff", tmp_path / "c"], "used twice")
    _refused(capsys, [*base, "--ctc", src, "--overwrite"], "is an input image")
    assert _snapshot(foreign) == keep
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.geff", "bad.pt", "movie.tif", "results"]
    # an empty folder is fine: the run gets to the model, which then fails to load
    empty = tmp_path / "empty"
    empty.mkdir()
    code = cli.main([str(a) for a in [*base, "--ctc", empty]])
    assert code != 0 and "bad.pt" in capsys.readouterr().err
    assert not any(empty.iterdir())


def test_overwrite_takes_an_older_tracks_table_without_parent_but_no_other_table(tmp_path):
    from napari_sam.io import InputError, check_target
    from napari_sam.lineage import TRACK_CSV_COLUMNS

    old = tmp_path / "old.csv"
    old.write_text("frame,id,y,x,area\n0,1,2.000,3.000,4\n")
    check_target(old, "table", True, header=TRACK_CSV_COLUMNS)  # napari-sam's table before the lineage
    other = tmp_path / "other.csv"
    other.write_text("frame,id,y,x,area,parent,notes\n")
    with pytest.raises(InputError, match="not a table written by napari-sam"):
        check_target(other, "table", True, header=TRACK_CSV_COLUMNS)
