"""Decoding for training: every output token at once, and the output inference would pick.

Inference (:meth:`Sam2.forward_sam_heads`) returns only the multimask tokens or only token
0 and gates absent objects to -1024, which leaves no gradient. Training needs all four
masks ungated; :func:`choose` then applies the model's own rule for the output inference
keeps (:meth:`~napari_sam.models.sam2.SamHeads.choose`: best predicted IoU among the
multimask tokens, or token 0; the pointer from the token the config says, gated by the
object score as the config says).
"""

from __future__ import annotations

import torch

from ..models.sam2 import AllTokens

Decoded = AllTokens  # masks (B, 4, L, L), ious (B, 4), tokens (B, 4, C), object_logits (B, 1)


def decode_all(model, pix_feat, high_res, coords, labels, mask_input=None) -> Decoded:
    """Prompt encoder + mask decoder for ``B`` prompt sets.

    ``pix_feat`` ``(1 or B, C, h, w)`` (``no_mem_embed`` or memory already applied);
    ``high_res``: ``[s0, s1]`` batch 1 or B; ``coords`` ``(B, N, 2)`` input pixels,
    ``labels`` ``(B, N)`` (-1 padding, 2 / 3 box corners); ``mask_input`` ``(B, 1, L, L)``.
    """
    return model.heads.decode_all(pix_feat, high_res, coords, labels, mask_input)


def choose(model, dec: Decoded, multimask: torch.Tensor):
    """The output inference keeps: ``(low_res (B, 1, L, L) gated, obj_ptr (B, C))``.

    ``multimask`` ``(B,)`` bool: best predicted IoU among tokens 1-3, else token 0.
    """
    return model.heads.choose(dec, multimask)
