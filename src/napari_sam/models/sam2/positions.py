"""Parameter-free position encodings of SAM 2: 2-D sine grids, 1-D sine, axial RoPE."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

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
    with torch.inference_mode(False), torch.no_grad():  # normal tensors in the cache (see _rope_tables_on)
        return _sine_grid_cpu(channels, height, width, temperature).to(device=device, dtype=dtype)[None].clone()


def sine_1d(positions: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """1-D sine encoding ``(..., dim)``: ``[sin(p / f_i) ..., cos(p / f_i) ...]``."""
    half = dim // 2
    i = torch.arange(half, dtype=torch.float32, device=positions.device)
    freq = temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / half)
    angles = positions[..., None].float() / freq
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class RopeTables(NamedTuple):
    """Per-token rotation of channel pairs: ``cos``, ``sin`` and ``cis = cos + i sin``,
    each ``(tokens, dim / 2)``."""

    cos: torch.Tensor
    sin: torch.Tensor
    cis: torch.Tensor


@lru_cache(maxsize=16)
def _rope_angles_cpu(dim: int, side_x: int, side_y: int, theta: float) -> torch.Tensor:
    exps = torch.arange(0, dim, 4, device="cpu")[: dim // 4].float() / dim
    freqs = 1.0 / (theta**exps)
    t = torch.arange(side_x * side_y, dtype=torch.float32, device="cpu")
    tx = t % side_x
    ty = torch.div(t, side_x, rounding_mode="floor")
    return torch.cat([torch.outer(tx, freqs), torch.outer(ty, freqs)], dim=-1)


def rope_tables(dim: int, side_x: int, side_y: int, theta: float = 10000.0, device=None) -> RopeTables:
    """Axial RoPE tables for a ``side_y x side_x`` grid of row-major tokens.

    Channel pair ``j`` (channels ``2j, 2j+1``) is rotated by ``x * f_j`` for the first
    ``dim / 4`` pairs and by ``y * f_j`` for the rest, ``f_j = theta^(-4j / dim)``.
    """
    return _rope_tables_on(dim, side_x, side_y, float(theta), torch.device(device or "cpu"))


@lru_cache(maxsize=32)
def _rope_tables_on(dim, side_x, side_y, theta, device) -> RopeTables:
    # cached for the whole process: made as normal tensors even when the first caller runs in
    # inference mode, so a later caller with autograd (training, a test) can save them for backward
    with torch.inference_mode(False), torch.no_grad():
        angles = _rope_angles_cpu(dim, side_x, side_y, theta)
        cos, sin = angles.cos().to(device), angles.sin().to(device)
        cis = torch.polar(torch.ones_like(angles), angles).to(device) if device.type != "mps" else None
    return RopeTables(cos, sin, cis)


def _pairs(x: torch.Tensor, grid: int) -> torch.Tensor:
    """View ``(..., T, dim)`` as ``(..., T / grid, grid, dim / 2, 2)`` (copy if it must)."""
    return x.reshape(*x.shape[:-2], x.shape[-2] // grid, grid, -1, 2)


def apply_rope(x: torch.Tensor, tables: RopeTables) -> torch.Tensor:
    """Rotate channel pairs of ``x`` ``(..., T, dim)``; a new tensor in ``x.dtype``.

    ``T`` may be a multiple of the table's tokens (memories of several frames): the tables
    repeat (broadcast, not copied). Computed in float32 as one complex multiply (a
    real-valued form on MPS, where complex support is partial).
    """
    xf = _pairs(x.float(), tables.cos.shape[0])
    if tables.cis is None:
        even, odd = xf[..., 0], xf[..., 1]
        cos, sin = tables.cos, tables.sin
        out = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    else:
        out = torch.view_as_real(torch.view_as_complex(xf.contiguous()) * tables.cis)
    return out.reshape(x.shape).to(x.dtype)


def apply_rope_(x: torch.Tensor, tables: RopeTables) -> torch.Tensor:
    """In-place :func:`apply_rope` (falls back to a copy where a complex view is impossible)."""
    if tables.cis is not None and x.dtype == torch.float32:
        try:
            xc = torch.view_as_complex(x.view(*x.shape[:-2], x.shape[-2] // tables.cis.shape[0],
                                              tables.cis.shape[0], -1, 2))
        except RuntimeError:
            pass
        else:
            xc.mul_(tables.cis)
            return x
    return x.copy_(apply_rope(x, tables))
