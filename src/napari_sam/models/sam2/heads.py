"""SAM 2's heads on the video path: the official ``_forward_sam_heads`` and
``_use_mask_as_output``, and the rule for which output is kept (inference and training).

:class:`SamHeads` runs a model's prompt encoder, mask decoder and object-pointer projection.
It owns no parameters (the modules stay the model's, so the checkpoint names do not change);
``Sam2.heads`` hands one out, built on the model's current modules.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..decoder import MaskDecoder, PromptEncoder
from .config import Sam2Config

NO_OBJ_SCORE = -1024.0
"""Logit given to every pixel of a mask whose object is predicted absent."""

LOGIT_CLAMP = 32.0
"""The official SAM 2 predictors clamp low-res logits to [-32, 32] where they hand them on:
the image predictor's returned low-res masks, and a frame's earlier logits fed back to the
decoder as a mask prompt (video corrections, training's corrective rounds)."""


def clamp_logits(logits: torch.Tensor) -> torch.Tensor:
    """``logits`` clamped to ``[-LOGIT_CLAMP, LOGIT_CLAMP]``."""
    return logits.clamp(-LOGIT_CLAMP, LOGIT_CLAMP)


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


@dataclass
class AllTokens:
    """The decoder's outputs for every mask token, ungated (what training needs).

    ``masks`` ``(B, T, S/4, S/4)`` logits, ``ious`` ``(B, T)``, ``tokens`` ``(B, T, C)``
    mask tokens, ``object_logits`` ``(B, 1)``; ``T = 1 + num_multimask_outputs``, token 0
    the single-mask output.
    """

    masks: torch.Tensor
    ious: torch.Tensor
    tokens: torch.Tensor
    object_logits: torch.Tensor


def _expand(x: torch.Tensor, batch: int) -> torch.Tensor:
    return x if x.shape[0] == batch else x.expand(batch, *x.shape[1:])


class SamHeads:
    """Prompt encoder + mask decoder + object pointer of one SAM 2 model (``cfg``).

    ``obj_ptr_proj``: the pointer projection; ``no_obj_ptr`` ``(1, C)``: the pointer mixed in
    for an absent object (None without object scores); ``mask_downsample``: the mask -> mask
    prompt convolution of :meth:`mask_as_output` (None without object pointers). Inputs are
    in the model's dtype; ``high_res`` is ``[high_res_s0, high_res_s1]`` (batch ``B`` or 1).
    """

    def __init__(self, cfg: Sam2Config, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder,
                 obj_ptr_proj: nn.Module, no_obj_ptr: torch.Tensor | None = None,
                 mask_downsample: nn.Module | None = None) -> None:
        self.cfg = cfg
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.obj_ptr_proj = obj_ptr_proj
        self.no_obj_ptr = no_obj_ptr
        self.mask_downsample = mask_downsample

    # ------------------------------------------------------------------ the rules
    def kept_tokens(self, ious: torch.Tensor, multimask: torch.Tensor | bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Per row of ``ious`` ``(B, T)`` (every mask token): the token whose mask is kept
        and the token the object pointer comes from.

        With ``multimask`` (a bool, or ``(B,)`` bools): the best predicted IoU among the
        multimask tokens 1.., else token 0; the pointer from that same token only with
        ``use_multimask_token_for_obj_ptr``, else from token 0.
        """
        best = ious[:, 1:].argmax(dim=-1) + 1
        multimask = torch.as_tensor(multimask, device=best.device)
        mask_token = torch.where(multimask, best, torch.zeros_like(best))
        ptr_token = mask_token if self.cfg.use_multimask_token_for_obj_ptr else torch.zeros_like(best)
        return mask_token, ptr_token

    def gate_masks(self, masks: torch.Tensor, object_score_logits: torch.Tensor) -> torch.Tensor:
        """:data:`NO_OBJ_SCORE` everywhere in the masks ``(B, K, h, w)`` of absent objects."""
        if not self.cfg.pred_obj_scores:
            return masks
        present = object_score_logits > 0
        return torch.where(present[:, :, None, None], masks, NO_OBJ_SCORE)

    def gate_pointer(self, obj_ptr: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        """Mix in ``no_obj_ptr`` with weight ``1 - lam`` (``lam`` (B, 1): object present)."""
        if self.cfg.fixed_no_obj_ptr:
            obj_ptr = lam * obj_ptr
        return obj_ptr + (1 - lam) * self.no_obj_ptr

    def pointer(self, token: torch.Tensor, object_score_logits: torch.Tensor) -> torch.Tensor:
        """The object pointer ``(B, C)`` of the kept mask token ``(B, C)``: projected, and
        gated by the object score (soft: its sigmoid, with ``soft_no_obj_ptr``)."""
        obj_ptr = self.obj_ptr_proj(token)
        if self.cfg.pred_obj_scores:
            if self.cfg.soft_no_obj_ptr:
                lam = object_score_logits.sigmoid()
            else:
                lam = (object_score_logits > 0).to(obj_ptr.dtype)
            obj_ptr = self.gate_pointer(obj_ptr, lam)
        return obj_ptr

    def choose(self, out: AllTokens, multimask: torch.Tensor | bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The output inference keeps, from every token's output: ``(low_res (B, 1, h, w)``
        gated, ``obj_ptr (B, C))``. In eval mode the single-mask output may differ: there the
        decoder replaces an unstable token 0 (dynamic multimask, see :meth:`forward`)."""
        rows = torch.arange(out.masks.shape[0], device=out.masks.device)
        mask_token, ptr_token = self.kept_tokens(out.ious, multimask)
        low = self.gate_masks(out.masks[rows, mask_token].unsqueeze(1), out.object_logits)
        return low, self.pointer(out.tokens[rows, ptr_token], out.object_logits)

    # ------------------------------------------------------------------ running them
    def decode_all(self, pix_feat: torch.Tensor, high_res: list[torch.Tensor] | None,
                   point_coords: torch.Tensor | None = None, point_labels: torch.Tensor | None = None,
                   mask_input: torch.Tensor | None = None) -> AllTokens:
        """Every mask token's output for ``B`` prompt sets (``B`` from the points, else from
        ``pix_feat``; batch-1 features are shared).

        ``pix_feat`` ``(1 or B, C, h, w)`` (memory or ``no_mem_embed`` applied);
        ``point_coords`` ``(B, N, 2)`` input pixels with ``point_labels`` ``(B, N)`` (-1
        padding, 2 / 3 box corners first); none -> one padding point. ``mask_input``
        ``(B, 1, H, W)`` logits or 0/1 mask, resized (bilinear, antialias) to ``S/4`` if needed.
        """
        B = pix_feat.shape[0] if point_coords is None else point_coords.shape[0]
        device = pix_feat.device
        if point_coords is None:
            point_coords = torch.zeros(B, 1, 2, device=device)
            point_labels = -torch.ones(B, 1, dtype=torch.int32, device=device)
        dense_in = None
        if mask_input is not None:
            size = self.prompt_encoder.mask_input_size
            dense_in = mask_input.float()
            if tuple(mask_input.shape[-2:]) != tuple(size):
                dense_in = F.interpolate(dense_in, size=size, mode="bilinear", align_corners=False, antialias=True)
            dense_in = dense_in.to(pix_feat.dtype)
        sparse, dense = self.prompt_encoder(points=(point_coords, point_labels), boxes=None, masks=dense_in)
        if high_res is not None:
            high_res = [_expand(h, B) for h in high_res]
        masks, ious, tokens, obj = self.mask_decoder.predict_masks(
            _expand(pix_feat, B), self.prompt_encoder.get_dense_pe(), sparse, dense, high_res)
        return AllTokens(masks, ious, tokens, obj)

    def forward(self, pix_feat: torch.Tensor, high_res: list[torch.Tensor] | None,
                point_coords: torch.Tensor | None = None, point_labels: torch.Tensor | None = None,
                mask_input: torch.Tensor | None = None, multimask: bool = False) -> SamHeadsOutput:
        """Official ``_forward_sam_heads``; see :meth:`Sam2.forward_sam_heads`."""
        out = self.decode_all(pix_feat, high_res, point_coords, point_labels, mask_input)
        multimasks, ious, _ = self.mask_decoder.select_outputs(out.masks, out.ious, out.tokens, multimask)
        multimasks = self.gate_masks(multimasks, out.object_logits).float()
        size = self.cfg.image_size
        high_multimasks = F.interpolate(multimasks, size=(size, size), mode="bilinear", align_corners=False)
        rows = torch.arange(multimasks.shape[0], device=multimasks.device)
        mask_token, ptr_token = self.kept_tokens(out.ious, multimask)
        if multimask:  # the kept mask is one of the multimask outputs: token i is output i - 1
            low, high = multimasks[rows, mask_token - 1, None], high_multimasks[rows, mask_token - 1, None]
        else:  # token 0, or the decoder's stable replacement of it
            low, high = multimasks, high_multimasks
        obj_ptr = self.pointer(out.tokens[rows, ptr_token], out.object_logits)
        return SamHeadsOutput(multimasks, high_multimasks, ious, low, high, obj_ptr, out.object_logits)

    __call__ = forward

    def mask_as_output(self, image_embed: torch.Tensor, high_res: list[torch.Tensor] | None,
                       mask: torch.Tensor) -> SamHeadsOutput:
        """Official ``_use_mask_as_output``; see :meth:`Sam2.mask_as_output`."""
        cfg = self.cfg
        B = mask.shape[0]
        mask_f = mask.float()
        high = mask_f * 20.0 - 10.0
        low = F.interpolate(high, size=(high.shape[-2] // 4, high.shape[-1] // 4),
                            mode="bilinear", align_corners=False, antialias=True)
        ious = mask_f.new_ones(B, 1)
        if not cfg.use_obj_ptrs_in_encoder:
            obj_ptr = mask_f.new_zeros(B, cfg.d_model)
        else:
            down = self.mask_downsample(mask_f.to(image_embed.dtype))
            obj_ptr = self.forward(_expand(image_embed, B), high_res, mask_input=down).obj_ptr
        lam = (mask_f.flatten(1) > 0).any(dim=1, keepdim=True).float()
        obj_scores = 20.0 * lam - 10.0
        if cfg.pred_obj_scores:
            obj_ptr = self.gate_pointer(obj_ptr, lam.to(obj_ptr.dtype))
        return SamHeadsOutput(low, high, ious, low, high, obj_ptr, obj_scores)
