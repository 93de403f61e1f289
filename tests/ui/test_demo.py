"""``napari-sam demo``: a real viewer gets a sample (the time-lapse by default), the widget
with the bundled embedded model (no download), and every object segmented — tracked through
the time-lapse."""

from __future__ import annotations

import numpy as np
import pytest
from sam_ui_fixtures import requires_display, wait_idle

pytestmark = [pytest.mark.gui, requires_display]


def _found(truth: np.ndarray, labels: np.ndarray, min_iou: float = 0.5) -> float:
    """Share of true objects matched by one label with IoU >= min_iou."""
    hits = 0
    ids = np.unique(truth[truth > 0])
    for k in ids:
        gt = truth == k
        cand, counts = np.unique(labels[gt & (labels > 0)], return_counts=True)
        if cand.size:
            best = labels == cand[np.argmax(counts)]
            hits += (gt & best).sum() / (gt | best).sum() >= min_iou
    return hits / len(ids)


def test_demo_segments_the_nuclei_sample(make_napari_viewer, qtbot, monkeypatch):
    from napari_sam.ui.demo import open_demo

    monkeypatch.setenv("NAPARI_SAM_OFFLINE", "1")
    viewer = make_napari_viewer()
    widget = open_demo(viewer, "nuclei_2d")
    assert widget.model.name == "embedded" and "embedded" in widget.model_panel.loaded.text()
    wait_idle(qtbot, widget, timeout=300_000)
    labels = widget.labels_layer.data
    truth = next(lay for lay in viewer.layers if lay.name.endswith("ground truth")).data
    assert labels.shape == truth.shape == (256, 256)
    assert _found(truth, labels) >= 0.8  # most nuclei found as one object each


def test_demo_tracks_the_timelapse_sample(make_napari_viewer, qtbot, monkeypatch):
    """The default demo: the time-lapse sample, Track everything with the bundled model —
    every frame labelled, most cells found, and found under one id through the stack."""
    from napari_sam.engine.auto.tracking import id_persistence
    from napari_sam.ui.demo import open_demo

    monkeypatch.setenv("NAPARI_SAM_OFFLINE", "1")
    viewer = make_napari_viewer()
    widget = open_demo(viewer)
    assert widget.segmenter is not None and widget.segmenter.video  # the embedded model tracks
    wait_idle(qtbot, widget, timeout=300_000)
    labels = widget.labels_layer.data
    truth = next(lay for lay in viewer.layers if lay.name.endswith("ground truth")).data
    assert labels.shape == truth.shape == (30, 256, 256)
    assert all(labels[t].any() for t in range(30))
    assert _found(truth[0], labels[0]) >= 0.7
    assert id_persistence(truth, labels) >= 0.5  # benchmarks/results/track_accuracy.md has the figure


def test_a_model_that_does_not_track_segments_stacks_slice_by_slice(make_napari_viewer, qtbot, monkeypatch):
    """A SAM 2 model marked ``can_track = False`` (untrained memory path): on a time-lapse the
    widget offers no propagation, says why, and Segment everything labels the slice shown."""
    from napari_sam.ui.demo import open_demo
    from napari_sam.weights import load_embedded

    monkeypatch.setenv("NAPARI_SAM_OFFLINE", "1")
    viewer = make_napari_viewer()
    widget = open_demo(viewer, "timelapse", run=False)
    model = load_embedded()
    model.can_track = False
    widget.set_model(model, "embedded (slice by slice)")
    assert widget.segmenter is not None and not widget.segmenter.video
    assert not widget.video.propagate() and "segments slice by slice" in widget.status.text()
    assert not widget.automatic.track_everything()
    assert widget.automatic.segment_everything()
    wait_idle(qtbot, widget, timeout=300_000)
    labels = widget.labels_layer.data
    t = int(viewer.dims.current_step[0])
    assert labels[t].any() and not np.delete(labels, t, axis=0).any()
