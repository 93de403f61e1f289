"""EdgeTAM's memory attention (``memory_attention.*``): SAM 2's layers, another key layout.

The official layer is SAM 2's (``RoPEAttention`` self attention over the frame's h x w grid,
``norm1..3``, ``linear1/2``; 2 layers) with the cross attention replaced by
``RoPEAttentionv2``: queries are rotated on the frame's grid (``q_sizes`` 64 x 64 at 1024 px),
and the memory keys are the spatial perceiver's tokens — per memory frame 256 *global*
latents followed by 256 *2-D* latents — of which only the 2-D ones are rotated, on their own
16 x 16 grid (``k_sizes``); the object-pointer tokens after all memory frames get no RoPE.
Keys and values come from 64-channel memory tokens (``kv_in_dim`` 64). Parameter names
and shapes are SAM 2's, so only the key rotation differs: :class:`LatentRoPEAttention`.
"""

from __future__ import annotations

import math

import torch

from ..sam2.config import Sam2Config
from ..sam2.memory_attention import MemoryAttention, RoPEAttention
from ..sam2.positions import apply_rope_, rope_tables
from .config import EdgeTamConfig


class LatentRoPEAttention(RoPEAttention):
    """Cross attention to perceiver memories (the official ``RoPEAttentionv2``).

    Memory keys come in blocks of ``num_global + grid**2`` tokens, one block per memory
    frame; in each block the first ``num_global`` are not rotated and the rest are rotated
    on a ``grid x grid`` grid. Queries are rotated on their own square grid, as in SAM 2.
    """

    def __init__(self, dim: int, kv_in_dim: int, num_global: int, num_2d: int,
                 theta: float = 10000.0) -> None:
        super().__init__(dim, 1, kv_in_dim=kv_in_dim, theta=theta)
        grid = math.isqrt(num_2d)
        if grid * grid != num_2d:
            raise ValueError(f"the 2-D latents must form a square grid, got {num_2d}")
        self.num_global = int(num_global)
        self.grid = grid

    @property
    def block(self) -> int:
        """Key tokens of one memory frame."""
        return self.num_global + self.grid * self.grid

    def rotate_keys_(self, k: torch.Tensor, num_q: int, num_exclude: int = 0) -> torch.Tensor:
        """Rotate, in place, the 2-D latents of every memory block of ``k`` ``(B, heads, T, d)``;
        the last ``num_exclude`` tokens (object pointers) are left alone. ``num_q`` is unused
        (the key grid is the latents', not the queries')."""
        n_rope = k.shape[-2] - num_exclude
        if n_rope <= 0:
            return k
        if n_rope % self.block:
            raise ValueError(f"{n_rope} memory tokens are not whole frames of {self.block} latents")
        blocks = k[..., :n_rope, :].unflatten(-2, (n_rope // self.block, self.block))
        head_dim = k.shape[-1]
        apply_rope_(blocks[..., self.num_global:, :],
                    rope_tables(head_dim, self.grid, self.grid, self.theta, device=k.device))
        return k


class EdgeTamMemoryAttention(MemoryAttention):
    """SAM 2's memory attention with :class:`LatentRoPEAttention` as every cross attention."""

    def __init__(self, cfg: EdgeTamConfig, sam2_cfg: Sam2Config) -> None:
        super().__init__(sam2_cfg, cross_attention=lambda: LatentRoPEAttention(
            sam2_cfg.d_model, sam2_cfg.mem_dim, cfg.num_latents, cfg.num_latents_2d, sam2_cfg.rope_theta))
