"""The widget never erases labels it did not write, and every action is one undo step.

A Labels layer "drawn by hand" holds two cells of the synthetic ground truth as labels 1
and 2 (on every frame of a time-lapse). Choosing it must start the next object above its
ids; clicks, Propagate, Segment / Track everything and the user's own painting during a
run must leave every hand-drawn pixel as it was (overwrite off); napari's real undo
(``Labels.undo``) must take back a click, a whole propagation, a whole automatic run in
one step each.
"""

from __future__ import annotations

import numpy as np
import pytest
from sam_ui_fixtures import requires_display, sam, tiny_sam2, wait_idle  # noqa: F401

from scipy import ndimage as ndi

import napari_sam as ns
from napari_sam.data import synthetic

pytestmark = [pytest.mark.gui, requires_display]


def hand_labels(truth: np.ndarray, ids=(1, 2)) -> tuple[np.ndarray, list[int]]:
    """Two ground-truth cells as labels 1 and 2 (present on every frame of a stack), and
    a third cell (for clicking on "another cell")."""
    frames = truth if truth.ndim == 3 else truth[None]
    everywhere = [int(i) for i in np.unique(frames[0]) if i and all((f == i).sum() > 40 for f in frames)]
    assert len(everywhere) >= 3
    out = np.zeros(frames.shape, np.int32)
    for new, old in zip(ids, everywhere[:2]):
        out[frames == old] = new
    return (out if truth.ndim == 3 else out[0]), everywhere[2:]


def centre(mask: np.ndarray) -> list[float]:
    """A pixel (row, col) inside the mask, near its centroid."""
    ys, xs = np.nonzero(mask)
    i = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))
    return [float(ys[i]), float(xs[i])]


def undos_until(layer, target: np.ndarray, limit: int = 300) -> int | None:
    """How many ``layer.undo()`` bring ``layer.data`` back to ``target`` (None: never)."""
    for n in range(1, limit + 1):
        layer.undo()
        if np.array_equal(layer.data, target):
            return n
    return None


def engine_mask(model, image, points, labels):
    store = ns.EmbeddingStore(None, model, image)
    pred = ns.ImagePredictor(model)
    pred.set_frame(store, 0)
    res = pred.predict(points=np.asarray(points, float), labels=np.asarray(labels), multimask=len(points) == 1)
    return res.masks[int(np.argmax(res.scores))]


def open_with_hand_layer(sam, sample):
    viewer, open_widget = sam
    viewer.add_image(sample.image, name="image")
    data, others = hand_labels(sample.labels)
    hand = viewer.add_labels(data, name="drawn by hand")
    w = open_widget()
    return viewer, w, hand, others


def test_choosing_a_layer_starts_above_its_ids(sam, qtbot):
    s = synthetic.nuclei_2d(shape=(128, 128), seed=1)
    viewer, w, hand, _ = open_with_hand_layer(sam, s)
    assert w.labels_layer is not hand and w.current_object == 1  # the widget's own new layer
    w.layers.labels_combo.set_layer(hand)
    assert w.labels_layer is hand
    assert w.current_object == 3 and hand.selected_label == 3
    # a layer with higher ids: above them all
    hand.data[0, 0] = 41
    other = viewer.add_labels(hand.data.copy(), name="more")
    w.layers.labels_combo.set_layer(other)
    assert w.current_object == 42


def test_click_never_removes_hand_drawn_pixels(sam, qtbot, tiny_sam2):
    s = synthetic.nuclei_2d(shape=(128, 128), seed=1)
    viewer, w, hand, others = open_with_hand_layer(sam, s)
    w.layers.labels_combo.set_layer(hand)
    w.set_object(1)  # the worst case: the user makes hand-drawn label 1 the current object
    before = hand.data.copy()
    n1, n2 = int((before == 1).sum()), int((before == 2).sum())
    y, x = centre(s.labels == others[0])
    w.points_layer.add([y, x])  # one click on another cell
    wait_idle(qtbot, w)
    m1 = engine_mask(tiny_sam2, s.image, [[x, y]], [1])
    new1 = m1 & (before == 0)
    assert new1.sum() > 0 and (before == 1).sum() > (m1 & (before == 1)).sum()  # the mask leaves label 1 partly out
    assert int((hand.data == 1).sum()) == n1 + int(new1.sum())
    assert (hand.data[before == 1] == 1).all() and int((hand.data == 2).sum()) == n2
    assert np.array_equal(hand.data == 1, (before == 1) | new1)
    after_click = hand.data.copy()

    # a second prompt changes the object: the widget takes back its own pixels, only those
    w.set_positive(False)
    w.points_layer.add([y + 3, x + 3])
    wait_idle(qtbot, w)
    m2 = engine_mask(tiny_sam2, s.image, [[x, y], [x + 3, y + 3]], [1, 0])
    new2 = m2 & (before == 0)
    assert (new1 & ~new2).any()  # there is something of the widget's to take back
    assert np.array_equal(hand.data == 1, (before == 1) | new2)
    assert int((hand.data == 2).sum()) == n2

    # napari's undo: one step per click
    assert undos_until(hand, after_click) == 1
    assert undos_until(hand, before) == 1


def tracked_sample(n_frames):
    return synthetic.timelapse(n_frames=n_frames, shape=(128, 128), n_objects=10, seed=3, enter_rate=0.0)


@pytest.mark.parametrize("obj", [1, None])
def test_propagate_keeps_hand_labels_and_is_one_undo(sam, qtbot, obj):
    s = tracked_sample(8)
    viewer, w, hand, others = open_with_hand_layer(sam, s)
    w.layers.labels_combo.set_layer(hand)
    if obj is not None:
        w.set_object(obj)  # hand-drawn label 1 as the current object (the old default)
    else:
        assert w.current_object == 3
    before = hand.data.copy()
    per_frame_1 = [int((f == 1).sum()) for f in before]
    n2 = int((before == 2).sum())
    viewer.dims.set_current_step(0, 0)
    w.points_layer.add([0, *centre(s.labels[0] == others[0])])
    wait_idle(qtbot, w)
    after_click = hand.data.copy()
    assert w.video.propagate("forward")
    wait_idle(qtbot, w)
    lab = hand.data
    assert all((lab[t][before[t] == 1] == 1).all() for t in range(8))  # every hand-drawn pixel kept
    assert all(int((lab[t] == 1).sum()) >= per_frame_1[t] for t in range(8))
    assert int((lab == 2).sum()) == n2
    me = w.current_object
    assert sum(int((lab[t] == me).sum()) > 0 for t in range(8)) >= 2  # the object was tracked
    # the whole propagation is ONE undo step, the click before it another
    assert undos_until(hand, after_click) == 1
    assert undos_until(hand, before) == 1


def test_paint_during_propagation_is_kept(sam, qtbot):
    s = tracked_sample(20)
    viewer, w, hand, others = open_with_hand_layer(sam, s)
    w.layers.labels_combo.set_layer(hand)
    me = w.current_object
    assert me == 3
    viewer.dims.set_current_step(0, 0)
    target = s.labels[:, :, :] == others[0]
    w.points_layer.add([0, *centre(target[0])])
    wait_idle(qtbot, w)
    before_run = hand.data.copy()
    assert w.video.propagate("forward")
    qtbot.waitUntil(lambda: w.video.stats["propagated_frames"] >= 2, timeout=60_000)
    assert w.runner.long_busy
    # the user paints, with the selected label (the current object), while the run goes on:
    # on a frame the run will reach later, away from the cell and onto it; on frame 0
    # (already written) a label of their own over the object
    strokes = []
    hand.brush_size = 7
    for t, (y, x), value in [(19, (4, 4), me), (19, tuple(centre(target[19])), me), (0, tuple(centre(target[0])), 9)]:
        done = w.video.stats["propagated_frames"]
        assert done < 19, "the run ended before the strokes: a slower machine is needed"
        old = hand.data.copy()
        hand.paint((t, y, x), value)
        changed = hand.data != old
        assert changed.any()
        strokes.append((changed, value))
    wait_idle(qtbot, w)
    assert w.last_error is None and "done" in w.status.text()
    for changed, value in strokes:
        assert (hand.data[changed] == value).all()  # the user's strokes survive the run
    assert (hand.data[before_run == 1] == 1).all() and (hand.data[before_run == 2] == 2).all()
    # undo takes back the propagation in one step and keeps the strokes
    expect = before_run.copy()
    for changed, value in strokes:
        expect[changed] = value
    assert undos_until(hand, expect) == 1


def test_switch_labels_layer_while_session_open(sam, qtbot):
    s = tracked_sample(8)
    viewer, w, hand, others = open_with_hand_layer(sam, s)
    own = w.labels_layer
    viewer.dims.set_current_step(0, 0)
    w.points_layer.add([0, *centre(s.labels[0] == others[0])])  # object 1, in the widget's own layer
    wait_idle(qtbot, w)
    assert (own.data[0] == 1).any()
    own_before = own.data.copy()

    w.layers.labels_combo.set_layer(hand)  # the session stays open (object 1 keeps its prompt)
    assert w.current_object == 3  # above the layer's ids and above the prompted object 1
    before = hand.data.copy()
    w.points_layer.add([0, *centre(s.labels[0] == others[1])])
    wait_idle(qtbot, w)
    assert np.array_equal(own.data, own_before)
    assert (hand.data[0] == 3).any()
    assert (hand.data[before == 1] == 1).all() and (hand.data[before == 2] == 2).all()
    after_click = hand.data.copy()

    # propagation into the chosen layer; switching layers mid-run changes nothing of it
    assert w.video.propagate("forward")
    qtbot.waitUntil(lambda: w.video.stats["propagated_frames"] >= 1, timeout=60_000)
    w.layers.labels_combo.set_layer(own)
    wait_idle(qtbot, w)
    assert np.array_equal(own.data, own_before)
    assert (hand.data[before == 1] == 1).all() and (hand.data[before == 2] == 2).all()
    assert sum(int((hand.data[t] != after_click[t]).any()) for t in range(1, 8)) >= 2  # it wrote there
    assert undos_until(hand, after_click) == 1


@pytest.fixture
def auto_params():
    return {"points_per_side": 8, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "min_mask_region_area": 5}


def configure(w, p, every=None):
    a = w.automatic
    a.points_spin.setValue(p["points_per_side"])
    a.iou_spin.setValue(p["pred_iou_thresh"])
    a.stability_spin.setValue(p["stability_score_thresh"])
    a.min_area_spin.setValue(p["min_mask_region_area"])
    a.extra_params = {"box_nms_thresh": 1.0}
    if every is not None:
        a.every_spin.setValue(every)


def test_segment_everything_keeps_hand_labels(sam, qtbot, auto_params):
    s = synthetic.nuclei_2d(shape=(128, 128), seed=1)
    viewer, w, hand, _ = open_with_hand_layer(sam, s)
    w.layers.labels_combo.set_layer(hand)
    configure(w, auto_params)
    before = hand.data.copy()
    w.automatic.segment_button.click()
    wait_idle(qtbot, w)
    assert np.array_equal(hand.data[before > 0], before[before > 0])
    new = hand.data[before == 0]
    assert new.any() and new[new > 0].min() >= 3  # automatic ids above the hand-drawn ones
    assert undos_until(hand, before) == 1


def test_track_everything_keeps_hand_labels_and_paint(sam, qtbot, auto_params):
    s = tracked_sample(8)  # frames come out up to 8 late (the tracker's division look-back)
    viewer, w, hand, _ = open_with_hand_layer(sam, s)
    w.layers.labels_combo.set_layer(hand)
    configure(w, auto_params, every=2)
    before = hand.data.copy()
    assert w.automatic.track_everything()
    qtbot.waitUntil(lambda: w.automatic.stats["tracked_frames"] >= 1, timeout=60_000)
    assert w.runner.long_busy
    old = hand.data.copy()
    hand.brush_size = 9
    hand.paint((7, 64, 64), 7)  # the user paints during the run, on a frame still to come
    stroke = hand.data != old
    assert stroke.any()
    wait_idle(qtbot, w)
    assert (hand.data[stroke] == 7).all()
    assert np.array_equal(hand.data[before > 0], before[before > 0])
    new = hand.data[(before == 0) & ~stroke]
    # frames are written as they come, ids fixed at the start: above the hand-drawn ids
    assert new.any() and new[new > 0].min() >= 3
    expect = before.copy()
    expect[stroke] = 7
    assert undos_until(hand, expect) == 1


def test_user_repainted_pixels_become_theirs(sam, qtbot, tiny_sam2):
    """Pixels the widget wrote, erased and painted back by the user, are the user's: a new
    mask of the object never clears them."""
    s = synthetic.nuclei_2d(shape=(128, 128), seed=1)
    viewer, w, hand, others = open_with_hand_layer(sam, s)
    w.layers.labels_combo.set_layer(hand)
    me = w.current_object
    before = hand.data.copy()
    y, x = centre(s.labels == others[0])
    m1 = engine_mask(tiny_sam2, s.image, [[x, y]], [1]) & (before == 0)
    m2 = engine_mask(tiny_sam2, s.image, [[x, y], [x + 3, y + 3]], [1, 0]) & (before == 0)
    lost = m1 & ~m2  # what the second prompt takes back
    assert lost.sum() > 30
    w.points_layer.add([y, x])
    wait_idle(qtbot, w)
    assert np.array_equal(hand.data == me, m1)
    # the user erases a disk of the object and paints it back with the object's id
    cy, cx = np.unravel_index(np.argmax(ndi.uniform_filter(lost.astype(float), 5, mode="constant") * lost), lost.shape)
    hand.brush_size = 5
    old = hand.data.copy()
    hand.paint((float(cy), float(cx)), 0)
    erased = hand.data.copy()
    hand.paint((float(cy), float(cx)), me)
    disk = (erased != old) | (hand.data != erased)  # every pixel of the user's two strokes
    assert (hand.data[disk] == me).all()
    assert (disk & lost).sum() >= 9
    w.set_positive(False)
    w.points_layer.add([y + 3, x + 3])
    wait_idle(qtbot, w)
    assert (hand.data[disk] == me).all()  # the user's, kept
    assert np.array_equal(hand.data == me, m2 | disk)  # the widget's own, taken back
    assert (hand.data[before > 0] == before[before > 0]).all()


class _Held:
    """What napari's canvas hands the callbacks: a proxy whose ``__wrapped__`` event the
    later move / release events replace."""

    def __init__(self, event):
        self.__dict__["__wrapped__"] = event

    def __getattr__(self, name):
        return getattr(self.__dict__["__wrapped__"], name)


class _Mouse:
    """The fields napari's Labels paint callback reads from a mouse event."""

    def __init__(self, type_, position):
        self.type = type_
        self.position = position
        self.modifiers = []
        self.button = 1
        self.buttons = [1]
        self.pos = np.array([10, 10])
        self.handled = False
        self.is_dragging = type_ == "mouse_move"
        self.dims_displayed = [1, 2]
        self.view_direction = None


def test_propagation_ending_during_a_brush_stroke(sam, qtbot):
    """The run ends while the user holds a brush stroke: the run and the stroke stay two
    undo steps (the run's waits for the stroke to end)."""
    from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks

    s = tracked_sample(8)
    viewer, w, hand, others = open_with_hand_layer(sam, s)
    w.layers.labels_combo.set_layer(hand)
    viewer.dims.set_current_step(0, 0)
    w.points_layer.add([0, *centre(s.labels[0] == others[0])])
    wait_idle(qtbot, w)
    before_run = hand.data.copy()
    hand.mode = "paint"
    hand.brush_size = 5
    assert w.video.propagate("forward")
    old = hand.data.copy()
    mouse_press_callbacks(hand, _Held(_Mouse("mouse_press", (0.0, 6.0, 6.0))))
    stroke = hand.data != old
    assert stroke.sum() >= 9
    qtbot.waitUntil(lambda: not w.runner.long_busy, timeout=60_000)
    qtbot.wait(200)
    assert w.state.steps  # waiting for the stroke
    mouse_release_callbacks(hand, _Held(_Mouse("mouse_release", (0.0, 6.0, 6.0))))
    qtbot.waitUntil(lambda: not w.state.steps, timeout=5_000)
    assert w.last_error is None
    assert (hand.data[stroke] == w.current_object).all()
    expect = before_run.copy()
    expect[stroke] = hand.data[stroke]
    assert undos_until(hand, expect) == 1  # the run
    assert undos_until(hand, before_run) == 1  # the stroke


def test_closing_the_widget_mid_run_leaves_one_undo_step(sam, qtbot):
    s = tracked_sample(20)
    viewer, w, hand, others = open_with_hand_layer(sam, s)
    w.layers.labels_combo.set_layer(hand)
    viewer.dims.set_current_step(0, 0)
    w.points_layer.add([0, *centre(s.labels[0] == others[0])])
    wait_idle(qtbot, w)
    after_click = hand.data.copy()
    runner = w.runner
    assert w.video.propagate("forward")
    qtbot.waitUntil(lambda: w.video.stats["propagated_frames"] >= 3, timeout=60_000)
    viewer.window.remove_dock_widget(w)
    qtbot.waitUntil(lambda: runner.long_worker is None, timeout=60_000)
    written = [t for t in range(20) if not np.array_equal(hand.data[t], after_click[t])]
    assert 2 <= len(written) < 20
    kept = hand.data.copy()
    assert undos_until(hand, after_click) == 1
    hand.redo()
    assert np.array_equal(hand.data, kept)


def test_live_undo_step_on_a_bare_layer():
    """Two writes over the same pixels, a user stroke in between: one undo step that takes
    back exactly the run's pixels (first value before, last value after) and spares the
    stroke."""
    from napari.layers import Labels

    from napari_sam.ui.labels_ownership import Ownership
    from napari_sam.ui.undo_step import LiveUndoStep

    data = np.zeros((3, 20, 20), np.int32)
    data[1, :4, :4] = 2  # a hand-drawn label
    lab = Labels(data)
    before = lab.data.copy()
    step = LiveUndoStep(lab, Ownership())
    a = np.zeros((20, 20), bool)
    a[2:10, 2:10] = True
    b = np.zeros((20, 20), bool)
    b[6:14, 6:14] = True
    step.put((1,), a, 5)
    step.put((1,), b, 6)
    step.put((2,), a, 5)
    assert int((lab.data[1] == 6).sum()) == 64 and int((lab.data[1] == 5).sum()) == 64 - 16
    shown = lab.data.copy()
    lab.undo()  # nothing in napari's history yet
    assert np.array_equal(lab.data, shown)
    lab.brush_size = 3
    old = lab.data.copy()
    lab.paint((2, 5, 5), 9)  # the user paints over the run's pixels meanwhile
    stroke = lab.data != old
    assert int(stroke.sum()) == 9
    assert step.commit() == 64 + 48 + 64 - 9
    assert step.commit() == 0  # once only
    lab.undo()  # the run
    expect = before.copy()
    expect[stroke] = 9
    assert np.array_equal(lab.data, expect)
    lab.redo()
    assert int((lab.data[1] == 6).sum()) == 64 and (lab.data[stroke] == 9).all()
