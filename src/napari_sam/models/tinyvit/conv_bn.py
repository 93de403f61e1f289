"""A bias-free convolution followed by batch norm (TinyViT's ``Conv2d_BN``: keys ``c`` and ``bn``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..common.layers import pointwise_conv


def gelu_(x: torch.Tensor) -> torch.Tensor:
    """Exact (erf) GELU written over ``x`` when no gradient needs the input (inference):
    a fresh activation-sized output costs more in page faults than the arithmetic on a
    CPU; with autograd recording, the out-of-place ``F.gelu``."""
    if x.requires_grad:
        return F.gelu(x)
    return torch.ops.aten.gelu_(x)


class ConvBN(nn.Sequential):
    """``Conv2d(in, out, kernel, stride, kernel // 2, groups, bias=False)`` then ``BatchNorm2d``.

    ``bn_weight_init`` is the initial batch-norm scale (TinyViT starts residual branches at 0).
    In eval mode the batch norm (running statistics) is folded into the convolution's weight
    and bias for each call: one pass over the activations instead of two, the same result up
    to fp32 rounding.
    """

    def __init__(self, in_chans: int, out_chans: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 bn_weight_init: float = 1.0) -> None:
        super().__init__()
        self.c = nn.Conv2d(in_chans, out_chans, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chans)
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.zeros_(self.bn.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self.bn(self.c(x))
        c, bn = self.c, self.bn
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        weight = c.weight * scale.to(c.weight.dtype)[:, None, None, None]
        bias = (bn.bias - bn.running_mean * scale).to(weight.dtype)
        if c.kernel_size == (1, 1) and c.stride == (1, 1) and c.groups == 1:
            return pointwise_conv(x, weight, bias)
        return F.conv2d(x, weight, bias, c.stride, c.padding, c.dilation, c.groups)
