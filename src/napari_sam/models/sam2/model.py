"""The SAM 2 / 2.1 model: image predictor path + stateless video building blocks.

Parameter names equal the official checkpoint keys (``image_encoder.*``,
``memory_attention.*``, ``memory_encoder.*``, ``sam_prompt_encoder.*``,
``sam_mask_decoder.*``, ``obj_ptr_proj.*``, ``obj_ptr_tpos_proj.*``, ``mask_downsample.*``,
``maskmem_tpos_enc``, ``no_mem_embed``, ``no_mem_pos_enc``, ``no_obj_ptr``,
``no_obj_embed_spatial``), so official weights load with ``strict=True``.

The image encoder, the memory attention and an optional spatial perceiver (applied to
each new memory) are constructor arguments, so SAM 2 derivatives reuse everything else:
EdgeTAM is a ``Sam2`` (:func:`napari_sam.models.edgetam.build_edgetam`).

The model holds no per-video state. The video engine composes the blocks below; each
mirrors one piece of the official ``SAM2Base``:

=========================  ==================================================
ours                       official ``SAM2Base``
=========================  ==================================================
``encode_image``           ``forward_image`` (+ conv_s0 / conv_s1 precomputed)
``decode``                 ``SAM2ImagePredictor._predict`` (image predictor)
``use_multimask``          ``_use_multimask``
``forward_sam_heads``      ``_forward_sam_heads`` (:class:`~.heads.SamHeads`)
``mask_as_output``         ``_use_mask_as_output`` (:class:`~.heads.SamHeads`)
``encode_memory``          ``_encode_new_memory``
``condition_on_memory``    ``_prepare_memory_conditioned_features`` (memories
                           and pointers already chosen by the caller)
``no_memory_features``     the ``is_init_cond_frame`` branch of the same
``project_memory``         (speed) a memory frame's keys / values, cacheable
``memory_frame_cache``     (speed) a frame's image-only memory-attention work
=========================  ==================================================

Shapes: ``S = image_size`` (1024), ``h = w = S // 16`` (64), ``C = 256``, ``M = 64``
(memory channels). Batch ``B`` = objects. All tensors are batch first.

Signature stability note: the public method signatures of :class:`Sam2` are a contract
with the video engine; any change is recorded here. Since the first commit only additions:
``dtype``, ``project_memory``, ``memory_frame_cache`` (and the ``frame_cache`` argument
of ``condition_on_memory`` now does something), ``heads``; ``decode``'s ``image_cache`` takes
a :class:`~napari_sam.models.decoder.DecoderCache` (a plain dict per image still works).

Deliberate deviation: for a 1-frame video the official code divides pointer distances by
``min(num_frames, 16) - 1 = 0`` (NaN everywhere); we divide by 1 instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..common import MLP
from ..decoder import DecoderCache, MaskDecoder, PromptEncoder, TwoWayTransformer, decode_prompts, image_work
from .config import Sam2Config
from .heads import SamHeads, SamHeadsOutput
from .image_encoder import ImageEncoder
from .memory_attention import MemoryAttention
from .memory_cache import FrameCache, ProjectedMemory, attend_memories, memory_tokens, object_pointer_tokens
from .memory_cache import frame_cache as make_frame_cache
from .memory_cache import project_memory as project_memory_frame
from .memory_encoder import MemoryEncoder
from .positions import sine_grid


class Sam2(nn.Module):
    """SAM 2 / 2.1: Hiera image encoder, memory attention, memory encoder, SAM heads.

    Build with :func:`napari_sam.models.sam2.build_sam2`.
    """

    family = "sam2"
    mask_threshold = 0.0

    def __init__(self, config: Sam2Config, image_encoder: nn.Module | None = None,
                 memory_attention: nn.Module | None = None,
                 spatial_perceiver: nn.Module | None = None) -> None:
        super().__init__()
        cfg = self.config = config
        self.image_size = cfg.image_size
        C, M = cfg.d_model, cfg.mem_dim
        # the three parts a SAM 2 derivative may replace (EdgeTAM: RepViT encoder, latent
        # cross attention, spatial perceiver); None: SAM 2's own (no perceiver)
        self.image_encoder = ImageEncoder(cfg) if image_encoder is None else image_encoder
        self.memory_attention = MemoryAttention(cfg) if memory_attention is None else memory_attention
        self.memory_encoder = MemoryEncoder(cfg)
        if spatial_perceiver is not None:
            self.spatial_perceiver = spatial_perceiver
        if cfg.use_obj_ptrs_in_encoder:
            self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(cfg.num_maskmem, 1, 1, M))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, C))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, C))
        if cfg.pred_obj_scores and cfg.use_obj_ptrs_in_encoder:
            self.no_obj_ptr = nn.Parameter(torch.zeros(1, C))
        if cfg.no_obj_embed_spatial:
            self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, M))

        feat = cfg.feat_size
        self.sam_prompt_encoder = PromptEncoder(
            embed_dim=C, image_embedding_size=(feat, feat),
            input_image_size=(cfg.image_size, cfg.image_size), mask_in_chans=16,
        )
        self.sam_mask_decoder = MaskDecoder(
            transformer_dim=C,
            transformer=TwoWayTransformer(depth=2, embedding_dim=C, num_heads=8, mlp_dim=2048,
                                          mlp_style="sam2"),
            num_multimask_outputs=3, iou_head_depth=3, iou_head_hidden_dim=256,
            use_high_res_features=cfg.use_high_res_features_in_sam,
            iou_prediction_use_sigmoid=cfg.iou_prediction_use_sigmoid,
            pred_obj_scores=cfg.pred_obj_scores, pred_obj_scores_mlp=cfg.pred_obj_scores_mlp,
            use_multimask_token_for_obj_ptr=cfg.use_multimask_token_for_obj_ptr,
            dynamic_multimask_via_stability=cfg.dynamic_multimask_via_stability,
            dynamic_multimask_stability_delta=cfg.dynamic_multimask_stability_delta,
            dynamic_multimask_stability_thresh=cfg.dynamic_multimask_stability_thresh,
        )
        if not cfg.use_obj_ptrs_in_encoder:
            self.obj_ptr_proj = nn.Identity()
        elif cfg.use_mlp_for_obj_ptr_proj:
            self.obj_ptr_proj = MLP(C, C, C, 3)
        else:
            self.obj_ptr_proj = nn.Linear(C, C)
        self.obj_ptr_tpos_proj = nn.Linear(C, M) if cfg.proj_tpos_enc_in_obj_ptrs else nn.Identity()
        self._init_embeddings()

    def _init_embeddings(self) -> None:
        """Official init of the free embeddings (a checkpoint overwrites them)."""
        for name in ("maskmem_tpos_enc", "no_mem_embed", "no_mem_pos_enc", "no_obj_ptr",
                     "no_obj_embed_spatial"):
            p = getattr(self, name, None)
            if p is not None and not p.is_meta:
                nn.init.trunc_normal_(p, std=0.02)

    @property
    def dtype(self) -> torch.dtype:
        """Parameter dtype; block inputs (e.g. a float16 embedding store) are cast to it."""
        return self.no_mem_embed.dtype

    @property
    def device(self) -> torch.device:
        return self.no_mem_embed.device

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
        levels = self.image_encoder(x.to(self.dtype))
        feats = {"image_embed": levels[-1]}
        if self.config.use_high_res_features_in_sam:
            feats["high_res_s0"] = self.sam_mask_decoder.conv_s0(levels[0])
            feats["high_res_s1"] = self.sam_mask_decoder.conv_s1(levels[1])
        return feats

    @property
    def heads(self) -> SamHeads:
        """The SAM heads (prompt encoder, mask decoder, object pointer) on this model's modules."""
        return SamHeads(self.config, self.sam_prompt_encoder, self.sam_mask_decoder, self.obj_ptr_proj,
                        getattr(self, "no_obj_ptr", None), getattr(self, "mask_downsample", None))

    def _high_res(self, feats) -> list[torch.Tensor] | None:
        """``[high_res_s0, high_res_s1]`` of a feature dict (or pair) in the model's dtype."""
        if not self.config.use_high_res_features_in_sam:
            return None
        if isinstance(feats, dict):
            feats = [feats["high_res_s0"], feats["high_res_s1"]]
        return [f.to(self.dtype) for f in feats]

    def decode(
        self,
        feats: dict[str, torch.Tensor],
        point_coords: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask: bool = True,
        image_cache: DecoderCache | dict | None = None,
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
        [-32, 32] (:func:`~.heads.clamp_logits`) as its "low-res masks" (and upsamples the
        unclamped ones).

        ``image_cache``: a :class:`~napari_sam.models.decoder.DecoderCache` the caller keeps
        beside ``feats`` (one image; a plain dict per image is still accepted); under no-grad
        inference and without ``mask_input`` the decoder keeps its prompt-independent work in
        it — the same masks, a faster click.
        """
        embed = feats["image_embed"].to(self.dtype)
        if self.config.directly_add_no_mem_embed:
            embed = embed + self.no_mem_embed.view(1, -1, 1, 1)
        points = None
        if point_coords is not None:
            points = (point_coords, point_labels)
        if boxes is not None:
            corners = boxes.reshape(-1, 2, 2)
            corner_labels = torch.tensor([[2, 3]], dtype=torch.int64, device=boxes.device)
            corner_labels = corner_labels.expand(corners.shape[0], 2)
            if points is not None:
                labels = torch.cat([corner_labels, points[1].to(torch.int64)], dim=1)
                points = (torch.cat([corners, points[0]], dim=1), labels)
            else:
                points = (corners, corner_labels)
        if mask_input is not None:
            mask_input = mask_input.to(embed.dtype)
        masks, iou, _, obj_scores = decode_prompts(
            self.sam_prompt_encoder, self.sam_mask_decoder, embed, points, None, mask_input, multimask,
            high_res=self._high_res(feats),
            image_work=image_work(image_cache, feats, self.sam_mask_decoder, mask_input),
        )
        return (masks, iou, obj_scores) if return_object_scores else (masks, iou)

    def image_pos_enc(self, device=None, dtype=None) -> torch.Tensor:
        """The sine positional encoding of ``image_embed``: ``(1, C, S/16, S/16)``."""
        n = self.config.feat_size
        return sine_grid(self.config.d_model, n, n, device=device, dtype=dtype)

    def memory_pos_enc(self, device=None, dtype=None) -> torch.Tensor:
        """The sine positional encoding of a memory encoder output: ``(1, M, S/16, S/16)``."""
        n = self.config.feat_size
        return sine_grid(self.config.mem_dim, n, n, device=device, dtype=dtype)

    # ------------------------------------------------------- one frame's memory, as stored
    @property
    def _perceiver(self):
        return getattr(self, "spatial_perceiver", None)

    @property
    def memory_shape(self) -> tuple[int, ...]:
        """Shape of one object's memory of one frame as :meth:`encode_memory` returns it
        (without the batch): ``(M, S/16, S/16)``, or ``(tokens, M)`` with a spatial perceiver."""
        if self._perceiver is not None:
            return (self._perceiver.num_tokens, self.config.mem_dim)
        n = self.config.feat_size
        return (self.config.mem_dim, n, n)

    @property
    def memory_tokens_per_frame(self) -> int:
        """Memory-attention key tokens one memory frame contributes (4096 at 1024 px; 512 for EdgeTAM)."""
        if self._perceiver is not None:
            return self._perceiver.num_tokens
        return self.config.feat_size**2

    def memory_pos_tokens(self, device=None, dtype=None) -> torch.Tensor:
        """The position encoding of a stored memory's tokens (the official
        ``maskmem_pos_enc``, flattened): ``(1, memory_tokens_per_frame, M)``."""
        if self._perceiver is not None:
            return self._perceiver.positions(device=device, dtype=dtype)
        return self.memory_pos_enc(device, dtype).flatten(2).transpose(1, 2)

    # ------------------------------------------------------------ video building blocks
    def use_multimask(self, is_init_cond_frame: bool, num_points: int) -> bool:
        """Official ``_use_multimask``: multimask for the SAM heads on this frame?

        ``num_points`` counts every point given to the heads (a box counts as two).
        """
        cfg = self.config
        return (
            cfg.multimask_output_in_sam
            and (is_init_cond_frame or cfg.multimask_output_for_tracking)
            and cfg.multimask_min_pt_num <= num_points <= cfg.multimask_max_pt_num
        )

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
        return self.heads.forward(pix_feat.to(self.dtype), self._high_res(high_res_feats), point_coords,
                                  point_labels, mask_input, multimask)

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
        return self.heads.mask_as_output(image_embed.to(self.dtype), self._high_res(high_res_feats), mask)

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
        absent. Returns ``(maskmem_features (B, M, h, w), maskmem_pos_enc (1, M, h, w))``;
        with a spatial perceiver (EdgeTAM) both are then compressed to tokens:
        ``(B, 512, M)`` and ``(1, 512, M)`` (:attr:`memory_shape`). The official video
        predictor stores ``maskmem_features`` in bfloat16.
        """
        cfg = self.config
        image_embed = image_embed.to(self.dtype)
        B = high_res_masks.shape[0]
        if image_embed.shape[0] != B:
            image_embed = image_embed.expand(B, -1, -1, -1)
        if cfg.non_overlap_masks_for_mem_enc and B > 1:
            winner = high_res_masks.argmax(dim=0, keepdim=True)
            keep = winner == torch.arange(B, device=winner.device)[:, None, None, None]
            high_res_masks = torch.where(keep, high_res_masks, high_res_masks.clamp(max=-10.0))
        if cfg.binarize_mask_from_pts_for_mem_enc and is_mask_from_pts:
            mask = (high_res_masks > 0).float()
        else:
            mask = torch.sigmoid(high_res_masks)
        if cfg.sigmoid_scale_for_mem_enc != 1.0:
            mask = mask * cfg.sigmoid_scale_for_mem_enc
        if cfg.sigmoid_bias_for_mem_enc != 0.0:
            mask = mask + cfg.sigmoid_bias_for_mem_enc
        features = self.memory_encoder(image_embed, mask.to(image_embed.dtype))
        if cfg.no_obj_embed_spatial:
            absent = 1 - (object_score_logits > 0).to(features.dtype)
            features = features + absent[..., None, None] * self.no_obj_embed_spatial[..., None, None]
        pos = self.memory_pos_enc(features.device, features.dtype)
        if self._perceiver is not None:
            features, _ = self._perceiver(features, pos)
            pos = self.memory_pos_tokens(features.device, features.dtype)
        return features, pos

    def no_memory_features(self, image_embed: torch.Tensor) -> torch.Tensor:
        """Features of an initial conditioning frame (no memory yet): ``(B, C, h, w)``.

        With ``directly_add_no_mem_embed`` (all official configs) this is
        ``image_embed + no_mem_embed``.
        """
        if not self.config.directly_add_no_mem_embed:
            # the official fallback (attention to a single no-memory token) cannot run:
            # its RoPE repeats the query grid over the keys, which needs >= 1 full grid
            raise NotImplementedError("only directly_add_no_mem_embed=True is supported")
        return image_embed.to(self.dtype) + self.no_mem_embed.view(1, -1, 1, 1)

    def project_memory(self, maskmem_features: torch.Tensor,
                       maskmem_pos_enc: torch.Tensor | None = None) -> ProjectedMemory:
        """Speed: one memory frame's per-layer keys / values, to cache and reuse.

        The result can replace ``maskmem_features`` in :meth:`condition_on_memory`'s
        ``memories`` for every later frame (its ``t_pos`` may change; the result stays
        exact). Memory cost: ``2 * layers * hw * C`` numbers per object (32 MiB float32).
        """
        x = maskmem_features.flatten(2).transpose(1, 2) if maskmem_features.ndim == 4 else maskmem_features
        x = x.to(self.dtype)
        if maskmem_pos_enc is None:
            pos = self.memory_pos_tokens(x.device, x.dtype)
        else:
            pos = maskmem_pos_enc.flatten(2).transpose(1, 2) if maskmem_pos_enc.ndim == 4 else maskmem_pos_enc
        return project_memory_frame(self.memory_attention, x, pos.to(x.dtype))

    def memory_frame_cache(self, image_embed: torch.Tensor) -> FrameCache:
        """Speed: a frame's image-only memory-attention work (layer 0), batch 1.

        Pass it as ``frame_cache`` to several :meth:`condition_on_memory` calls on the same
        frame (e.g. one per group of objects with the same number of memories).
        """
        curr = image_embed[:1].to(self.dtype).flatten(2).transpose(1, 2)
        pos = self.image_pos_enc(curr.device, curr.dtype).flatten(2).transpose(1, 2)
        return make_frame_cache(self.memory_attention, curr, pos)

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
        ``(maskmem_features (B, *memory_shape), maskmem_pos_enc (1|B, M, h, w) or
        (1|B, tokens, M) or None (the model's own), t_pos)`` in the official order; ``t_pos`` is 0 for conditioning frames and
        ``num_maskmem - k`` for the frame ``k`` steps before the current one (1 <= k <
        num_maskmem). ``obj_ptrs``: list of ``(obj_ptr (B, C), signed_distance)`` with
        ``signed_distance = (current - t) * (+1 forward / -1 reverse)``; the model takes
        ``abs`` when the config does not use signed distances. ``num_frames``: the video
        length (pointer distances are normalised by ``min(num_frames, 16) - 1``).

        Speed options (exact): ``maskmem_features`` may be a :class:`ProjectedMemory` from
        :meth:`project_memory` (its ``maskmem_pos_enc`` is then ignored); with
        ``image_embed`` of batch 1 and ``B`` objects, the image-only layer-0 work runs once
        (or comes from ``frame_cache``, see :meth:`memory_frame_cache`). Objects batched
        together must have the same number of memories and pointers.
        Returns ``(B, C, h, w)``.
        """
        cfg = self.config
        if not memories:
            raise ValueError("condition_on_memory needs at least one memory (a conditioning frame)")
        dtype = self.dtype
        _, C, h, w = image_embed.shape
        curr = image_embed.to(dtype).flatten(2).transpose(1, 2)
        curr_pos = self.image_pos_enc(curr.device, dtype).flatten(2).transpose(1, 2)

        tpos_table = self.maskmem_tpos_enc.view(cfg.num_maskmem, -1).to(dtype)
        pointers = None
        if cfg.use_obj_ptrs_in_encoder and obj_ptrs:
            pointers = object_pointer_tokens(cfg, self.obj_ptr_tpos_proj, obj_ptrs, num_frames, dtype)
        projected, raw = memory_tokens(memories, tpos_table, pointers, dtype,
                                       self.memory_pos_tokens(curr.device, dtype))
        batch = max([pm.batch for pm, _ in projected] + ([raw.keys_in.shape[0]] if raw else []))
        if curr.shape[0] not in (1, batch):
            raise ValueError(f"image_embed batch {curr.shape[0]} does not match {batch} objects")
        out = attend_memories(self.memory_attention, curr, curr_pos, projected, tpos_table, raw,
                              frame_cache if curr.shape[0] == 1 else None)
        return out.transpose(1, 2).reshape(out.shape[0], C, h, w)
