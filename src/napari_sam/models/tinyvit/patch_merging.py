"""Between TinyViT stages: 1x1 conv -> strided 3x3 depthwise conv -> 1x1 conv (batch-norm each)."""

from __future__ import annotations

import torch
from torch import nn

from .conv_bn import ConvBN, gelu_


class PatchMerging(nn.Module):
    """``(B, C, H, W)`` or tokens ``(B, H*W, C)`` of a ``resolution`` grid -> tokens ``(B, H'*W', out_dim)``.

    ``stride`` 2 halves the grid; MobileSAM's last merge keeps it (stride 1), so that the
    encoder ends at 1/16 of the input like SAM's ViT.
    """

    def __init__(self, resolution: tuple[int, int], dim: int, out_dim: int, stride: int = 2) -> None:
        super().__init__()
        self.resolution = tuple(resolution)
        self.stride = stride
        self.conv1 = ConvBN(dim, out_dim, 1)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim, 1)
        self.act = nn.GELU()

    @property
    def out_resolution(self) -> tuple[int, int]:
        return tuple((n - 1) // self.stride + 1 for n in self.resolution)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:  # tokens: viewed as a channels-last image (no copy)
            h, w = self.resolution
            x = x.view(x.shape[0], h, w, -1).permute(0, 3, 1, 2)
        x = gelu_(self.conv1(x))
        x = gelu_(self.conv2(x))
        return self.conv3(x).flatten(2).transpose(1, 2).contiguous()  # a view when channels last
