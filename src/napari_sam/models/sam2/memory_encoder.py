"""SAM 2 memory encoder (``memory_encoder.*``): frame features + predicted mask -> memory.

The full-resolution mask (already passed through sigmoid / binarised and scaled by the
caller) is downsampled 16x by four stride-2 convs (each followed by a channel LayerNorm
and GELU) and a 1x1 conv to ``d_model`` channels, added to the projected frame features,
fused by two ConvNeXt blocks and projected to ``mem_dim`` (64) channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..common import LayerNorm2d
from .config import Sam2Config


class MaskDownSampler(nn.Module):
    """``(B, 1, S, S)`` -> ``(B, d_model, S/16, S/16)``; keys ``encoder.{0,1,3,4,...,12}``."""

    def __init__(self, embed_dim: int = 256, total_stride: int = 16, stride: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        chans = 1
        for _ in range(total_stride.bit_length() - 1):  # log2(16) = 4 stride-2 steps
            out = chans * stride * stride
            layers += [nn.Conv2d(chans, out, kernel_size=3, stride=stride, padding=1),
                       LayerNorm2d(out), nn.GELU()]
            chans = out
        layers.append(nn.Conv2d(chans, embed_dim, kernel_size=1))
        self.encoder = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


class CXBlock(nn.Module):
    """ConvNeXt block: depthwise 7x7, channel LayerNorm, MLP (x4), layer scale, residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)
        y = self.pwconv2(F.gelu(self.pwconv1(y))) * self.gamma
        return x + y.permute(0, 3, 1, 2)


class Fuser(nn.Module):
    """A stack of :class:`CXBlock` (``fuser.layers.i``)."""

    def __init__(self, dim: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CXBlock(dim) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """``forward(pix_feat (B, C, h, w), mask (B, 1, S, S)) -> (B, mem_dim, h, w)``.

    ``mask`` is used as given (the caller has already applied sigmoid or binarisation and
    the scale / bias). The memory's positional encoding is the constant
    ``sine_grid(mem_dim, h, w)``, provided by the model.
    """

    def __init__(self, cfg: Sam2Config) -> None:
        super().__init__()
        dim = cfg.d_model
        self.mask_downsampler = MaskDownSampler(dim, total_stride=cfg.backbone_stride)
        self.pix_feat_proj = nn.Conv2d(dim, dim, kernel_size=1)
        self.fuser = Fuser(dim, cfg.fuser_layers)
        self.out_proj = nn.Conv2d(dim, cfg.mem_dim, kernel_size=1)

    def forward(self, pix_feat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``pix_feat`` may be one frame's features expanded over the objects (batch stride
        0): its projection, the same for every object, is then computed once."""
        masks = self.mask_downsampler(mask)
        pix_feat = pix_feat.to(masks.device)
        if pix_feat.shape[0] > 1 and pix_feat.stride(0) == 0:
            pix_feat = pix_feat[:1].clone(memory_format=torch.contiguous_format)  # as one object's
        x = self.pix_feat_proj(pix_feat) + masks
        return self.out_proj(self.fuser(x))
