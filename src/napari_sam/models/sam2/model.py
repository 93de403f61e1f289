"""The SAM 2 / 2.1 model: image predictor path + stateless video building blocks.

Parameter names equal the official checkpoint keys (``image_encoder.*``,
``memory_attention.*``, ``memory_encoder.*``, ``sam_prompt_encoder.*``,
``sam_mask_decoder.*``, ``obj_ptr_proj.*``, ``obj_ptr_tpos_proj.*``, ``mask_downsample.*``,
``maskmem_tpos_enc``, ``no_mem_embed``, ``no_mem_pos_enc``, ``no_obj_ptr``,
``no_obj_embed_spatial``), so official weights load with ``strict=True``.

The model holds no per-video state. The video engine composes the blocks below; each
mirrors one piece of the official ``SAM2Base``:

=========================  ==================================================
ours                       official ``SAM2Base``
=========================  ==================================================
``encode_image``           ``forward_image`` (+ conv_s0 / conv_s1 precomputed)
``decode``                 ``SAM2ImagePredictor._predict`` (image predictor)
``use_multimask``          ``_use_multimask``
``forward_sam_heads``      ``_forward_sam_heads``
``mask_as_output``         ``_use_mask_as_output``
``encode_memory``          ``_encode_new_memory``
``condition_on_memory``    ``_prepare_memory_conditioned_features`` (memories
                           and pointers already chosen by the caller)
``no_memory_features``     the ``is_init_cond_frame`` branch of the same
=========================  ==================================================

Shapes: ``S = image_size`` (1024), ``h = w = S // 16`` (64), ``C = 256``, ``M = 64``
(memory channels). Batch ``B`` = objects. All tensors are batch first.

Signature stability note: the public method signatures of :class:`Sam2` are a contract
with the video engine; any change is recorded here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .config import Sam2Config


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


class Sam2(nn.Module):
    """SAM 2 / 2.1: Hiera image encoder, memory attention, memory encoder, SAM heads.

    Build with :func:`napari_sam.models.sam2.build_sam2`.
    """

    family = "sam2"
    mask_threshold = 0.0

    def __init__(self, config: Sam2Config) -> None:
        super().__init__()
        self.config = config
        self.image_size = config.image_size
        raise NotImplementedError  # TODO: submodules

    # ------------------------------------------------------------------ image path
    def encode_image(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the image encoder on a preprocessed batch ``x`` of shape ``(B, 3, S, S)``.

        Returns what one frame needs later (positional encodings are constants, not stored):

        * ``"image_embed"``: ``(B, C, S/16, S/16)`` the lowest-resolution FPN level, raw —
          *without* ``no_mem_embed`` (``decode`` adds it; the video path feeds it to memory
          attention as is).
        * ``"high_res_s0"``: ``(B, C/8, S/4, S/4)`` FPN level 0 after ``sam_mask_decoder.conv_s0``.
        * ``"high_res_s1"``: ``(B, C/4, S/8, S/8)`` FPN level 1 after ``sam_mask_decoder.conv_s1``.
        """
        raise NotImplementedError

    def decode(
        self,
        feats: dict[str, torch.Tensor],
        point_coords: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask: bool = True,
        return_object_scores: bool = False,
    ):
        """Decode prompts against one encoded image, like the official ``SAM2ImagePredictor``.

        ``feats``: one image's :meth:`encode_image` output (batch 1). ``point_coords``
        ``(P, N, 2)`` (x, y) in model-input pixels, ``point_labels`` ``(P, N)`` (1 fg, 0 bg,
        -1 padding), ``boxes`` ``(P, 4)`` x0 y0 x1 y1 in input pixels (becomes two points
        with labels 2, 3 placed before the clicks), ``mask_input`` ``(P, 1, S/4, S/4)`` logits.
        ``no_mem_embed`` is added to the image embedding (``directly_add_no_mem_embed``).
        With ``multimask=False`` the official dynamic-multimask-via-stability choice applies.

        Returns ``(low_res_logits (P, K, S/4, S/4), iou (P, K))``, plus
        ``object_score_logits (P, 1)`` when ``return_object_scores``. The logits are the
        raw decoder output: the official predictor additionally returns them clamped to
        [-32, 32] as its "low-res masks" (and upsamples the unclamped ones).
        """
        raise NotImplementedError

    def image_pos_enc(self, device=None, dtype=None) -> torch.Tensor:
        """The sine positional encoding of ``image_embed``: ``(1, C, S/16, S/16)``."""
        raise NotImplementedError

    def memory_pos_enc(self, device=None, dtype=None) -> torch.Tensor:
        """The sine positional encoding of a memory (``maskmem_pos_enc``): ``(1, M, S/16, S/16)``."""
        raise NotImplementedError

    # ------------------------------------------------------------ video building blocks
    def use_multimask(self, is_init_cond_frame: bool, num_points: int) -> bool:
        """Official ``_use_multimask``: multimask for the SAM heads on this frame?

        ``num_points`` counts every point given to the heads (a box counts as two).
        """
        raise NotImplementedError

    def forward_sam_heads(
        self,
        pix_feat: torch.Tensor,
        high_res_feats: Sequence[torch.Tensor],
        point_coords: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask: bool = False,
    ) -> SamHeadsOutput:
        """Official ``_forward_sam_heads`` for ``B`` objects.

        ``pix_feat`` ``(B, C, h, w)``: memory-conditioned features
        (:meth:`condition_on_memory` / :meth:`no_memory_features`). ``high_res_feats``:
        ``(high_res_s0, high_res_s1)`` from :meth:`encode_image`, batch ``B`` (or 1, expanded).
        ``point_coords`` ``(B, N, 2)`` in input pixels with ``point_labels`` ``(B, N)``
        (box corners as labels 2 / 3 first); none -> one padding point. ``mask_input``
        ``(B, 1, H, W)`` logits or 0/1 mask, resized (bilinear, antialias) to ``S/4`` if
        needed. Masks are set to -1024 where the object score says "absent"; the pointer
        is the ``obj_ptr_proj`` of the chosen output token, gated with ``no_obj_ptr``.
        """
        raise NotImplementedError

    def mask_as_output(
        self,
        image_embed: torch.Tensor,
        high_res_feats: Sequence[torch.Tensor],
        mask: torch.Tensor,
    ) -> SamHeadsOutput:
        """Official ``_use_mask_as_output`` (a frame given a mask: ``add_new_mask``).

        ``image_embed`` ``(B, C, h, w)``: the *raw* frame features (no memory, no
        ``no_mem_embed``), ``mask`` ``(B, 1, S, S)`` bool / 0-1 at model input size. Output
        logits are ``mask * 20 - 10``; the pointer comes from the SAM heads run on the
        ``mask_downsample``-d mask; object score ``+10`` if any pixel is set, else ``-10``.
        """
        raise NotImplementedError

    def encode_memory(
        self,
        image_embed: torch.Tensor,
        high_res_masks: torch.Tensor,
        object_score_logits: torch.Tensor,
        is_mask_from_pts: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Official ``_encode_new_memory``: one frame's prediction -> a memory.

        ``image_embed`` ``(B, C, h, w)`` raw frame features; ``high_res_masks``
        ``(B, 1, S, S)`` logits; ``object_score_logits`` ``(B, 1)``. With
        ``is_mask_from_pts`` (the frame had clicks) and ``binarize_mask_from_pts_for_mem_enc``
        the mask is binarised (> 0) instead of passed through a sigmoid; then scaled by 20
        and shifted by -10. In 2.1, ``no_obj_embed_spatial`` is added where the object is
        absent. Returns ``(maskmem_features (B, M, h, w), maskmem_pos_enc (1, M, h, w))``.
        The official video predictor stores ``maskmem_features`` in bfloat16.
        """
        raise NotImplementedError

    def no_memory_features(self, image_embed: torch.Tensor) -> torch.Tensor:
        """Features of an initial conditioning frame (no memory yet): ``(B, C, h, w)``.

        With ``directly_add_no_mem_embed`` (all official configs) this is
        ``image_embed + no_mem_embed``.
        """
        raise NotImplementedError

    def condition_on_memory(
        self,
        image_embed: torch.Tensor,
        memories: Sequence[tuple],
        obj_ptrs: Sequence[tuple[torch.Tensor, int]],
        num_frames: int,
        frame_cache=None,
    ) -> torch.Tensor:
        """Official ``_prepare_memory_conditioned_features`` for a non-initial frame.

        ``image_embed`` ``(B or 1, C, h, w)`` raw frame features. ``memories``: list of
        ``(maskmem_features (B, M, h, w), maskmem_pos_enc (1|B, M, h, w) or None, t_pos)``
        in the official order; ``t_pos`` is 0 for conditioning frames and
        ``num_maskmem - k`` for the frame ``k`` steps before the current one (1 <= k <
        num_maskmem). ``obj_ptrs``: list of ``(obj_ptr (B, C), signed_distance)`` with
        ``signed_distance = (current - t) * (+1 forward / -1 reverse)``; the model takes
        ``abs`` when the config does not use signed distances. ``num_frames``: the video
        length (pointer distances are normalised by ``min(num_frames, 16) - 1``).
        """
        raise NotImplementedError
