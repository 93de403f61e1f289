"""Decoding for training: every output token at once, and the output inference would pick.

Inference (:meth:`Sam2.forward_sam_heads`) returns only the multimask tokens or only token
0 and gates absent objects to -1024, which leaves no gradient. Training needs all four
masks ungated; :func:`choose` then reproduces the inference choice (best predicted IoU among
the multimask tokens, or token 0; pointer from the chosen token, gated by the object score).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.sam2.heads import NO_OBJ_SCORE, gate_pointer


@dataclass
class Decoded:
    masks: torch.Tensor  # (B, 4, L, L) low-res logits of every mask token, ungated
    ious: torch.Tensor  # (B, 4) predicted IoU
    tokens: torch.Tensor  # (B, 4, C) mask tokens
    object_logits: torch.Tensor  # (B, 1)


def decode_all(model, pix_feat, high_res, coords, labels, mask_input=None) -> Decoded:
    """Prompt encoder + mask decoder for ``B`` prompt sets.

    ``pix_feat`` ``(1 or B, C, h, w)`` (``no_mem_embed`` or memory already applied);
    ``high_res``: ``[s0, s1]`` batch 1 or B; ``coords`` ``(B, N, 2)`` input pixels,
    ``labels`` ``(B, N)`` (-1 padding, 2 / 3 box corners); ``mask_input`` ``(B, 1, L, L)``.
    """
    B = coords.shape[0]
    sparse, dense = model.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=mask_input)
    pix = pix_feat.expand(B, -1, -1, -1) if pix_feat.shape[0] != B else pix_feat
    hr = [h.expand(B, -1, -1, -1) if h.shape[0] != B else h for h in high_res]
    masks, ious, tokens, obj = model.sam_mask_decoder.predict_masks(
        pix, model.sam_prompt_encoder.get_dense_pe(), sparse, dense, hr)
    return Decoded(masks, ious, tokens, obj)


def choose(model, dec: Decoded, multimask: torch.Tensor):
    """The output inference keeps: ``(low_res (B, 1, L, L) gated, obj_ptr (B, C))``.

    ``multimask`` ``(B,)`` bool: best predicted IoU among tokens 1-3, else token 0.
    """
    B = dec.masks.shape[0]
    rows = torch.arange(B, device=dec.masks.device)
    best = dec.ious[:, 1:].argmax(dim=1) + 1
    idx = torch.where(multimask, best, torch.zeros_like(best))
    low = dec.masks[rows, idx].unsqueeze(1)
    token = dec.tokens[rows, idx]
    present = dec.object_logits > 0
    low = torch.where(present[:, :, None, None], low, torch.full_like(low, NO_OBJ_SCORE))
    ptr = gate_pointer(model, model.obj_ptr_proj(token), present.to(token.dtype))
    return low, ptr
