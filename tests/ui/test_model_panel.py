"""The model chooser: every registry name, cache status and download size, custom
checkpoint files, devices, and loading a model in a worker thread."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sam_ui_fixtures import requires_display, sam, tiny_sam2, wait_idle  # noqa: F401

from napari_sam.registry import list_models

pytestmark = [pytest.mark.gui, requires_display]


def test_lists_models_and_weights_status(sam, tmp_path):
    viewer, open_widget = sam
    w = open_widget(model=None)
    panel = w.model_panel
    names = [panel.model_combo.itemText(i) for i in range(panel.model_combo.count())]
    assert names == [m.name for m in list_models()]
    assert {"auto", "cpu"} <= {panel.device_combo.itemText(i) for i in range(panel.device_combo.count())}

    info = next(m for m in list_models() if m.name == "sam_vit_b")
    panel.model_combo.setCurrentText("sam_vit_b")
    assert not info.cached
    text = panel.status.text()
    assert "not cached" in text and f"{info.size / 2**20:,.0f} MiB" in text and "dl.fbaipublicfiles.com" in text

    info.path.parent.mkdir(parents=True, exist_ok=True)
    with open(info.path, "wb") as f:  # the cache holds a file of the official size now
        f.truncate(info.size)
    panel.refresh_status()
    assert panel.status.text().startswith("cached")

    panel.checkpoint.setText(str(tmp_path / "missing.pt"))
    assert "not found" in panel.status.text()
    ck = tmp_path / "mine.pt"
    ck.write_bytes(b"0" * 3 * 2**20)
    panel.checkpoint.setText(str(ck))
    assert "mine.pt (3 MiB)" in panel.status.text()


def test_load_custom_checkpoint_in_a_worker(sam, qtbot, tmp_path):
    from napari_sam.registry import build_model, model_info

    viewer, open_widget = sam
    viewer.add_image(np.random.default_rng(0).random((64, 64)), name="img")
    w = open_widget(model=None)
    assert w.segmenter is None and w.embeddings.embed_button.isEnabled()  # it would load the default model
    ref = build_model(model_info("sam2.1_hiera_tiny"))
    path = tmp_path / "tiny.pt"
    torch.save({"model": ref.state_dict()}, path)
    w.model_panel.model_combo.setCurrentText("sam2.1_hiera_tiny")
    w.model_panel.checkpoint.setText(str(path))
    w.model_panel.device_combo.setCurrentText("cpu")
    w.model_panel.load_button.click()
    wait_idle(qtbot, w, timeout=300_000)
    assert w.model is not None and w.model.family == "sam2"
    assert "sam2.1_hiera_tiny" in w.model_panel.loaded.text() and "cpu" in w.model_panel.loaded.text()
    assert w.segmenter is not None and w.embeddings.embed_button.isEnabled()
    sd = w.model.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in ref.state_dict().items())
