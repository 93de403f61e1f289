"""The bundled embedded model against the quality targets of the embedded-model issue, on the
fixed held-out set of :mod:`napari_sam.training.evaluate` (generator seeds 500-502, never
drawn in training), through the public inference paths (ImagePredictor, VideoSession).

Targets this version's weights do not meet are strict xfails (docs/embedded_model.md has the
figures): they run, and weights that meet a target make its test fail until it is turned
into a plain assertion. ``test_box_regression`` keeps the shipped level from slipping; it is
not the target. This version: click and z-stack met; box (0.856) not; the time-lapse misses
by 0.0005 (0.7995): so close that another torch build may round it either way, so its target
test is a non-strict xfail, with a guard at the shipped level."""

from __future__ import annotations

import pytest

import napari_sam as ns
from napari_sam.training import evaluate as ev

not_met = pytest.mark.xfail(strict=True, reason="not met by this version's weights (docs/embedded_model.md)")


@pytest.fixture(scope="module")
def model():
    return ns.load_model("embedded", device="cpu")


@pytest.fixture(scope="module")
def clicks_and_boxes(model):
    r = ev.click_and_box_iou(model)
    assert r["objects"] >= 200
    return r


def test_one_click(clicks_and_boxes):
    assert clicks_and_boxes["click_iou"] >= 0.85, clicks_and_boxes


@not_met
def test_box(clicks_and_boxes):
    assert clicks_and_boxes["box_iou"] >= 0.90, clicks_and_boxes


def test_box_regression(clicks_and_boxes):
    assert clicks_and_boxes["box_iou"] >= 0.84, clicks_and_boxes  # shipped: 0.856


@pytest.fixture(scope="module")
def timelapse(model):
    return ev.timelapse_quality(model)


@pytest.mark.xfail(strict=False, reason="0.7995 with this version's weights: at the threshold (docs/embedded_model.md)")
def test_timelapse_clicked_on_frame_0_and_propagated(timelapse):
    r = timelapse
    assert r.objects >= 10 and r.pairs >= 300
    assert r.mean_iou >= 0.80, r
    assert r.identity >= 0.95, r  # no object jumps to its neighbour


@pytest.fixture(scope="module")
def zstack(model):
    return ev.zstack_quality(model)


def test_zstack_clicked_on_the_middle_slice_and_propagated_both_ways(zstack):
    r = zstack
    assert r.objects >= 5 and r.pairs >= 60
    assert r.mean_iou >= 0.80, r
    assert r.identity >= 0.95, r


def test_timelapse_regression(timelapse):
    r = timelapse
    assert r.mean_iou >= 0.78 and r.identity >= 0.94, r  # shipped: 0.7995 / 0.953 (target 0.80 / kept)
