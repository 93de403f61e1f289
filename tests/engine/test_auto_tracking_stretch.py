"""A division under one convex mask (issue #17, division F1): the tracker's mask of a round cell
becomes, from one frame to the next, as large but twice as long as wide (two touching
daughters side by side, no waist), ``division_stretch`` (:mod:`napari_sam.engine.auto.tracking_stretch`).
Constructed movies, the detector and the session stand-in right by construction
(``LineageOracle`` of ``test_auto_tracking_lineage``); the rest is the real code."""

from __future__ import annotations

import numpy as np

from napari_sam.engine.auto.tracking import TrackingParams
from napari_sam.engine.auto.tracking_lookback import elongation
from napari_sam.engine.auto.tracking_stretch import axis_cut, stretched
from test_auto_tracking_lineage import disc, ids_of, track

SHAPE = (48, 72)
DIVIDED = [(1, 0, 3, 0), (2, 0, 9, 0), (3, 4, 9, 1), (4, 4, 9, 1)]  # cell 1 -> 3, 4 on frame 4


def stadium(shape, cy, cx, half, r):
    """Pixels within ``r`` of the segment (cy, cx - half) .. (cy, cx + half): a convex rod."""
    yy, xx = np.indices(shape)
    dx = np.clip(xx - cx, -half, half)
    return (yy - cy) ** 2 + (xx - cx - dx) ** 2 <= r * r


def ellipse(shape, cy, cx, ry, rx):
    yy, xx = np.indices(shape)
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def stretch_movie(T=10):
    """Cell 1 (a disc, r 8) divides on frame 4 into 3 and 4, the two halves of a rod as
    large: one convex piece on every frame after (never apart, no waist); cell 2 far away."""
    lab = np.zeros((T,) + SHAPE, np.int32)
    xx = np.indices(SHAPE)[1]
    for t in range(T):
        lab[t][disc(SHAPE, 38, 60, 5)] = 2
        if t < 4:
            lab[t][disc(SHAPE, 20, 30, 8)] = 1
        else:
            rod = stadium(SHAPE, 20, 30, 7, 5)
            lab[t][rod & (xx < 30)] = 3
            lab[t][rod & (xx >= 30)] = 4
    return lab, {3: 1, 4: 1}


def test_axis_cut_halves_a_rod_and_cuts_a_dumbbell_where_it_narrows():
    rod = stadium(SHAPE, 20, 30, 7, 5)
    a, b = axis_cut(rod)
    xx = np.indices(SHAPE)[1]
    assert (a | b).sum() == rod.sum() and not (a & b).any()
    assert {int(a.sum()), int(b.sum())} == {int((rod & (xx < 30)).sum()), int((rod & (xx >= 30)).sum())}
    # unequal daughters (r 7 and r 4) overlapping a little: the cut is at the narrowing,
    # not through the centroid; each part is mostly its own disc
    big, small = disc(SHAPE, 20, 24, 7), disc(SHAPE, 20, 34, 4)
    a, b = axis_cut(big | small)
    part_small = b if b.sum() < a.sum() else a
    assert (part_small & small).sum() / (part_small | small).sum() > 0.8
    assert axis_cut(rod, min_area=200) is None  # parts of ~116 px
    assert axis_cut(big | small, min_ratio=0.6) is None  # 1 : 3


def test_stretched_wants_a_sudden_change_of_shape_at_about_the_same_area():
    params = TrackingParams()
    round_cell, rod = disc(SHAPE, 20, 30, 8), stadium(SHAPE, 20, 30, 7, 5)
    assert elongation(rod) > 2 and rod.sum() / round_cell.sum() < 1.3
    assert stretched(round_cell, rod, params)
    assert not stretched(rod, rod, params)  # already long the frame before
    oval = ellipse(SHAPE, 20, 30, 6.5, 10)  # elongation ~1.5: a deformed cell, not two
    assert not stretched(round_cell, oval, params)
    assert not stretched(disc(SHAPE, 20, 30, 5), rod, params)  # area x 2.8: took a neighbour
    assert not stretched(round_cell, rod, TrackingParams(division_stretch=0))


def test_a_cell_that_divides_under_one_convex_mask_divides_on_the_true_frame():
    truth, lin = stretch_movie()
    tracker, pred, _ = track(truth, TrackingParams(every=0, min_area=10), lin)
    assert tracker.lineage().rows() == DIVIDED
    assert ids_of(pred, truth, 3) == [3] * 6 and ids_of(pred, truth, 4) == [4] * 6
    for t in range(4, 10):
        for d in (3, 4):
            got, true = pred[t] == d, truth[t] == d
            assert (got & true).sum() / (got | true).sum() > 0.9, (t, d)
    off, pred_off, _ = track(truth, TrackingParams(every=0, min_area=10, division_stretch=0), lin)
    assert off.parents == {} and ids_of(pred_off, truth, 3) == [1] * 6  # without the rule: one track


def test_a_cell_that_elongates_over_several_frames_does_not_divide():
    # the same cell stretches from round to 2:1 at a constant area, a little each frame
    truth = np.zeros((10,) + SHAPE, np.int32)
    for t in range(10):
        truth[t][disc(SHAPE, 38, 60, 5)] = 2
        s = 1.08 ** t  # elongation s**2: 1.0 .. 4.0, each frame x 1.17
        truth[t][ellipse(SHAPE, 20, 30, 8 / s, 8 * s)] = 1
    assert elongation(truth[9] == 1) > 3
    tracker, pred, _ = track(truth, TrackingParams(every=0, min_area=10), {})
    assert tracker.parents == {} and ids_of(pred, truth, 1) == [1] * 10 and set(np.unique(pred)) == {0, 1, 2}


def test_a_split_seen_later_is_placed_on_the_frame_the_mask_stretched():
    # an oval mother (elongated, as large as both daughters: the look-back alone walks
    # through it to her first frame and turns the split down); the daughters, one rod on
    # 4-6, part on 7: the division goes back to 4, where the mask stretched at once
    truth = np.zeros((10,) + SHAPE, np.int32)
    xx = np.indices(SHAPE)[1]
    for t in range(10):
        truth[t][disc(SHAPE, 38, 60, 5)] = 2
        if t < 4:
            truth[t][ellipse(SHAPE, 20, 30, 6.5, 9.5)] = 1
        elif t < 7:
            rod = stadium(SHAPE, 20, 30, 7, 5)
            truth[t][rod & (xx < 30)] = 3
            truth[t][rod & (xx >= 30)] = 4
        else:
            truth[t][disc(SHAPE, 20, 30 - 2 * t + 7, 5)] = 3
            truth[t][disc(SHAPE, 20, 30 + 2 * t - 7, 5)] = 4
    lin = {3: 1, 4: 1}
    tracker, pred, _ = track(truth, TrackingParams(every=0, min_area=10), lin)
    assert tracker.lineage().rows() == DIVIDED
    assert ids_of(pred, truth, 3) == [3] * 6 and ids_of(pred, truth, 4) == [4] * 6
    off, _, _ = track(truth, TrackingParams(every=0, min_area=10, division_stretch=0), lin)
    assert off.parents == {}  # walked back to the mother's first frame: turned down
