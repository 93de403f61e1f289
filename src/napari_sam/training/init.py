"""Initialisation for training from scratch.

:func:`tie_cross_attention` starts every cross-attention of the mask decoder's two-way
transformer with its key projection equal to its query projection. The attention logits
are then ``(x + pe_x)^T W^T W (y + pe_y)``: ``W^T W`` is close to a multiple of the identity,
so from the first step a prompt token attends to the image near its own position, and image
pixels near a click attend to that click's token (the positional encodings of the same place
agree). With independent random projections that alignment must be learned first — the long
flat start of a from-scratch run, where the model predicts every object at once.
Training then moves both projections freely.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def tie_cross_attention(model, gain: float = 2.0) -> int:
    """Copy ``q_proj`` into ``k_proj`` in the decoder's cross-attentions, both weights scaled
    by ``gain`` (sharper attention by place: logits grow with ``gain ** 2``); how many were
    tied."""
    decoder = getattr(model, "sam_mask_decoder", None) or model.mask_decoder
    tied = 0
    for name, module in decoder.transformer.named_modules():
        if "cross_attn" in name.rsplit(".", 1)[-1] or name.endswith("final_attn_token_to_image"):
            module.q_proj.weight.mul_(gain)
            module.k_proj.weight.copy_(module.q_proj.weight)
            module.k_proj.bias.copy_(module.q_proj.bias)
            tied += 1
    return tied


@torch.no_grad()
def localize_memory_attention(model, scale: float = 1.5, seed: int = 0) -> int:
    """Give the query and key projections of every memory cross-attention the same bias
    ``c`` (``scale`` per dimension, seeded). With rotary position encodings on both sides,
    ``R(x) c . R(y) c`` peaks at ``x = y``: a pixel of the current frame then attends to the
    memories at its own place (objects move little between frames) instead of to all of them
    evenly — the video path's version of the long flat start, where every tracked frame shows
    every object. Returns how many layers were set."""
    gen = torch.Generator().manual_seed(seed)
    layers = model.memory_attention.layers
    for layer in layers:
        ca = layer.cross_attn_image
        c = torch.randn(ca.q_proj.out_features, generator=gen) * scale
        ca.q_proj.bias.copy_(c)
        ca.k_proj.bias.copy_(c)
    return len(layers)
