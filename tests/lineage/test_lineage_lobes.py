"""``neck_split``: a mask of two touching cells (two lobes and a waist) is cut at the waist;
one cell, round, oval or with a bump, is never cut."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam.lineage.lobes import neck_split


def disc(shape, cy, cx, r):
    yy, xx = np.indices(shape)
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def two_discs(d, r=8, shape=(48, 64)):
    """Two discs of radius ``r`` whose centres are ``d`` px apart along x (the truth: each
    pixel to the nearer centre)."""
    cx = shape[1] / 2
    a, b = disc(shape, 24, cx - d / 2, r), disc(shape, 24, cx + d / 2, r)
    xx = np.indices(shape)[1]
    return a | b, (a | b) & (xx < cx), (a | b) & (xx >= cx)


@pytest.mark.parametrize("d, neck", [(14, 0.57), (15, 0.47), (16, 0.34)])
def test_two_touching_discs_are_cut_at_the_waist(d, neck):
    mask, left, right = two_discs(d)
    half_width = np.sqrt(8.5 ** 2 - (d / 2) ** 2) / 8.5  # the waist's half-width over the radius
    # (8.5: a pixel disc of radius 8 reaches half a pixel further)
    assert abs(half_width - neck) < 0.02
    out = neck_split(mask, max_neck=0.7)
    assert out is not None
    a, b, measured = out
    assert abs(measured - half_width) < 0.25, measured  # levels in 0.5 px steps, pixel discs
    assert not (a & b).any() and ((a | b) == mask).all()
    for part, truth in ((a, left), (b, right)):  # a: the first in row-major order (left one here)
        assert (part & truth).sum() / (part | truth).sum() > 0.9


def test_the_neck_limit_decides():
    mask, _, _ = two_discs(12)  # waist ~0.7 of the radius
    assert neck_split(mask, max_neck=0.5) is None
    assert neck_split(mask, max_neck=0.8) is not None


@pytest.mark.parametrize("shape_kind", ["disc", "ellipse", "bump", "small_lobe"])
def test_one_cell_is_never_cut(shape_kind):
    shape = (48, 64)
    yy, xx = np.indices(shape)
    if shape_kind == "disc":
        mask = disc(shape, 24, 32, 10)
    elif shape_kind == "ellipse":  # 2.2 : 1, no waist
        mask = ((yy - 24) / 7) ** 2 + ((xx - 32) / 15.4) ** 2 <= 1
    elif shape_kind == "bump":  # a cell with a knob: a second peak, far too small for a cell
        mask = disc(shape, 24, 30, 10) | disc(shape, 24, 42, 3)
    else:  # a lobe of 28 px against 314: not comparable (min_ratio 0.4)
        mask = disc(shape, 24, 28, 10) | disc(shape, 24, 41, 3.2)
    assert neck_split(mask, max_neck=0.7) is None


def test_only_the_largest_piece_counts_and_bad_input():
    mask, _, _ = two_discs(15)
    speck = np.zeros_like(mask)
    speck[2:5, 2:5] = True
    a, b, _ = neck_split(mask | speck, max_neck=0.7)
    assert not ((a | b) & speck).any()
    assert neck_split(np.zeros((10, 10), bool)) is None
    assert neck_split(np.ones((4, 5, 6), bool)) is None  # 2D only
