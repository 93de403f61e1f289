"""EdgeTAM's memory attention (``memory_attention.*``): SAM 2's layers, another key layout.

The official layer is SAM 2's (``RoPEAttention`` self attention over the frame's h x w grid,
``norm1..3``, ``linear1/2``; 2 layers) with the cross attention replaced by
``RoPEAttentionv2``: queries are rotated on the frame's grid (``q_sizes`` 64 x 64 at 1024 px),
and the memory keys are the spatial perceiver's tokens — per memory frame 256 *global*
latents followed by 256 *2-D* latents — of which only the 2-D ones are rotated, on their own
16 x 16 grid (``k_sizes``); the object-pointer tokens after all memory frames get no RoPE.
Keys and values come from 64-channel memory tokens (``kv_in_dim`` 64). Parameter names
and shapes are SAM 2's, so only the key rotation differs: :class:`LatentRoPEAttention`.

Speed (exact up to float rounding): :meth:`LatentRoPEAttention.attend_raw` computes the
cross attention from the 64-channel memory tokens without projecting what it need not:

* values: softmax rows sum to 1, so ``out_proj(P (X W_v^T + b_v)) = (P X) (W_o W_v)^T +
  (W_o b_v + b_o)`` — the 4096 x T probabilities meet 64 channels, not 256;
* un-rotated keys (global latents, pointers): ``q . (W_k x + b_k) = (q W_k) . x + q . b_k``;
  the last term is the same for every key of a query, so after subtracting it from every
  score (softmax does not change) the un-rotated keys are met by ``q W_k`` in 64 channels;
  rotated keys become ``rope(W_k x + b_k) - b_k`` (256 channels).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

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

    # ------------------------------------------------------------------ factored path
    #: query rows per chunk of the score matrix (bounds its memory: rows x tokens x objects)
    CHUNK = 1024
    #: whether the model's memory attention uses :meth:`attend_raw` (raw memories only; a
    #: cached :class:`~napari_sam.models.sam2.memory_cache.ProjectedMemory` takes the plain
    #: path). Off by default: exact in float64 (1e-14), but its other rounding order, carried
    #: through the bf16 memories, moved the cached-projection vs plain sessions apart by 2.2e-4
    #: of their range (torch 2.13, over the 1e-4 tolerance); it gained ~10-30 % of the cross
    #: attention only with 7 memory frames.
    factored = False

    def _split(self, x: torch.Tensor, num_rope: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, M)`` memory tokens -> (un-rotated ``(B, U, M)``: every block's global latents
        then the pointers; rotated ``(B, R, M)``: every block's 2-D latents)."""
        b, _, m = x.shape
        blocks = x[:, :num_rope].unflatten(1, (num_rope // self.block, self.block))
        plain = blocks[:, :, : self.num_global].reshape(b, -1, m)
        if x.shape[1] > num_rope:
            plain = torch.cat([plain, x[:, num_rope:]], dim=1)
        return plain, blocks[:, :, self.num_global:].reshape(b, -1, m)

    def attend_raw(self, q: torch.Tensor, keys_in: torch.Tensor, values_in: torch.Tensor,
                   num_rope: int) -> torch.Tensor:
        """``out_proj(attention(q, rot(k_proj(keys_in)), v_proj(values_in)))``, factored.

        ``q`` ``(1 or B, 1, N, d)`` rotated queries (one head); ``keys_in`` / ``values_in``
        ``(B, T, M)`` memory tokens (:class:`~napari_sam.models.sam2.memory_cache.RawMemory`):
        ``num_rope`` of them in whole blocks of latents, then pointers. -> ``(B, N, C)``.
        """
        if self.num_heads != 1:
            raise ValueError("the factored cross attention is written for one head")
        if num_rope % self.block:
            raise ValueError(f"{num_rope} memory tokens are not whole frames of {self.block} latents")
        batch, n = keys_in.shape[0], q.shape[-2]
        wk, bk = self.k_proj.weight, self.k_proj.bias            # (C, M), (C,)
        scale = 1.0 / math.sqrt(q.shape[-1])
        k_plain, k_rot = self._split(keys_in, num_rope)
        v_plain, v_rot = self._split(values_in, num_rope)
        # rotated keys, shifted by -b_k (the per-query constant q . b_k leaves every score)
        k_rot = F.linear(k_rot, wk, bk)[:, None]
        if k_rot.shape[-2]:
            apply_rope_(k_rot, rope_tables(k_rot.shape[-1], self.grid, self.grid, self.theta, device=k_rot.device))
        k_rot = k_rot.sub_(bk)                                    # (B, 1, R, C)
        k_plain = k_plain[:, None]                                # (B, 1, U, M)
        v_all = torch.cat([v_plain, v_rot], dim=1)[:, None]       # (B, 1, U + R, M)
        q = q * scale
        q_plain = q @ wk                                          # (1|B, 1, N, M)
        out = q.new_empty(batch, 1, n, keys_in.shape[-1])
        step = max(1, self.CHUNK)
        for i in range(0, n, step):
            s_plain = q_plain[..., i:i + step, :] @ k_plain.transpose(-2, -1)   # (B, 1, c, U)
            s_rot = q[..., i:i + step, :] @ k_rot.transpose(-2, -1)             # (B, 1, c, R)
            probs = torch.cat([s_plain, s_rot], dim=-1).softmax(dim=-1)
            out[..., i:i + step, :] = probs @ v_all
        # (P X) (W_o W_v)^T + (W_o b_v + b_o)
        w_ov = self.out_proj.weight @ self.v_proj.weight          # (C, M)
        b_ov = torch.addmv(self.out_proj.bias, self.out_proj.weight, self.v_proj.bias)
        return F.linear(out[:, 0], w_ov, b_ov)


class EdgeTamMemoryAttention(MemoryAttention):
    """SAM 2's memory attention with :class:`LatentRoPEAttention` as every cross attention."""

    def __init__(self, cfg: EdgeTamConfig, sam2_cfg: Sam2Config) -> None:
        super().__init__(sam2_cfg, cross_attention=lambda: LatentRoPEAttention(
            sam2_cfg.d_model, sam2_cfg.mem_dim, cfg.num_latents, cfg.num_latents_2d, sam2_cfg.rope_theta))
