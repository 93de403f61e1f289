"""EdgeTAM image encoder (``image_encoder.*``): RepViT-M1 trunk + SAM 2's FPN neck.

Keys: ``trunk.body.*`` (see :mod:`.repvit`) and ``neck.convs.{0..3}.conv.*`` (``convs.0``
takes the lowest-resolution stage, 384 channels). ``scalp = 1`` drops the stride-32 level,
so ``forward`` returns 3 levels at strides 4, 8, 16 (256, 128, 64 px at 1024), highest
resolution first — the official ``backbone_fpn``; its last level is ``vision_features``.
The official ``vision_pos_enc`` are parameter-free sine grids
(:func:`napari_sam.models.sam2.positions.sine_grid`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..sam2.image_encoder import FpnNeck
from .config import EdgeTamConfig
from .repvit import RepVitTrunk, fuse_repvit_


class EdgeTamImageEncoder(nn.Module):
    def __init__(self, cfg: EdgeTamConfig) -> None:
        super().__init__()
        self.trunk = RepVitTrunk(cfg.repvit_embed_dim, cfg.repvit_depth, cfg.repvit_mlp_ratio)
        self.neck = FpnNeck(cfg)  # reads channel_list, d_model, fpn_top_down_levels, fpn_interp_mode
        self.scalp = cfg.scalp

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        levels = self.neck(self.trunk(x))
        return levels[: len(levels) - self.scalp] if self.scalp > 0 else levels

    def fuse_(self) -> "EdgeTamImageEncoder":
        """Fold the trunk's batch norms and re-parameterised branches into single convs
        (inference only; call after loading the weights — the trunk's keys change)."""
        fuse_repvit_(self.trunk)
        return self
