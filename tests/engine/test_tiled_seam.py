"""A label takes back the bite its neighbour's label holds of it (engine/auto/seam.py; step 7
of engine/auto/stitch.py before the joins; the untiled opt-in ``join_touching`` too).

The most common split of a crossing nucleus in the tiled labels (issue #12): a mask over its
neighbour reaches into it, is painted first, and the nucleus keeps only the rest: two labels.
"""

from __future__ import annotations

import numpy as np
import pytest

import napari_sam as ns
from napari_sam.data.mosaic import mosaic
from napari_sam.engine.auto import tiled_metrics as tm
from napari_sam.engine.auto.merge import UnionJudge, join_touching, merge_touching
from napari_sam.engine.auto.seam import BiteRule, carve, solidity
from napari_sam.engine.auto.tiled import image_contrast_limits
from napari_sam.engine.image.preprocess import to_uint8_rgb

YY, XX = np.mgrid[:64, :128]
DISK = (YY - 32) ** 2 + (XX - 66) ** 2 <= 100
NEIGHBOUR = (YY - 32) ** 2 + (XX - 45) ** 2 <= 100  # touches DISK's left side
BITE = DISK & ((YY - 32) ** 2 + (XX - 57) ** 2 <= 64)  # a lobe of DISK next to NEIGHBOUR


def _labels(*masks) -> np.ndarray:
    out = np.zeros(DISK.shape, np.int64)
    for k, m in enumerate(masks, start=1):
        out[m & (out == 0)] = k
    return out


def _areas(labels):
    return np.bincount(labels.ravel()).tolist()


def test_a_whole_view_takes_back_the_bite_and_leaves_the_neighbour_round():
    """Label 2 is the neighbour and a lobe of the disk (a bulge: solidity < 0.88), label 1 the
    rest of the disk. A convex view of the whole disk takes the lobe back: exactly it."""
    labels = _labels(DISK & ~BITE, NEIGHBOUR | BITE)
    assert 0.25 < BITE.sum() / DISK.sum() < 0.45 and solidity(labels == 2) < 0.88
    got = carve(labels, DISK, 1, 2, _areas(labels))
    assert got is not None and np.array_equal(got, BITE)


def test_a_view_reaching_into_a_round_neighbour_takes_nothing():
    """The neighbour is whole and round; a larger convex view of the disk holds 20 % of it:
    taking that would leave a notch (the neighbour less convex), so nothing is taken."""
    over = (YY - 32) ** 2 + (XX - 65) ** 2 <= 256
    labels = _labels(DISK, NEIGHBOUR)
    assert 0.15 < (over & NEIGHBOUR).sum() / NEIGHBOUR.sum() < 0.25
    assert carve(labels, over, 1, 2, _areas(labels)) is None


def test_carve_refuses_a_non_convex_view_a_third_label_and_a_bite_it_would_empty():
    labels = _labels(DISK & ~BITE, NEIGHBOUR | BITE)
    areas = _areas(labels)
    slot = DISK & ~((XX >= 62) & (np.abs(YY - 32) <= 2))  # a slot from the centre out: not convex
    assert solidity(slot) < 0.85 and carve(labels, slot, 1, 2, areas) is None
    third = _labels(DISK & ~BITE, NEIGHBOUR | BITE, (YY - 32) ** 2 + (XX - 80) ** 2 <= 100)
    assert carve(third, (YY - 32) ** 2 + (XX - 70) ** 2 <= 144, 1, 2, _areas(third)) is None
    assert carve(labels, DISK | NEIGHBOUR, 1, 2, areas) is None  # would take all of the neighbour
    assert carve(labels, np.zeros_like(DISK), 1, 2, areas) is None


@pytest.mark.parametrize("name,value", [("keep", 1.5), ("min_solidity", -0.1), ("gain", 2.0)])
def test_bad_bite_rules_are_refused_with_the_value_named(name, value):
    with pytest.raises(ValueError, match=name):
        BiteRule(**{name: value})


def test_join_touching_mends_a_bitten_nucleus_the_join_alone_leaves_split():
    """One 256² scene, 16 points a side: the grid splits 5 nuclei; joining convex unions alone
    mends 3 and leaves nucleus 25 split (its neighbour's mask holds a bite of it); with the bite
    taken back first it is one label, no two nuclei share a label and as many are found; the
    tiled path (one tile) gives the same labels."""
    model = ns.load_model("embedded")
    sample = mosaic((256, 256), scene=256, distinct=1, seed=5)
    seg = ns.AutomaticSegmenter(model, points_per_side=16)
    plain = seg.generate(sample.image)
    feats = seg.transform.encode(to_uint8_rgb(sample.image, image_contrast_limits(sample.image)))
    union_only = plain.copy()
    merge_touching(union_only, UnionJudge(model, seg.transform), feats)
    both = join_touching(plain, model, seg.transform, feats)
    truth, inner = sample.labels, tm.interior_ids(sample.labels)
    split_u, split_b = tm.split_ids(truth, union_only, inner), tm.split_ids(truth, both, inner)
    print(f"split: grid {sorted(tm.split_ids(truth, plain, inner))}, join {sorted(split_u)}, bites + join {sorted(split_b)}")
    assert 25 in split_u and 25 not in split_b and split_b < split_u
    assert not tm.joined_ids(truth, both, inner)
    assert len(tm.found(truth, both) & inner) >= len(tm.found(truth, union_only) & inner)
    ids = np.unique(both[both > 0])
    assert ids.tolist() == list(range(1, len(ids) + 1))
    # the tiled stitcher takes the same bites (step 7): one tile gives these labels exactly
    one_tile = ns.AutomaticSegmenter(model, points_per_side=16, tile_shape=(512, 512), halo=(64, 64))
    assert np.array_equal(one_tile.generate(sample.image), both)
