"""SAM 2 image encoder (``image_encoder.*``): Hiera trunk + FPN neck.

The neck projects every trunk stage to ``d_model`` channels with a 1x1 conv
(``neck.convs.0`` takes the *lowest*-resolution stage) and adds a nearest-upsampled
top-down path into the levels listed in ``fpn_top_down_levels``. ``scalp`` drops the
lowest-resolution level(s), so the official models output 3 levels at strides 4, 8, 16.
Position encodings are parameter-free sine grids (see :mod:`.positions`), not computed here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import Sam2Config
from .hiera import Hiera


class _Lateral(nn.Module):
    """A 1x1 projection (kept in its own module for the ``convs.i.conv`` key names)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_dim, out_dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class FpnNeck(nn.Module):
    """Feature pyramid without output convs; returns levels highest resolution first."""

    def __init__(self, cfg: Sam2Config) -> None:
        super().__init__()
        self.convs = nn.ModuleList(_Lateral(c, cfg.d_model) for c in cfg.channel_list)
        self.top_down_levels = set(cfg.fpn_top_down_levels)
        self.interp_mode = cfg.fpn_interp_mode

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        n = len(xs) - 1
        out: list[torch.Tensor] = [None] * len(xs)  # type: ignore[list-item]
        prev = None
        for level in range(n, -1, -1):
            lateral = self.convs[n - level](xs[level])
            if level in self.top_down_levels and prev is not None:
                # the official neck upsamples in float32 (matters under autocast)
                top_down = F.interpolate(
                    prev.float(), scale_factor=2.0, mode=self.interp_mode,
                    align_corners=None if self.interp_mode == "nearest" else False,
                )
                prev = lateral + top_down
            else:
                prev = lateral
            out[level] = prev
        return out


class ImageEncoder(nn.Module):
    """Trunk + neck; ``forward`` -> FPN levels (after scalp), highest resolution first."""

    def __init__(self, cfg: Sam2Config) -> None:
        super().__init__()
        self.trunk = Hiera(cfg)
        self.neck = FpnNeck(cfg)
        self.scalp = cfg.scalp

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        levels = self.neck(self.trunk(x))
        return levels[: len(levels) - self.scalp] if self.scalp > 0 else levels
