"""Stacks as video in a real viewer: embeddings, propagation, corrections, cancel, 4D, tracks.

Every result is compared with the engine driven directly with the same prompts. The
longest main-thread stall (QTimer heartbeat) during embeddings and propagation is printed
and must stay under 0.2 s.
"""

from __future__ import annotations

import numpy as np
import pytest
from sam_ui_fixtures import requires_display, Heartbeat, sam, tiny_sam2, wait_idle  # noqa: F401

import napari_sam as ns
from napari_sam.data import synthetic

pytestmark = [pytest.mark.gui, requires_display]
MAX_STALL_S = 0.2


def direct_session(model, frames, steps):
    """Run ``steps`` on a fresh VideoSession: ("prompt", frame, obj, points, labels) or
    ("propagate", direction, start). Returns ({frame: {obj: mask}}, {frame: {obj: score}})."""
    sess = ns.VideoSession(model, frames, embeddings=ns.EmbeddingStore(None, model, frames))
    masks, scores = {}, {}
    for step in steps:
        if step[0] == "prompt":
            _, f, o, p, lab = step
            masks.setdefault(f, {})[o] = sess.add_prompts(f, o, points=np.asarray(p, float), labels=np.asarray(lab)) > 0
        else:
            for f, ids, logits in sess.propagate(direction=step[1], start=step[2]):
                masks[f] = {int(o): lg > 0 for o, lg in zip(ids, logits)}
                scores[f] = sess.object_scores(f)
    sess.close()
    return masks, scores


def assert_writer_contract(lab2d, masks):
    """Each object holds exactly its mask, minus pixels other objects hold."""
    for obj, m in masks.items():
        mine = lab2d == obj
        assert not (mine & ~m).any(), f"object {obj} outside its mask"
        free = m & ((lab2d == 0) | mine)
        assert np.array_equal(mine, free), f"object {obj} missing pixels"


def click(w, viewer, coords):
    """Go to the clicked slice (as a user would) and add the click."""
    for axis, value in enumerate(coords[:-2]):
        viewer.dims.set_current_step(axis, int(value))
    w.points_layer.add(np.asarray(coords, float))


def test_stack_3d_propagate_both(sam, qtbot, tiny_sam2):
    viewer, open_widget = sam
    viewer.open_sample("napari-sam", "nuclei_3d")
    w = open_widget()
    image = w.image_layer.data
    click(w, viewer, [16, 80, 80])
    wait_idle(qtbot, w)
    w.video.direction_combo.setCurrentText("both")
    with Heartbeat() as hb:
        assert w.video.propagate()
        wait_idle(qtbot, w)
    print(f"\nlongest UI stall during 3D propagation: {hb.max_gap * 1000:.0f} ms")
    assert hb.max_gap < MAX_STALL_S
    want, scores = direct_session(tiny_sam2, image, [("prompt", 16, 1, [[80, 80]], [1]), ("propagate", "both", 16)])
    lab = w.labels_layer.data
    assert sorted(want) == list(range(32))
    for f in range(32):
        assert_writer_contract(lab[f], want[f])
        assert np.array_equal(lab[f] == 1, want[f][1]), f
    absent = [f for f in range(32) if not want[f][1].any() or scores.get(f, {}).get(1, 1.0) <= 0]
    assert w.state.invisible_frames(1) == absent
    if absent:
        assert "object 1: not visible on slices" in w.video.visibility.text()


def test_timelapse_correction_repropagate(sam, qtbot, tiny_sam2):
    viewer, open_widget = sam
    viewer.open_sample("napari-sam", "timelapse")
    w = open_widget()
    frames = w.image_layer.data
    click(w, viewer, [0, 60, 70])
    w.new_object()
    click(w, viewer, [0, 190, 180])
    wait_idle(qtbot, w)
    w.video.direction_combo.setCurrentText("forward")
    assert w.video.propagate()
    wait_idle(qtbot, w)
    before = w.labels_layer.data.copy()
    # a correction on frame 12: a background click for object 1, then re-track from there
    w.set_object(1)
    w.set_positive(False)
    click(w, viewer, [12, 70, 80])
    wait_idle(qtbot, w)
    assert w.state.last_edit == {(): 12}
    assert w.video.propagate()
    wait_idle(qtbot, w)
    steps = [
        ("prompt", 0, 1, [[70, 60]], [1]),
        ("prompt", 0, 2, [[180, 190]], [1]),
        ("propagate", "forward", 0),
        ("prompt", 12, 1, [[80, 70]], [0]),
        ("propagate", "forward", 12),
    ]
    want, _ = direct_session(tiny_sam2, frames, steps)
    lab = w.labels_layer.data
    assert np.array_equal(lab[:12], before[:12])  # before the correction: untouched
    for f in range(30):
        assert_writer_contract(lab[f], want[f])
    assert not np.array_equal(lab[12:], before[12:])


def test_cancel_and_close_mid_run(sam, qtbot, tiny_sam2):
    viewer, open_widget = sam
    s = synthetic.timelapse(n_frames=20, shape=(128, 128), seed=1)
    viewer.add_image(s.image, name="movie")
    w = open_widget()
    click(w, viewer, [0, 64, 64])
    wait_idle(qtbot, w)
    want, _ = direct_session(tiny_sam2, s.image, [("prompt", 0, 1, [[64, 64]], [1]), ("propagate", "forward", 0)])

    # Cancel: stops between slices, keeps the finished ones
    assert w.video.propagate("forward")
    qtbot.waitUntil(lambda: w.video.stats["propagated_frames"] >= 3, timeout=60_000)
    assert w.embeddings.cancel_button.isEnabled()
    w.embeddings.cancel_button.click()
    wait_idle(qtbot, w)
    lab = w.labels_layer.data
    done = w.video.stats["propagated_frames"]
    assert 3 <= done < 20 and "cancelled" in w.status.text()
    for f in range(done):
        assert np.array_equal(lab[f] == 1, want[f][1])
    assert not lab[done:].any()

    # closing the widget mid-run: the worker stops, no exception, no half-written slice
    w.state.last_edit[()] = 0
    assert w.video.propagate("forward")
    start = w.video.stats["propagated_frames"]
    qtbot.waitUntil(lambda: w.video.stats["propagated_frames"] >= start + 2, timeout=60_000)
    runner = w.runner
    viewer.window.remove_dock_widget(w)
    assert w._closed
    qtbot.waitUntil(lambda: runner.long_worker is None, timeout=60_000)
    snapshot = w.labels_layer.data.copy()
    qtbot.wait(300)
    assert np.array_equal(w.labels_layer.data, snapshot)
    for f in range(20):
        if snapshot[f].any():
            assert np.array_equal(snapshot[f] == 1, want[f][1])


@pytest.mark.parametrize("which", ["image", "labels"])
def test_remove_layer_mid_run(sam, qtbot, which):
    viewer, open_widget = sam
    s = synthetic.timelapse(n_frames=20, shape=(128, 128), seed=2)
    viewer.add_image(s.image, name="movie")
    w = open_widget()
    click(w, viewer, [0, 64, 64])
    wait_idle(qtbot, w)
    assert w.video.propagate("forward")
    qtbot.waitUntil(lambda: w.video.stats["propagated_frames"] >= 2, timeout=60_000)
    labels = w.labels_layer
    viewer.layers.remove(w.image_layer if which == "image" else labels)
    qtbot.waitUntil(lambda: not w.runner.busy, timeout=60_000)
    assert w.last_error is None
    assert w.video.stats["propagated_frames"] < 20
    if which == "image":
        assert w.segmenter is None
    written = [f for f in range(20) if labels.data[f].any()]
    assert written == list(range(len(written)))  # whole slices, from the start, no gaps


def test_embeddings_progress_cancel_resume_reuse(sam, qtbot, tiny_sam2):
    viewer, open_widget = sam
    s = synthetic.nuclei_3d(shape=(24, 96, 96), seed=5)
    layer = viewer.add_image(s.image, name="stack", scale=s.scale)
    w = open_widget()
    encoded = []
    hook = tiny_sam2.image_encoder.register_forward_hook(lambda *a: encoded.append(1))
    try:
        # a click before precomputing embeds only its own slice
        click(w, viewer, [5, 48, 48])
        wait_idle(qtbot, w)
        store = w.segmenter.store(())
        assert store.has(5) and len(store.missing()) == 23 and len(encoded) == 1

        # cancel part-way: what is stored stays
        assert w.embeddings.compute()
        assert not w.embeddings.progress.isHidden() and w.embeddings.cancel_button.isEnabled()
        qtbot.waitUntil(lambda: len(encoded) >= 4, timeout=60_000)
        w.embeddings.cancel_button.click()
        wait_idle(qtbot, w)
        left = len(store.missing())
        assert 0 < left < 22 and "Cancelled" in w.embeddings.embed_info.text()

        # resume: only the missing slices are encoded; the UI keeps breathing
        n0 = len(encoded)
        with Heartbeat() as hb:
            assert w.embeddings.compute()
            wait_idle(qtbot, w)
        print(f"\nlongest UI stall while embedding {left} slices: {hb.max_gap * 1000:.0f} ms")
        assert hb.max_gap < MAX_STALL_S
        assert store.is_complete() and len(encoded) - n0 == left
        assert "24 / 24 slices embedded" in w.embeddings.embed_info.text() and w.embeddings.progress.isHidden()

        # the same data opened again (new layer, new widget): the cache is reused
        viewer.window.remove_dock_widget(w)
        viewer.layers.remove(layer)
        viewer.add_image(s.image.copy(), name="stack again", scale=s.scale)
        w2 = open_widget()
        n1 = len(encoded)
        assert w2.embeddings.compute()
        wait_idle(qtbot, w2)
        assert len(encoded) == n1
        assert w2.segmenter.store(()).path == store.path
    finally:
        hook.remove()


def test_4d_pick_video_axis(sam, qtbot, tiny_sam2):
    viewer, open_widget = sam
    vol = np.stack([synthetic.nuclei_3d(shape=(6, 96, 96), n_objects=8, seed=t).image for t in range(5)])
    viewer.add_image(vol, name="tzyx", scale=(1.0, 2.0, 1.0, 1.0))
    w = open_widget()
    assert w.layers.axis_combo.count() == 2 and w.layers.axis_combo.isEnabled()
    w.layers.axis_combo.setCurrentIndex(0)  # video along t, one stack per z
    click(w, viewer, [1, 3, 48, 48])
    wait_idle(qtbot, w)
    assert w.video.propagate("both")
    wait_idle(qtbot, w)
    lab = w.labels_layer.data
    want, _ = direct_session(tiny_sam2, vol[:, 3], [("prompt", 1, 1, [[48, 48]], [1]), ("propagate", "both", 1)])
    for t in range(5):
        assert np.array_equal(lab[t, 3] == 1, want[t][1])
    others = np.delete(lab, 3, axis=1)
    assert not others.any()

    w.layers.axis_combo.setCurrentIndex(1)  # video along z, one stack per t
    w.new_object()
    click(w, viewer, [2, 2, 30, 60])
    wait_idle(qtbot, w)
    assert w.video.propagate("both")
    wait_idle(qtbot, w)
    want2, _ = direct_session(tiny_sam2, vol[2], [("prompt", 2, 2, [[60, 30]], [1]), ("propagate", "both", 2)])
    for z in range(6):
        assert_writer_contract(lab[2, z], want2[z])
    assert not (np.delete(lab, 2, axis=0) == 2).any()


def test_tracks_layer(sam, qtbot):
    from napari.layers import Tracks

    viewer, open_widget = sam
    s = synthetic.timelapse(n_frames=8, shape=(128, 128), seed=3)
    viewer.add_image(s.image, name="movie")
    w = open_widget()
    w.lineage.divisions_check.setChecked(False)  # random weights: a split mask would add ids
    click(w, viewer, [0, 40, 40])
    w.new_object()
    click(w, viewer, [0, 90, 90])
    wait_idle(qtbot, w)
    assert w.video.propagate("forward")
    wait_idle(qtbot, w)
    w.video.tracks_check.setChecked(True)
    tracks = [lay for lay in viewer.layers if isinstance(lay, Tracks)]
    assert len(tracks) == 1
    data = tracks[0].data
    lab = w.labels_layer.data
    for obj in (1, 2):
        rows = data[data[:, 0] == obj]
        frames = [t for t in range(8) if (lab[t] == obj).any()]
        assert rows[:, 1].tolist() == frames
        for row in rows:
            assert np.allclose(row[2:], np.argwhere(lab[int(row[1])] == obj).mean(0))
    # each track in its object's label colour
    for obj in (1, 2):
        i = np.flatnonzero(data[:, 0] == obj)[0]
        assert np.allclose(tracks[0].track_colors[i], w.labels_layer.get_color(obj), atol=1e-6)
    w.video.tracks_check.setChecked(False)
    assert not tracks[0].visible
