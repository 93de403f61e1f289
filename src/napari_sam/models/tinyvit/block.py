"""One TinyViT transformer block: window attention, a depthwise 3x3 conv, a pre-norm MLP."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import WindowAttention
from .conv_bn import ConvBN, gelu_


class TokenMLP(nn.Module):
    """``norm`` -> ``fc1`` -> GELU -> ``fc2`` (TinyViT's ``Mlp``, its LayerNorm inside)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(gelu_(self.fc1(self.norm(x))))  # self.act: that GELU, as a module


class TinyViTBlock(nn.Module):
    """Tokens ``(B, H*W, dim)`` of a ``resolution`` grid -> the same.

    The grid is zero-padded at the bottom / right to whole windows *before* the attention's
    LayerNorm, as in MobileSAM: padded tokens take part as keys (their values are the
    normalisation's bias, not zeros). A grid of exactly one window skips the partition.
    """

    def __init__(self, dim: int, resolution: tuple[int, int], num_heads: int, window: int,
                 mlp_ratio: float = 4.0, local_conv_size: int = 3) -> None:
        super().__init__()
        self.resolution = tuple(resolution)
        self.window = window
        self.attn = WindowAttention(dim, num_heads, window)
        self.mlp = TokenMLP(dim, int(dim * mlp_ratio))
        self.local_conv = ConvBN(dim, dim, local_conv_size, groups=dim)

    def _windowed_attention(self, x: torch.Tensor) -> torch.Tensor:
        (h, w), s = self.resolution, self.window
        b, n, c = x.shape
        if h == s and w == s:
            return self.attn(x)
        pad_b, pad_r = (s - h % s) % s, (s - w % s) % s
        grid = F.pad(x.view(b, h, w, c), (0, 0, 0, pad_r, 0, pad_b))
        ph, pw = h + pad_b, w + pad_r
        win = grid.view(b, ph // s, s, pw // s, s, c).transpose(2, 3).reshape(-1, s * s, c)
        out = self.attn(win).view(b, ph // s, pw // s, s, s, c).transpose(2, 3).reshape(b, ph, pw, c)
        return out[:, :h, :w].reshape(b, n, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.resolution
        b, n, c = x.shape
        if n != h * w:
            raise ValueError(f"expected {h}x{w} = {h * w} tokens, got {n}")
        x = x + self._windowed_attention(x)
        # the depthwise conv on the tokens viewed as a channels-last image: no copies either way
        x = self.local_conv(x.view(b, h, w, c).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).reshape(b, n, c)
        return x + self.mlp(x)
