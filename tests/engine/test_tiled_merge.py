"""Touching labels that are one object join (engine/auto/merge.py), with the bundled model.

The point grid splits some nuclei into two labels, and tiles split more (the two pieces owned
by the tiles on either side of a core edge). A pair of touching labels joins when its union
is convex and the model, clicked at the union's centroid, gives the union back. Measured here
on generated nuclei against the ground truth: splits go, touching nuclei stay apart.
"""

from __future__ import annotations

import numpy as np
import pytest

import napari_sam as ns
from napari_sam.data.mosaic import mosaic
from napari_sam.engine.auto import tiled
from napari_sam.engine.auto import tiled_metrics as tm
from napari_sam.engine.auto.merge import UnionJudge, UnionRule, solidity, touching_pairs
from napari_sam.engine.auto.records import MaskRecord
from napari_sam.engine.auto.stitch import TileStitcher
from napari_sam.engine.image.preprocess import to_uint8_rgb
from napari_sam.engine.image.tiling import TileGrid


@pytest.fixture(scope="module")
def model():
    return ns.load_model("embedded")


def test_touching_pairs_count_the_pixel_edges_between_labels():
    labels = np.zeros((6, 8), np.int32)
    labels[1:5, 1:4] = 1  # 4 rows x 3 columns
    labels[1:5, 4:6] = 2  # touches 1 along 4 rows
    labels[5, 1:3] = 3  # touches 1 along 2 columns
    labels[0, 7] = 4  # touches nothing
    assert touching_pairs(labels) == {(1, 2): 4, (1, 3): 2}
    assert touching_pairs(labels, min_contact=3) == {(1, 2): 4}
    assert touching_pairs(np.zeros((3, 3), np.int32)) == {}


def test_solidity_tells_one_disk_from_two_touching_disks():
    yy, xx = np.mgrid[:60, :90]
    one = (yy - 30) ** 2 + (xx - 30) ** 2 <= 144
    two = one | ((yy - 30) ** 2 + (xx - 54) ** 2 <= 144)
    assert solidity(one) > 0.93
    assert 0.8 < solidity(two) < 0.9  # the notches either side of the contact
    assert solidity(np.ones((1, 5), bool)) == 1.0


def test_bad_rules_are_refused_with_the_value_named():
    with pytest.raises(ValueError, match="solidity"):
        UnionRule(solidity=1.5)
    with pytest.raises(ValueError, match="neck"):
        UnionRule(neck=-1)


def _split_and_joined(truth, labels):
    inner = tm.interior_ids(truth)
    return tm.split_ids(truth, labels, inner), tm.joined_ids(truth, labels, inner), tm.found(truth, labels) & inner


def test_untiled_opt_in_joins_the_models_split_nuclei_and_no_touching_pair():
    """One 256² scene (38 nuclei, 16 points a side): the grid alone splits 5 nuclei into two
    labels each; with ``join_touching=True`` 3 of them are one label again, no two nuclei share
    a label, and as many are found. The default (off when untiled) is the grid's labels."""
    model = ns.load_model("embedded")
    sample = mosaic((256, 256), scene=256, distinct=1, seed=5)
    plain = ns.AutomaticSegmenter(model, points_per_side=16).generate(sample.image)
    off = ns.AutomaticSegmenter(model, points_per_side=16, join_touching=False).generate(sample.image)
    on = ns.AutomaticSegmenter(model, points_per_side=16, join_touching=True).generate(sample.image)
    assert np.array_equal(plain, off)
    split0, joined0, found0 = _split_and_joined(sample.labels, plain)
    split1, joined1, found1 = _split_and_joined(sample.labels, on)
    print(f"split {sorted(split0)} -> {sorted(split1)}, joined {sorted(joined0)} -> {sorted(joined1)}")
    assert len(split0) >= 4 and len(split1) <= len(split0) - 3 and split1 <= split0
    assert not joined1 and len(found1) >= len(found0)
    ids = np.unique(on[on > 0])
    assert on.dtype == np.int32 and ids.tolist() == list(range(1, len(ids) + 1))
    # the labels are the grid's, joined, with bites taken back (growing over a few free pixels)
    assert ((on > 0) & (plain == 0)).sum() <= 0.02 * (plain > 0).sum()
    assert ((on == 0) & (plain > 0)).sum() == 0


def _record(mask: np.ndarray) -> MaskRecord:
    ys, xs = np.nonzero(mask)
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())
    return MaskRecord((x0, y0, x1, y1), mask[y0:y1 + 1, x0:x1 + 1].copy(), 0.9, 0.95,
                      (float(xs.mean()), float(ys.mean())), (0, 0, mask.shape[1], mask.shape[0]))


def test_a_nucleus_cut_in_two_at_a_core_edge_joins_and_its_touching_neighbours_stay_apart(model):
    """The tiling's split: two tiles (cores 96 px, halo 32) side by side over generated nuclei;
    each window's "masks" are the true nuclei it holds whole, except one nucleus across the core
    edge, given in both windows as its two halves (left of the edge, right of it): no view sees
    it whole, each half is owned on its side. Without a judge that nucleus stays two labels;
    with the model's judge on each window's real features it is one, and every other nucleus
    (touching ones included) keeps a label of its own."""
    sample = mosaic((160, 192), scene=256, distinct=1, seed=3)
    truth = sample.labels
    grid = TileGrid(truth.shape, (160, 96), (0, 32))
    ids = np.unique(truth[truth > 0])
    target = None
    for t in ids.tolist():
        ys, xs = np.nonzero(truth == t)
        if xs.min() < 92 and xs.max() > 100 and 8 < ys.mean() < 150:
            target = t
            break
    assert target is not None
    cut = (truth == target) & (np.arange(192)[None, :] < 96), (truth == target) & (np.arange(192)[None, :] >= 96)
    limits = tiled.image_contrast_limits(sample.image)
    seg = ns.AutomaticSegmenter(model)
    results = []
    for judge in (None, UnionJudge(model, seg.transform)):
        out = np.zeros(truth.shape, np.int32)
        stitcher = TileStitcher(grid, truth.shape, 25, judge=judge)
        for tile in grid:
            ys, xs = tile.outer_slices
            views = [truth[ys, xs] == t for t in ids.tolist() if t != target] + [c[ys, xs] for c in cut]
            records = [_record(v) for v in views if v.any()]
            feats = seg.transform.encode(to_uint8_rgb(sample.image[ys, xs], limits))
            stitcher.add(tile, records, out, features=feats)
        results.append(out)
    without, with_judge = results
    assert len(np.unique(without[truth == target])) == 2
    assert len(np.unique(with_judge[truth == target])) == 1 and np.array_equal(
        with_judge == with_judge[truth == target][0], truth == target)
    # the rest: the true nuclei painted whole by some tile each keep their own label
    painted = [t for t in ids.tolist() if t != target and (without[truth == t] > 0).all()]
    assert len(painted) >= 10
    for t in painted:
        k = np.unique(with_judge[truth == t])
        assert len(k) == 1 and np.array_equal(with_judge == k[0], truth == t), t


def test_joined_ids_names_the_true_objects_sharing_one_label():
    truth = np.zeros((10, 30), np.int32)
    truth[2:8, 1:7], truth[2:8, 7:13], truth[2:8, 20:26] = 1, 2, 3
    pred = np.zeros_like(truth)
    pred[2:8, 1:13] = 1  # nuclei 1 and 2 in one label
    pred[2:8, 20:23], pred[2:8, 23:26] = 2, 3  # nucleus 3 split, joined with nothing
    assert tm.joined_ids(truth, pred) == {1, 2}
    assert tm.joined_ids(truth, pred, ids={2, 3}) == {2}
    pred[2:5, 7:13] = 0  # the label holds only half of nucleus 2 now: still >= 50 %
    assert tm.joined_ids(truth, pred) == {1, 2}
    pred[2:6, 7:13] = 0
    assert tm.joined_ids(truth, pred) == set()
