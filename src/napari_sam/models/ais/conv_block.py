"""Two 3x3 convolutions, each after an instance norm and followed by a ReLU.

torch_em's ``ConvBlock2d`` (its default norm, ``InstanceNorm``: no affine weights, no running
statistics, so only the two convolutions hold tensors). The layers sit in one ``block``
sequence at torch_em's indices (convolutions at 1 and 4), so the state-dict keys are
``<name>.block.1.weight`` ... as in micro-sam's ``decoder_state``.
"""

from __future__ import annotations

from torch import Tensor, nn


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
        return self.block(x)
