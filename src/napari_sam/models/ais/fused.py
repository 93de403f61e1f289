"""Inference shortcuts of the AIS decoder: the same numbers as the plain layers, fewer passes.

* :func:`norm_conv` — ``conv3x3(instance_norm(x))`` with the normalisation folded into the
  convolution. Per channel the norm is ``(x - m) * r``; so the convolution of the normalised,
  zero-padded input is the convolution of ``x`` itself with weights ``W * r`` and bias
  ``b - sum_k A_k`` (``A = sum_c W * r * m`` per output channel and tap), except on the
  one-pixel frame, where the taps that fall on the zero padding would have read ``0`` (not
  ``x = m``): those taps' ``A`` terms are added back there. The normalised tensor (as large as
  the input: 512 MB at 1024 px, 128 channels) is never made; the statistics take one read.
* :func:`batch_norm_conv` — ``batch_norm(conv(x))`` in eval mode as one convolution.

Equal to the plain layers up to float32 rounding (checked in tests/models/test_ais_fast_path.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_CHUNK = 1 << 15  # pixels per piece of the centred pass (a few MB: stays in cache)
_BLOCK = 512  # pixels summed by one matrix-vector product before the float64 total


def _column_sums(v: Tensor) -> Tensor:
    """Float64 sums of the columns of an ``(n, C)`` float tensor: blocks of ``_BLOCK`` rows
    summed by one batched matrix product (fast in either layout), the block sums in float64
    (so the rounding does not grow with the image)."""
    n, c = v.shape
    k = n // _BLOCK
    out = v.new_zeros(c, dtype=torch.float64)
    if k:
        blocks = torch.matmul(v.new_ones(1, _BLOCK), v[: k * _BLOCK].reshape(k, _BLOCK, c))  # (k, 1, C)
        out += blocks[:, 0].double().sum(0)
    if n > k * _BLOCK:
        out += v[k * _BLOCK:].double().sum(0)
    return out


def channel_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and (biased) variance per channel of one ``(C, H, W)`` image, in any memory
    format: a pass for the mean, a centred pass for the variance (no cancellation)."""
    c = x.shape[0]
    hwc = x.permute(1, 2, 0)
    v = hwc.reshape(-1, c) if hwc.is_contiguous() else x.reshape(c, -1).t()
    n = v.shape[0]
    mean = _column_sums(v) / n
    m32 = mean.to(v.dtype)
    squares = v.new_zeros(c, dtype=torch.float64)
    for start in range(0, n, _CHUNK):
        squares += _column_sums((v[start:start + _CHUNK] - m32).square_())
    var = squares / n - (mean - m32.double()) ** 2  # the float32 rounding of the centre
    return m32, var.to(v.dtype)


def norm_conv(x: Tensor, weight: Tensor, bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """``F.conv2d(F.instance_norm(x, eps=eps), weight, bias, padding=1)`` for a 3x3 ``weight``
    (Cout, Cin, 3, 3), folded."""
    if tuple(weight.shape[2:]) != (3, 3) or x.shape[-2] < 3 or x.shape[-1] < 3:
        return F.conv2d(F.instance_norm(x, eps=eps), weight, bias, padding=weight.shape[-1] // 2)
    if x.shape[0] != 1:
        return torch.cat([norm_conv(x[i:i + 1], weight, bias, eps) for i in range(x.shape[0])])
    mean, var = channel_stats(x[0])
    r = torch.rsqrt(var + eps)
    weight = weight * r[None, :, None, None]
    taps = (weight * mean[None, :, None, None]).sum(1)  # (Cout, 3, 3): what x = m adds per tap
    inner = taps.sum((1, 2))
    bias = -inner if bias is None else bias - inner
    y = F.conv2d(x, weight, bias, padding=1)
    # the frame: taps outside the image read 0 after the norm, so they must not subtract m
    edge = F.conv2d(x.new_ones(1, 1, 3, 3), taps[:, None], padding=1)[0]  # (Cout, 3, 3)
    fix = inner[:, None, None] - edge  # zero at the centre
    y[0, :, 0, 1:-1] += fix[:, 0, 1:2]
    y[0, :, -1, 1:-1] += fix[:, 2, 1:2]
    y[0, :, 1:-1, 0] += fix[:, 1, 0:1]
    y[0, :, 1:-1, -1] += fix[:, 1, 2:3]
    for i, j in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        y[0, :, i, j] += fix[:, i if i == 0 else 2, j if j == 0 else 2]
    return y


def batch_norm_conv(x: Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> Tensor:
    """``bn(conv(x))`` with ``bn``'s running statistics folded into the convolution."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    weight = conv.weight * scale[:, None, None, None]
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
