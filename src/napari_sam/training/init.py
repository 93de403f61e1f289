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
