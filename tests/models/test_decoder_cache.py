"""The decoder's image cache (prompt-independent work kept per image): the same outputs as
without it, filled once and reused, never used with a mask prompt or under autograd, and
emptied for other features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_sam as ns
from napari_sam.models.sam1 import Sam1Config, build_sam1
from napari_sam.models.sam2 import build_sam2, reduced_config


def _models():
    torch.manual_seed(0)
    sam1 = build_sam1(Sam1Config(encoder_embed_dim=64, encoder_depth=2, encoder_num_heads=2,
                                 encoder_global_attn_indexes=(1,), image_size=256)).eval()
    sam2 = build_sam2(reduced_config("2.1", image_size=256)).eval()
    return {"sam1": sam1, "sam2": sam2}


@pytest.fixture(scope="module", params=["sam1", "sam2"])
def model_and_feats(request):
    model = _models()[request.param]
    torch.manual_seed(1)
    with torch.inference_mode():
        feats = model.encode_image(torch.randn(1, 3, 256, 256))
    return model, feats


PROMPTS = [
    dict(point_coords=torch.tensor([[[60.0, 90.0]]]), point_labels=torch.tensor([[1]])),
    dict(point_coords=torch.tensor([[[60.0, 90.0], [200.0, 30.0]]]), point_labels=torch.tensor([[1, 0]])),
    dict(boxes=torch.tensor([[20.0, 30.0, 140.0, 160.0]])),
    # eight prompt sets in one batch (segment everything decodes like this)
    dict(point_coords=torch.rand(8, 1, 2) * 256, point_labels=torch.ones(8, 1, dtype=torch.int64)),
]


def test_cached_equals_uncached_and_fills_once(model_and_feats):
    model, feats = model_and_feats
    cache: dict = {}
    with torch.inference_mode():
        for i, kw in enumerate(PROMPTS):
            for multimask in (True, False):
                ref = model.decode(feats, multimask=multimask, **kw)
                got = model.decode(feats, multimask=multimask, image_cache=cache, **kw)
                for a, b in zip(ref, got):
                    torch.testing.assert_close(b, a, rtol=0, atol=1e-6)
            if i == 0:
                first = {k: v for k, v in cache.items() if torch.is_tensor(v)}
                assert {"keys", "key_pe", "k"} <= set(first)
    # filled on the first call, reused (not recomputed) afterwards
    for k, v in first.items():
        assert cache[k] is v


def test_not_used_with_a_mask_prompt_or_gradients(model_and_feats):
    model, feats = model_and_feats
    mask = torch.randn(1, 1, 64, 64)
    cache: dict = {}
    with torch.inference_mode():
        ref = model.decode(feats, mask_input=mask, **PROMPTS[0])
        got = model.decode(feats, mask_input=mask, image_cache=cache, **PROMPTS[0])
    assert cache == {}
    torch.testing.assert_close(got[0], ref[0], rtol=0, atol=1e-6)
    feats_grad = {k: v.clone() for k, v in feats.items()}
    out = model.decode(feats_grad, image_cache=cache, **PROMPTS[0])
    assert cache == {} and out[0].requires_grad


def test_other_features_empty_the_cache(model_and_feats):
    model, feats = model_and_feats
    other = {k: v + 1.0 for k, v in feats.items()}
    cache: dict = {}
    with torch.inference_mode():
        model.decode(feats, image_cache=cache, **PROMPTS[0])
        ref = model.decode(other, **PROMPTS[0])
        got = model.decode(other, image_cache=cache, **PROMPTS[0])
    torch.testing.assert_close(got[0], ref[0], rtol=0, atol=1e-6)


def test_predictor_new_image_new_cache():
    """A second image through one ImagePredictor gets its own masks, not the first's."""
    model = _models()["sam2"]
    rng = np.random.default_rng(0)
    a, b = rng.random((96, 128)), rng.random((96, 128))
    pred = ns.ImagePredictor(model)
    fresh = ns.ImagePredictor(model)
    pred.set_image(a)
    pred.predict(points=[[40, 50]], labels=[1])
    pred.set_image(b)
    fresh.set_image(b)
    got = pred.predict(points=[[40, 50]], labels=[1])
    ref = fresh.predict(points=[[40, 50]], labels=[1])
    np.testing.assert_allclose(got.logits, ref.logits, rtol=0, atol=1e-6)
