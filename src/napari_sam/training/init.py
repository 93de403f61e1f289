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
def localize_memory_attention(model, amplitude: float = 5.7, frequencies: int = 6) -> int:
    """Make every memory cross-attention look first at the memories at its own place.

    The query and key projections get the same bias ``c``: ``amplitude`` on the real part of
    the ``frequencies`` fastest rotary channel pairs of each axis, zero elsewhere (weights
    untouched). Under the axial rotary encoding the position part of the attention logit is
    then ``amplitude**2 / sqrt(d) * sum_i [cos(f_i dx) + cos(f_i dy)]``: largest at
    ``dx = dy = 0`` and ~3 lower one grid cell away at the defaults, so each pixel of the
    current frame reads the memories of the same place (objects move little between frames)
    and a memory's mask reaches the pixels it covers. With the default random projections
    the attention is spread evenly over the grid: a memory's object signal is diluted ~256x
    at 16 x 16 and the video path stays on its plateau (every tracked frame shows every
    object); with this init the embedded model's tracked IoU left it after ~120 iterations
    (docs/embedded_model.md). Slow rotary pairs are left at zero because they vary too
    little over a grid to tell places apart. Returns how many layers were set."""
    layers = model.memory_attention.layers
    for layer in layers:
        ca = layer.cross_attn_image
        head_dim = ca.q_proj.out_features // ca.num_heads
        pairs_per_axis = head_dim // 4  # rotary pairs: x axis first, then y (positions.rope_tables)
        c = torch.zeros(ca.num_heads, head_dim)
        for j in range(min(frequencies, pairs_per_axis)):
            c[:, 2 * j] = amplitude  # x axis, frequency j
            c[:, 2 * (pairs_per_axis + j)] = amplitude  # y axis, frequency j
        ca.q_proj.bias.copy_(c.flatten())
        ca.k_proj.bias.copy_(c.flatten())
    return len(layers)
