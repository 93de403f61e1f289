"""Parameter-free position encodings of SAM 2: 2-D sine grids, 1-D sine, axial RoPE."""

from __future__ import annotations

import math
from functools import lru_cache

import torch


def _sine_features(pos: torch.Tensor, num_feats: int, temperature: float) -> torch.Tensor:
    """``(..., num_feats)``: sin on even, cos on odd channels of ``pos / temperature^(2i/n)``."""
    i = torch.arange(num_feats, dtype=torch.float32, device=pos.device)
    freq = temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / num_feats)
    angles = pos[..., None] / freq
    out = torch.empty_like(angles)
    out[..., 0::2] = angles[..., 0::2].sin()
    out[..., 1::2] = angles[..., 1::2].cos()
    return out


@lru_cache(maxsize=16)
def _sine_grid_cpu(channels: int, height: int, width: int, temperature: float) -> torch.Tensor:
    eps, scale = 1e-6, 2 * math.pi
    ys = torch.arange(1, height + 1, dtype=torch.float32, device="cpu")
    xs = torch.arange(1, width + 1, dtype=torch.float32, device="cpu")
    ys = ys / (ys[-1] + eps) * scale
    xs = xs / (xs[-1] + eps) * scale
    half = channels // 2
    pos_y = _sine_features(ys, half, temperature)[:, None, :].expand(height, width, half)
    pos_x = _sine_features(xs, half, temperature)[None, :, :].expand(height, width, half)
    return torch.cat([pos_y, pos_x], dim=-1).permute(2, 0, 1).contiguous()


def sine_grid(channels: int, height: int, width: int, temperature: float = 10000.0,
              device=None, dtype=None) -> torch.Tensor:
    """Normalised 2-D sine encoding of a ``height x width`` grid: ``(1, channels, H, W)``.

    First half of the channels encodes the row, second half the column (DETR style, the
    official ``PositionEmbeddingSine`` with ``normalize=True``, scale 2 pi).
    """
    return _sine_grid_on(channels, height, width, float(temperature), torch.device(device or "cpu"),
                         dtype or torch.float32)


@lru_cache(maxsize=32)
def _sine_grid_on(channels, height, width, temperature, device, dtype) -> torch.Tensor:
    return _sine_grid_cpu(channels, height, width, temperature).to(device=device, dtype=dtype)[None]


def sine_1d(positions: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """1-D sine encoding ``(..., dim)``: ``[sin(p / f_i) ..., cos(p / f_i) ...]``."""
    half = dim // 2
    i = torch.arange(half, dtype=torch.float32, device=positions.device)
    freq = temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / half)
    angles = positions[..., None].float() / freq
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


@lru_cache(maxsize=16)
def _rope_tables_cpu(dim: int, side_x: int, side_y: int, theta: float):
    exps = torch.arange(0, dim, 4, device="cpu")[: dim // 4].float() / dim
    freqs = 1.0 / (theta**exps)
    t = torch.arange(side_x * side_y, dtype=torch.float32, device="cpu")
    tx = t % side_x
    ty = torch.div(t, side_x, rounding_mode="floor")
    angles = torch.cat([torch.outer(tx, freqs), torch.outer(ty, freqs)], dim=-1)
    return angles.cos(), angles.sin()


def rope_tables(dim: int, side_x: int, side_y: int, theta: float = 10000.0, device=None):
    """Axial RoPE ``(cos, sin)``, each ``(side_x * side_y, dim / 2)``, row-major tokens.

    Channel pair ``j`` (channels ``2j, 2j+1``) is rotated by ``x * f_j`` for the first
    ``dim / 4`` pairs and by ``y * f_j`` for the rest, ``f_j = theta^(-4j / dim)``.
    """
    return _rope_tables_on(dim, side_x, side_y, float(theta), torch.device(device or "cpu"))


@lru_cache(maxsize=32)
def _rope_tables_on(dim, side_x, side_y, theta, device):
    cos, sin = _rope_tables_cpu(dim, side_x, side_y, theta)
    return cos.to(device), sin.to(device)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs of ``x`` ``(..., T, dim)`` by the ``(T', dim/2)`` tables.

    ``T`` may be a multiple of ``T'`` (memories of several frames): the tables repeat.
    Computed in float32, returned in ``x.dtype``.
    """
    tokens = x.shape[-2]
    reps = tokens // cos.shape[0]
    if reps != 1:
        cos = cos.repeat(reps, 1)
        sin = sin.repeat(reps, 1)
    xf = x.float().unflatten(-1, (-1, 2))
    even, odd = xf[..., 0], xf[..., 1]
    out = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return out.flatten(-2).to(x.dtype)
