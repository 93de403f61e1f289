"""TinyViT stages: the convolutional first stage and the attention stages, each ending with an
optional :class:`PatchMerging` (key ``downsample``)."""

from __future__ import annotations

import torch
from torch import nn

from .block import TinyViTBlock
from .mbconv import MBConv
from .patch_merging import PatchMerging


class ConvStage(nn.Module):
    """``depth`` :class:`MBConv` blocks on ``(B, C, H, W)``, then the merge (-> tokens)."""

    def __init__(self, dim: int, depth: int, expand_ratio: float, downsample: PatchMerging | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio) for _ in range(depth))
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return x if self.downsample is None else self.downsample(x)


class AttentionStage(nn.Module):
    """``depth`` :class:`TinyViTBlock` s on tokens of a ``resolution`` grid, then the merge."""

    def __init__(self, dim: int, resolution: tuple[int, int], depth: int, num_heads: int, window: int,
                 mlp_ratio: float, local_conv_size: int, downsample: PatchMerging | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TinyViTBlock(dim, resolution, num_heads, window, mlp_ratio, local_conv_size) for _ in range(depth)
        )
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return x if self.downsample is None else self.downsample(x)
