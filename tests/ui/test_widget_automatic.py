"""The widget's "Automatic" section in a real viewer: segment everything, track everything.

Every result is compared, pixel for pixel, with the engine driven directly on the same data
with the same parameters (``AutomaticSegmenter.generate`` / ``AutoTracker.run`` with the
same features and contrast limits), shifted by the id offset the widget applies. Random
weights make arbitrary masks: the thresholds are lowered and box NMS switched off so that
there are several objects to compare.
"""

from __future__ import annotations

import numpy as np
import pytest
from sam_ui_fixtures import requires_display, sam, tiny_sam2, wait_idle  # noqa: F401

import napari_sam as ns
from napari_sam.data import synthetic
from napari_sam.engine.auto.tracking import AutoTracker, TrackingParams
from napari_sam.engine.auto.segmenter import AutomaticParams, AutomaticSegmenter

pytestmark = [pytest.mark.gui, requires_display]

PARAMS = {"points_per_side": 8, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "min_mask_region_area": 5}
EXTRA = {"box_nms_thresh": 1.0}  # random weights: most masks overlap, keep them all


def configure(w, params=PARAMS, extra=EXTRA, every=None):
    a = w.automatic
    a.points_spin.setValue(params["points_per_side"])
    a.iou_spin.setValue(params["pred_iou_thresh"])
    a.stability_spin.setValue(params["stability_score_thresh"])
    a.min_area_spin.setValue(params["min_mask_region_area"])
    a.extra_params = dict(extra)
    if every is not None:
        a.every_spin.setValue(every)
    assert a.params() == AutomaticParams(**{**extra, **params})


def nuclei_widget(sam, **configure_kw):
    """The 128 px nuclei sample in the viewer and the widget, configured: (sample, widget)."""
    viewer, open_widget = sam
    s = synthetic.nuclei_2d(shape=(128, 128), seed=1)
    viewer.add_image(s.image, name="nuclei")
    w = open_widget()
    configure(w, **configure_kw)
    return s, w


def engine_labels(model, frames, t=0, params=PARAMS, extra=EXTRA):
    """What the widget computes for frame ``t``: the engine on the stack's stored features."""
    store = ns.EmbeddingStore(None, model, frames)
    seg = AutomaticSegmenter(model, **extra, **params)
    image = frames[t] if np.ndim(frames) > 2 else frames
    return seg.generate(image, contrast_limits=store.contrast_limits, features=store.get(t))


def test_segment_everything_2d(sam, qtbot, tiny_sam2):
    s, w = nuclei_widget(sam)
    assert w.automatic.segment_button.isEnabled() and not w.automatic.track_button.isEnabled()
    want = engine_labels(tiny_sam2, s.image)
    n = int(want.max())
    assert n > 1 and np.array_equal(np.unique(want), np.arange(n + 1))

    w.automatic.segment_button.click()
    assert w.runner.long_busy
    assert not w.automatic.segment_everything()  # one long job at a time
    assert "Busy" in w.status.text()
    wait_idle(qtbot, w)
    lab = w.labels_layer
    assert np.array_equal(lab.data, want)  # empty layer: ids 1..n as the engine gives them
    assert w.automatic.last_ids == list(range(1, n + 1))
    assert f"{n} objects" in w.status.text()
    assert w.current_object == n + 1  # new clicks start a new object
    lab.undo()
    assert not lab.data.any()


def test_keeps_other_labels_overwrite_and_undo(sam, qtbot, tiny_sam2):
    s, w = nuclei_widget(sam)
    want = engine_labels(tiny_sam2, s.image)
    lab = w.labels_layer
    lab.data[40:70, :] = 7  # the user's labels, across the automatic objects
    lab.data[:10, :10] = 3
    lab.refresh()
    before = lab.data.copy()
    assert (want[40:70] > 0).any()

    w.automatic.segment_button.click()  # overwrite off: only empty pixels, ids from 8 on
    wait_idle(qtbot, w)
    kept = np.where(before > 0, before, np.where(want > 0, want + 7, 0))
    assert np.array_equal(lab.data, kept)
    assert w.automatic.last_ids == sorted(set(np.unique(kept[kept > 7]).tolist()))
    lab.undo()
    assert np.array_equal(lab.data, before)

    w.objects.overwrite_check.setChecked(True)
    w.automatic.segment_button.click()
    wait_idle(qtbot, w)
    over = np.where(want > 0, want + 7, before)
    assert np.array_equal(lab.data, over)
    lab.undo()
    assert np.array_equal(lab.data, before)
    lab.redo()
    assert np.array_equal(lab.data, over)

    # ids never collide with prompted objects either: a click's object is reserved
    lab.undo()
    w.objects.overwrite_check.setChecked(False)
    w.set_object(20)
    w.points_layer.add([5, 120])
    wait_idle(qtbot, w)
    with_click = lab.data.copy()
    w.automatic.segment_button.click()
    wait_idle(qtbot, w)
    expect = np.where(with_click > 0, with_click, np.where(want > 0, want + 20, 0))
    assert np.array_equal(lab.data, expect)


def cancel_at(w, monkeypatch, step):
    """Click Cancel when the progress bar first reaches ``step`` (on the main thread, as a
    user would, whatever the machine's speed). Returns the (done, total) seen then."""
    seen = []
    report = w.runner.progress

    def progress(done, total=None):
        report(done, total)
        if done >= step and not seen:
            seen.append((done, w.embeddings.progress.maximum()))
            assert w.embeddings.cancel_button.isEnabled()
            w.embeddings.cancel_button.click()

    monkeypatch.setattr(w.runner, "progress", progress)
    return seen


def test_cancel_leaves_labels_untouched(sam, qtbot, tiny_sam2, monkeypatch):
    s, w = nuclei_widget(sam, params={**PARAMS, "points_per_side": 12}, extra={**EXTRA, "points_per_batch": 8})  # 18 batches
    lab = w.labels_layer
    lab.data[:10, :10] = 3
    lab.refresh()
    before = lab.data.copy()
    seen = cancel_at(w, monkeypatch, 1)
    w.automatic.segment_button.click()
    wait_idle(qtbot, w)
    assert seen == [(1, 18)]  # cancelled after the first of 18 point batches
    assert "cancelled" in w.status.text() and w.embeddings.progress.isHidden()
    assert np.array_equal(lab.data, before)
    assert w.automatic.stats["segmented"] == 0


def test_stack_segment_slice_and_track_everything(sam, qtbot, tiny_sam2, monkeypatch):
    viewer, open_widget = sam
    s = synthetic.timelapse(n_frames=6, shape=(96, 96), seed=1)
    viewer.add_image(s.image, name="movie")
    w = open_widget()
    configure(w, every=3)
    assert w.automatic.track_button.isEnabled()
    lab = w.labels_layer

    # segment everything on the slice shown: that slice only
    viewer.dims.set_current_step(0, 2)
    w.automatic.segment_button.click()
    wait_idle(qtbot, w)
    want2 = engine_labels(tiny_sam2, s.image, t=2)
    assert want2.max() > 0
    assert np.array_equal(lab.data[2], want2)
    assert not np.delete(lab.data, 2, axis=0).any()
    lab.undo()
    assert not lab.data.any()

    # track everything: every slice, as AutoTracker gives it
    store = ns.EmbeddingStore(None, tiny_sam2, s.image)
    tracker = AutoTracker(tiny_sam2, TrackingParams(every=3, min_area=PARAMS["min_mask_region_area"]),
                          segmenter=AutomaticSegmenter(tiny_sam2, **EXTRA, **PARAMS))
    want = np.stack([labels for _, labels in tracker.run(s.image, embeddings=store, contrast_limits=store.contrast_limits)])
    assert want.shape == s.image.shape and want.max() > 0
    lab.data[0, :5, :5] = 1  # a label of the user: kept, and automatic ids start at 2
    lab.refresh()
    before = lab.data.copy()
    w.video.tracks_check.setChecked(True)
    w.automatic.track_button.click()
    wait_idle(qtbot, w)
    assert np.array_equal(lab.data, np.where(before > 0, before, np.where(want > 0, want + 1, 0)))
    assert w.automatic.stats["tracked_frames"] == 6
    # Show tracks: a track per label (the user's and every automatic one), centroid per frame
    from napari.layers import Tracks

    tracks = [lay for lay in viewer.layers if isinstance(lay, Tracks)]
    assert len(tracks) == 1 and tracks[0].visible
    data = tracks[0].data
    assert sorted({int(o) for o in data[:, 0]}) == sorted(int(i) for i in np.unique(lab.data) if i)
    for obj, t, *centre in data[:: max(1, len(data) // 7)]:
        assert np.allclose(centre, np.argwhere(lab.data[int(t)] == obj).mean(0))
    w.video.tracks_check.setChecked(False)
    lab.undo()  # the whole stack in one step
    assert np.array_equal(lab.data, before)

    # cancel part-way: the finished frames are kept (written as they came), one undo step
    seen = cancel_at(w, monkeypatch, 2)
    w.automatic.track_button.click()
    wait_idle(qtbot, w)
    assert seen == [(2, 6)]
    assert "cancelled" in w.status.text()
    assert w.automatic.stats["tracked_frames"] >= 8  # frames already made may still arrive
    done = w.automatic.stats["tracked_frames"] - 6
    expect = np.where(before > 0, before, np.where(want > 0, want + 1, 0))
    assert np.array_equal(lab.data[:done], expect[:done])
    assert np.array_equal(lab.data[done:], before[done:])
    lab.undo()
    assert np.array_equal(lab.data, before)


@pytest.mark.parametrize("what", ["labels", "image", "widget"])
def test_remove_layer_or_close_mid_run(sam, qtbot, monkeypatch, what):
    viewer, open_widget = sam
    s = synthetic.timelapse(n_frames=6, shape=(96, 96), seed=1)
    viewer.add_image(s.image, name="movie")
    w = open_widget()
    configure(w, every=3)
    labels, runner = w.labels_layer, w.runner
    report = runner.progress

    def progress(done, total=None):  # at the second slice: remove a layer / close the widget
        report(done, total)
        if done == 2:
            if what == "widget":
                viewer.window.remove_dock_widget(w)
            else:
                viewer.layers.remove(labels if what == "labels" else w.image_layer)

    monkeypatch.setattr(runner, "progress", progress)
    assert w.automatic.track_everything()
    qtbot.waitUntil(lambda: runner.long_worker is None and runner.long_job is None, timeout=60_000)
    qtbot.wait(50)
    assert w.last_error is None
    # the frames finished before (written as they came) stay, nothing after
    assert labels.data[:2].any() and not labels.data[2:].any()
    if what == "image":
        assert w.segmenter is None and "cancelled" in w.status.text()
    if what == "widget":
        assert w._closed


def test_segment_everything_with_ais_or_point_grid(sam, qtbot, tiny_sam2):
    """A model with micro-sam's decoder: the AIS / point grid choice is shown (AIS first) and
    Segment everything gives AisSegmenter's labels; "Point grid" gives the point grid's."""
    from golden.make_ais_golden import decoder_state, tiny_sam1

    from napari_sam.engine.auto.ais import AisSegmenter

    model = tiny_sam1()
    model.ais_decoder_state = decoder_state(False)
    viewer, open_widget = sam
    s = synthetic.nuclei_2d(shape=(128, 128), seed=1)
    viewer.add_image(s.image, name="nuclei")
    w = open_widget(model)
    a = w.automatic
    assert a.method_combo.isVisibleTo(a) and a.method_combo.currentText() == "AIS (decoder)"
    assert not a.points_spin.isEnabled()  # point-grid controls do not apply to AIS
    store = ns.EmbeddingStore(None, model, s.image)
    want = AisSegmenter(model).generate(s.image, contrast_limits=store.contrast_limits, features=store.get(0))
    assert want.max() >= 2
    a.segment_button.click()
    wait_idle(qtbot, w)
    assert np.array_equal(w.labels_layer.data, want)
    assert "with AIS" in w.status.text() and f"{int(want.max())} objects" in w.status.text()
    w.labels_layer.undo()

    a.method_combo.setCurrentText("Point grid")
    configure(w)
    assert a.points_spin.isEnabled()
    a.segment_button.click()
    wait_idle(qtbot, w)
    assert np.array_equal(w.labels_layer.data, engine_labels(model, s.image))
    assert "with the point grid" in w.status.text()

    w.set_model(tiny_sam2)  # no decoder: no choice shown
    assert not a.method_combo.isVisibleTo(a)
