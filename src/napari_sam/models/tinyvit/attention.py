"""TinyViT window attention: learned biases per head for each (|dy|, |dx|) offset inside a window."""

from __future__ import annotations

import torch
from torch import nn

from ..common import attention


def offset_index(window: int) -> torch.Tensor:
    """``(w*w, w*w)`` int64: for each pair of tokens of a ``window`` x ``window`` window, the
    column of its ``(|dy|, |dx|)`` offset in the bias table, numbered in first-seen order
    scanning (row-major) query then key tokens — the order the official table is stored in."""
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = (ys[:, None] - ys[None, :]).abs()
    dx = (xs[:, None] - xs[None, :]).abs()
    # first-seen order of (|dy|, |dx|) in that scan: the query at (0, 0) meets every offset
    # first, in row-major key order, so the column of (dy, dx) is dy * window + dx
    return dy * window + dx


class WindowAttention(nn.Module):
    """Pre-norm multi-head attention over windows of ``window`` x ``window`` tokens.

    ``(N_windows, window**2, dim)`` -> same shape. Keys: ``norm``, ``qkv`` (per head q, k
    and v side by side), ``proj``, ``attention_biases (heads, window**2)``.
    """

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window * window))
        self.register_buffer("bias_index", offset_index(window), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, 3, self.head_dim).permute(3, 0, 2, 1, 4)
        bias = self.attention_biases[:, self.bias_index].to(x.dtype)  # (heads, n, n)
        # expanded (a view) to the full (windows, heads, n, n): PyTorch's CPU attention takes
        # its fused kernel for a mask of that shape, its 4x slower composite for a broadcast one
        out = attention(qkv[0], qkv[1], qkv[2], bias=bias.expand(b, -1, -1, -1))
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))
