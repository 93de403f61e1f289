"""The inverted-residual convolution block of TinyViT's first stage (MobileNetV2's MBConv)."""

from __future__ import annotations

import torch
from torch import nn

from .conv_bn import ConvBN, gelu_


class MBConv(nn.Module):
    """1x1 expand -> 3x3 depthwise -> 1x1 project, GELU after each, a residual before the last GELU."""

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = ConvBN(dim, hidden, 1)
        self.conv2 = ConvBN(hidden, hidden, 3, groups=hidden)
        self.conv3 = ConvBN(hidden, dim, 1, bn_weight_init=0.0)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = gelu_(self.conv1(x))  # self.act is that GELU (kept as a module: the official layout)
        y = gelu_(self.conv2(y))
        return gelu_(self.conv3(y).add_(x))
