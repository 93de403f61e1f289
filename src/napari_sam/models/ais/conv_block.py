"""Two 3x3 convolutions, each after an instance norm and followed by a ReLU.

torch_em's ``ConvBlock2d`` (its default norm, ``InstanceNorm``: no affine weights, no running
statistics, so only the two convolutions hold tensors). The layers sit in one ``block``
sequence at torch_em's indices (convolutions at 1 and 4), so the state-dict keys are
``<name>.block.1.weight`` ... as in micro-sam's ``decoder_state``.

In eval mode each norm is folded into the convolution after it (:func:`.fused.norm_conv`):
the same numbers without writing the normalised tensor.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .fused import norm_conv


class ConvBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.block = nn.Sequential(
            nn.InstanceNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.InstanceNorm2d(out_channels),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_parts([x])

    def forward_parts(self, parts: list[Tensor]) -> Tensor:
        """``forward(torch.cat(parts, dim=1))`` without making the concatenation (eval mode):
        the norm is per channel and the first convolution a sum over input channels, so
        each part is normalised and convolved with its slice of the weights, and the sums add."""
        if self.training:
            return self.block(parts[0] if len(parts) == 1 else torch.cat(parts, dim=1))
        n1, c1, _, n2, c2, _ = self.block
        y, start = None, 0
        for part in parts:
            if not part.is_contiguous(memory_format=torch.channels_last) and not part.is_contiguous():
                part = part.contiguous(memory_format=torch.channels_last)  # a channel crop
            k = part.shape[1]
            term = norm_conv(part, c1.weight[:, start:start + k], c1.bias if y is None else None, n1.eps)
            y = term if y is None else y.add_(term)
            start += k
        if start != c1.in_channels:
            raise ValueError(f"the parts hold {start} channels, the block takes {c1.in_channels}")
        return norm_conv(y.relu_(), c2.weight, c2.bias, n2.eps).relu_()
