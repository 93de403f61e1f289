"""Lineage data model: tracks (begin, end, parent) from labels + {daughter: mother}, gap splits,
and validation that names the culprit."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from napari_sam.lineage import Lineage, Track


def division_and_gap(T=8) -> np.ndarray:
    """Label 1 on frames 0-2 divides into 2 and 3 (frames 3-7); label 4 is on frames 0-1 and
    4-7 (a gap on 2-3). Squares at known places."""
    lab = np.zeros((T, 32, 40), np.uint16)
    lab[0:3, 2:10, 2:10] = 1
    lab[3:, 2:10, 0:8] = 2
    lab[3:, 2:10, 14:22] = 3
    lab[0:2, 20:28, 20:28] = 4
    lab[4:, 20:28, 22:30] = 4
    return lab


def test_tracks_from_labels_with_division_and_gap():
    lin = Lineage.from_labels(division_and_gap(), {2: 1, 3: 1})
    # the run of label 4 after its gap becomes track 5 (above every label), child of track 4
    assert lin.rows() == [(1, 0, 2, 0), (2, 3, 7, 1), (3, 3, 7, 1), (4, 0, 1, 0), (5, 4, 7, 4)]
    assert lin.parents == {2: 1, 3: 1, 5: 4}
    assert lin.divisions() == {1: (2, 3)}
    assert lin.children(4) == [5]
    assert lin[5].label == 4 and lin[5].source == 4 and lin[4].source == 4
    assert lin.n_frames == 8
    assert lin.active(2) == [1] and lin.active(3) == [2, 3]


def test_two_gaps_chain_and_ids_follow_begin_order():
    lab = np.zeros((9, 4, 4), np.int32)
    lab[[0, 3, 4, 8], 0, 0] = 7  # runs 0, 3-4, 8
    lab[[1, 2, 5], 3, 3] = 2  # runs 1-2, 5
    lin = Lineage.from_labels(lab)
    # later runs by begin: label 7 at 3 -> 8, label 2 at 5 -> 9, label 7 at 8 -> 10
    assert lin.rows() == [(2, 1, 2, 0), (7, 0, 0, 0), (8, 3, 4, 7), (9, 5, 5, 2), (10, 8, 8, 8)]


def test_relabel_writes_the_later_track_id_and_widens_dtype():
    lab = np.zeros((3, 2, 2), np.uint8)
    lab[0, 0, 0] = lab[2, 0, 0] = 255  # gap on frame 1 -> track 256 after it
    lab[:, 1, 1] = 3
    lin = Lineage.from_labels(lab)
    assert lin.rows() == [(3, 0, 2, 0), (255, 0, 0, 0), (256, 2, 2, 255)]
    first = lab[0]
    assert lin.relabel(0, first) is first  # nothing to change: no copy
    out = lin.relabel(2, lab[2])
    assert out.dtype == np.uint16 and out[0, 0] == 256 and out[1, 1] == 3
    assert lab[2, 0, 0] == 255  # input untouched


def test_joined_undoes_the_gap_split_and_keeps_divisions():
    lin = Lineage.from_labels(division_and_gap(), {2: 1, 3: 1})
    label_of, parents = lin.joined()
    assert label_of == {1: 1, 2: 2, 3: 3, 4: 4, 5: 4}
    assert parents == {2: 1, 3: 1}


def test_mother_with_a_gap_links_her_last_run():
    lab = np.zeros((6, 4, 8), np.int32)
    lab[[0, 2], 0, 0] = 1  # label 1: frames 0 and 2 (gap on 1) -> tracks 1 and 4
    lab[3:, 3, 0] = 2
    lab[3:, 3, 7] = 3
    lin = Lineage.from_labels(lab, {2: 1, 3: 1})
    assert lin.rows() == [(1, 0, 0, 0), (2, 3, 5, 4), (3, 3, 5, 4), (4, 2, 2, 1)]
    assert lin.divisions() == {4: (2, 3)}


@pytest.mark.parametrize("parents, text", [
    ({9: 1}, "daughter label 9 is not in the frames"),
    ({2: 9}, "mother label 9 is not in the frames"),
])
def test_unknown_label_in_parents_is_named(parents, text):
    with pytest.raises(ValueError, match=text):
        Lineage.from_labels(division_and_gap(), parents)


def test_cycle_is_named():
    lab = np.zeros((2, 2, 2), np.int32)
    lab[:, 0, 0], lab[:, 1, 1] = 1, 2
    with pytest.raises(ValueError, match=r"cycle: 1 -> 2 -> 1"):
        Lineage.from_labels(lab, {1: 2, 2: 1})
    with pytest.raises(ValueError, match=r"label 1: parent links form a cycle: 1 -> 1"):
        Lineage.from_labels(lab, {1: 1})


def test_parent_ending_after_daughter_begins_is_named():
    lab = division_and_gap()
    with pytest.raises(ValueError, match=r"^label 2: its parent, label 4 after a gap \(track 5, frames 4-7\), "
                                         r"ends at frame 7, not before it begins at frame 3$"):
        Lineage.from_labels(lab, {2: 4})
    with pytest.raises(ValueError, match=r"^track 2: its parent, track 1, ends at frame 3, "
                                         r"not before it begins at frame 3$"):
        Lineage.from_rows([(1, 0, 3, 0), (2, 3, 5, 1)])


@pytest.mark.parametrize("rows, text", [
    ([(1, 0, 3, 0), (1, 4, 5, 0)], "track id 1 appears twice"),
    ([(0, 0, 3, 0)], "must be a positive integer"),
    ([(2, 5, 3, 0)], "^track 2: begin 5 and end 3"),
    ([(2, 0, 3, 7)], "^track 2: parent 7 is not a track"),
    ([(1, 0, 3, -1)], "^track 1: negative parent -1"),
])
def test_rows_validation(rows, text):
    with pytest.raises(ValueError, match=text):
        Lineage.from_rows(rows)


def test_origin_names_where_a_track_came_from():
    with pytest.raises(ValueError, match=r"^res_track.txt line 2: parent 7 is not a track"):
        Lineage.from_rows([(1, 0, 3, 0), (2, 4, 5, 7)], {1: "res_track.txt line 1", 2: "res_track.txt line 2"})


@pytest.mark.parametrize("frames, text", [
    ([np.zeros((4, 4), np.int32), np.zeros((4, 5), np.int32)], r"frame 1: shape \(4, 5\) differs"),
    ([np.zeros((4, 4), np.float32)], "frame 0: labels must be integers"),
    ([np.full((4, 4), -2, np.int32)], "frame 0: negative label -2"),
    ([np.zeros(4, np.int32)], "must be 2D"),
    ([], "no frames"),
])
def test_bad_frames_are_refused(frames, text):
    with pytest.raises(ValueError, match=text):
        Lineage.from_labels(frames)


def test_equality_and_track_row():
    a = Lineage.from_labels(division_and_gap(), {2: 1, 3: 1})
    b = Lineage.from_rows(a.rows())
    assert a == b and Track(5, 4, 7, 4).row() == (5, 4, 7, 4)
    assert a != Lineage.from_labels(division_and_gap())


def test_package_imports_no_torch_and_no_qt():
    code = ("import sys, napari_sam.lineage; bad = [m for m in ('torch', 'qtpy', 'napari', 'PyQt6', 'geff') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
