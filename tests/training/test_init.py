"""Tied cross-attention init: from the first step, a click's token puts its attention on the
image around the click — which a randomly initialised decoder does not do (its attention is
spread evenly). In this project's runs that made the difference between a model that
predicts every object at once for 500+ iterations and one that starts to follow the clicks
after ~200 (docs/embedded_model.md)."""

from __future__ import annotations

import numpy as np
import torch

from napari_sam.models.sam2 import build_sam2
from napari_sam.training.init import tie_cross_attention
from napari_sam.weights import embedded_config

RADIUS = 40.0  # px at the 256 px model input


def _mass_near_click(model, xy) -> tuple[float, float]:
    """(attention weight of a click token within RADIUS of the click, the share of the image
    there) in the first token -> image attention, on zero image features (only the positional
    encodings speak)."""
    enc, dec = model.sam_prompt_encoder, model.sam_mask_decoder
    pts = torch.tensor([[xy]], dtype=torch.float32)
    sparse, _ = enc(points=(pts, torch.ones(1, 1, dtype=torch.int64)), boxes=None, masks=None)
    token = sparse[:, :1]  # the click (a padding point follows it)
    pe = enc.get_dense_pe().flatten(2).transpose(1, 2)  # (1, HW, C)
    attn = dec.transformer.layers[0].cross_attn_token_to_image
    q, k = attn.project("q", token), attn.project("k", pe)
    w = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1).mean(1)[0, 0]  # (HW,)
    n = int(round(w.numel() ** 0.5))
    centres = (torch.arange(n) + 0.5) * (model.image_size / n)
    yy, xx = torch.meshgrid(centres, centres, indexing="ij")
    near = ((xx - xy[0]) ** 2 + (yy - xy[1]) ** 2).flatten() <= RADIUS**2
    return float(w[near].sum()), float(near.float().mean())


def _mean_ratio(model) -> float:
    rng = np.random.default_rng(0)
    clicks = [tuple(float(v) for v in rng.uniform(20, 236, 2)) for _ in range(30)]
    with torch.no_grad():
        r = [_mass_near_click(model, xy) for xy in clicks]
    return float(np.mean([m for m, _ in r]) / np.mean([u for _, u in r]))


def test_tied_projections():
    torch.manual_seed(0)
    model = build_sam2(embedded_config())
    ref = model.sam_mask_decoder.transformer.layers[0].cross_attn_token_to_image.q_proj.weight.clone()
    assert tie_cross_attention(model, gain=2.0) == 5  # 2 blocks x 2 cross-attentions + the final one
    t = model.sam_mask_decoder.transformer
    for a in (t.layers[0].cross_attn_token_to_image, t.layers[1].cross_attn_image_to_token, t.final_attn_token_to_image):
        assert torch.equal(a.q_proj.weight, a.k_proj.weight) and torch.equal(a.q_proj.bias, a.k_proj.bias)
    torch.testing.assert_close(t.layers[0].cross_attn_token_to_image.q_proj.weight, 2.0 * ref)


def test_tied_attention_looks_around_the_click():
    for seed in range(3):
        torch.manual_seed(seed)
        untied = build_sam2(embedded_config()).eval()
        assert 0.8 < _mean_ratio(untied) < 1.2  # spread evenly: no idea where the click is
        tie_cross_attention(untied, gain=2.0)
        assert _mean_ratio(untied) > 1.8  # about twice the even share, around the click


def _memory_mass_near(layer) -> tuple[float, float]:
    """Memory cross-attention on zero content (only the projection biases and the rotary
    encodings speak): attention weight within 1.5 grid cells of each query's own place,
    and the share of the grid there."""
    from napari_sam.models.sam2.positions import apply_rope_

    ca = layer.cross_attn_image
    n, side = 256, 16
    q = ca.q_proj.bias.detach().view(1, 1, 1, -1).expand(1, 1, n, -1).clone()
    k = ca.k_proj.bias.detach().view(1, 1, 1, -1).expand(1, 1, n, -1).clone()
    tables = ca.tables(n, "cpu")
    apply_rope_(q, tables)
    apply_rope_(k, tables)
    w = torch.softmax(q[0, 0] @ k[0, 0].T / q.shape[-1] ** 0.5, dim=-1)
    idx = torch.arange(n)
    yy, xx = idx // side, idx % side
    near = ((yy[:, None] - yy[None]) ** 2 + (xx[:, None] - xx[None]) ** 2) <= 2
    return float((w * near).sum(-1).mean()), float(near.float().mean())


def test_localized_memory_attention_looks_at_the_same_place():
    from napari_sam.training.init import localize_memory_attention

    torch.manual_seed(0)
    model = build_sam2(embedded_config())
    before = [_memory_mass_near(layer) for layer in model.memory_attention.layers]
    assert localize_memory_attention(model) == len(model.memory_attention.layers) == 2
    for (m0, share), layer in zip(before, model.memory_attention.layers):
        m1, _ = _memory_mass_near(layer)
        assert m0 < 2 * share  # default init: about even (3 % of the grid is within 1.5 cells)
        assert m1 > 0.99  # shared fast-rotary bias: all of it at the query's own place or next to it
    ca = model.memory_attention.layers[0].cross_attn_image
    assert torch.equal(ca.q_proj.bias, ca.k_proj.bias) and int((ca.q_proj.bias != 0).sum()) == 12
