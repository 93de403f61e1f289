"""TinyViT's stem: two stride-2 3x3 conv + batch-norm layers with a GELU between (1/4 resolution)."""

from __future__ import annotations

import torch
from torch import nn

from .conv_bn import ConvBN, gelu_


class PatchEmbed(nn.Module):
    """``(B, in_chans, H, W)`` -> ``(B, embed_dim, H/4, W/4)``; keys ``seq.0`` / ``seq.2``."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            ConvBN(in_chans, embed_dim // 2, 3, 2),
            nn.GELU(),
            ConvBN(embed_dim // 2, embed_dim, 3, 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv1, _, conv2 = self.seq
        return conv2(gelu_(conv1(x)))
