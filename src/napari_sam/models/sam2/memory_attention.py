"""SAM 2 memory attention (``memory_attention.*``): condition a frame on its memories.

Each layer: pre-norm RoPE self-attention over the frame's tokens, pre-norm RoPE
cross-attention from the frame to the memory tokens (keys carry the memory position
encoding, queries none; the trailing object-pointer tokens get no RoPE), pre-norm ReLU
MLP. Input is ``frame + 0.1 * frame_pos``; a final LayerNorm. Inference only (no dropout).

The official flags, identical in every released config, are built in: ``pos_enc_at_input``
True, ``pos_enc_at_attn`` False, ``pos_enc_at_cross_attn_queries`` False,
``pos_enc_at_cross_attn_keys`` True, one head, ``kv_in_dim`` = memory channels.

RoPE is axial over the square token grid of the current frame: ``side = sqrt(tokens)``,
and memory keys repeat the grid once per memory frame.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..common import attention
from .config import Sam2Config
from .positions import RopeTables, apply_rope_, rope_tables


class RoPEAttention(nn.Module):
    """Attention with axial rotary position encoding on queries and (spatial) keys."""

    def __init__(self, dim: int, num_heads: int = 1, kv_in_dim: int | None = None,
                 theta: float = 10000.0) -> None:
        super().__init__()
        kv_in_dim = dim if kv_in_dim is None else kv_in_dim
        self.num_heads = num_heads
        self.theta = theta
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(kv_in_dim, dim)
        self.v_proj = nn.Linear(kv_in_dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, C)`` -> ``(B, heads, T, C / heads)``."""
        b, t, c = x.shape
        return x.view(b, t, self.num_heads, c // self.num_heads).transpose(1, 2)

    def tables(self, tokens: int, device) -> RopeTables:
        """RoPE tables for a square grid of ``tokens`` query tokens."""
        side = math.isqrt(tokens)
        if side * side != tokens:
            raise ValueError(f"RoPE needs a square token grid, got {tokens} tokens")
        head_dim = self.q_proj.out_features // self.num_heads
        return rope_tables(head_dim, side, side, self.theta, device=device)

    def queries(self, x: torch.Tensor) -> torch.Tensor:
        """Projected, rotated queries ``(B, heads, T, d)`` of frame tokens ``x`` ``(B, T, C)``."""
        q = self.split_heads(self.q_proj(x))
        return apply_rope_(q, self.tables(q.shape[-2], q.device))

    def rotate_keys_(self, k: torch.Tensor, num_q: int, num_exclude: int = 0) -> torch.Tensor:
        """Rotate, in place, all but the last ``num_exclude`` tokens of ``k`` ``(B, heads, T, d)``.

        The query grid (``num_q`` tokens) repeats over the keys (one grid per memory frame).
        """
        n_rope = k.shape[-2] - num_exclude
        if n_rope > 0:
            apply_rope_(k[..., :n_rope, :], self.tables(num_q, k.device))
        return k

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention of prepared heads, then ``out_proj``: -> ``(B, T, C)``."""
        if q.shape[0] != k.shape[0]:
            q = q.expand(k.shape[0], -1, -1, -1)
        out = attention(q, k, v)
        b, h, t, d = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, t, h * d))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                num_k_exclude_rope: int = 0) -> torch.Tensor:
        qh = self.queries(q)
        kh = self.rotate_keys_(self.split_heads(self.k_proj(k)), qh.shape[-2], num_k_exclude_rope)
        vh = self.split_heads(self.v_proj(v))
        return self.attend(qh, kh, vh)


class MemoryAttentionLayer(nn.Module):
    """Self-attention, cross-attention to memories, MLP; all pre-norm with residuals."""

    def __init__(self, d_model: int, kv_dim: int, ffn_dim: int, theta: float,
                 cross_attn: RoPEAttention | None = None) -> None:
        super().__init__()
        self.self_attn = RoPEAttention(d_model, 1, theta=theta)
        # the cross attention decides which memory keys get RoPE on which grid (rotate_keys_)
        self.cross_attn_image = (RoPEAttention(d_model, 1, kv_in_dim=kv_dim, theta=theta)
                                 if cross_attn is None else cross_attn)
        self.linear1 = nn.Linear(d_model, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def self_attention(self, tgt: torch.Tensor) -> torch.Tensor:
        """``tgt + SA(norm1(tgt))``."""
        x = self.norm1(tgt)
        return tgt + self.self_attn(x, x, x)

    def cross_queries(self, tgt: torch.Tensor) -> torch.Tensor:
        """Rotated cross-attention queries of ``norm2(tgt)``: ``(B, heads, T, d)``."""
        return self.cross_attn_image.queries(self.norm2(tgt))

    def mlp(self, tgt: torch.Tensor) -> torch.Tensor:
        """``tgt + MLP(norm3(tgt))``."""
        return tgt + self.linear2(F.relu(self.linear1(self.norm3(tgt)), inplace=True))

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, pos: torch.Tensor,
                num_k_exclude_rope: int = 0) -> torch.Tensor:
        tgt = self.self_attention(tgt)
        ca = self.cross_attn_image
        q = self.cross_queries(tgt)
        k = ca.rotate_keys_(ca.split_heads(ca.k_proj(memory + pos)), q.shape[-2], num_k_exclude_rope)
        v = ca.split_heads(ca.v_proj(memory))
        tgt = tgt + ca.attend(q, k, v)
        return self.mlp(tgt)


class MemoryAttention(nn.Module):
    """Stack of :class:`MemoryAttentionLayer` and a final LayerNorm (batch-first tokens).

    ``cross_attention``: a factory of each layer's cross attention (a :class:`RoPEAttention`
    subclass with its own key rotation, e.g. EdgeTAM's); None: SAM 2's.
    """

    def __init__(self, cfg: Sam2Config, cross_attention=None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            MemoryAttentionLayer(cfg.d_model, cfg.mem_dim, cfg.memory_attention_ffn_dim,
                                 cfg.rope_theta, None if cross_attention is None else cross_attention())
            for _ in range(cfg.memory_attention_layers)
        )
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(self, curr: torch.Tensor, curr_pos: torch.Tensor, memory: torch.Tensor,
                memory_pos: torch.Tensor, num_obj_ptr_tokens: int = 0) -> torch.Tensor:
        """Plain path, as the official module.

        ``curr`` ``(B, hw, C)`` frame tokens (row-major grid), ``curr_pos`` broadcastable to
        it; ``memory`` / ``memory_pos`` ``(B, T, mem_dim)``: spatial memory tokens first
        (``hw`` per memory frame) then ``num_obj_ptr_tokens`` pointer tokens. -> ``(B, hw, C)``.
        """
        out = curr + 0.1 * curr_pos
        for layer in self.layers:
            out = layer(out, memory, memory_pos, num_obj_ptr_tokens)
        return self.norm(out)
