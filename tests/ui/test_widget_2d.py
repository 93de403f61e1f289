"""The widget on 2D images in a real viewer: clicks, boxes, RGB, channels, scale, undo."""

from __future__ import annotations

import numpy as np
import pytest
from sam_ui_fixtures import requires_display, sam, tiny_sam2, wait_idle  # noqa: F401

import napari_sam as ns
from napari_sam.data import synthetic

pytestmark = [pytest.mark.gui, requires_display]


def engine_mask(model, image, points=None, labels=None, box=None):
    """What the engine alone says for these prompts (pixel (x, y) coordinates)."""
    store = ns.EmbeddingStore(None, model, image)
    pred = ns.ImagePredictor(model)
    pred.set_frame(store, 0)
    single = box is None and points is not None and len(points) == 1
    res = pred.predict(points=points, labels=labels, box=box, multimask=single)
    return res.masks[int(np.argmax(res.scores))]


def engine_video_prompt(model, frames, frame, points, labels, box):
    """The engine's answer to a first prompt on one slice of a stack (VideoSession)."""
    sess = ns.VideoSession(model, frames, embeddings=ns.EmbeddingStore(None, model, frames))
    try:
        return sess.add_prompts(frame, 1, points=points, labels=labels, box=box) > 0
    finally:
        sess.close()


@pytest.mark.parametrize("key,ndim,video", [("nuclei_2d", 2, False), ("cells_2d", 2, False), ("nuclei_3d", 3, True), ("timelapse", 3, True)])
def test_each_sample_click_and_box(sam, qtbot, tiny_sam2, key, ndim, video):
    """Every sample through the manifest; a click and a box on one object; the Labels layer."""
    viewer, open_widget = sam
    viewer.open_sample("napari-sam", key)
    w = open_widget()
    img = w.image_layer
    assert img is not None and img.ndim == ndim
    for layer in (w.labels_layer, w.points_layer, w.shapes_layer):
        assert layer is not None and np.allclose(layer.scale, img.scale) and layer.ndim == ndim
    assert w.labels_layer.data.shape == img.data.shape
    assert w.video.isEnabled() == video
    assert "Segment Anything (napari-sam)" in viewer.window.dock_widgets

    lead = [7] * (ndim - 2)
    for axis, value in enumerate(lead):
        viewer.dims.set_current_step(axis, value)
    w.points_layer.add([*lead, 60, 70])
    w.shapes_layer.add_rectangles(np.array([[*lead, 40, 45], [*lead, 40, 100], [*lead, 85, 100], [*lead, 85, 45]]))
    wait_idle(qtbot, w)
    pts, lab, box = np.array([[70.0, 60.0]]), np.array([1]), np.array([45.0, 40.0, 100.0, 85.0])
    if video:
        want = engine_video_prompt(tiny_sam2, img.data, 7, pts, lab, box)
        got = w.labels_layer.data[7]
        assert not (w.labels_layer.data[:7] > 0).any() and not (w.labels_layer.data[8:] > 0).any()
    else:
        want = engine_mask(tiny_sam2, img.data, pts, lab, box)
        got = w.labels_layer.data
    assert want.any() and np.array_equal(got == 1, want)


def test_clicks_move_delete(sam, qtbot, tiny_sam2):
    viewer, open_widget = sam
    s = synthetic.nuclei_2d(seed=1)
    viewer.add_image(s.image, name="nuclei")
    w = open_widget()
    pts, lab = w.points_layer, w.labels_layer
    assert pts.mode == "add" and viewer.layers.selection.active is pts

    pts.add([100, 120])  # (row, col) -> SAM (x=120, y=100)
    wait_idle(qtbot, w)
    want = engine_mask(tiny_sam2, s.image, np.array([[120.0, 100.0]]), np.array([1]))
    assert want.sum() > 50
    assert np.array_equal(lab.data == 1, want)
    assert pts.features["positive"].tolist() == [True] and pts.features["object"].tolist() == [1]

    w.set_positive(False)  # a background click
    pts.add([90, 140])
    wait_idle(qtbot, w)
    want2 = engine_mask(tiny_sam2, s.image, np.array([[120.0, 100.0], [140.0, 90.0]]), np.array([1, 0]))
    assert np.array_equal(lab.data == 1, want2)
    assert np.allclose(pts.face_color[1], [1.0, 45 / 255, 45 / 255, 1.0], atol=0.01)  # red = negative

    # move the first point: the mask follows
    data = pts.data.copy()
    data[0] = [60, 60]
    pts.data = data
    wait_idle(qtbot, w)
    want3 = engine_mask(tiny_sam2, s.image, np.array([[60.0, 60.0], [140.0, 90.0]]), np.array([1, 0]))
    assert np.array_equal(lab.data == 1, want3)

    # delete every click: the object's mask goes away
    pts.selected_data = {0, 1}
    pts.remove_selected()
    wait_idle(qtbot, w)
    assert not (lab.data == 1).any()


def test_box_prompt(sam, qtbot, tiny_sam2):
    viewer, open_widget = sam
    s = synthetic.nuclei_2d(seed=2)
    viewer.add_image(s.image, name="nuclei")
    w = open_widget()
    w.shapes_layer.add_rectangles(np.array([[40, 50], [90, 120]]))  # (y0, x0), (y1, x1)
    wait_idle(qtbot, w)
    want = engine_mask(tiny_sam2, s.image, box=np.array([50.0, 40.0, 120.0, 90.0]))
    assert want.sum() > 0
    assert np.array_equal(w.labels_layer.data == 1, want)
    assert w.shapes_layer.features["object"].tolist() == [1]


def test_rgb_and_single_channel(sam, qtbot, tiny_sam2):
    viewer, open_widget = sam
    s = synthetic.cells_2d(seed=3)
    rgb = synthetic.composite_rgb(s.image)
    viewer.add_image(s.image, channel_axis=0, name=["nuc", "cyto"])
    viewer.add_image(rgb, rgb=True, name="rgb")
    w = open_widget()
    assert w.image_layer.name == "rgb" and w.image_layer.rgb
    assert w.labels_layer.data.shape == (256, 256)
    w.points_layer.add([128, 128])
    wait_idle(qtbot, w)
    want = engine_mask(tiny_sam2, rgb, np.array([[128.0, 128.0]]), np.array([1]))
    assert np.array_equal(w.labels_layer.data == 1, want)

    # one channel of the two-channel image
    w.layers.image_combo.set_layer(viewer.layers["cyto"])
    assert w.labels_layer.name == "cyto SAM labels"
    w.points_layer.add([70, 90])
    wait_idle(qtbot, w)
    want = engine_mask(tiny_sam2, s.image[1], np.array([[90.0, 70.0]]), np.array([1]))
    assert np.array_equal(w.labels_layer.data == 1, want)
    assert not viewer.layers["rgb SAM labels"].data[want & ~(viewer.layers["rgb SAM labels"].data > 0)].any()


def test_scaled_and_translated_layers(sam, qtbot, tiny_sam2):
    """Image with anisotropic scale and an offset; a user Points layer on another grid."""
    viewer, open_widget = sam
    s = synthetic.nuclei_2d(seed=4, shape=(128, 160))
    viewer.add_image(s.image, name="img", scale=(0.5, 0.25), translate=(10.0, -3.0))
    user_pts = viewer.add_points(np.empty((0, 2)), name="my clicks", scale=(1.0, 1.0))
    w = open_widget()
    w.layers.points_combo.set_layer(user_pts)
    assert w.points_layer is user_pts and "object" in user_pts.features
    row, col = 40, 100  # the image pixel we mean
    world = np.array([10.0 + 0.5 * row, -3.0 + 0.25 * col])
    user_pts.add(world)  # this layer's data coordinates are world coordinates
    wait_idle(qtbot, w)
    (key, prompt), = w.prompts.items()
    assert key == ((), 0, 1)
    assert np.allclose(prompt.points, [[col, row]])
    want = engine_mask(tiny_sam2, s.image, np.array([[col, row]], float), np.array([1]))
    assert np.array_equal(w.labels_layer.data == 1, want)
    assert np.allclose(w.labels_layer.scale, (0.5, 0.25)) and np.allclose(w.labels_layer.translate, (10.0, -3.0))


def test_scaled_stack_prompts_land_on_the_right_slice(sam, qtbot):
    """Anisotropic z (2.0) and an offset image; a user Points layer on an isotropic grid."""
    viewer, open_widget = sam
    s = synthetic.nuclei_3d(shape=(10, 64, 80), seed=6)
    viewer.add_image(s.image, name="stack", scale=(2.0, 0.5, 0.5), translate=(4.0, 0.0, 1.0))
    iso = viewer.add_points(np.empty((0, 3)), ndim=3, name="iso clicks", scale=(1.0, 1.0, 1.0))
    w = open_widget()
    w.layers.points_combo.set_layer(iso)
    z, row, col = 6, 30, 50  # the voxel we mean
    world = np.array([4.0 + 2.0 * z, 0.5 * row, 1.0 + 0.5 * col])
    viewer.dims.set_current_step(0, z)
    iso.add(world)
    wait_idle(qtbot, w)
    (key, prompt), = w.prompts.items()
    assert key == ((), z, 1) and np.allclose(prompt.points, [[col, row]])
    lab = w.labels_layer.data
    assert lab[z].any() and not np.delete(lab, z, axis=0).any()


def test_keep_other_labels_overwrite_and_undo(sam, qtbot, tiny_sam2):
    viewer, open_widget = sam
    s = synthetic.nuclei_2d(seed=1)
    viewer.add_image(s.image, name="nuclei")
    w = open_widget()
    lab = w.labels_layer
    want = engine_mask(tiny_sam2, s.image, np.array([[120.0, 100.0]]), np.array([1]))
    ys, xs = np.nonzero(want)
    # pre-existing label 7 covering part of where the mask will go
    block = np.zeros_like(want)
    block[ys.min() : ys.min() + 6, :] = True
    lab.data[block] = 7
    lab.refresh()
    before = lab.data.copy()
    w.set_object(w.new_object())
    assert w.current_object == 8 and lab.selected_label == 8

    w.points_layer.add([100, 120])
    wait_idle(qtbot, w)
    assert np.array_equal(lab.data == 8, want & ~block)
    assert np.array_equal(lab.data[block], before[block])  # 7 untouched
    after_first = lab.data.copy()

    w.objects.overwrite_check.setChecked(True)
    w.points_layer.add([100, 121])  # re-predict object 8 with overwrite on
    wait_idle(qtbot, w)
    want2 = engine_mask(tiny_sam2, s.image, np.array([[120.0, 100.0], [121.0, 100.0]]), np.array([1, 1]))
    assert np.array_equal(lab.data == 8, want2)
    assert (block & want2).any() and not (lab.data[block & want2] == 7).any()

    lab.undo()  # Ctrl+Z on the Labels layer: exactly the last write
    assert np.array_equal(lab.data, after_first)
    lab.undo()
    assert np.array_equal(lab.data, before)
    lab.redo()
    assert np.array_equal(lab.data, after_first)


def test_objects_keys_and_picking(sam, qtbot, tiny_sam2):
    viewer, open_widget = sam
    s = synthetic.nuclei_2d(seed=1)
    viewer.add_image(s.image, name="nuclei")
    w = open_widget()
    pts, lab = w.points_layer, w.labels_layer
    pts.add([100, 120])
    wait_idle(qtbot, w)
    # N on the points layer: next free object id
    pts.keymap  # noqa: B018 - the layer's own key bindings
    from app_model.types import KeyBinding

    new_obj = pts.keymap[KeyBinding.from_str("N")]
    new_obj(pts)
    assert w.current_object == 2 and pts.feature_defaults["object"][0] == 2
    toggle = pts.keymap[KeyBinding.from_str("T")]
    toggle(pts)
    assert not w.positive_mode and not pts.feature_defaults["positive"][0]
    toggle(pts)
    assert w.positive_mode
    pts.add([200, 60])
    wait_idle(qtbot, w)
    assert set(np.unique(lab.data)) <= {0, 1, 2} and (lab.data == 2).any()
    assert pts.features["object"].tolist() == [1, 2]
    # both masks: the second never took pixels of the first
    first = engine_mask(tiny_sam2, s.image, np.array([[120.0, 100.0]]), np.array([1]))
    assert np.array_equal(lab.data == 1, first)
    # picking label 1 in the Labels layer selects object 1
    lab.selected_label = 1
    assert w.current_object == 1 and pts.feature_defaults["object"][0] == 1


def test_shift_click_adds_negative_point(sam, qtbot):
    from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks

    viewer, open_widget = sam
    s = synthetic.nuclei_2d(seed=1)
    viewer.add_image(s.image, name="nuclei")
    w = open_widget()
    pts = w.points_layer

    class Event:  # the fields napari's Points add-mode callbacks read
        def __init__(self, type_, modifiers):
            self.type = type_
            self.modifiers = modifiers
            self.position = (50.0, 60.0)
            self.pos = np.array([10, 10])
            self.handled = False
            self.is_dragging = False
            self.dims_displayed = [0, 1]
            self.view_direction = None

    for mods in ([], ["Shift"]):
        mouse_press_callbacks(pts, Event("mouse_press", mods))
        mouse_release_callbacks(pts, Event("mouse_release", mods))
    wait_idle(qtbot, w)
    assert pts.features["positive"].tolist() == [True, False]
    assert pts.feature_defaults["positive"][0]  # back to the current mode afterwards


def test_sam1_model_segments_slices_without_propagation(sam, qtbot):
    """A SAM 1 model: slice-by-slice masks in a stack (ImagePredictor); no video controls."""
    import torch

    from conftest import perturb_
    from napari_sam.models.sam1 import Sam1Config, build_sam1

    torch.manual_seed(1)
    model = perturb_(build_sam1(Sam1Config(encoder_embed_dim=32, encoder_depth=1, encoder_num_heads=1,
                                           encoder_global_attn_indexes=(0,), image_size=128)).eval(), 1)
    viewer, open_widget = sam
    s = synthetic.nuclei_3d(shape=(6, 80, 96), seed=7)
    viewer.add_image(s.image, name="stack")
    w = open_widget(model=model)
    assert not w.video.isEnabled() and "SAM 2" in w.video.toolTip()
    assert not w.video.propagate()
    viewer.dims.set_current_step(0, 3)
    w.points_layer.add([3, 40, 50])
    wait_idle(qtbot, w)
    store = ns.EmbeddingStore(None, model, s.image)
    pred = ns.ImagePredictor(model)
    pred.set_frame(store, 3)
    res = pred.predict(points=np.array([[50.0, 40.0]]), labels=np.array([1]), multimask=True)
    want = res.masks[int(np.argmax(res.scores))]
    lab = w.labels_layer.data
    assert want.any() and np.array_equal(lab[3] == 1, want)
    assert not np.delete(lab, 3, axis=0).any()


def test_labels_layer_of_another_shape_is_refused(sam, qtbot):
    viewer, open_widget = sam
    s = synthetic.nuclei_2d(seed=1, shape=(96, 96))
    viewer.add_image(s.image, name="img")
    other = viewer.add_labels(np.zeros((50, 50), np.int32), name="small")
    w = open_widget()
    w.layers.labels_combo.set_layer(other)
    w.points_layer.add([40, 40])
    wait_idle(qtbot, w)
    assert not other.data.any() and "has shape (50, 50)" in w.status.text()
