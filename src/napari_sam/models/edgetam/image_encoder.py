"""EdgeTAM image encoder (``image_encoder.*``): RepViT-M1 trunk + SAM 2's FPN neck.

Keys: ``trunk.body.*`` (see :mod:`.repvit`) and ``neck.convs.{0..3}.conv.*`` (``convs.0``
takes the lowest-resolution stage, 384 channels). ``scalp = 1`` drops the stride-32 level,
so ``forward`` returns 3 levels at strides 4, 8, 16 (256, 128, 64 px at 1024), highest
resolution first — the official ``backbone_fpn``; its last level is ``vision_features``.
The official ``vision_pos_enc`` are parameter-free sine grids
(:func:`napari_sam.models.sam2.positions.sine_grid`). :meth:`EdgeTamImageEncoder.fuse_`
turns on the folded trunk (:mod:`.folding`; on in every :func:`~.build.build_edgetam` model).
"""

from __future__ import annotations

import torch
from torch import nn

from ..sam2.image_encoder import FpnNeck
from .config import EdgeTamConfig
from .repvit import RepVitTrunk


class EdgeTamImageEncoder(nn.Module):
    def __init__(self, cfg: EdgeTamConfig) -> None:
        super().__init__()
        self.trunk = RepVitTrunk(cfg.repvit_embed_dim, cfg.repvit_depth, cfg.repvit_mlp_ratio)
        self.neck = FpnNeck(cfg)  # reads channel_list, d_model, fpn_top_down_levels, fpn_interp_mode
        self.scalp = cfg.scalp

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        levels = self.neck(self.trunk(x))
        levels = levels[: len(levels) - self.scalp] if self.scalp > 0 else levels
        return [lv.contiguous() for lv in levels]  # the folded trunk runs channels-last

    @property
    def fused(self) -> bool:
        return self.trunk.folded

    def fuse_(self, enabled: bool = True) -> "EdgeTamImageEncoder":
        """Fold the trunk's batch norms and re-parameterised branches into single convs
        whenever it runs in eval mode without autograd (``enabled=False``: the plain path).

        The ``state_dict()`` keeps the official keys and values; load weights before or
        after (the folded tensors follow every change of the weights). Returns ``self``.
        """
        self.trunk.fold_(enabled)
        return self
