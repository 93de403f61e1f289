"""ImagePredictor end to end (numpy image -> masks at the image's size) vs the official
``SamPredictor`` and ``SAM2ImagePredictor`` on the same random weights; and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import max_rel_err

import napari_sam as ns
from napari_sam.models.sam1 import Sam1Config, build_sam1
from napari_sam.models.sam2 import reduced_config

TOL = 1e-4
H, W = 150, 230  # non-square: exercises resize, padding and the crop on the way back


def _image(seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 120, (H, W, 3), dtype=np.uint8)
    img[40:90, 60:140] = (230, 200, 210)
    return img


CASES = {
    "one point": dict(points=[[100.0, 60.0]], labels=[1]),
    "pos+neg points": dict(points=[[100.0, 60.0], [20.0, 20.0], [130.0, 80.0]], labels=[1, 0, 1]),
    "box": dict(box=[55.0, 35.0, 145.0, 95.0]),
    "points+box": dict(points=[[100.0, 60.0], [10.0, 140.0]], labels=[1, 0], box=[55.0, 35.0, 145.0, 95.0]),
}


@pytest.fixture(scope="module")
def sam1_pair():
    from models.test_sam1_parity import official_sam
    from segment_anything import SamPredictor

    from conftest import perturb_

    torch.manual_seed(0)
    ref = perturb_(official_sam(320, 96, 2, 2, (1,)), seed=3)
    ours = build_sam1(Sam1Config(encoder_embed_dim=96, encoder_depth=2, encoder_num_heads=2,
                                 encoder_global_attn_indexes=(1,), image_size=320))
    ours.load_state_dict(ref.state_dict(), strict=True)
    official = SamPredictor(ref)
    official.set_image(_image())
    pred = ns.ImagePredictor(ours.eval())
    pred.set_image(_image())
    return official, pred


@pytest.fixture(scope="module", params=["2.0", "2.1"])
def sam2_pair(request):
    from models.test_sam2_reference import paired_models
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    cfg = reduced_config(request.param)
    ref, ours = paired_models(cfg, seed=2)
    official = SAM2ImagePredictor(ref)
    s = cfg.image_size
    official._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]
    official.set_image(_image())
    pred = ns.ImagePredictor(ours.eval())
    pred.set_image(_image())
    return official, pred


def _compare(official, pred, case, multimask, mask_from=None):
    kw = dict(CASES[case])
    ref_kw = {"point_coords": np.asarray(kw["points"]) if "points" in kw else None,
              "point_labels": np.asarray(kw["labels"]) if "labels" in kw else None,
              "box": np.asarray(kw["box"]) if "box" in kw else None}
    if mask_from is not None:
        kw["mask_logits"] = ref_kw["mask_input"] = mask_from
    with torch.no_grad():
        masks, scores, logits = official.predict(multimask_output=multimask, **ref_kw)
    res = pred.predict(multimask=multimask, **kw)
    assert res.masks.shape == masks.shape == (3 if multimask else 1, H, W)
    assert res.masks.dtype == bool
    agree = float((res.masks == masks).mean())
    assert agree >= 0.999, f"{case}: masks agree on {agree:.4%}"
    errs = (max_rel_err(res.logits, logits), max_rel_err(res.scores, scores))
    assert max(errs) <= TOL, f"{case}: logits/scores rel err {errs}"
    return res


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("case", list(CASES))
def test_sam1_predictor_equals_official(sam1_pair, case, multimask):
    _compare(*sam1_pair, case, multimask)


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("case", list(CASES))
def test_sam2_predictor_equals_official(sam2_pair, case, multimask):
    res = _compare(*sam2_pair, case, multimask)
    assert res.object_scores is not None and res.object_scores.shape == (1,)


@pytest.mark.parametrize("family", ["sam1", "sam2"])
def test_mask_input_round_trip_equals_official(sam1_pair, sam2_pair, family):
    official, pred = sam1_pair if family == "sam1" else sam2_pair
    first = pred.predict(**CASES["one point"])
    _compare(official, pred, "pos+neg points", False, mask_from=first.logits[np.argmax(first.scores)][None])


def test_embedding_round_trip(sam1_pair):
    _, pred = sam1_pair
    emb = pred.embedding()
    assert set(emb) == {"image_embed"} and emb["image_embed"].shape == (1, 256, 20, 20)
    before = pred.predict(**CASES["box"])
    other = ns.ImagePredictor(pred.model)
    other.set_embedding(emb, (H, W))
    after = other.predict(**CASES["box"])
    np.testing.assert_array_equal(before.logits, after.logits)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(), "no prompt"),
        (dict(points=[[10, 10]], labels=[1, 0]), "one entry per point"),
        (dict(points=[[10, 10]]), "give both"),
        (dict(points=[[W + 5, 10]], labels=[1]), "outside"),
        (dict(points=[[10, -3]], labels=[1]), "outside"),
        (dict(points=[[np.nan, 3]], labels=[1]), "NaN"),
        (dict(points=[[10, 10]], labels=[2]), "1 \\(foreground\\) or 0"),
        (dict(points=[10, 10], labels=[1]), "\\(N, 2\\)"),
        (dict(box=[50, 10, 20, 40]), "x0 <= x1"),
        (dict(box=[W + 10, 0, W + 20, 10]), "entirely outside"),
        (dict(box=[1, 2, 3]), "x0, y0, x1, y1"),
        (dict(mask_logits=np.zeros((64, 64))), "low-resolution"),
    ],
)
def test_bad_prompts_are_clear_errors(sam1_pair, kw, match):
    _, pred = sam1_pair
    with pytest.raises(ValueError, match=match):
        pred.predict(**kw)


def test_box_partly_outside_is_clipped(sam1_pair):
    _, pred = sam1_pair
    inside = pred.predict(box=[55.0, 35.0, W - 1.0, H - 1.0])
    partly = pred.predict(box=[55.0, 35.0, W + 40.0, H + 40.0])
    np.testing.assert_array_equal(inside.logits, partly.logits)


def test_predict_before_set_image():
    model = build_sam1(Sam1Config(encoder_embed_dim=32, encoder_depth=1, encoder_num_heads=1,
                                  encoder_global_attn_indexes=(0,), image_size=64))
    with pytest.raises(RuntimeError, match="set_image"):
        ns.ImagePredictor(model).predict(points=[[1, 1]], labels=[1])


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.int16, bool])
def test_any_dtype_image(sam1_pair, dtype):
    _, pred = sam1_pair
    img = _image()[..., 0].astype(dtype)
    if dtype == np.float32:
        img[0, :5] = np.nan
    pred.set_image(img)
    res = pred.predict(points=[[100, 60]], labels=[1])
    assert res.masks.shape == (3, H, W) and np.isfinite(res.logits).all()
    pred.set_image(_image())  # leave the shared fixture as it was


def _differs_in_float32(points, w, h, size):
    """Points whose model-input coordinates differ between float64 scaling (x * size / w)
    and SAM 2's float32 rule (x / w * size)."""
    f64 = (points * np.array([size / w, size / h])).astype(np.float32)
    f32 = (points.astype(np.float32) / np.array([w, h], np.float32)) * np.float32(size)
    return points[(f64 != f32).any(1)]


def test_sam2_clicks_reach_the_decoder_as_the_official_predictor_scales_them(sam2_pair):
    """SAM2ImagePredictor scales clicks and boxes in float32 (``SAM2Transforms``): x / w * S.
    predict must hand the decoder exactly those coordinates (not float64 x * (S / w))."""
    from sam2.utils.transforms import SAM2Transforms

    _, pred = sam2_pair
    s = pred.image_size
    grid = np.stack(np.meshgrid(np.arange(0.25, W - 1, 7.3), np.arange(0.5, H - 1, 5.1)), -1).reshape(-1, 2)
    picked = _differs_in_float32(grid, W, H, s)[:4]
    assert len(picked) == 4, "no click where the two precisions differ: the test would prove nothing"
    official = SAM2Transforms(resolution=s, mask_threshold=0.0)
    box = np.array([picked[0][0], picked[0][1], picked[1][0] + 40.0, picked[1][1] + 30.0]).clip(0, [W - 1, H - 1] * 2)
    for pt in picked:
        res = pred.predict(points=[pt], labels=[1], box=box)
        coords = official.transform_coords(torch.tensor(pt[None], dtype=torch.float32), normalize=True, orig_hw=(H, W))
        corners = official.transform_boxes(torch.tensor(box, dtype=torch.float32), normalize=True, orig_hw=(H, W))
        with torch.inference_mode():
            low = pred.model.decode(pred._feats, point_coords=coords[None], point_labels=torch.ones(1, 1, dtype=torch.int64),
                                    boxes=corners.reshape(1, 4), multimask=True,
                                    image_cache=pred._decoder_cache)[0]
        np.testing.assert_array_equal(res.logits, low[0].clamp(-32.0, 32.0).numpy())


def test_a_predictor_leaves_the_process_allocator_alone(sam1_pair, monkeypatch):
    """Allocator tuning changes the whole napari process: only an explicit call may do it."""
    from napari_sam.engine import malloc_tuning

    monkeypatch.setattr(malloc_tuning, "_applied", None)  # not tried yet in this process
    pred = ns.ImagePredictor(sam1_pair[1].model)
    pred.set_image(_image())
    pred.predict(**CASES["one point"])
    assert malloc_tuning._applied is None


def test_a_bfloat16_sam1_predictor_feeds_its_encoder_bfloat16():
    """One dtype rule for every encode path: the encoder input takes the model's dtype."""
    model = build_sam1(Sam1Config(encoder_embed_dim=32, encoder_depth=1, encoder_num_heads=1,
                                  encoder_global_attn_indexes=(0,), image_size=64)).to(torch.bfloat16)
    pred = ns.ImagePredictor(model)
    pred.set_image(_image())
    emb = pred.embedding()["image_embed"]
    assert emb.shape == (1, 256, 4, 4) and np.isfinite(emb).all()
    res = pred.predict(**CASES["one point"])
    assert res.masks.shape == (3, H, W) and res.logits.dtype == np.float32
