"""Divisions the tracker's masks hide (issue #17, division F1): a mask that keeps one daughter
of two (the other found by a click beside it, :mod:`napari_sam.engine.auto.tracking_sister`)
and a mask that stays one piece over two touching daughters (cut at the waist,
``division_max_neck``). Constructed movies, the detector and the session stand-in right by
construction (``LineageOracle`` of ``test_auto_tracking_lineage``); the rest is the real code."""

from __future__ import annotations

import numpy as np

from napari_sam.engine.auto.tracking import TrackingParams
from napari_sam.engine.auto.tracking_sister import sister_mask, sister_point
from test_auto_tracking_lineage import disc, division_movie, ids_of, track

DIVIDED = [(1, 0, 3, 0), (2, 0, 9, 0), (3, 4, 9, 1), (4, 4, 9, 1)]  # cell 1 -> 3, 4 on frame 4


def test_sister_point_mirrors_the_kept_daughter_through_the_mother():
    shape = (40, 60)
    mother, kept = disc(shape, 20, 30, 7), disc(shape, 18, 24, 5)
    assert sister_point(mother, kept, shape) == (22.0, 36.0)
    assert sister_point(disc(shape, 20, 4, 4), disc(shape, 20, 12, 4), shape) is None  # outside


def test_sister_mask_wants_a_cell_like_the_kept_one():
    shape = (40, 60)
    kept = disc(shape, 20, 24, 5)
    tracked = np.where(kept, 7, 0)
    params = TrackingParams()
    other = disc(shape, 20, 36, 5)
    assert (sister_mask(other, kept, tracked, 7, params) == other).all()
    assert sister_mask(disc(shape, 20, 36, 2), kept, tracked, 7, params) is None  # a speck
    assert sister_mask(disc(shape, 20, 26, 5), kept, tracked, 7, params) is None  # the kept one again
    assert sister_mask(other, kept, np.where(other, 9, tracked), 7, params) is None  # another track's
    assert sister_mask(np.zeros(shape, bool), kept, tracked, 7, params) is None


def test_a_track_that_keeps_one_daughter_divides_on_the_true_frame():
    # from frame 4 the session's mask of cell 1 is daughter 3 alone: the area halves and
    # daughter 4, beside it, belongs to no track (no re-detection to find it)
    truth, lin = division_movie(touch=(4,))
    tracker, pred, oracle = track(truth, TrackingParams(every=0, min_area=10, division_max_neck=0), lin,
                                  follow_one=range(4, 10))
    assert tracker.lineage().rows() == DIVIDED
    assert ids_of(pred, truth, 3) == [3] * 6 and ids_of(pred, truth, 4) == [4] * 6
    assert ("click", 4, "_sister_probe") in oracle.calls and "_sister_probe" not in oracle.obj_ids
    off, pred_off, _ = track(truth, TrackingParams(every=0, min_area=10, division_max_neck=0,
                                                   division_area_drop=0), lin, follow_one=range(4, 10))
    assert off.parents == {} and not (pred_off[4:] == 4).any()  # without the rule: lost


def test_a_mask_over_both_then_one_daughter_is_placed_back():
    # the mask covers both touching daughters on 4-5 and keeps only daughter 3 from 6 on:
    # the drop is seen on 6, the division moved back over the frames it covered both
    truth, lin = division_movie(touch=(4, 5))
    tracker, pred, _ = track(truth, TrackingParams(every=0, min_area=10, division_max_neck=0), lin,
                             follow_one=range(6, 10))
    assert tracker.lineage().rows() == DIVIDED
    for t in (4, 5):
        for d in (3, 4):
            a, b = pred[t] == d, truth[t] == d
            assert (a & b).sum() / (a | b).sum() > 0.85, (t, d)


def test_a_cell_that_shrinks_alone_does_not_divide():
    shape = (48, 72)
    truth = np.zeros((8,) + shape, np.int32)
    for t in range(8):
        truth[t][disc(shape, 38, 60, 5)] = 2
        truth[t][disc(shape, 20, 30, 7 if t < 4 else 4)] = 1  # area 149 -> 49 on frame 4
    tracker, pred, oracle = track(truth, TrackingParams(every=0, min_area=10), {})
    assert tracker.parents == {} and ids_of(pred, truth, 1) == [1] * 8


def test_two_touching_daughters_in_one_mask_are_cut_at_the_waist():
    # the daughters touch on every frame after the division (never two pieces): only the
    # waist tells; the division is placed on the frame the mask became two lobes
    truth, lin = division_movie(touch=range(4, 10))
    tracker, pred, _ = track(truth, TrackingParams(every=0, min_area=10), lin)
    assert tracker.lineage().rows() == DIVIDED
    assert ids_of(pred, truth, 3) == [3] * 6 and ids_of(pred, truth, 4) == [4] * 6
    off, _, _ = track(truth, TrackingParams(every=0, min_area=10, division_max_neck=0, division_stretch=0), lin)
    assert off.parents == {}
    # the mask also stretched at once (round -> two discs side by side): that rule alone finds it too
    stretch_only, _, _ = track(truth, TrackingParams(every=0, min_area=10, division_max_neck=0), lin)
    assert stretch_only.lineage().rows() == DIVIDED


def test_a_cell_that_takes_a_waist_alone_is_left_whole():
    # a cell that was never round (two lobes from its first frame on): no frame shows the
    # mother as one cell, so no division, and (a waist turned down) no second track either
    shape = (48, 72)
    truth = np.zeros((8,) + shape, np.int32)
    for t in range(8):
        truth[t][disc(shape, 20, 25, 5) | disc(shape, 20, 35, 5)] = 1
    tracker, pred, _ = track(truth, TrackingParams(every=0, min_area=10, division_lookback=4), {})
    assert tracker.parents == {} and ids_of(pred, truth, 1) == [1] * 8 and set(np.unique(pred)) == {0, 1}


def test_a_daughter_does_not_divide_again_within_a_cycle():
    from napari_sam.engine.auto.tracking_lineage import LineageBook

    for cycle, first_allowed in ((10, 14), (0, 5)):
        book = LineageBook(TrackingParams(division_min_cycle=cycle))
        book.start(1, 0)
        book.seen.add(1)
        book.start(3, 4, parent=1)  # a daughter born on frame 4
        book.seen.add(3)
        assert [t for t in range(5, 20) if book.may_divide(3, t)][0] == first_allowed
        assert book.may_divide(1, 1)  # a track without a parent: from its second frame


def test_the_look_back_stops_at_an_oval_mother():
    # the mother is an oval as large as both daughters (elongated, so area and elongation
    # alone let the look-back walk through it); it has no waist: the division stays on 4
    truth, lin = division_movie()
    yy, xx = np.indices(truth.shape[1:])
    for t in range(4):
        truth[t][truth[t] == 1] = 0
        truth[t][((yy - 20) / 5.5) ** 2 + ((xx - 30) / 10.5) ** 2 <= 1] = 1
    params = dict(every=0, min_area=10, division_max_neck=0)
    on, _, _ = track(truth, TrackingParams(**params, division_back_neck=0.9), lin)
    off, _, _ = track(truth, TrackingParams(**params, division_back_neck=1.0), lin)
    assert on.lineage().rows() == DIVIDED
    assert off.lineage()[3].begin < 4  # without the waist check: placed too early
