"""One step up the UNETR's embedding path: x2 upsampling, a 3x3 convolution, batch norm, ReLU.

torch_em's ``Deconv2DBlock``: ``block`` = (upsampler, ``SingleConv2DBlock`` — a module whose
``block`` is the 3x3 convolution —, ``BatchNorm2d``, ``ReLU``); keys ``<name>.block.0.conv``
(or ``.block.0.block`` with transposed convolutions), ``<name>.block.1.block``,
``<name>.block.2`` (batch-norm weight, bias and running statistics). Inference uses the
running statistics (the module is put in eval mode), folded into the convolution.
"""

from __future__ import annotations

from torch import Tensor, nn

from .fused import batch_norm_conv
from .upsampler import Wrapped, upsampler


def Conv3x3(in_channels: int, out_channels: int) -> nn.Module:  # noqa: N802  (a layer, named as one)
    """A 3x3 convolution, wrapped as torch_em's ``SingleConv2DBlock`` (attribute ``block``)."""
    return Wrapped(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))


class DeconvBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, transposed: bool = False) -> None:
        super().__init__()
        self.block = nn.Sequential(
            upsampler(in_channels, out_channels, transposed),
            Conv3x3(out_channels, out_channels),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            return self.block(x)
        up, conv, bn, _ = self.block
        return batch_norm_conv(up(x), conv.block, bn).relu_()
