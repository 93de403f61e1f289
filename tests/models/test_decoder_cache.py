"""The decoder's image cache (prompt-independent work kept per image): the same outputs as
without it, filled once and reused, never used with a mask prompt or under autograd, and
replaced for other features — recognised by identity, not by memory address."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_sam as ns
from napari_sam.models.decoder import DecoderCache
from napari_sam.models.decoder.image_cache import LEGACY_KEY
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


def _decoder(model):
    return getattr(model, "mask_decoder", None) or model.sam_mask_decoder


def test_cached_equals_uncached_and_fills_once(model_and_feats):
    model, feats = model_and_feats
    cache = DecoderCache()
    with torch.inference_mode():
        for i, kw in enumerate(PROMPTS):
            for multimask in (True, False):
                ref = model.decode(feats, multimask=multimask, **kw)
                got = model.decode(feats, multimask=multimask, image_cache=cache, **kw)
                for a, b in zip(ref, got):
                    torch.testing.assert_close(b, a, rtol=0, atol=1e-6)
            if i == 0:
                work = cache.work_for(feats, _decoder(model))
                first = (work.keys, work.key_pe, work.first_block.k)
                assert cache.filled and all(torch.is_tensor(t) for t in first)
                assert (work.skips is not None) == (model.family == "sam2")
    # filled on the first call, reused (not recomputed) afterwards
    with torch.inference_mode():
        work = cache.work_for(feats, _decoder(model))
    assert all(a is b for a, b in zip((work.keys, work.key_pe, work.first_block.k), first))


def test_a_plain_dict_per_image_still_works(model_and_feats):
    """Callers written before DecoderCache pass a dict per image: it holds one."""
    model, feats = model_and_feats
    cache: dict = {}
    with torch.inference_mode():
        ref = model.decode(feats, **PROMPTS[1])
        got = model.decode(feats, image_cache=cache, **PROMPTS[1])
        again = model.decode(feats, image_cache=cache, **PROMPTS[1])
    assert isinstance(cache[LEGACY_KEY], DecoderCache) and cache[LEGACY_KEY].filled
    for a, b, c in zip(ref, got, again):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6)
        torch.testing.assert_close(c, a, rtol=0, atol=1e-6)
    with pytest.raises(TypeError, match="DecoderCache"):
        model.decode(feats, image_cache=[], **PROMPTS[0])


def test_not_used_with_a_mask_prompt_or_gradients(model_and_feats):
    model, feats = model_and_feats
    mask = torch.randn(1, 1, 64, 64)
    cache = DecoderCache()
    with torch.inference_mode():
        ref = model.decode(feats, mask_input=mask, **PROMPTS[0])
        got = model.decode(feats, mask_input=mask, image_cache=cache, **PROMPTS[0])
    assert not cache.filled
    torch.testing.assert_close(got[0], ref[0], rtol=0, atol=1e-6)
    feats_grad = {k: v.clone() for k, v in feats.items()}
    out = model.decode(feats_grad, image_cache=cache, **PROMPTS[0])
    assert not cache.filled and out[0].requires_grad


def test_other_features_or_another_model_replace_the_cache(model_and_feats):
    model, feats = model_and_feats
    other = {k: v + 1.0 for k, v in feats.items()}
    twin = _models()[model.family]  # the same architecture, other weights
    with torch.no_grad():
        for p in twin.parameters():
            p.add_(0.01)
    cache = DecoderCache()
    with torch.inference_mode():
        model.decode(feats, image_cache=cache, **PROMPTS[0])
        ref = model.decode(other, **PROMPTS[0])
        got = model.decode(other, image_cache=cache, **PROMPTS[0])
        torch.testing.assert_close(got[0], ref[0], rtol=0, atol=1e-6)
        ref = twin.decode(other, **PROMPTS[0])
        got = twin.decode(other, image_cache=cache, **PROMPTS[0])
    torch.testing.assert_close(got[0], ref[0], rtol=0, atol=1e-6)
    cache.clear()
    assert not cache.filled


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


def test_other_features_at_a_reused_address_empty_the_cache(model_and_feats):
    """Features of another image that land in the same memory (a reused read buffer, a
    freed tensor's storage handed out again) are not taken for the cached image's."""
    model, feats = model_and_feats
    other = {k: v + 1.0 for k, v in feats.items()}
    buffers = {k: np.empty(tuple(v.shape), np.float32) for k, v in feats.items()}

    def read_into_buffers(source):  # a new tensor on the same memory, as a frame reader may do
        for k, v in source.items():
            buffers[k][...] = v.numpy()
        return {k: torch.from_numpy(b) for k, b in buffers.items()}

    cache = DecoderCache()
    with torch.inference_mode():
        first = read_into_buffers(feats)
        model.decode(first, image_cache=cache, **PROMPTS[0])
        second = read_into_buffers(other)
        assert second["image_embed"].data_ptr() == first["image_embed"].data_ptr()
        ref = model.decode(other, **PROMPTS[0])
        got = model.decode(second, image_cache=cache, **PROMPTS[0])
    torch.testing.assert_close(got[0], ref[0], rtol=0, atol=1e-6)
