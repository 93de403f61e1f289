"""Exact fast path of the memory attention: shared frame work and per-memory caches.

Two identities make repeated work avoidable without changing the result (beyond float
rounding order):

* **Objects on one frame share the frame.** Layer 0's self-attention input
  (``frame + 0.1 * pos``) and, after it, the layer-0 cross-attention queries depend on
  the image only. :func:`frame_cache` computes them once (batch 1); objects diverge only
  after the first cross-attention.
* **Memory keys / values are linear in the memory.** A memory frame enters as
  ``k = k_proj(features + spatial_pos + tpos[t])`` and ``v = v_proj(features)``, and
  RoPE is linear too, so ``rope(k) = rope(k_proj(features + spatial_pos)) +
  rope(W_k @ tpos[t])``. :func:`project_memory` caches the first term and the values per
  layer (independent of how old the memory is); the second term is a constant vector
  per (layer, t) rotated over the grid, added at use.

Cost of a cache: per memory frame and object, ``2 * layers * hw * d_model`` numbers
(32 MiB in float32 at 1024 px, 4 layers) — keep it for the memories in the current
window only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .memory_attention import MemoryAttention
from .positions import apply_rope


@dataclass
class ProjectedMemory:
    """One memory frame, projected for every memory-attention layer.

    ``keys[l]``: ``(B, heads, hw, d)`` = ``rope(k_proj_l(features + spatial_pos))``
    (no temporal encoding); ``values[l]``: ``(B, heads, hw, d)`` = ``v_proj_l(features)``.
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    @property
    def batch(self) -> int:
        return self.keys[0].shape[0]


@dataclass
class FrameCache:
    """Image-only work of layer 0 for one frame (batch 1).

    ``tgt``: ``(1, hw, C)`` tokens after layer 0's self-attention; ``queries``:
    ``(1, heads, hw, d)`` layer 0's rotated cross-attention queries.
    """

    tgt: torch.Tensor
    queries: torch.Tensor


def project_memory(attn: MemoryAttention, features: torch.Tensor,
                   spatial_pos: torch.Tensor) -> ProjectedMemory:
    """Project one memory frame: ``features`` ``(B, hw, M)``, ``spatial_pos`` ``(1|B, hw, M)``."""
    keys, values = [], []
    num_q = features.shape[1]
    k_in = features + spatial_pos
    for layer in attn.layers:
        ca = layer.cross_attn_image
        keys.append(ca.rotate_keys(ca.split_heads(ca.k_proj(k_in)), num_q))
        values.append(ca.split_heads(ca.v_proj(features)))
    return ProjectedMemory(keys, values)


def frame_cache(attn: MemoryAttention, curr: torch.Tensor, curr_pos: torch.Tensor) -> FrameCache:
    """Layer-0 work that depends on the frame only: ``curr`` ``(1, hw, C)``."""
    first = attn.layers[0]
    tgt = first.self_attention(curr + 0.1 * curr_pos)
    return FrameCache(tgt, first.cross_queries(tgt))


def _temporal_key(layer, tpos: torch.Tensor, num_q: int) -> torch.Tensor:
    """``rope(W_k @ tpos)`` over the grid: ``(1, heads, hw, d)`` (no bias: it is in the cache)."""
    ca = layer.cross_attn_image
    vec = tpos.reshape(1, 1, -1).to(ca.k_proj.weight.dtype) @ ca.k_proj.weight.t()  # (1, 1, C)
    grid = ca.split_heads(vec.expand(1, num_q, -1))
    cos, sin = ca.tables(num_q, grid.device)
    return apply_rope(grid, cos, sin)


def attend_memories(
    attn: MemoryAttention,
    curr: torch.Tensor,
    curr_pos: torch.Tensor,
    memories: list[tuple[ProjectedMemory, int]],
    tpos_table: torch.Tensor,
    ptr_tokens: torch.Tensor | None,
    ptr_pos: torch.Tensor | None,
    cache: FrameCache | None = None,
) -> torch.Tensor:
    """Memory attention from projected memories; equal to :meth:`MemoryAttention.forward`.

    ``curr`` ``(1 or B, hw, C)`` frame tokens, ``curr_pos`` ``(1, hw, C)``; ``memories``:
    ``(ProjectedMemory, row)``: ``tpos_table[row]`` ``(M,)`` is the temporal encoding
    added to that memory's positions (the model passes ``maskmem_tpos_enc``); ``ptr_tokens`` /
    ``ptr_pos`` ``(B, P, M)`` object-pointer tokens and their positions (or None).
    With ``curr`` of batch 1 the layer-0 frame work runs once (``cache`` if given).
    Returns ``(B, hw, C)``.
    """
    num_q = curr.shape[1]
    shared = curr.shape[0] == 1
    if shared and cache is None:
        cache = frame_cache(attn, curr, curr_pos)
    tgt = curr + 0.1 * curr_pos
    for li, layer in enumerate(attn.layers):
        ca = layer.cross_attn_image
        if li == 0 and shared:
            tgt, q = cache.tgt, cache.queries
        else:
            tgt = layer.self_attention(tgt)
            q = layer.cross_queries(tgt)
        keys, values = [], []
        tpos_cache: dict[int, torch.Tensor] = {}
        for pm, row in memories:
            if row not in tpos_cache:
                tpos_cache[row] = _temporal_key(layer, tpos_table[row], num_q)
            keys.append(pm.keys[li] + tpos_cache[row])
            values.append(pm.values[li])
        if ptr_tokens is not None and ptr_tokens.shape[1] > 0:
            keys.append(ca.split_heads(ca.k_proj(ptr_tokens + ptr_pos)))
            values.append(ca.split_heads(ca.v_proj(ptr_tokens)))
        k = torch.cat(keys, dim=-2) if len(keys) > 1 else keys[0]
        v = torch.cat(values, dim=-2) if len(values) > 1 else values[0]
        batch = k.shape[0]
        if q.shape[0] != batch:
            q = q.expand(batch, -1, -1, -1)
        tgt = tgt + ca.attend(q, k, v)
        tgt = layer.mlp(tgt)
    return attn.norm(tgt)
