"""``ToTensor``, ``Resize`` and ``Normalize`` on tensors, as torchvision documents them."""

from __future__ import annotations

from typing import List

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import functional  # noqa: F401  (``torchvision.transforms.functional``)


class ToTensor:
    """(H, W) or (H, W, C) array -> (C, H, W) tensor; uint8 is scaled to [0, 1]."""

    def __call__(self, pic):
        arr = np.asarray(pic)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).contiguous()
        return t.float().div(255) if t.dtype == torch.uint8 else t


class Resize(nn.Module):
    """Resize a (..., C, H, W) tensor to ``size`` = (h, w): bilinear, antialiased."""

    def __init__(self, size, antialias: bool = True):
        super().__init__()
        self.size: List[int] = [int(size), int(size)] if isinstance(size, int) else [int(s) for s in size]
        self.antialias = antialias

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        squeeze = img.dim() == 3
        x = img.unsqueeze(0) if squeeze else img
        out_dtype = x.dtype
        if not x.is_floating_point():
            x = x.float()
        x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=self.antialias)
        if out_dtype != x.dtype:
            x = x.round().to(out_dtype)
        return x.squeeze(0) if squeeze else x


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel of a (..., C, H, W) tensor."""

    def __init__(self, mean: List[float], std: List[float]):
        super().__init__()
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]

    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
        return (tensor - mean) / std
