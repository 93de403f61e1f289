"""Fixtures for the widget tests: a real napari viewer (Xvfb), a tiny random SAM 2.

Imported by the test modules (not a conftest.py: a second module named ``conftest`` would
shadow the suite's ``from conftest import perturb_``).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

from conftest import perturb_

#: Without an X server Qt aborts the whole test process: skip the viewer tests instead
#: (scripts/test.sh runs the suite under Xvfb). In CI they never skip: a missing display fails.
requires_display = pytest.mark.skipif(
    not os.environ.get("CI")
    and not os.environ.get("DISPLAY")
    and os.environ.get("QT_QPA_PLATFORM") not in ("offscreen", "minimal"),
    reason="needs a display: run under xvfb-run (see scripts/test.sh)",
)


@pytest.fixture(scope="session")
def tiny_sam2():
    """A reduced SAM 2.1 (128 px input, random but perturbed weights): no download."""
    from napari_sam.models.sam2 import build_sam2, reduced_config

    torch.manual_seed(0)
    model = build_sam2(reduced_config(image_size=128)).eval()
    perturb_(model, seed=0)
    model.name = "tiny-test-sam2"
    return model


@pytest.fixture
def sam(make_napari_viewer, qtbot, tiny_sam2):
    """(viewer, widget) with the widget opened through the plugin manifest, model set."""
    viewer = make_napari_viewer()

    def open_widget(model=tiny_sam2):
        _, widget = viewer.window.add_plugin_dock_widget("napari-sam", "Segment Anything")
        if model is not None:
            widget.set_model(model)
        return widget

    yield viewer, open_widget


def wait_idle(qtbot, widget, timeout=120_000):
    """Process events until the widget's workers are done (and the prompt sync ran)."""
    qtbot.waitUntil(lambda: not widget.runner.busy and not widget._sync_pending, timeout=timeout)
    qtbot.wait(10)
    assert widget.last_error is None, widget.last_error


class Heartbeat:
    """A 5 ms QTimer on the main thread; ``max_gap`` is the longest UI stall seen (s)."""

    def __init__(self):
        from qtpy.QtCore import QTimer

        self.times = []
        self.timer = QTimer()
        self.timer.setInterval(5)
        self.timer.timeout.connect(lambda: self.times.append(time.perf_counter()))

    def __enter__(self):
        self.times = [time.perf_counter()]
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.stop()
        self.times.append(time.perf_counter())

    @property
    def max_gap(self) -> float:
        return float(np.max(np.diff(self.times))) if len(self.times) > 1 else 0.0
