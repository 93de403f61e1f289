"""SAM 2 / 2.1 configurations: the four official sizes x two versions, plus reduced ones.

Every value mirrors the official ``sam2`` 1.1.0 yaml configs (``configs/sam2/*.yaml``,
``configs/sam2.1/*.yaml``) together with the overrides the official builders apply
(``build_sam2``: dynamic multimask via stability; ``build_sam2_video_predictor`` also:
binarise masks from clicks for the memory encoder, fill-hole area 8 — the latter belongs
to the video engine, not the model).

2.0 and 2.1 differ in exactly these flags: ``no_obj_embed_spatial`` (adds the
``no_obj_embed_spatial`` parameter), ``add_tpos_enc_to_obj_ptrs``,
``proj_tpos_enc_in_obj_ptrs`` (adds ``obj_ptr_tpos_proj.*``) and
``use_signed_tpos_enc_to_obj_ptrs``.

Everything that the official code ties to 1024 px (the 64 x 64 feature grid, RoPE grid,
prompt-encoder sizes) is derived from ``image_size`` here, so reduced test configs can
use e.g. 256 px.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Sam2Config:
    """All hyper-parameters of one SAM 2 model (defaults: ``sam2.1_hiera_tiny``)."""

    name: str = "sam2.1_hiera_tiny"
    version: str = "2.1"  # "2.0" | "2.1"
    image_size: int = 1024

    # Hiera trunk
    embed_dim: int = 96
    num_heads: int = 1
    stages: tuple[int, ...] = (1, 2, 7, 2)
    global_att_blocks: tuple[int, ...] = (5, 7, 9)
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (7, 7)
    q_pool: int = 3
    q_stride: tuple[int, int] = (2, 2)
    dim_mul: float = 2.0
    head_mul: float = 2.0

    # FPN neck
    d_model: int = 256
    fpn_top_down_levels: tuple[int, ...] = (2, 3)
    fpn_interp_mode: str = "nearest"
    scalp: int = 1
    backbone_stride: int = 16

    # memory
    num_maskmem: int = 7
    mem_dim: int = 64
    memory_attention_layers: int = 4
    memory_attention_ffn_dim: int = 2048
    rope_theta: float = 10000.0
    fuser_layers: int = 2
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0
    binarize_mask_from_pts_for_mem_enc: bool = True  # video-predictor override
    use_mask_input_as_output_without_sam: bool = True
    directly_add_no_mem_embed: bool = True
    max_cond_frames_in_attn: int = -1
    memory_temporal_stride_for_eval: int = 1
    non_overlap_masks_for_mem_enc: bool = False

    # SAM heads
    use_high_res_features_in_sam: bool = True
    multimask_output_in_sam: bool = True
    multimask_min_pt_num: int = 0
    multimask_max_pt_num: int = 1
    multimask_output_for_tracking: bool = True
    use_multimask_token_for_obj_ptr: bool = True
    iou_prediction_use_sigmoid: bool = True
    pred_obj_scores: bool = True
    pred_obj_scores_mlp: bool = True
    dynamic_multimask_via_stability: bool = True  # build_sam2 override
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98

    # object pointers
    use_obj_ptrs_in_encoder: bool = True
    max_obj_ptrs_in_encoder: int = 16
    use_mlp_for_obj_ptr_proj: bool = True
    fixed_no_obj_ptr: bool = True
    soft_no_obj_ptr: bool = False
    only_obj_ptrs_in_the_past_for_eval: bool = True

    # the 2.1 additions
    add_tpos_enc_to_obj_ptrs: bool = True
    proj_tpos_enc_in_obj_ptrs: bool = True
    use_signed_tpos_enc_to_obj_ptrs: bool = True
    no_obj_embed_spatial: bool = True

    def __post_init__(self) -> None:
        if self.version not in ("2.0", "2.1"):
            raise ValueError(f"SAM 2 version must be '2.0' or '2.1', got {self.version!r}")
        if len(self.stages) != len(self.window_spec):
            raise ValueError("stages and window_spec must have the same length")
        if self.image_size % (self.backbone_stride * 2) != 0:
            raise ValueError(f"image_size {self.image_size} must be a multiple of 32")
        if self.proj_tpos_enc_in_obj_ptrs and not self.add_tpos_enc_to_obj_ptrs:
            raise ValueError("proj_tpos_enc_in_obj_ptrs needs add_tpos_enc_to_obj_ptrs")

    @property
    def feat_size(self) -> int:
        """Side of the lowest-resolution feature grid (64 at 1024 px)."""
        return self.image_size // self.backbone_stride

    @property
    def low_res_size(self) -> int:
        """Side of the decoder's low-resolution mask logits (256 at 1024 px)."""
        return self.feat_size * 4

    @property
    def channel_list(self) -> tuple[int, ...]:
        """Trunk output channels, lowest resolution first (the neck's backbone_channel_list)."""
        dims = [int(self.embed_dim * self.dim_mul**i) for i in range(len(self.stages))]
        return tuple(reversed(dims))

    def replace(self, **changes) -> "Sam2Config":
        """A copy with some fields changed (e.g. a reduced test config)."""
        return dataclasses.replace(self, **changes)


_SIZES = {
    "tiny": dict(embed_dim=96, num_heads=1, stages=(1, 2, 7, 2), global_att_blocks=(5, 7, 9),
                 window_spec=(8, 4, 14, 7), window_pos_embed_bkg_spatial_size=(7, 7)),
    "small": dict(embed_dim=96, num_heads=1, stages=(1, 2, 11, 2), global_att_blocks=(7, 10, 13),
                  window_spec=(8, 4, 14, 7), window_pos_embed_bkg_spatial_size=(7, 7)),
    "base_plus": dict(embed_dim=112, num_heads=2, stages=(2, 3, 16, 3),
                      global_att_blocks=(12, 16, 20), window_spec=(8, 4, 14, 7),
                      window_pos_embed_bkg_spatial_size=(14, 14)),
    "large": dict(embed_dim=144, num_heads=2, stages=(2, 6, 36, 4), global_att_blocks=(23, 33, 43),
                  window_spec=(8, 4, 16, 8), window_pos_embed_bkg_spatial_size=(7, 7)),
}

_VERSIONS = {
    "2.0": dict(add_tpos_enc_to_obj_ptrs=False, proj_tpos_enc_in_obj_ptrs=False,
                use_signed_tpos_enc_to_obj_ptrs=False, no_obj_embed_spatial=False),
    "2.1": dict(add_tpos_enc_to_obj_ptrs=True, proj_tpos_enc_in_obj_ptrs=True,
                use_signed_tpos_enc_to_obj_ptrs=True, no_obj_embed_spatial=True),
}


def _make(version: str, size: str) -> Sam2Config:
    prefix = "sam2" if version == "2.0" else "sam2.1"
    return Sam2Config(name=f"{prefix}_hiera_{size}", version=version, **_SIZES[size], **_VERSIONS[version])


SAM2_CONFIGS: dict[str, Sam2Config] = {
    cfg.name: cfg for cfg in (_make(v, s) for v in ("2.0", "2.1") for s in _SIZES)
}
"""The eight official models by name, e.g. ``SAM2_CONFIGS["sam2.1_hiera_tiny"]``."""


def reduced_config(version: str = "2.1", image_size: int = 256, **changes) -> Sam2Config:
    """A small config for tests: 256 px, a 5-block Hiera of width 32, 2 memory layers.

    Same architecture and flags as the official models of ``version``; only sizes shrink.
    ``changes`` override any field.
    """
    base = _make(version, "tiny")
    small = dict(
        name=f"reduced_{version}", image_size=image_size, embed_dim=32, num_heads=1,
        stages=(1, 1, 2, 1), global_att_blocks=(3,), window_spec=(8, 4, 14, 7),
        window_pos_embed_bkg_spatial_size=(7, 7), memory_attention_layers=2,
    )
    small.update(changes)
    return base.replace(**small)
