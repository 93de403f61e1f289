"""Cell Tracking Challenge folders: write, read back, refuse what is wrong (naming file and line),
replace only a CTC folder, never leave a half-written one."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tifffile

from napari_sam.lineage import Lineage, mask_name, read_ctc, read_tracks, write_ctc

PARENTS = {2: 1, 3: 1}


def division_and_gap(T=8) -> np.ndarray:
    lab = np.zeros((T, 32, 40), np.int32)
    lab[0:3, 2:10, 2:10] = 1  # divides into 2 and 3 on frame 3
    lab[3:, 2:10, 0:8] = 2
    lab[3:, 2:10, 14:22] = 3
    lab[0:2, 20:28, 20:28] = 4  # gap on frames 2-3
    lab[4:, 20:28, 22:30] = 4
    return lab


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / "res"
    write_ctc(path, division_and_gap(), PARENTS)
    return path


def test_round_trip_with_gap_and_division(tmp_path):
    lab = division_and_gap()
    written = write_ctc(tmp_path / "res", lab, PARENTS)
    names = sorted(os.listdir(tmp_path / "res"))
    assert names == [f"mask{t:03d}.tif" for t in range(8)] + ["res_track.txt"]
    assert (tmp_path / "res" / "res_track.txt").read_text() == "1 0 2 0\n2 3 7 1\n3 3 7 1\n4 0 1 0\n5 4 7 4\n"
    first = tifffile.imread(tmp_path / "res" / "mask000.tif")
    assert first.dtype == np.uint16 and first.shape == (32, 40)
    labels, lineage = read_ctc(tmp_path / "res")
    assert lineage == written and lineage.rows() == written.rows()
    expected = lab.copy()
    expected[4:][expected[4:] == 4] = 5  # the run after the gap is track 5 in CTC
    np.testing.assert_array_equal(labels, expected)
    # undoing the gap split gives back exactly what was written
    labels, parents = read_ctc(tmp_path / "res", join_gaps=True)
    np.testing.assert_array_equal(labels, lab)
    assert parents == PARENTS
    assert Lineage.from_labels(labels, parents) == written
    assert [p.name for p in tmp_path.iterdir()] == ["res"]  # no temporary folder left


def test_mask_names_use_four_digits_past_1000_frames(tmp_path):
    assert mask_name(7, 1000) == "mask007.tif" and mask_name(999, 1000) == "mask999.tif"
    assert mask_name(7, 1001) == "mask0007.tif" and mask_name(1000, 1001) == "mask1000.tif"
    lab = np.zeros((1001, 2, 2), np.uint16)
    lab[:, 0, 0] = 1
    write_ctc(tmp_path / "long", lab)
    names = sorted(os.listdir(tmp_path / "long"))
    assert names[0] == "mask0000.tif" and names[-2] == "mask1000.tif" and len(names) == 1002
    labels, lineage = read_ctc(tmp_path / "long")
    assert labels.shape == (1001, 2, 2) and lineage.rows() == [(1, 0, 1000, 0)]


def test_existing_folder_is_refused_without_overwrite(tmp_path, folder):
    before = (folder / "res_track.txt").read_text()
    with pytest.raises(FileExistsError, match="not empty; pass overwrite=True"):
        write_ctc(folder, division_and_gap()[:3])
    assert (folder / "res_track.txt").read_text() == before and len(os.listdir(folder)) == 9


def test_overwrite_replaces_a_ctc_folder_whole(folder):
    small = np.zeros((2, 4, 4), np.int32)
    small[:, 1, 1] = 9
    write_ctc(folder, small, overwrite=True)
    assert sorted(os.listdir(folder)) == ["mask000.tif", "mask001.tif", "res_track.txt"]
    assert read_ctc(folder)[1].rows() == [(9, 0, 1, 0)]


def test_overwrite_refuses_a_folder_that_is_not_ctc(tmp_path):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    (other / "mask000.tif").write_bytes(b"")
    with pytest.raises(FileExistsError, match=r"not a CTC folder \(it holds 'notes.txt'\)"):
        write_ctc(other, division_and_gap(), overwrite=True)
    assert (other / "notes.txt").read_text() == "keep me"
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(FileExistsError, match="exists and is not a folder"):
        write_ctc(tmp_path / "file.txt", division_and_gap(), overwrite=True)


def test_an_empty_folder_is_written_into(tmp_path):
    (tmp_path / "empty").mkdir()
    write_ctc(tmp_path / "empty", division_and_gap(), PARENTS)
    assert len(os.listdir(tmp_path / "empty")) == 9


class FailingFrames:
    """Labels frames whose reader fails on frame ``bad`` from the ``after``-th read of it on."""

    def __init__(self, frames, bad, after=1):
        self.frames, self.bad, self.after, self.reads = frames, bad, after, 0

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, t):
        if t == self.bad:
            self.reads += 1
            if self.reads > self.after:
                raise OSError("disk read failed")
        return self.frames[t]


def test_a_failed_write_leaves_nothing_that_looks_complete(tmp_path, folder):
    frames = FailingFrames(division_and_gap(), bad=5)  # the lineage pass reads it, the write pass fails
    with pytest.raises(OSError, match="disk read failed"):
        write_ctc(tmp_path / "new", frames, PARENTS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]
    before = sorted(os.listdir(folder))
    with pytest.raises(OSError):
        write_ctc(folder, FailingFrames(division_and_gap(), bad=5), overwrite=True)
    assert sorted(os.listdir(folder)) == before and read_ctc(folder)[1].rows()[0] == (1, 0, 2, 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]


def test_track_ids_past_uint16_are_refused(tmp_path):
    lab = np.zeros((1, 2, 2), np.int32)
    lab[0, 0, 0] = 70000
    with pytest.raises(ValueError, match="track id 70000 does not fit"):
        write_ctc(tmp_path / "big", lab)
    assert not (tmp_path / "big").exists()


def test_missing_frames_are_named(folder):
    (folder / "mask002.tif").unlink()
    (folder / "mask005.tif").unlink()
    with pytest.raises(ValueError, match=r"2 frame\(s\) missing: mask002.tif, mask005.tif"):
        read_ctc(folder)


def edit_line(folder, number, text):
    lines = (folder / "res_track.txt").read_text().splitlines()
    lines[number - 1] = text
    (folder / "res_track.txt").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("number, text, message", [
    (2, "2 3 7 99", r"res_track.txt line 2 \(track 2\): parent 99 is not a track"),
    (2, "2 3 x 1", r"res_track.txt line 2: expected 'L B E P' \(four integers\), got '2 3 x 1'"),
    (4, "4 0 1", r"res_track.txt line 4: expected 'L B E P'"),
    (3, "2 3 7 1", r"res_track.txt line 3: track 2 is already on .*line 2"),
    (1, "1 0 2 5", r"res_track.txt line 1 \(track 1\): parent links form a cycle: 1 -> 5 -> 4 -> 1"),
])
def test_bad_track_lines_are_named(folder, number, text, message):
    if "cycle" in message:
        edit_line(folder, 4, "4 0 1 1")
    edit_line(folder, number, text)
    with pytest.raises(ValueError, match=message):
        read_ctc(folder)


def test_mask_and_track_mismatches_are_named(tmp_path):
    def fresh(name):
        path = tmp_path / name
        write_ctc(path, division_and_gap(), PARENTS)
        return path

    a = fresh("a")
    edit_line(a, 5, "5 3 7 4")  # track 5 claims frame 3, mask003.tif has no label 5
    with pytest.raises(ValueError, match=r"line 5 \(track 5\): track 5 \(frames 3-7\) is missing from mask003.tif"):
        read_ctc(a)
    b = fresh("b")
    edit_line(b, 5, "5 5 7 4")  # label 5 is on mask004.tif, outside 5-7
    with pytest.raises(ValueError, match=r"mask004.tif: label 5 is outside its track's frames 5-7 \(.*line 5"):
        read_ctc(b)
    c = fresh("c")
    frame = tifffile.imread(c / "mask001.tif")
    frame[30, 38] = 42
    tifffile.imwrite(c / "mask001.tif", frame)
    with pytest.raises(ValueError, match=r"mask001.tif: label 42 is not in res_track.txt"):
        read_ctc(c)
    d = fresh("d")
    edit_line(d, 5, "5 4 9 4")
    with pytest.raises(ValueError, match=r"line 5 \(track 5\): track 5 ends at frame 9, but the folder has 8 frames"):
        read_ctc(d)
    e = fresh("e")
    (e / "res_track.txt").unlink()
    with pytest.raises(ValueError, match="no res_track.txt"):
        read_ctc(e)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ValueError, match="no maskTTT.tif"):
        read_ctc(tmp_path / "nothing")
    with pytest.raises(ValueError, match="not a folder"):
        read_ctc(tmp_path / "absent")


def test_read_tracks_skips_blank_lines(tmp_path):
    (tmp_path / "t.txt").write_text("1 0 3 0\n\n2 4 6 1\n")
    assert read_tracks(tmp_path / "t.txt").rows() == [(1, 0, 3, 0), (2, 4, 6, 1)]


def test_staged_folder_appears_only_on_commit(tmp_path):
    from napari_sam.lineage import stage_ctc

    pending, lineage = stage_ctc(tmp_path / "res", division_and_gap(), PARENTS)
    assert not (tmp_path / "res").exists() and pending.path == tmp_path / "res"
    assert sorted(os.listdir(pending.tmp))[-1] == "res_track.txt" and pending.tmp.name.startswith(".res.")
    pending.commit()
    assert read_ctc(tmp_path / "res")[1] == lineage
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]
    again, _ = stage_ctc(tmp_path / "other", division_and_gap())
    again.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]


def test_commit_checks_the_target_again(tmp_path):
    from napari_sam.lineage import stage_ctc

    pending, _ = stage_ctc(tmp_path / "res", division_and_gap(), overwrite=True)
    (tmp_path / "res").mkdir()  # someone else made it meanwhile
    (tmp_path / "res" / "theirs.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="it holds 'theirs.txt'"):
        pending.commit()
    assert os.listdir(tmp_path / "res") == ["theirs.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]
