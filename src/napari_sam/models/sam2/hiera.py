"""Hiera trunk of SAM 2 (``image_encoder.trunk.*``): a hierarchical ViT on a 2-D grid.

Four stages at strides 4, 8, 16, 32. The first block of stages 2-4 halves the grid by
max-pooling its queries (and its shortcut) and doubles the width and head count. Blocks
attend within square windows (zero-padded at the border, pads attended as tokens) except
the listed global blocks. Position: a bicubically resized background embedding plus a
tiled per-window embedding. Outputs the last block of each stage, channels first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..common import MLP, attention
from .config import Sam2Config


def window_partition(x: torch.Tensor, size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """``(B, H, W, C)`` -> ``(B * nWin, size, size, C)`` after zero-padding to a multiple."""
    b, h, w, c = x.shape
    pad_h, pad_w = -h % size, -w % size
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // size, size, wp // size, size, c).transpose(2, 3)
    return x.reshape(-1, size, size, c), (hp, wp)


def window_unpartition(x: torch.Tensor, size: int, padded: tuple[int, int],
                       hw: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`window_partition`, cropping the padding away."""
    hp, wp = padded
    h, w = hw
    b = x.shape[0] // ((hp // size) * (wp // size))
    x = x.reshape(b, hp // size, wp // size, size, size, -1).transpose(2, 3)
    x = x.reshape(b, hp, wp, -1)
    return x[:, :h, :w].contiguous() if (hp > h or wp > w) else x


def _max_pool_hw(x: torch.Tensor, stride: tuple[int, int]) -> torch.Tensor:
    """Max-pool a channels-last ``(B, H, W, C)`` grid by ``stride``."""
    x = F.max_pool2d(x.permute(0, 3, 1, 2), kernel_size=stride, stride=stride)
    return x.permute(0, 2, 3, 1)


class MultiScaleAttention(nn.Module):
    """Self-attention over a ``(B, H, W, C)`` grid, optionally with max-pooled queries."""

    def __init__(self, dim: int, dim_out: int, num_heads: int,
                 q_stride: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_stride = q_stride
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, HW, d)
        if self.q_stride:
            q = q.transpose(1, 2).reshape(b, h, w, -1)
            q = _max_pool_hw(q, self.q_stride)
            h, w = q.shape[1:3]
            q = q.reshape(b, h * w, self.num_heads, -1).transpose(1, 2)
        out = attention(q, k, v)  # (B, heads, hw, d)
        out = out.transpose(1, 2).reshape(b, h, w, -1)
        return self.proj(out)


class MultiScaleBlock(nn.Module):
    """Pre-norm transformer block; the first block of a stage pools and widens."""

    def __init__(self, dim: int, dim_out: int, num_heads: int, window_size: int,
                 q_stride: tuple[int, int] | None = None, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.dim, self.dim_out = dim, dim_out
        self.window_size = window_size
        self.q_stride = q_stride
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiScaleAttention(dim, dim_out, num_heads, q_stride)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(dim_out, int(dim_out * mlp_ratio), dim_out, 2, activation=F.gelu)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            shortcut = self.proj(x)
            if self.q_stride:
                shortcut = _max_pool_hw(shortcut, self.q_stride)

        size = self.window_size
        if size > 0:
            x, _ = window_partition(x, size)
        x = self.attn(x)
        if size > 0:
            if self.q_stride:
                size //= self.q_stride[0]
            h, w = shortcut.shape[1:3]
            padded = (h + (-h % size), w + (-w % size))
            x = window_unpartition(x, size, padded, (h, w))

        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """7x7 stride-4 convolution, returned channels-last."""

    def __init__(self, embed_dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class Hiera(nn.Module):
    """The SAM 2 image trunk; ``forward`` returns 4 maps, highest resolution first."""

    def __init__(self, cfg: Sam2Config) -> None:
        super().__init__()
        stages = cfg.stages
        self.stage_ends = [sum(stages[: i + 1]) - 1 for i in range(len(stages))]
        pool_blocks = [end + 1 for end in self.stage_ends[:-1]][: cfg.q_pool]

        dim, heads = cfg.embed_dim, cfg.num_heads
        self.patch_embed = PatchEmbed(dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, dim, *cfg.window_pos_embed_bkg_spatial_size))
        win0 = cfg.window_spec[0]
        self.pos_embed_window = nn.Parameter(torch.zeros(1, dim, win0, win0))

        self.blocks = nn.ModuleList()
        stage = 0
        for i in range(sum(stages)):
            # the window size lags one block behind the stage: a stage's first (pooling)
            # block still partitions with the previous stage's window
            window = 0 if i in cfg.global_att_blocks else cfg.window_spec[stage]
            dim_out = dim
            if i - 1 in self.stage_ends:
                dim_out = int(dim * cfg.dim_mul)
                heads = int(heads * cfg.head_mul)
                stage += 1
            q_stride = tuple(cfg.q_stride) if i in pool_blocks else None
            self.blocks.append(MultiScaleBlock(dim, dim_out, heads, window, q_stride))
            dim = dim_out

    def _pos_embed(self, h: int, w: int) -> torch.Tensor:
        pe = F.interpolate(self.pos_embed, size=(h, w), mode="bicubic")
        win = self.pos_embed_window
        pe = pe + win.tile(1, 1, h // win.shape[-2], w // win.shape[-1])
        return pe.permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        x = x + self._pos_embed(*x.shape[1:3])
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs
