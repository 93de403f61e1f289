"""Segment-everything building blocks with constructed numbers, and the labels rule.

NMS, boxes, stability, crop boxes, grids and RLE are checked against the official helpers
(``segment_anything.utils.amg``, torchvision's NMS) on constructed inputs; the small-region
clean-up on box patches against the same rule on the full image.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam.engine.masks import ops as mask_ops
from napari_sam.engine.auto.records import MaskRecord, _fill_holes, clean_records, records_to_labels
from napari_sam.engine.auto.segmenter import AutomaticParams

amg = pytest.importorskip("segment_anything.utils.amg")
tv_ops = pytest.importorskip("torchvision.ops")


def _boxes(n, seed, size=100):
    g = torch.Generator().manual_seed(seed)
    xy = torch.randint(0, size, (n, 2), generator=g)
    wh = torch.randint(1, 40, (n, 2), generator=g)
    return torch.cat([xy, xy + wh], 1).float()


@pytest.mark.parametrize("thresh", [0.3, 0.7, 0.9])
def test_nms_equals_torchvision(thresh):
    boxes = _boxes(300, 1)
    scores = torch.rand(300, generator=torch.Generator().manual_seed(2))
    assert torch.equal(mask_ops.nms(boxes, scores, thresh), tv_ops.nms(boxes, scores, thresh))
    # tied scores (the crop-layer NMS scores every mask of a crop alike): input order wins
    tied = torch.tensor([1.0, 0.5, 0.25])[torch.arange(300) % 3]
    assert torch.equal(mask_ops.nms(boxes, tied, thresh), tv_ops.nms(boxes, tied, thresh))


def test_boxes_stability_grids_crops_equal_official():
    g = torch.Generator().manual_seed(3)
    masks = torch.rand(6, 37, 53, generator=g) > 0.97
    masks[2] = False  # empty -> zeros
    assert torch.equal(mask_ops.masks_to_boxes(masks), amg.batched_mask_to_box(masks))
    logits = torch.randn(5, 40, 30, generator=g) * 3
    assert torch.equal(mask_ops.stability_score(logits, 0.0, 1.0), amg.calculate_stability_score(logits, 0.0, 1.0))
    for n, layers, down in [(32, 0, 1), (16, 2, 2), (7, 1, 1)]:
        ours = mask_ops.layer_grids(n, layers, down)
        ref = amg.build_all_layer_point_grids(n, layers, down)
        assert all(np.array_equal(a, b) for a, b in zip(ours, ref, strict=True))
    for hw, layers, ratio in [((200, 240), 1, 512 / 1500), ((1000, 700), 2, 0.2), ((64, 64), 3, 0.5)]:
        boxes, idx = amg.generate_crop_boxes(hw, layers, ratio)
        assert mask_ops.crop_boxes(hw, layers, ratio) == [(tuple(b), i) for b, i in zip(boxes, idx)]
    bx = torch.tensor([[0, 0, 10, 10], [25, 30, 90, 95], [110, 0, 150, 50], [5, 60, 30, 80]])
    crop, whole = [0, 0, 100, 100], [0, 0, 200, 150]
    assert torch.equal(mask_ops.near_crop_edge(bx, tuple(crop), (150, 200)), amg.is_box_near_crop_edge(bx, crop, whole))


def test_rle_round_trip_equals_official():
    g = torch.Generator().manual_seed(4)
    masks = torch.rand(3, 17, 23, generator=g) > 0.5
    masks[1] = True
    for m, ref in zip(masks, amg.mask_to_rle_pytorch(masks)):
        rle = mask_ops.rle_encode(m.numpy())
        assert rle == ref
        assert np.array_equal(mask_ops.rle_decode(rle), m.numpy())


def _full_rule(mask, min_area, mode):
    """The official rule written directly on the full image (scipy labels, 8-connected)."""
    from scipy import ndimage

    work = ~mask if mode == "holes" else mask
    lab, n = ndimage.label(work, structure=np.ones((3, 3)))
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    small = [i for i in range(1, n + 1) if sizes[i] < min_area]
    if mode == "holes":
        return mask | np.isin(lab, small)
    keep = [i for i in range(1, n + 1) if i not in small] or [int(np.argmax(sizes[1:])) + 1]
    return np.isin(lab, keep)


def _record(mask):
    ys, xs = np.nonzero(mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
    return MaskRecord(box, mask[box[1]:box[3] + 1, box[0]:box[2] + 1].copy(), 0.9, 0.95, (0.0, 0.0), (0, 0, 60, 50))


@pytest.mark.parametrize("seed", range(6))
def test_hole_filling_on_patches_equals_full_image(seed):
    rng = np.random.default_rng(seed)
    mask = np.zeros((50, 60), bool)
    y0, x0 = rng.integers(0, 20), rng.integers(0, 25)
    if seed == 4:
        y0, x0 = 0, 0  # box at the image corner / spanning
    mask[y0:y0 + 30, x0:x0 + 35] = rng.random((30, 35)) > 0.25
    if seed == 5:
        mask[:, :] = rng.random((50, 60)) > 0.3  # box spans the image
    for area in (3, 10, 40):
        r, changed = _fill_holes(_record(mask), mask.shape, area)
        expected = _full_rule(mask, area, "holes")
        assert np.array_equal(r.mask(mask.shape), expected)
        assert changed == (not np.array_equal(expected, mask))
        islands = mask_ops.remove_small_regions(mask, area, "islands")[0]
        assert np.array_equal(islands, _full_rule(mask, area, "islands"))


def test_clean_records_fills_drops_and_prefers_untouched():
    a = np.zeros((40, 40), bool)
    a[5:20, 5:20] = True
    a[10, 10] = False  # a 1-pixel hole
    a[30, 30] = True  # a 1-pixel island
    b = np.zeros((40, 40), bool)
    b[5:20, 5:20] = True  # same object, clean
    out = clean_records([_record(a), _record(b)], (40, 40), min_area=4, nms_thresh=0.7)
    assert len(out) == 1 and out[0].box == (5, 5, 19, 19) and out[0].area == 225


def test_labels_rule_quality_wins_and_fragments_go():
    big = np.zeros((30, 30), bool)
    big[0:20, 0:20] = True
    small = np.zeros((30, 30), bool)
    small[15:25, 15:25] = True
    sliver = np.zeros((30, 30), bool)
    sliver[0:10, 18:21] = True  # 30 pixels, 10 of them outside the big mask
    r_big = _record(big)
    r_small = _record(small)
    r_small.predicted_iou = 0.99  # quality 0.99 * 0.95 > 0.9 * 0.95
    r_sliver = _record(sliver)
    r_sliver.predicted_iou = 0.5
    labels = records_to_labels([r_big, r_small, r_sliver], (30, 30), min_area=12)
    assert labels.dtype == np.int32
    assert (labels == 1).sum() == 100  # the better mask keeps all its pixels
    assert (labels == 2).sum() == 400 - 25  # the other loses the overlap
    assert set(np.unique(labels)) == {0, 1, 2}  # the sliver keeps 10 free pixels < 12: dropped


def test_labels_rule_a_fragment_grows_to_its_whole_object():
    """A half-nucleus painted first (higher quality) grows to the whole nucleus that holds it;
    a mask over two painted objects does not merge them."""
    whole = np.zeros((30, 30), bool)
    whole[2:12, 2:12] = True
    half = np.zeros((30, 30), bool)
    half[2:12, 2:7] = True
    other = np.zeros((30, 30), bool)
    other[2:12, 14:24] = True
    both = whole | other
    both[5:8, 12:14] = True  # a bridge: the two as one mask
    r_half, r_whole, r_other, r_both = (_record(m) for m in (half, whole, other, both))
    r_half.predicted_iou, r_whole.predicted_iou, r_other.predicted_iou, r_both.predicted_iou = 0.99, 0.9, 0.95, 0.8
    labels = records_to_labels([r_whole, r_half, r_other, r_both], (30, 30), min_area=4)
    assert (labels == 1).sum() == 100 and (labels[whole] == 1).all()  # one label, the whole nucleus
    assert (labels == 2).sum() == 100 and (labels[other] == 2).all()
    assert (labels == 3).sum() == 6 and set(np.unique(labels)) == {0, 1, 2, 3}  # the bridge's free pixels
    split = records_to_labels([r_whole, r_half], (30, 30), min_area=4, contained=1.01)  # rule off
    assert (split == 1).sum() == 50 and (split == 2).sum() == 50


def test_params_validation_and_official_defaults():
    assert AutomaticParams.official("sam1").pred_iou_thresh == 0.88
    assert AutomaticParams.official("sam2").pred_iou_thresh == 0.8
    with pytest.raises(ValueError):
        AutomaticParams(points_per_side=0)
    with pytest.raises(ValueError):
        AutomaticParams(points_per_side=4, crop_n_layers=3, crop_n_points_downscale_factor=2)


@pytest.fixture(scope="module")
def small_sam2():
    from conftest import perturb_

    from napari_sam.models.sam2 import build_sam2, reduced_config

    torch.manual_seed(0)
    return perturb_(build_sam2(reduced_config("2.1")).eval(), seed=3)


def test_generate_labels_progress_features_and_cancel(small_sam2):
    from napari_sam.data import synthetic
    from napari_sam.engine.auto.segmenter import AutomaticSegmenter, encode
    from napari_sam.engine.image.preprocess import to_uint8_rgb

    image = synthetic.nuclei_2d(shape=(96, 128), n_objects=6, seed=2).image  # uint16
    seg = AutomaticSegmenter(small_sam2, points_per_side=6, points_per_batch=10, pred_iou_thresh=0.0,
                             stability_score_thresh=0.0, min_mask_region_area=4, max_mask_fraction=1.0)
    calls = []
    labels = seg.generate(image, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(i, 4) for i in range(1, 5)]  # 36 points in batches of 10
    assert labels.shape == (96, 128) and labels.dtype == np.int32
    ids = np.unique(labels[labels > 0])
    assert ids.tolist() == list(range(1, len(ids) + 1)) and len(ids) >= 1
    # precomputed features of the same 8-bit image give the same records
    rgb = to_uint8_rgb(image)
    feats, _ = encode(small_sam2, rgb)
    again = seg.generate(rgb, features={k: v.numpy() for k, v in feats.items()})
    assert np.array_equal(again, labels)

    def stop(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        seg.generate(image, progress=stop)


def test_a_segmenter_leaves_the_process_allocator_alone(small_sam2, monkeypatch):
    """Allocator tuning changes the whole napari process: only an explicit call may do it."""
    from napari_sam.engine import malloc_tuning
    from napari_sam.engine.auto.segmenter import AutomaticSegmenter

    monkeypatch.setattr(malloc_tuning, "_applied", None)  # not tried yet in this process
    seg = AutomaticSegmenter(small_sam2, points_per_side=2, points_per_batch=4)
    seg.generate(np.zeros((32, 32), np.uint8))
    assert malloc_tuning._applied is None
