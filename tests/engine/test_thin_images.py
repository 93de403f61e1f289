"""Thin images (5000 x 2 strips, single rows and columns, one pixel): SAM 1 resizes the long
side to the model's input size and used to round the short side to 0 px, which PIL refused.
Masks come back at the image's own size, for SAM 1 and for the bundled SAM 2 model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_sam as ns
from napari_sam.engine.image.preprocess import preprocess_sam1, sam1_resized_shape
from napari_sam.models.sam1 import Sam1Config, build_sam1

SHAPES = [(5000, 2), (2, 5000), (1, 700), (700, 1), (1, 1), (3, 2)]


@pytest.fixture(scope="module")
def sam1_model():
    torch.manual_seed(0)
    cfg = Sam1Config(encoder_embed_dim=96, encoder_depth=2, encoder_num_heads=2,
                     encoder_global_attn_indexes=(1,), image_size=320)
    return build_sam1(cfg).eval()


@pytest.fixture(scope="module")
def embedded_model():
    return ns.load_model("embedded", device="cpu")


def _strip(h, w, seed=0):
    img = np.random.default_rng(seed).integers(0, 100, (h, w), dtype=np.uint16)
    img[h // 4 : max(h // 4 + 1, 3 * h // 4), w // 4 : max(w // 4 + 1, 3 * w // 4)] += 900
    return img


@pytest.mark.parametrize("hw", [(5000, 2), (2, 5000), (1, 4000), (4000, 1), (1, 1), (1023, 1)])
def test_sam1_resize_keeps_at_least_one_pixel(hw):
    nh, nw = sam1_resized_shape(*hw, 1024)
    assert max(nh, nw) == 1024 and min(nh, nw) >= 1
    x = preprocess_sam1(np.zeros((*hw, 3), np.uint8), 1024)
    assert x.shape == (1, 3, 1024, 1024) and torch.isfinite(x).all()


def test_sam1_resize_unchanged_where_it_worked():
    """The official rounding, int(x * scale + 0.5), wherever it gives at least one pixel."""
    assert sam1_resized_shape(300, 500, 1024) == (614, 1024)
    assert sam1_resized_shape(5000, 3, 1024) == (1024, 1)
    assert sam1_resized_shape(517, 211, 320) == (320, 131)


def _check(pred, h, w):
    img = _strip(h, w)
    pred.set_image(img)
    res = pred.predict(points=[[(w - 1) / 2, (h - 1) / 2]], labels=[1])
    assert res.masks.shape == (3, h, w) and res.masks.dtype == np.bool_
    assert np.isfinite(res.scores).all() and np.isfinite(res.logits).all()
    box = pred.predict(box=[0, 0, w - 1, h - 1], multimask=False)
    assert box.masks.shape == (1, h, w)
    return res


@pytest.mark.parametrize("hw", SHAPES)
def test_sam1_predictor_on_thin_images(sam1_model, hw):
    _check(ns.ImagePredictor(sam1_model), *hw)


@pytest.mark.parametrize("hw", SHAPES)
def test_embedded_sam2_predictor_on_thin_images(embedded_model, hw):
    _check(ns.ImagePredictor(embedded_model), *hw)


def test_sam1_thin_strip_mask_follows_the_logits(sam1_model):
    """The 1-px-wide model input maps back to the strip's 2 columns: upscaling the kept
    column of low-res logits by hand gives the same masks."""
    pred = ns.ImagePredictor(sam1_model)
    h, w = 5000, 2
    pred.set_image(_strip(h, w))
    res = pred.predict(points=[[0.5, 2500.0]], labels=[1])
    s = sam1_model.image_size
    ih, iw = sam1_resized_shape(h, w, s)
    assert (ih, iw) == (320, 1)
    up = torch.nn.functional.interpolate(torch.from_numpy(res.logits)[None], (s, s), mode="bilinear",
                                         align_corners=False)[..., :ih, :iw]
    up = torch.nn.functional.interpolate(up, (h, w), mode="bilinear", align_corners=False)[0]
    np.testing.assert_array_equal(res.masks, (up > sam1_model.mask_threshold).numpy())
    assert (res.masks[:, :, 0] == res.masks[:, :, 1]).all()  # both columns come from one input column
