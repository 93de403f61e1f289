"""Doubling the resolution: torch_em's two upsamplers.

* :class:`InterpolateUp` (``Upsampler2d``, micro-sam's default): bilinear x2
  (``align_corners=False``), then a 1x1 convolution ``conv`` that sets the channel count.
  Computed the other way round: a 1x1 convolution is the same linear map at every pixel and
  bilinear weights sum to 1, so the two commute (bias included); convolving first does it on
  a quarter of the pixels, and the interpolation moves the smaller of the two channel counts
  when the convolution narrows.
* :class:`TransposeUp` (``SingleDeconv2DBlock``): a 2x2 stride-2 transposed convolution
  ``block``. micro-sam picks it when a decoder state has ``.block.`` keys under
  ``decoder.samplers`` (see :func:`napari_sam.models.ais.build.uses_transposed_convs`).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..common.layers import pointwise_conv


class InterpolateUp(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        y = pointwise_conv(x, self.conv.weight, self.conv.bias)
        return F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)


class Wrapped(nn.Module):
    """One layer held as ``block`` (torch_em's single-layer blocks: the key names ``.block.*``)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.block = layer

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


def TransposeUp(in_channels: int, out_channels: int) -> nn.Module:  # noqa: N802  (a layer, named as one)
    """torch_em's ``SingleDeconv2DBlock``: a 2x2 stride-2 transposed convolution as ``block``."""
    return Wrapped(nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2))


def upsampler(in_channels: int, out_channels: int, transposed: bool) -> nn.Module:
    return (TransposeUp if transposed else InterpolateUp)(in_channels, out_channels)
