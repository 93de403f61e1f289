"""SAM 2 heads for the video path: the official ``_forward_sam_heads`` and
``_use_mask_as_output`` as functions of a :class:`~.model.Sam2` (its methods call them)."""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from .model import Sam2

NO_OBJ_SCORE = -1024.0
"""Logit given to every pixel of a mask whose object is predicted absent."""


@dataclass
class SamHeadsOutput:
    """What one pass of the SAM heads gives for ``B`` objects on one frame.

    ``K`` is 3 with multimask output, else 1; ``S`` the model input size.
    """

    low_res_multimasks: torch.Tensor  # (B, K, S/4, S/4) logits, object-score gated
    high_res_multimasks: torch.Tensor  # (B, K, S, S) logits (bilinear upsampling)
    ious: torch.Tensor  # (B, K) predicted IoU
    low_res_masks: torch.Tensor  # (B, 1, S/4, S/4) the best mask (highest IoU)
    high_res_masks: torch.Tensor  # (B, 1, S, S) the best mask, upsampled
    obj_ptr: torch.Tensor  # (B, C) object pointer (no_obj_ptr mixed in when absent)
    object_score_logits: torch.Tensor  # (B, 1) > 0 means the object is present


def gate_pointer(self: Sam2, obj_ptr: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Mix in ``no_obj_ptr`` with weight ``1 - lam`` (``lam`` (B, 1): object present)."""
    if self.config.fixed_no_obj_ptr:
        obj_ptr = lam * obj_ptr
    return obj_ptr + (1 - lam) * self.no_obj_ptr


def forward_sam_heads(
    self: Sam2,
    pix_feat: torch.Tensor,
    high_res_feats: Sequence[torch.Tensor],
    point_coords: torch.Tensor | None = None,
    point_labels: torch.Tensor | None = None,
    mask_input: torch.Tensor | None = None,
    multimask: bool = False,
) -> SamHeadsOutput:
    """See :meth:`Sam2.forward_sam_heads`."""
    cfg = self.config
    pix_feat = pix_feat.to(self.dtype)
    B, device = pix_feat.shape[0], pix_feat.device
    if point_coords is None:
        point_coords = torch.zeros(B, 1, 2, device=device)
        point_labels = -torch.ones(B, 1, dtype=torch.int32, device=device)
    dense_in = None
    if mask_input is not None:
        size = self.sam_prompt_encoder.mask_input_size
        dense_in = mask_input.float()
        if tuple(mask_input.shape[-2:]) != tuple(size):
            dense_in = F.interpolate(dense_in, size=size, mode="bilinear",
                                     align_corners=False, antialias=True)
        dense_in = dense_in.to(pix_feat.dtype)
    sparse, dense = self.sam_prompt_encoder(points=(point_coords, point_labels), boxes=None,
                                            masks=dense_in)
    high_res = self._high_res(high_res_feats)
    if high_res is not None:
        high_res = [h.expand(B, -1, -1, -1) if h.shape[0] != B else h for h in high_res]
    multimasks, ious, tokens, obj_scores = self.sam_mask_decoder(
        image_embeddings=pix_feat,
        image_pe=self.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
        repeat_image=False,
        high_res_features=high_res,
    )
    if cfg.pred_obj_scores:
        present = obj_scores > 0
        multimasks = torch.where(present[:, None, None], multimasks, NO_OBJ_SCORE)
    multimasks = multimasks.float()
    high_multimasks = F.interpolate(multimasks, size=(self.image_size, self.image_size),
                                    mode="bilinear", align_corners=False)
    token = tokens[:, 0]
    if multimask:
        best = ious.argmax(dim=-1)
        rows = torch.arange(B, device=device)
        low, high = multimasks[rows, best].unsqueeze(1), high_multimasks[rows, best].unsqueeze(1)
        if tokens.shape[1] > 1:
            token = tokens[rows, best]
    else:
        low, high = multimasks, high_multimasks
    obj_ptr = self.obj_ptr_proj(token)
    if cfg.pred_obj_scores:
        lam = obj_scores.sigmoid() if cfg.soft_no_obj_ptr else present.to(obj_ptr.dtype)
        obj_ptr = gate_pointer(self, obj_ptr, lam)
    return SamHeadsOutput(multimasks, high_multimasks, ious, low, high, obj_ptr, obj_scores)


def mask_as_output(self: Sam2, image_embed: torch.Tensor, high_res_feats: Sequence[torch.Tensor],
                   mask: torch.Tensor) -> SamHeadsOutput:
    """See :meth:`Sam2.mask_as_output`."""
    cfg = self.config
    image_embed = image_embed.to(self.dtype)
    B = mask.shape[0]
    mask_f = mask.float()
    high = mask_f * 20.0 - 10.0
    low = F.interpolate(high, size=(high.shape[-2] // 4, high.shape[-1] // 4),
                        mode="bilinear", align_corners=False, antialias=True)
    ious = mask_f.new_ones(B, 1)
    if not cfg.use_obj_ptrs_in_encoder:
        obj_ptr = mask_f.new_zeros(B, cfg.d_model)
    else:
        if image_embed.shape[0] != B:
            image_embed = image_embed.expand(B, -1, -1, -1)
        down = self.mask_downsample(mask_f.to(image_embed.dtype))
        obj_ptr = forward_sam_heads(self, image_embed, high_res_feats, mask_input=down).obj_ptr
    lam = (mask_f.flatten(1) > 0).any(dim=1, keepdim=True).float()
    obj_scores = 20.0 * lam - 10.0
    if cfg.pred_obj_scores:
        obj_ptr = gate_pointer(self, obj_ptr, lam.to(obj_ptr.dtype))
    return SamHeadsOutput(low, high, ious, low, high, obj_ptr, obj_scores)
