"""EdgeTAM's spatial perceiver (``spatial_perceiver.*``): a frame's memory -> 512 tokens.

A frame's memory-encoder output ``(B, M, H, W)`` (M = 64 channels, 64 x 64 at 1024 px) with
its sine encoding becomes

* 256 *global* latents: learned queries (``latents``) cross-attending to all H*W memory
  tokens, the position encoding added to keys *and values*; their position encoding is 0;
* 256 *2-D* latents: one learned query per cell of a 16 x 16 grid (``latents_2d``),
  cross-attending only to the (H/16) x (W/16) window of memory tokens under it (no position
  encoding); their position encoding is the sine grid of the 16 x 16 latent map,

both through the same ``layers`` (cross attention + FFN, then self attention + FFN over the
latents) and the final ``norm``. Output ``(B, 512, M)`` tokens and ``(B, 512, M)`` positions,
global latents first — as the official ``PerceiverResampler.forward``.

Unlike the official ``forward_2d`` (whose ``.view`` on an expanded tensor fails for B >= 2),
any number of objects B is handled. In the 2-D path every latent is its own sequence of
length 1, so its self attention is exactly its value projection (softmax over one key is 1);
that is computed directly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..sam2.positions import sine_grid
from .config import EdgeTamConfig


def _feed_forward(dim: int, mult: int) -> nn.Sequential:
    """LayerNorm -> Linear -> GELU -> Linear (no biases in the linears); keys ``0``, ``1``, ``3``."""
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * mult, bias=False), nn.GELU(),
                         nn.Linear(dim * mult, dim, bias=False))


def _heads(x: torch.Tensor, n: int) -> torch.Tensor:
    b, t, c = x.shape
    return x.reshape(b, t, n, c // n).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    b, n, t, c = x.shape
    return x.transpose(1, 2).reshape(b, t, n * c)


class _Attention(nn.Module):
    """The projections both attentions share (``to_q``, ``to_kv``, ``to_out``, no biases)."""

    def __init__(self, dim: int, dim_head: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        inner = dim_head * heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def attend(self, queries: torch.Tensor, keys: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        """``queries`` attend to ``keys`` (both normed already); ``pos`` is added to keys and values."""
        q = _heads(self.to_q(queries), self.heads)
        k, v = (_heads(t, self.heads) for t in self.to_kv(keys).chunk(2, dim=-1))
        if pos is not None:
            pos = _heads(pos, self.heads)
            k, v = k + pos, v + pos
        return self.to_out(_merge(F.scaled_dot_product_attention(q, k, v)))


class CrossAttention(_Attention):
    """Latents attend to memory tokens (``norm_x``, ``norm_latents`` and the shared projections)."""

    def __init__(self, dim: int, dim_head: int, heads: int) -> None:
        super().__init__(dim, dim_head, heads)
        self.norm_x = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)

    def forward(self, latents: torch.Tensor, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        return self.attend(self.norm_latents(latents), self.norm_x(x), pos)


class SelfAttention(_Attention):
    """Self attention among the latents (``norm`` and the shared projections)."""

    def __init__(self, dim: int, dim_head: int, heads: int) -> None:
        super().__init__(dim, dim_head, heads)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        return self.attend(x, x)


class PerceiverLayer(nn.Module):
    def __init__(self, dim: int, dim_head: int, heads: int, ff_mult: int) -> None:
        super().__init__()
        self.attn = CrossAttention(dim, dim_head, heads)
        self.ff = _feed_forward(dim, ff_mult)
        self.self_attn = SelfAttention(dim, dim_head, heads)
        self.self_ff = _feed_forward(dim, ff_mult)

    def forward(self, latents: torch.Tensor, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        latents = latents + self.attn(latents, x, pos)
        latents = latents + self.ff(latents)
        latents = latents + self.self_attn(latents)
        return latents + self.self_ff(latents)


class SpatialPerceiver(nn.Module):
    """``forward(memory (B, M, H, W), pos (B, M, H, W))`` -> ``(tokens (B, N, M), pos (B, N, M))``."""

    def __init__(self, cfg: EdgeTamConfig) -> None:
        super().__init__()
        dim = cfg.mem_dim
        side = math.isqrt(cfg.num_latents_2d)
        if side * side != cfg.num_latents_2d:
            raise ValueError(f"num_latents_2d must be a square number, got {cfg.num_latents_2d}")
        self.grid = side
        self.latents = nn.Parameter(torch.randn(cfg.num_latents, dim))
        self.latents_2d = nn.Parameter(torch.randn(cfg.num_latents_2d, dim))
        self.layers = nn.ModuleList(
            PerceiverLayer(dim, cfg.perceiver_dim_head, cfg.perceiver_heads, cfg.perceiver_ff_mult)
            for _ in range(cfg.perceiver_depth)
        )
        self.norm = nn.LayerNorm(dim)

    @property
    def num_tokens(self) -> int:
        """Tokens per memory: global latents, then 2-D latents."""
        return self.latents.shape[0] + self.latents_2d.shape[0]

    def positions(self, device=None, dtype=None) -> torch.Tensor:
        """The position encoding of the output tokens, the same for every memory:
        ``(1, num_tokens, M)`` (0 for the global latents, the 2-D grid's sine encoding)."""
        c = self.latents.shape[1]
        pos_2d = sine_grid(c, self.grid, self.grid, device=device, dtype=dtype).flatten(2).transpose(1, 2)
        zeros = torch.zeros(1, self.latents.shape[0], c, device=pos_2d.device, dtype=pos_2d.dtype)
        return torch.cat([zeros, pos_2d], dim=1)

    def forward_global(self, x: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = x.shape[0]
        latents = self.latents.unsqueeze(0).expand(b, -1, -1)
        tokens = x.flatten(2).transpose(1, 2)
        pos_tokens = pos.flatten(2).transpose(1, 2)
        for layer in self.layers:
            latents = layer(latents, tokens, pos_tokens)
        latents = self.norm(latents)
        return latents, torch.zeros_like(latents)

    def forward_2d(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = x.shape
        g = self.grid
        if h % g or w % g:
            raise ValueError(f"the memory grid {h}x{w} must be a multiple of the {g}x{g} latent grid")
        wh, ww = h // g, w // g
        # (B, C, H, W) -> one sequence of wh*ww tokens per (object, window row, window col)
        windows = x.reshape(b, c, g, wh, g, ww).permute(0, 2, 4, 3, 5, 1).reshape(b * g * g, wh * ww, c)
        latents = self.latents_2d.unsqueeze(0).expand(b, -1, -1).reshape(b * g * g, 1, c)
        for layer in self.layers:
            latents = layer(latents, windows)
        latents = self.norm(latents.reshape(b, g * g, c))
        pos = sine_grid(c, g, g, device=x.device, dtype=x.dtype).flatten(2).transpose(1, 2)
        return latents, pos.expand(b, -1, -1)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lat_g, pos_g = self.forward_global(x, pos)
        lat_2d, pos_2d = self.forward_2d(x)
        return torch.cat([lat_g, lat_2d], dim=1), torch.cat([pos_g, pos_2d], dim=1)
