"""First-run friction (issue #16): what a new user meets in the first minutes.

The demo's first view, Track everything drawing as it goes, Show tracks after tracking, a
dock that fits a laptop screen, a click before any model is loaded, no napari warning from
the Tracks layer, allocator tuning when the widget loads a model.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sam_ui_fixtures import requires_display, sam, tiny_sam2, wait_idle  # noqa: F401

from napari_sam.data import synthetic

pytestmark = [pytest.mark.gui, requires_display]

FAST = {"points_per_side": 8, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "min_mask_region_area": 5}


def _visible_world_box(viewer):
    """(y0, x0, y1, x1) of the world the canvas shows now (2D view)."""
    canvas = viewer.window._qt_viewer.canvas
    h, w = canvas.size  # napari: (height, width) in logical pixels
    cy, cx = viewer.scene.camera.center[-2:]
    z = viewer.scene.camera.zoom
    return cy - h / z / 2, cx - w / z / 2, cy + h / z / 2, cx + w / z / 2


def test_demo_first_view_shows_the_whole_image(make_napari_viewer, qtbot, monkeypatch):
    from napari_sam.ui.demo import open_demo

    monkeypatch.setenv("NAPARI_SAM_OFFLINE", "1")
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1280, 760)
    widget = open_demo(viewer, "nuclei_2d", run=False)
    qtbot.waitUntil(widget.isVisible, timeout=10_000)
    qtbot.wait(300)  # the window lays out the dock; the widget then fits the view
    image = viewer.layers[0]
    h, w = image.data.shape[-2:]
    y0, x0, y1, x1 = _visible_world_box(viewer)
    assert y0 <= -0.5 and x0 <= -0.5 and y1 >= h - 0.5 and x1 >= w - 0.5, (y0, x0, y1, x1)


def test_dock_fits_a_1280_by_800_screen(sam):
    viewer, open_widget = sam
    viewer.add_image(synthetic.timelapse(n_frames=4, shape=(64, 64), seed=1).image, name="movie")
    w = open_widget()
    dock = w.parentWidget()
    while dock is not None and not dock.inherits("QDockWidget"):
        dock = dock.parentWidget()
    assert dock is not None
    assert w.minimumSizeHint().height() <= 700
    assert dock.minimumSizeHint().height() <= 700
    assert w.sizeHint().height() <= 700


def test_track_everything_draws_each_frame_as_it_is_done(sam, qtbot, monkeypatch):
    """Labels appear frame by frame; the user paints meanwhile and keeps it; Show tracks is
    on after the run; one Ctrl+Z takes the whole run back (and leaves the paint)."""
    viewer, open_widget = sam
    s = synthetic.timelapse(n_frames=6, shape=(96, 96), seed=1)
    viewer.add_image(s.image, name="movie")
    w = open_widget()
    a = w.automatic
    a.points_spin.setValue(FAST["points_per_side"])
    a.iou_spin.setValue(FAST["pred_iou_thresh"])
    a.stability_spin.setValue(FAST["stability_score_thresh"])
    a.min_area_spin.setValue(FAST["min_mask_region_area"])
    a.extra_params = {"box_nms_thresh": 1.0}
    lab = w.labels_layer
    assert not w.video.tracks_check.isChecked()
    seen = []
    report = w.runner.progress

    def progress(done, total=None):
        report(done, total)
        if done == 3 and not seen:  # mid-run, on the main thread: what does the user see?
            seen.append([bool(lab.data[t].any()) for t in range(6)])
            lab.paint((5, 90, 90), 99, refresh=True)  # the user paints meanwhile

    monkeypatch.setattr(w.runner, "progress", progress)
    assert a.track_everything()
    wait_idle(qtbot, w)
    assert seen and seen[0][:3] == [True, True, True] and not any(seen[0][3:])
    assert all(lab.data[t].any() for t in range(6))
    assert lab.data[5, 90, 90] == 99
    assert w.video.tracks_check.isChecked()
    from napari.layers import Tracks

    assert any(isinstance(lay, Tracks) and lay.visible for lay in viewer.layers)
    lab.undo()  # the run: one step; the user's paint stays
    assert set(np.unique(lab.data)) <= {0, 99} and lab.data[5, 90, 90] == 99


def test_first_click_without_a_model_loads_the_default(sam, qtbot):
    from napari_sam.registry import default_model

    viewer, open_widget = sam
    viewer.add_image(synthetic.nuclei_2d(shape=(128, 128), seed=1).image, name="nuclei")
    w = open_widget(model=None)
    assert w.model is None and w.segmenter is None
    w.ensure_layers()
    w.points_layer.add([60, 70])
    qtbot.waitUntil(lambda: "Loading" in w.status.text(), timeout=5_000)
    assert default_model() in w.status.text()
    qtbot.waitUntil(lambda: w.segmenter is not None, timeout=120_000)
    wait_idle(qtbot, w)
    assert w.model.name == default_model()
    assert w.labels_layer.data[60, 70] == w.current_object  # the click was handled


def test_compute_embeddings_without_a_model_loads_the_default(sam, qtbot):
    from napari_sam.registry import default_model

    viewer, open_widget = sam
    viewer.add_image(synthetic.nuclei_2d(shape=(64, 64), seed=1).image, name="nuclei")
    w = open_widget(model=None)
    w.embeddings.embed_button.click()
    assert default_model() in w.status.text()
    qtbot.waitUntil(lambda: w.segmenter is not None, timeout=120_000)
    wait_idle(qtbot, w)
    assert w.embeddings.embed_info.text().startswith("1 / 1 slices embedded")


def test_tracks_layer_raises_no_color_by_warning(sam, qtbot, tiny_sam2):
    viewer, open_widget = sam
    viewer.add_image(np.zeros((4, 32, 32), np.float32), name="movie")
    w = open_widget()
    lab = w.labels_layer
    lab.data[:, 4:8, 4:8] = 1
    lab.data[1:, 20:24, 20:24] = 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        w.video.tracks_check.setChecked(True)
        lab.data[2:, 10:12, 10:12] = 3
        w.video.update_tracks()  # the existing layer, new data
    tracks = [lay for lay in viewer.layers if lay.metadata.get("napari-sam-role") == "tracks"]
    assert len(tracks) == 1 and tracks[0].color_by == "object"
    assert sorted({int(o) for o in tracks[0].data[:, 0]}) == [1, 2, 3]


def test_loading_a_model_tunes_the_allocator(sam, qtbot, monkeypatch):
    from napari_sam.engine import malloc_tuning

    monkeypatch.setattr(malloc_tuning, "_applied", None)  # as in a fresh process
    monkeypatch.setenv("NAPARI_SAM_OFFLINE", "1")
    viewer, open_widget = sam
    w = open_widget(model=None)
    w.model_panel.model_combo.setCurrentText("embedded")
    w.model_panel.load_button.click()
    qtbot.waitUntil(lambda: w.model is not None, timeout=120_000)
    wait_idle(qtbot, w)
    assert malloc_tuning._applied is not None  # tune_malloc() ran
