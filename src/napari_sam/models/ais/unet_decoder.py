"""The UNETR's inner U-Net decoder: three levels of (upsample, join a skip input, ConvBlock).

torch_em's ``unet.Decoder`` as the UNETR builds it (features 512 -> 256 -> 128 -> 64, no
explicit skip channels). Joining follows torch_em exactly: the skip input is centre-cropped to
the upsampled tensor's shape *including the channel axis* before the two are concatenated.
Without skip connections (micro-sam's AIS decoder) the skip inputs are the embedding path's
512-, 256- and 128-channel maps, so the middle 256, 128 and 64 channels of each are used:
that is what the published decoders were trained with.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .conv_block import ConvBlock
from .upsampler import upsampler


def centre_crop(x: Tensor, shape: torch.Size) -> Tensor:
    """``x`` cut to ``shape`` on every axis after the batch axis, keeping the centre."""
    index = [slice(None)]
    for have, want in zip(x.shape[1:], shape[1:]):
        start = (have - want) // 2
        index.append(slice(start, start + want))
    return x[tuple(index)]


class UNetDecoder(nn.Module):
    def __init__(self, features: tuple[int, ...] = (512, 256, 128, 64), transposed: bool = False) -> None:
        super().__init__()
        pairs = list(zip(features[:-1], features[1:]))
        self.blocks = nn.ModuleList([ConvBlock(cin, cout) for cin, cout in pairs])
        self.samplers = nn.ModuleList([upsampler(cin, cout, transposed) for cin, cout in pairs])

    def forward(self, x: Tensor, skips: list[Tensor]) -> Tensor:
        if len(skips) != len(self.blocks):
            raise ValueError(f"the decoder takes {len(self.blocks)} skip inputs, got {len(skips)}")
        for block, sampler, skip in zip(self.blocks, self.samplers, skips):
            x = sampler(x)
            x = block.forward_parts([x, centre_crop(skip, x.shape)])  # = block(cat([...], dim=1))
        return x
