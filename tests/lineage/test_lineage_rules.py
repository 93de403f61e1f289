"""The tracking rules (split, gap closing, leaving) with masks and detectors right by
construction: the expected answers follow from how the scenes are drawn."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam.lineage import (LineageParams, LostTrack, expired, match_lost, separation, split_by_detections,
                                split_mask, touches_border, track_state)


def rect(shape, y0, y1, x0, x1):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def disc(shape, cy, cx, r):
    yy, xx = np.indices(shape)
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


# ------------------------------------------------------------------------------ divisions
def test_separation_counts_the_empty_pixels_between():
    a, b = rect((20, 40), 5, 15, 0, 10), rect((20, 40), 5, 15, 13, 23)  # columns 10-12 empty
    assert separation(a, b) == 3.0
    assert separation(a, rect((20, 40), 5, 15, 10, 12)) == 0.0  # side by side
    assert separation(a, np.zeros((20, 40), bool)) == float("inf")


def test_a_mask_in_two_separated_parts_of_comparable_size_splits():
    a, b = rect((20, 40), 5, 15, 0, 10), rect((20, 40), 6, 14, 13, 23)  # 100 and 80 px, 3 px apart
    speck = rect((20, 40), 0, 2, 30, 32)  # 4 px of debris, ignored
    out = split_mask(a | b | speck, LineageParams(split_min_separation=3))
    assert out is not None
    np.testing.assert_array_equal(out[0], a)
    np.testing.assert_array_equal(out[1], b)
    assert split_mask(a | b, LineageParams(split_min_separation=3.5)) is None  # not far enough apart


@pytest.mark.parametrize("parts, params", [
    ([(5, 15, 0, 10), (5, 15, 10, 20)], {}),  # one part (touching)
    ([(5, 15, 0, 10), (5, 8, 13, 20)], {}),  # 100 vs 21 px: 21 < split_min_area, debris
    ([(5, 15, 0, 10), (5, 11, 13, 20)], {"split_min_ratio": 0.45}),  # 100 vs 42 px: ratio 0.42
    ([(0, 10, 0, 10), (0, 10, 13, 23), (12, 20, 0, 10)], {}),  # three big parts: not one division
    ([(5, 15, 0, 10), (5, 15, 13, 23)], {"divisions": False}),
])
def test_no_split(parts, params):
    mask = np.zeros((20, 40), bool)
    for p in parts:
        mask |= rect((20, 40), *p)
    assert split_mask(mask, LineageParams(**params)) is None


def test_ratio_is_the_smaller_over_the_larger_area():
    mask = rect((20, 40), 5, 15, 0, 10) | rect((20, 40), 5, 11, 13, 20)  # 100 and 42 px
    assert split_mask(mask, LineageParams(split_min_ratio=0.42)) is not None
    assert split_mask(mask, LineageParams(split_min_ratio=0.43)) is None


def test_two_detections_inside_one_track_are_a_division():
    shape = (30, 40)
    mother = disc(shape, 15, 20, 12)
    det = np.zeros(shape, np.int32)
    det[disc(shape, 15, 14, 5)] = 4  # two touching daughters, both inside the mother
    det[disc(shape, 15, 24, 5) & (det == 0)] = 7
    det[disc(shape, 3, 3, 4)] = 9  # a neighbour mostly outside the mother
    assert split_by_detections(mother, det) == (4, 7)
    assert split_by_detections(mother, det, LineageParams(divisions=False)) is None
    one = np.where(det == 7, 0, det)
    assert split_by_detections(mother, one) is None
    with pytest.raises(ValueError, match="detections have shape"):
        split_by_detections(mother, det[:10])


# ------------------------------------------------------------------------------ gap closing
def test_a_lost_track_gets_its_id_back_with_an_exact_detector():
    """Cell 1 moves 2 px/frame to the right; the detector (right by construction) misses it
    on frames 3 and 4; on frame 5 it is found again, and a new cell 2 appears far away."""
    params = LineageParams(max_gap=3, max_gap_distance=10)
    path = {t: (20.0, 10.0 + 2 * t) for t in range(8)}
    lost = [LostTrack(1, last_frame=2, y=path[2][0], x=path[2][1])]
    assert match_lost(lost, {}, 3, params) == {}
    found = {11: path[5], 12: (50.0, 80.0)}  # detection ids as a detector numbers them
    assert match_lost(lost, found, 5, params) == {11: 1}
    assert expired(lost, 5, params) == [] and expired(lost, 6, params) == [] and expired(lost, 7, params) == [1]
    assert match_lost(lost, {11: path[7]}, 7, params) == {}  # lost 4 frames > max_gap
    assert match_lost(lost, {11: path[5]}, 2, params) == {}  # not after its last frame
    assert match_lost(lost, found, 5, LineageParams(max_gap=0)) == {}


def test_gap_closing_is_a_global_assignment_within_the_distance():
    """A at x=0 and B at x=10 were lost; detections at x=6 and x=15. Greedy nearest-first would
    give x=6 to B (4 px) and leave A unmatched (15 px > 8); the assignment matches both."""
    params = LineageParams(max_gap_distance=8)
    lost = [LostTrack(1, 4, 0.0, 0.0), LostTrack(2, 4, 0.0, 10.0)]
    assert match_lost(lost, {5: (0.0, 6.0), 6: (0.0, 15.0)}, 6, params) == {5: 1, 6: 2}
    assert match_lost(lost, {5: (0.0, 6.0)}, 6, params) == {5: 2}  # one detection: the nearer
    assert match_lost(lost, {5: (0.0, 30.0)}, 6, params) == {}  # too far from both


# ------------------------------------------------------------------------------ leaving
def test_touches_border():
    m = np.zeros((10, 10), bool)
    m[4, 1] = True
    assert not touches_border(m) and touches_border(m, margin=2)
    m[4, 9] = True
    assert touches_border(m)
    assert not touches_border(np.zeros((10, 10), bool))


def test_a_cell_leaving_through_the_border_ends():
    """A disc of radius 8 moves left 4 px/frame out of a 40x60 field: its mask is the part
    inside the field. The track is present while more than half of the disc is inside (centre
    x >= 0), and has left on the first frame with less (centre x = -2, frame 7)."""
    shape, params = (40, 60), LineageParams(leave_fraction=0.5)
    areas, states, prev = [], [], None
    for t in range(9):
        mask = disc(shape, 20, 26 - 4 * t, 8)  # centre x 26, 22, 18, 14, 10, 6, 2, -2, -6
        states.append(track_state(mask, areas, prev is not None and touches_border(prev), params))
        areas.append(int(mask.sum()))
        prev = mask
    full = areas[0]
    assert areas[:5] == [full] * 5  # the disc spans x >= 2: whole
    assert full > areas[5] > areas[6] > 0.5 * full > areas[7] > areas[8] > 0  # cut by the border
    assert states == ["present"] * 7 + ["left", "left"]


def test_empty_at_the_border_has_left_empty_inside_is_lost():
    empty = np.zeros((20, 20), bool)
    assert track_state(empty, [100, 100], was_at_border=True) == "left"
    assert track_state(empty, [100, 100], was_at_border=False) == "lost"
    small_inside = rect((20, 20), 8, 10, 8, 10)
    assert track_state(small_inside, [100, 100], False) == "present"  # small, but not at the border
    small_border = rect((20, 20), 8, 10, 0, 2)
    assert track_state(small_border, [100, 100], False) == "left"
    assert track_state(small_border, [], False) == "present"  # no history yet


@pytest.mark.parametrize("change, text", [
    ({"split_min_ratio": 0}, "split_min_ratio"),
    ({"max_gap": -1}, "max_gap"),
    ({"max_gap_distance": 0}, "max_gap_distance"),
    ({"leave_fraction": 1.5}, "leave_fraction"),
    ({"border_margin": 0}, "border_margin"),
    ({"split_min_area": 0}, "split_min_area"),
])
def test_bad_params_are_refused(change, text):
    with pytest.raises(ValueError, match=f"LineageParams: {text}"):
        LineageParams(**change)
