"""Automatic runs built by the app: the model's own defaults under the caller's changes, the
store's features, and the same labels as the engine's tracker given the same parts."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from app_fixtures import small  # noqa: F401

from napari_sam.app.automatic import auto_params
from napari_sam.app.session import StackSession
from napari_sam.engine.auto.tracking import TrackingParams

FAST = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "min_mask_region_area": 4,
        "max_mask_fraction": 1.0}


def test_params_start_from_the_models_defaults():
    from napari_sam.engine.auto.segmenter import AutomaticParams

    model = SimpleNamespace(auto_defaults={"stability_score_thresh": 0.6, "points_per_side": 24})
    p = auto_params(model, points_per_side=8)
    assert (p.stability_score_thresh, p.points_per_side) == (0.6, 8)
    assert auto_params(model, {"pred_iou_thresh": 0.5}).pred_iou_thresh == 0.5
    given = AutomaticParams(points_per_side=3)
    assert auto_params(model, given) == given  # a full parameter set is taken as it is
    assert auto_params(SimpleNamespace(), min_mask_region_area=0) == AutomaticParams(min_mask_region_area=0)


@pytest.fixture
def session(small, tmp_path):
    s = StackSession(small["model"], small["movie"].image, cache_root=tmp_path)
    yield s
    s.close()


def test_segment_everything_reads_the_stored_features(small, session):
    from napari_sam.engine.auto.segmenter import AutomaticSegmenter

    labels = session.segment_everything((), 2, FAST)
    store = session.store(())
    want = AutomaticSegmenter(small["model"], **FAST).generate(
        small["movie"].image[2], contrast_limits=store.contrast_limits, features=store.get(2))
    np.testing.assert_array_equal(labels, want)
    assert labels.max() >= 1


def test_track_everything_equals_the_engines_tracker(small, session):
    from napari_sam.engine.auto.tracking import AutoTracker
    from napari_sam.engine.auto.segmenter import AutomaticSegmenter

    tracking = TrackingParams(every=2, min_area=4)
    steps = session.track_everything((), FAST, tracking)
    got = []
    while True:
        try:
            got.append(next(steps))
        except StopIteration as done:
            tracker = done.value
            break
    assert [t for t, _ in got] == [0, 1, 2, 3] and tracker is not None
    store = session.store(())
    engine = AutoTracker(small["model"], tracking, segmenter=AutomaticSegmenter(small["model"], **FAST))
    want = list(engine.run(small["movie"].image, embeddings=store, contrast_limits=store.contrast_limits))
    for (t, lab), (u, ref) in zip(got, want):
        assert t == u
        np.testing.assert_array_equal(lab, ref)
    assert tracker.rows == engine.rows


def test_track_everything_stops_when_asked(session):
    seen = []
    steps = session.track_everything((), FAST, TrackingParams(every=0, min_area=4), stop=lambda: len(seen) >= 2)
    for item in steps:
        seen.append(item)
    assert len(seen) == 2

    class Cancelled(Exception):
        pass

    def cancel(done, total):
        raise Cancelled

    with pytest.raises(Cancelled):  # raised in a detection: the run ends there, the caller sees why
        list(session.track_everything((), FAST, TrackingParams(every=1, min_area=4), progress=cancel))


def test_a_model_that_does_not_track_is_told_so(small, tmp_path):
    from napari_sam.app.session import can_track

    assert can_track(small["model"], 4) and not can_track(small["model"], 1)
    assert not can_track(SimpleNamespace(family="sam1"), 10)
    s = StackSession(small["model"], small["movie"].image[0], cache_root=tmp_path)
    with pytest.raises(ValueError, match="needs a SAM 2 model that tracks and an image stack"):
        next(s.track_everything())
    s.close()


def _ais_model():
    from golden.make_ais_golden import decoder_state, tiny_sam1

    model = tiny_sam1()
    model.ais_decoder_state = decoder_state(False)
    return model


def test_segment_everything_uses_ais_when_the_model_has_a_decoder(tmp_path):
    """A model with micro-sam's decoder: AIS by default (labels = AisSegmenter's on the stored
    features), tiled too; the point grid when asked (point_grid, point-grid parameters)."""
    from golden.make_ais_golden import sample_image

    from napari_sam.app.automatic import make_segmenter, segmenter_method
    from napari_sam.engine.auto.ais import AisParams, AisSegmenter
    from napari_sam.engine.auto.segmenter import AutomaticParams, AutomaticSegmenter

    model = _ais_model()
    assert isinstance(make_segmenter(model), AisSegmenter)
    assert isinstance(make_segmenter(model, AisParams(min_size=5)), AisSegmenter)
    assert make_segmenter(model, AisParams(min_size=5)).params.min_size == 5
    assert isinstance(make_segmenter(model, point_grid=True), AutomaticSegmenter)
    assert isinstance(make_segmenter(model, AutomaticParams(points_per_side=4)), AutomaticSegmenter)
    assert isinstance(make_segmenter(model, points_per_side=4), AutomaticSegmenter)
    assert segmenter_method(model, AisParams(), tile_shape=(64, 64), halo=(8, 8)) == "ais"  # tiles: AIS too
    tiled = make_segmenter(model, AisParams(min_size=5), tile_shape=(64, 64), halo=(8, 8))
    assert isinstance(tiled, AisSegmenter) and (tiled.tile_shape, tiled.halo, tiled.params.min_size) == (
        (64, 64), (8, 8), 5)
    assert isinstance(make_segmenter(model, tile_shape="auto"), AisSegmenter)
    grid_tiled = make_segmenter(model, AisParams(), tile_shape=(64, 64), halo=(8, 8), point_grid=True)
    assert isinstance(grid_tiled, AutomaticSegmenter) and grid_tiled.tile_shape == (64, 64)
    model.ais_decoder_state, plain = None, model
    assert segmenter_method(plain) == "grid"

    model = _ais_model()
    image = sample_image()[..., 0]
    s = StackSession(model, image[None], cache_root=tmp_path)
    try:
        labels = s.segment_everything((), 0)
        store = s.store(())
        want = AisSegmenter(model).generate(image, contrast_limits=store.contrast_limits, features=store.get(0))
        np.testing.assert_array_equal(labels, want)
        assert labels.max() >= 2
        np.testing.assert_array_equal(s.segment_everything((), 0, AisParams()), want)
        grid = s.segment_everything((), 0, AutomaticParams(**FAST))
        np.testing.assert_array_equal(grid, AutomaticSegmenter(model, **FAST).generate(
            image, contrast_limits=store.contrast_limits, features=store.get(0)))
        assert not np.array_equal(grid, labels)
    finally:
        s.close()


def test_tiled_session_segments_everything_with_ais(tmp_path):
    """A tiled session (the widget's tiling) runs AIS tile by tile on its tiled store's
    features: the labels of AisSegmenter with that tiling, progress per tile."""
    from golden.make_ais_tiled_golden import HALO, TILE, tiled_image

    from napari_sam.engine.auto.ais import AisSegmenter

    model = _ais_model()
    image = tiled_image()
    s = StackSession(model, image[None], cache_root=tmp_path, tile_shape=TILE, halo=HALO)
    try:
        calls = []
        labels = s.segment_everything((), 0, progress=lambda d, t: calls.append((d, t)))
        store = s.store(())
        assert store.grid is not None and len(store.grid) == 9
        want = AisSegmenter(model, tile_shape=TILE, halo=HALO).generate(image, contrast_limits=store.contrast_limits)
        np.testing.assert_array_equal(labels, want)
        assert labels.max() >= 10 and calls == [(i, 9) for i in range(1, 10)]
    finally:
        s.close()
