"""The widget's "Lineage" section in a real viewer (issue #17): mark a division, join and split
tracks (each ONE undo step on the Labels layer), the Tracks layer's graph, CTC export /
import, and Propagate through a division with the bundled model.

The manual edits run on drawn labels (every pixel known); the picks go through the same
method the labels layer's mouse callback calls (``LineagePanel.pick`` with viewer
coordinates)."""

from __future__ import annotations

import numpy as np
import pytest
from sam_ui_fixtures import requires_display, sam, tiny_sam2, wait_idle  # noqa: F401

from napari_sam.lineage import read_ctc

pytestmark = [pytest.mark.gui, requires_display]

T, H, W = 6, 64, 96


def _disk(cy, cx, r=7):
    yy, xx = np.mgrid[:H, :W]
    return (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2


def _drawn():
    """Label 1 divides at frame 3 and both daughters still carry 1; label 2 goes on; label 5
    on frames 0-1 and label 6 on frames 3-5 are one cell seen again."""
    lab = np.zeros((T, H, W), np.int32)
    for t in range(T):
        if t < 3:
            lab[t][_disk(32, 48, 9)] = 1
        else:
            s = 6 + 3 * t
            lab[t][_disk(32, 48 - s)] = 1
            lab[t][_disk(32, 48 + s)] = 1
        lab[t][_disk(10, 10, 5)] = 2
        if t < 2:
            lab[t][_disk(54, 80, 5)] = 5
        if t >= 3:
            lab[t][_disk(54, 82, 5)] = 6
    return lab


def _open(sam, model=None):
    viewer, open_widget = sam
    viewer.add_image(np.zeros((T, H, W), np.uint16), name="movie")
    w = open_widget(model)
    w.labels_layer.data = _drawn()
    return viewer, w


def _tracks(viewer):
    from napari.layers import Tracks

    return [lay for lay in viewer.layers if isinstance(lay, Tracks)]


def test_mark_division_one_undo_step_and_the_tracks_graph(sam, qtbot):
    viewer, w = _open(sam)
    lab, panel = w.labels_layer, w.lineage
    before = lab.data.copy()
    lab.selected_label = 1
    lab.mode = "paint"
    assert panel.start_division()
    assert lab.mode == "pan_zoom"  # picking does not paint the mother's id
    assert panel.pick([3, 32, 48 - 15]) and panel.pick([3, 32, 48 + 15])
    after = lab.data.copy()
    assert panel.mode is None and lab.mode == "paint"
    assert np.array_equal(after[:3], before[:3])  # the mother until frame 2
    new = w.state.next_free_object
    d1, d2 = 7, 8  # beyond every id in use (6)
    for t in range(3, T):
        s = 6 + 3 * t
        assert np.array_equal(after[t] == d1, _disk(32, 48 - s)) and np.array_equal(after[t] == d2, _disk(32, 48 + s))
        assert not (after[t] == 1).any()
        assert np.array_equal(after[t] == 2, before[t] == 2)
    assert lab.metadata["napari-sam-parents"] == {d1: 1, d2: 1} and new() == 9
    (tracks,) = _tracks(viewer)
    assert tracks.graph == {d1: [1], d2: [1]} and tracks.visible
    assert set(np.unique(tracks.data[:, 0]).astype(int)) == {1, 2, 5, 6, d1, d2}
    lab.undo()  # the whole edit is one step
    assert np.array_equal(lab.data, before)
    w.video.update_tracks()
    assert tracks.graph == {}  # the links no longer hold for the labels
    lab.redo()
    assert np.array_equal(lab.data, after)


def test_join_and_split_tracks(sam, qtbot):
    viewer, w = _open(sam)
    lab, panel = w.labels_layer, w.lineage
    before = lab.data.copy()
    lab.selected_label = 6
    assert panel.start_join() and panel.pick([0, 54, 80])  # the earlier track, clicked on frame 0
    assert np.array_equal(lab.data == 5, (before == 5) | (before == 6)) and not (lab.data == 6).any()
    lab.undo()
    assert np.array_equal(lab.data, before)
    # tracks that overlap in time are refused, nothing changes
    lab.selected_label = 2
    assert panel.start_join() and panel.pick([4, 32, 48 + 18])
    assert np.array_equal(lab.data, before) and "both there on frames 0-5" in w.status.text()
    # split: from the frame shown on, a new id
    viewer.dims.set_current_step(0, 2)
    lab.selected_label = 2
    assert panel.split_track()
    assert np.array_equal(lab.data[:2], before[:2]) and np.array_equal(lab.data[2:] == 7, before[2:] == 2)
    lab.undo()
    assert np.array_equal(lab.data, before)
    viewer.dims.set_current_step(0, 0)
    assert not panel.split_track() and "go to a frame after its first" in w.status.text()


def test_export_and_import_ctc(sam, qtbot, tmp_path):
    viewer, w = _open(sam)
    lab, panel = w.labels_layer, w.lineage
    lab.selected_label = 1
    panel.start_division()
    panel.pick([3, 32, 33])
    panel.pick([3, 32, 63])
    folder = tmp_path / "ctc"
    assert panel.export_ctc(folder)
    back, parents = read_ctc(folder, join_gaps=True)
    assert np.array_equal(back, lab.data) and parents == {7: 1, 8: 1}
    _, lineage = read_ctc(folder)
    assert lineage.divisions() == {1: (7, 8)}
    with pytest.raises(FileExistsError, match="not empty"):
        panel.export_ctc(folder)
    assert panel.export_ctc(folder, overwrite=True)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a CTC folder"):
        panel.export_ctc(foreign, overwrite=True)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    imported = panel.import_ctc(folder)
    assert imported.name == "ctc" and np.array_equal(imported.data, lab.data)
    assert imported.metadata["napari-sam-parents"] == {7: 1, 8: 1}
    tracks = [t for t in _tracks(viewer) if t.name == "ctc tracks"]
    assert len(tracks) == 1 and tracks[0].graph == {7: [1], 8: [1]}
    (folder / "mask002.tif").unlink()
    assert panel.import_ctc(folder) is None and "mask002.tif" in w.status.text()


def test_propagate_through_a_division_fills_the_lineage(sam, qtbot):
    """The bundled model follows both daughters with the mother's mask: the widget's
    Propagate ends the mother and writes two new ids; the Tracks layer branches."""
    import napari_sam as ns
    from scipy import ndimage as ndi

    viewer, open_widget = sam
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:96, :96]
    frames = []
    for s in (0, 0, 6, 10, 13, 15):
        img = (((yy - 48) ** 2 / 121 + (xx - 48) ** 2 / 196) < 1).astype(float) if s == 0 else \
            sum((((yy - 48) ** 2 + (xx - c) ** 2) < 81).astype(float) for c in (48 - s, 48 + s))
        frames.append(ndi.gaussian_filter(img, 1.2) * 800 + 100 + rng.normal(0, 20, (96, 96)))
    viewer.add_image(np.stack(frames).astype(np.uint16), name="division")
    w = open_widget(ns.load_model("embedded", device="cpu"))
    w.points_layer.add(np.array([0, 48, 48], float))
    wait_idle(qtbot, w)
    assert w.video.propagate("forward")
    wait_idle(qtbot, w)
    lab = w.labels_layer.data
    assert set(np.unique(lab[:3])) == {0, 1} and set(np.unique(lab[3:])) == {0, 2, 3}
    assert w.labels_layer.metadata["napari-sam-parents"] == {2: 1, 3: 1}
    w.video.tracks_check.setChecked(True)
    (tracks,) = _tracks(viewer)
    assert tracks.graph == {2: [1], 3: [1]}
