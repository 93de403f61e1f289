"""The decoder's fast path under inference: the folded ("absorbed") cross attention gives the
written-out attention's numbers, it is taken only where it is fewer multiply-adds, the masks
that cannot be returned are not made, and the per-image cache is made again when the weights
change (load_state_dict, an in-place update)."""

from __future__ import annotations

import pytest
import torch

from conftest import max_rel_err
from napari_sam.models.common import attention_backend
from napari_sam.models.decoder import DecoderCache, absorbed
from napari_sam.models.decoder.transformer import Attention
from napari_sam.models.sam1 import Sam1Config, build_sam1
from napari_sam.models.sam2 import build_sam2, reduced_config


def _attention(seed: int = 0) -> Attention:
    torch.manual_seed(seed)
    attn = Attention(64, 2).eval()  # 2 heads x 7 tokens < 64 inner columns: the folded order pays
    with torch.no_grad():  # non-zero biases: the folded order must carry them exactly
        for lin in (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj):
            lin.bias.normal_(0, 0.5)
    return attn


def _written_out(attn, q, k, v, projected=None):
    with attention_backend("sdpa"):  # a forced backend takes the written-out attention
        return attn(q, k, v, projected)


@pytest.mark.parametrize("batches", [(1, 1), (3, 1), (3, 3)], ids=["one", "shared-image", "per-prompt-image"])
def test_folded_attention_equals_written_out(batches):
    """Tokens -> image and image -> tokens, with a batch-1 image shared by P prompt sets."""
    p, b = batches
    attn = _attention()
    g = torch.Generator().manual_seed(1)
    tokens, image = torch.randn(p, 7, 64, generator=g), torch.randn(b, 400, 64, generator=g) * 2
    with torch.inference_mode():
        t2i = attn(tokens, image, image + 1.0)
        i2t = attn(image, tokens, tokens * 0.5)
        q_heads = attn.project("q", image)
        i2t_projected = attn(image, tokens, tokens * 0.5, {"q": q_heads})
        ref_t2i = _written_out(attn, tokens, image, image + 1.0)
        ref_i2t = _written_out(attn, image, tokens, tokens * 0.5)
    assert t2i.shape == ref_t2i.shape == (p, 7, 64) and i2t.shape == ref_i2t.shape == (p, 400, 64)
    assert max_rel_err(t2i, ref_t2i) < 2e-6
    assert max_rel_err(i2t, ref_i2t) < 2e-6
    assert max_rel_err(i2t_projected, ref_i2t) < 2e-6
    # and it really is another order of the sums (not the written-out path taken twice)
    assert not torch.equal(t2i, ref_t2i) or not torch.equal(i2t, ref_i2t)


def test_folded_order_only_where_it_pays():
    # SAM's decoder: 8 heads, inner width 128, 7 tokens against 64 x 64 image tokens
    assert absorbed.few_queries_pays(8, 7, 1, 4096, 1, 128)
    assert not absorbed.few_queries_pays(8, 20, 1, 4096, 1, 128)  # 160 folded rows > 128 columns
    assert not absorbed.few_queries_pays(8, 7, 64, 4096, 1, 128)  # 64 prompt sets on one shared image
    assert not absorbed.few_queries_pays(8, 7, 1, 100, 1, 128)  # a small image
    assert absorbed.few_keys_pays(8, 7, 1, 4096, 1, 128, q_projected=False)
    assert absorbed.few_keys_pays(8, 7, 64, 4096, 1, 128, q_projected=True)
    assert absorbed.few_keys_pays(8, 12, 1, 4096, 1, 128, q_projected=False)  # 2 x 96 < 128 + 128
    assert not absorbed.few_keys_pays(8, 17, 1, 4096, 1, 128, q_projected=False)  # 2 x 136 > 256
    attn = _attention()
    tokens, image = torch.randn(1, 7, 64), torch.randn(1, 400, 64)
    assert attn._absorbed(tokens, image, image, {}) is None  # gradients on: written out
    with torch.inference_mode():
        assert attn._absorbed(tokens, image, image, {}) is not None
        assert attn._absorbed(image, tokens, tokens, {}) is not None
        assert attn._absorbed(tokens, image, image, {"k": attn.project("k", image)}) is None
        with attention_backend("math"):
            assert attn._absorbed(tokens, image, image, {}) is None


def _sam1():
    torch.manual_seed(0)
    return build_sam1(Sam1Config(encoder_embed_dim=64, encoder_depth=2, encoder_num_heads=2,
                                 encoder_global_attn_indexes=(1,), image_size=256)).eval()


def _sam2():
    torch.manual_seed(0)
    return build_sam2(reduced_config("2.1", image_size=256)).eval()


@pytest.fixture(scope="module", params=["sam1", "sam2"])
def model_and_feats(request):
    model = _sam1() if request.param == "sam1" else _sam2()
    torch.manual_seed(1)
    with torch.inference_mode():
        feats = model.encode_image(torch.randn(1, 3, 256, 256))
    return model, feats


CLICKS = dict(point_coords=torch.tensor([[[60.0, 90.0], [200.0, 30.0]]]), point_labels=torch.tensor([[1, 0]]))


def test_fast_decode_matches_written_out_decode(model_and_feats):
    """A whole decode, cached and not, against the written-out attention (a forced backend)."""
    model, feats = model_and_feats
    cache = DecoderCache()
    with torch.inference_mode():
        for multimask in (True, False):
            with attention_backend("sdpa"):
                ref = model.decode(feats, multimask=multimask, **CLICKS)
            fast = model.decode(feats, multimask=multimask, **CLICKS)
            cached = model.decode(feats, multimask=multimask, image_cache=cache, **CLICKS)
            for a, b, c in zip(ref, fast, cached):
                assert a.shape == b.shape == c.shape
                assert max_rel_err(b, a) < 1e-5
                torch.testing.assert_close(c, b, rtol=0, atol=1e-6)


def test_only_the_returned_masks_are_made(model_and_feats):
    """forward() makes the masks of the returned tokens only: the same numbers as all tokens'
    masks from predict_masks, sliced (up to the matrix product's rounding for 3 columns vs 4)."""
    model, feats = model_and_feats
    dec = getattr(model, "mask_decoder", None) or model.sam_mask_decoder
    pe = getattr(model, "prompt_encoder", None) or model.sam_prompt_encoder
    with torch.inference_mode():
        embed = feats["image_embed"] + (model.no_mem_embed.view(1, -1, 1, 1) if model.family == "sam2" else 0)
        high = [feats["high_res_s0"], feats["high_res_s1"]] if model.family == "sam2" else None
        sparse, dense = pe((CLICKS["point_coords"], CLICKS["point_labels"]), None, None)
        args = (embed, pe.get_dense_pe(), sparse, dense)
        all_masks, all_iou, _, _ = dec.predict_masks(*args, high_res_features=high)
        multi, multi_iou, _, _ = dec(*args, multimask_output=True, high_res_features=high)
        single, single_iou, _, _ = dec(*args, multimask_output=False, high_res_features=high)
    assert all_masks.shape[1] == dec.num_mask_tokens
    torch.testing.assert_close(multi, all_masks[:, 1:], rtol=0, atol=1e-6)
    torch.testing.assert_close(multi_iou, all_iou[:, 1:], rtol=0, atol=0)
    assert single.shape[1] == 1 and single_iou.shape == (1, 1)
    if not dec.dynamic_multimask_via_stability:
        torch.testing.assert_close(single, all_masks[:, :1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("change", ["load_state_dict", "in-place"])
def test_cache_made_again_when_the_weights_change(model_and_feats, change):
    model, feats = model_and_feats
    family = model.family
    model = _sam1() if family == "sam1" else _sam2()  # a private copy: its weights change below
    dec_name = "mask_decoder" if family == "sam1" else "sam_mask_decoder"
    pe_name = "prompt_encoder" if family == "sam1" else "sam_prompt_encoder"
    cache = DecoderCache()
    with torch.inference_mode():
        before = model.decode(feats, image_cache=cache, **CLICKS)[0]
    assert cache.filled
    if change == "load_state_dict":
        other = {k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v
                 for k, v in model.state_dict().items() if k.startswith((dec_name, pe_name))}
        model.load_state_dict(other, strict=False)
    else:
        with torch.no_grad():
            getattr(model, pe_name).no_mask_embed.weight.add_(0.5)  # folded into the cached image tokens
            getattr(model, dec_name).transformer.layers[0].cross_attn_image_to_token.q_proj.weight.mul_(1.5)
    with torch.inference_mode():
        ref = model.decode(feats, **CLICKS)[0]
        got = model.decode(feats, image_cache=cache, **CLICKS)[0]
    assert max_rel_err(ref, before) > 1e-3  # the change matters
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)
