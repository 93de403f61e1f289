"""EdgeTAM configuration: every value mirrors the official ``edgetam.yaml`` (``edgetam-dimos`` 1.0.1).

EdgeTAM is SAM 2 with a RepViT-M1 image trunk (instead of Hiera), 2 memory-attention layers
whose cross attention reads a compressed memory (RoPE over a 64 x 64 query grid and a
16 x 16 key grid), and a spatial perceiver that turns each frame's 64 x 64 memory into
256 global + 256 2-D latents of 64 channels. Everything after the neck (prompt encoder,
mask decoder, object pointers, memory encoder) has SAM 2.0's shape and flags
(``add_tpos_enc_to_obj_ptrs: false``, no ``no_obj_embed_spatial``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class EdgeTamConfig:
    name: str = "edgetam"
    image_size: int = 1024

    # RepViT-M1 trunk (timm ``repvit_m1``)
    repvit_embed_dim: tuple[int, ...] = (48, 96, 192, 384)
    repvit_depth: tuple[int, ...] = (2, 2, 14, 2)
    repvit_mlp_ratio: int = 2

    # FPN neck (same neck as SAM 2)
    d_model: int = 256
    fpn_top_down_levels: tuple[int, ...] = (2, 3)
    fpn_interp_mode: str = "nearest"
    scalp: int = 1
    backbone_stride: int = 16

    # memory (official yaml values; used by the video side)
    num_maskmem: int = 7
    mem_dim: int = 64
    memory_attention_layers: int = 2
    memory_attention_ffn_dim: int = 2048
    rope_theta: float = 10000.0
    fuser_layers: int = 2

    # spatial perceiver
    perceiver_depth: int = 2
    perceiver_dim_head: int = 64
    perceiver_heads: int = 1
    perceiver_ff_mult: int = 4
    num_latents: int = 256
    num_latents_2d: int = 256

    def __post_init__(self) -> None:
        if len(self.repvit_embed_dim) != len(self.repvit_depth):
            raise ValueError("repvit_embed_dim and repvit_depth must have the same length")
        stride = 2 ** (len(self.repvit_depth) + 1)
        if self.image_size % stride != 0:
            raise ValueError(f"image_size {self.image_size} must be a multiple of {stride}")
        grid = int(round(self.num_latents_2d**0.5))
        if grid * grid != self.num_latents_2d or self.feat_size % grid:
            raise ValueError(f"the {self.feat_size}x{self.feat_size} memory grid of image_size "
                             f"{self.image_size} must split into the perceiver's {self.num_latents_2d} "
                             f"2-D latents (a square grid dividing it: image_size a multiple of "
                             f"{self.backbone_stride * grid})")

    @property
    def channel_list(self) -> tuple[int, ...]:
        """Trunk output channels, lowest resolution first (the neck's backbone_channel_list)."""
        return tuple(reversed(self.repvit_embed_dim))

    @property
    def feat_size(self) -> int:
        """Side of the lowest-resolution kept feature grid (64 at 1024 px)."""
        return self.image_size // self.backbone_stride

    def sam2_config(self):
        """The :class:`~napari_sam.models.sam2.Sam2Config` of everything after the image encoder.

        SAM 2.0's flags (the yaml's ``add_tpos_enc_to_obj_ptrs: false``, no
        ``no_obj_embed_spatial`` / ``obj_ptr_tpos_proj``) and the official builders'
        overrides, with EdgeTAM's sizes; its Hiera fields are unused (the image encoder is
        :class:`~.image_encoder.EdgeTamImageEncoder`).
        """
        from ..sam2.config import SAM2_CONFIGS

        return SAM2_CONFIGS["sam2_hiera_tiny"].replace(
            name=self.name, image_size=self.image_size, d_model=self.d_model,
            fpn_top_down_levels=self.fpn_top_down_levels, fpn_interp_mode=self.fpn_interp_mode,
            scalp=self.scalp, backbone_stride=self.backbone_stride, num_maskmem=self.num_maskmem,
            mem_dim=self.mem_dim, memory_attention_layers=self.memory_attention_layers,
            memory_attention_ffn_dim=self.memory_attention_ffn_dim, rope_theta=self.rope_theta,
            fuser_layers=self.fuser_layers,
        )

    def replace(self, **changes) -> "EdgeTamConfig":
        return dataclasses.replace(self, **changes)


EDGETAM_CONFIG = EdgeTamConfig()
"""The official EdgeTAM model."""
