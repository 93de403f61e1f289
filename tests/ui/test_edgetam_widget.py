"""The widget with EdgeTAM (issue #15), loaded from a checkpoint the way a user does: the
model combo lists ``edgetam``, a checkpoint file is typed in, Load runs in a worker; a click
writes the labels of its frame, Propagate writes the other frames — each the numbers the
engine gives with the same prompts (EdgeTAM at 1024 px, random weights with the object-score
bias raised so objects stay present; a 3-frame 48 x 48 time-lapse).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sam_ui_fixtures import requires_display, sam, tiny_sam2, wait_idle  # noqa: F401

import napari_sam as ns
from napari_sam.data import synthetic

pytestmark = [pytest.mark.gui, requires_display]


@pytest.fixture(scope="module")
def edgetam_file(tmp_path_factory):
    from napari_sam.models.edgetam import EDGETAM_CONFIG, build_edgetam

    torch.manual_seed(3)
    state = build_edgetam(config=EDGETAM_CONFIG).state_dict()
    state["sam_mask_decoder.pred_obj_score_head.layers.2.bias"] += 10.0
    path = tmp_path_factory.mktemp("edgetam_widget") / "edgetam.pt"
    torch.save({"model": state}, path)
    return path


def test_edgetam_from_a_checkpoint_click_and_propagate(sam, qtbot, edgetam_file):
    viewer, open_widget = sam
    movie = synthetic.timelapse(n_frames=3, shape=(48, 48), n_objects=3, seed=4, enter_rate=0.0)
    viewer.add_image(movie.image, name="movie")
    w = open_widget(model=None)
    panel = w.model_panel
    names = [panel.model_combo.itemText(i) for i in range(panel.model_combo.count())]
    assert "edgetam" in names
    panel.model_combo.setCurrentText("edgetam")
    panel.checkpoint.setText(str(edgetam_file))
    panel.device_combo.setCurrentText("cpu")
    panel.load_button.click()
    wait_idle(qtbot, w, timeout=300_000)
    assert w.model is not None and w.model.name == "edgetam" and w.model.family == "sam2"
    assert w.model.image_size == 1024 and "edgetam" in panel.loaded.text()

    lab0 = movie.labels[0]
    ys, xs = np.nonzero(lab0 == np.unique(lab0)[1])
    row, col = float(ys.mean()), float(xs.mean())
    viewer.dims.set_current_step(0, 0)
    w.points_layer.add(np.array([0, row, col]))
    wait_idle(qtbot, w, timeout=300_000)

    direct = ns.VideoSession(w.model, movie.image, embeddings=ns.EmbeddingStore(None, w.model, movie.image))
    want0 = direct.add_prompts(0, 1, points=np.array([[col, row]]), labels=np.array([1])) > 0
    labels = w.labels_layer.data
    assert np.array_equal(labels[0] == 1, want0) and not labels[1:].any()

    w.video.direction_combo.setCurrentText("forward")
    assert w.video.propagate()
    wait_idle(qtbot, w, timeout=300_000)
    want = {t: logits[0] > 0 for t, ids, logits in direct.propagate(direction="forward", start=0)}
    direct.close()
    assert sorted(want) == [0, 1, 2] and want[1].any() and want[2].any()
    labels = w.labels_layer.data
    for t in (1, 2):
        assert np.array_equal(labels[t] == 1, want[t]), t
        assert set(np.unique(labels[t])) <= {0, 1}
