"""The model combo says which model to pick on a CPU and on a GPU, with the measured times
the docs give (issue #15)."""

from __future__ import annotations

import pytest
from sam_ui_fixtures import requires_display

from napari_sam.registry import list_models

pytestmark = [pytest.mark.gui, requires_display]


def test_combo_and_entries_say_which_model_to_pick(qtbot):
    from qtpy.QtCore import Qt

    from napari_sam.ui.model_panel import ModelPanel

    panel = ModelPanel()
    qtbot.addWidget(panel)
    combo = panel.model_combo
    assert [combo.itemText(i) for i in range(combo.count())] == [m.name for m in list_models()]
    tip = combo.toolTip()
    cpu, gpu = tip.index("on a CPU"), tip.index("on a GPU")
    assert cpu < tip.index("edgetam") < tip.index("embedded") < gpu < tip.index("sam2.1_hiera_")
    assert "3.4 s per frame" in tip and "54 s per frame" in tip

    tips = {combo.itemText(i): combo.itemData(i, Qt.ToolTipRole) for i in range(combo.count())}
    assert all(tips.values())  # every entry has its advice
    assert "pick for a CPU" in tips["edgetam"] and "3.4 s per frame" in tips["edgetam"]
    assert "4.3-5.0 s" in tips["edgetam"] and "54 MiB" in tips["edgetam"]
    assert "works offline" in tips["embedded"] and "0.06 s per frame" in tips["embedded"]
    assert "pick on a GPU" in tips["sam2.1_hiera_tiny"] and "54 s per frame" in tips["sam2.1_hiera_tiny"]
    assert "no tracking" in tips["sam_vit_b"] and "no tracking" in tips["vit_b_lm"]

