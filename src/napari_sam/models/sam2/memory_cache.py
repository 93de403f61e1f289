"""Memory attention from assembled memories: the model's path, with exact speed-ups.

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

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .config import Sam2Config
from .memory_attention import MemoryAttention
from .positions import sine_1d, sine_grid


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


@dataclass
class RawMemory:
    """Memory tokens not projected yet, concatenated as the official code does.

    ``keys_in`` ``(B, T, M)``: ``features + spatial_pos + tpos`` of each memory frame,
    then ``pointer + pointer_pos`` tokens; ``values_in`` ``(B, T, M)``: features, then
    pointers; the first ``num_rope`` tokens (whole grids) get RoPE, the pointers not.
    """

    keys_in: torch.Tensor
    values_in: torch.Tensor
    num_rope: int


def project_memory(attn: MemoryAttention, features: torch.Tensor,
                   spatial_pos: torch.Tensor) -> ProjectedMemory:
    """Project one memory frame: ``features`` ``(B, n, M)``, ``spatial_pos`` ``(1|B, n, M)``
    (``n = hw``; EdgeTAM: its 512 latent tokens — the cross attention knows which get RoPE)."""
    keys, values = [], []
    num_q = features.shape[1]
    k_in = features + spatial_pos
    for layer in attn.layers:
        ca = layer.cross_attn_image
        keys.append(ca.rotate_keys_(ca.split_heads(ca.k_proj(k_in)), num_q))
        values.append(ca.split_heads(ca.v_proj(features)))
    return ProjectedMemory(keys, values)


def frame_cache(attn: MemoryAttention, curr: torch.Tensor, curr_pos: torch.Tensor) -> FrameCache:
    """Layer-0 work that depends on the frame only: ``curr`` ``(1, hw, C)``."""
    first = attn.layers[0]
    tgt = first.self_attention(curr + 0.1 * curr_pos)
    return FrameCache(tgt, first.cross_queries(tgt))


def _temporal_key(layer, tpos: torch.Tensor, num_q: int, n: int) -> torch.Tensor:
    """``rope(W_k @ tpos)`` over one memory frame's ``n`` tokens: ``(1, heads, n, d)`` (no
    bias: it is in the cache). ``num_q``: the query tokens (SAM 2's key grid is theirs)."""
    ca = layer.cross_attn_image
    vec = tpos.reshape(1, 1, -1).to(ca.k_proj.weight.dtype) @ ca.k_proj.weight.t()  # (1, 1, C)
    grid = ca.split_heads(vec.expand(1, n, -1).contiguous())
    return ca.rotate_keys_(grid, num_q)


def _layer_keys_values(layer, li: int, num_q: int, projected, tpos_table, raw: RawMemory | None):
    """Keys (rotated) and values of all memory tokens for one layer: ``(B, heads, T, d)``."""
    ca = layer.cross_attn_image
    k_raw = v_raw = None
    if raw is not None:
        k_raw = ca.rotate_keys_(ca.split_heads(ca.k_proj(raw.keys_in)), num_q,
                                raw.keys_in.shape[1] - raw.num_rope)
        v_raw = ca.split_heads(ca.v_proj(raw.values_in))
    if not projected:
        return k_raw, v_raw
    first = projected[0][0].keys[0]
    batch = max([pm.batch for pm, _ in projected] + ([k_raw.shape[0]] if raw is not None else []))
    total = sum(pm.keys[0].shape[-2] for pm, _ in projected) + (k_raw.shape[-2] if raw is not None else 0)
    shape = (batch, first.shape[1], total, first.shape[-1])
    k = first.new_empty(shape)
    v = first.new_empty(shape)
    temporal: dict[int, torch.Tensor] = {}
    off = 0
    for pm, row in projected:
        n = pm.keys[li].shape[-2]
        if row not in temporal:
            temporal[row] = _temporal_key(layer, tpos_table[row], num_q, n)
        torch.add(pm.keys[li], temporal[row], out=k[..., off : off + n, :])
        v[..., off : off + n, :] = pm.values[li]
        off += n
    if raw is not None:
        k[..., off:, :] = k_raw
        v[..., off:, :] = v_raw
    return k, v


def attend_memories(
    attn: MemoryAttention,
    curr: torch.Tensor,
    curr_pos: torch.Tensor,
    projected: list[tuple[ProjectedMemory, int]],
    tpos_table: torch.Tensor,
    raw: RawMemory | None,
    cache: FrameCache | None = None,
) -> torch.Tensor:
    """Memory attention; equal to :meth:`MemoryAttention.forward` on the same tokens.

    ``curr`` ``(1 or B, hw, C)`` frame tokens, ``curr_pos`` ``(1, hw, C)``. ``projected``:
    ``(ProjectedMemory, row)`` — ``tpos_table[row]`` ``(M,)`` is the temporal encoding
    added to that memory's positions (the model passes ``maskmem_tpos_enc``). ``raw``:
    the other memory frames and the pointers, unprojected. With ``curr`` of batch 1 the
    layer-0 frame work runs once (or comes from ``cache``). Returns ``(B, hw, C)``.
    """
    num_q = curr.shape[1]
    shared = curr.shape[0] == 1
    if shared and cache is None:
        cache = frame_cache(attn, curr, curr_pos)
    tgt = curr + 0.1 * curr_pos
    for li, layer in enumerate(attn.layers):
        if li == 0 and shared:
            tgt, q = cache.tgt, cache.queries
        else:
            tgt = layer.self_attention(tgt)
            q = layer.cross_queries(tgt)
        ca = layer.cross_attn_image
        if not projected and raw is not None and getattr(ca, "factored", False):
            # a cross attention with its own exact factoring of raw memories (EdgeTAM's)
            tgt = tgt + ca.attend_raw(q, raw.keys_in, raw.values_in, raw.num_rope)
        else:
            k, v = _layer_keys_values(layer, li, num_q, projected, tpos_table, raw)
            tgt = tgt + ca.attend(q, k, v)
        tgt = layer.mlp(tgt)
    return attn.norm(tgt)


def object_pointer_tokens(cfg: Sam2Config, tpos_proj: nn.Module, obj_ptrs: Sequence[tuple[torch.Tensor, int]],
                          num_frames: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Object pointers -> ``(B, P * C / M, M)`` tokens and their temporal encodings.

    ``obj_ptrs``: ``(pointer (B, C), signed distance)`` pairs. Each pointer is split into
    ``C / M`` tokens of ``M`` channels (all with the pointer's encoding). ``tpos_proj``: the
    model's ``obj_ptr_tpos_proj`` (the encoding's projection, 2.1; identity in 2.0).
    """
    C, M = cfg.d_model, cfg.mem_dim
    ptrs = torch.stack([p.to(dtype) for p, _ in obj_ptrs], dim=1)  # (B, P, C)
    B, P = ptrs.shape[:2]
    if cfg.add_tpos_enc_to_obj_ptrs:
        dists = [d if cfg.use_signed_tpos_enc_to_obj_ptrs else abs(d) for _, d in obj_ptrs]
        # official: divide by min(num_frames, 16) - 1 (0 for a 1-frame video -> NaN there)
        t_max = max(min(num_frames, cfg.max_obj_ptrs_in_encoder) - 1, 1)
        t = torch.tensor(dists, dtype=torch.float32, device=ptrs.device) / t_max
        pos = sine_1d(t, C if cfg.proj_tpos_enc_in_obj_ptrs else M)
        pos = tpos_proj(pos.to(dtype))  # (P, M)
    else:
        pos = ptrs.new_zeros(P, M)
    pos = pos.unsqueeze(0).expand(B, P, M)
    if M < C:
        split = C // M
        ptrs = ptrs.reshape(B, P * split, M)
        pos = pos.repeat_interleave(split, dim=1)
    return ptrs, pos


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """``(B, M, h, w)`` -> ``(B, hw, M)``; tokens ``(B, n, M)`` (a perceiver's) as they are."""
    return x.flatten(2).transpose(1, 2) if x.ndim == 4 else x


def memory_tokens(
    memories: Sequence[tuple],
    tpos_table: torch.Tensor,
    pointers: tuple[torch.Tensor, torch.Tensor] | None,
    dtype: torch.dtype,
    default_pos: torch.Tensor | None = None,
) -> tuple[list[tuple[ProjectedMemory, int]], RawMemory | None]:
    """Sort a frame's memories for :func:`attend_memories`.

    ``memories``: ``(maskmem_features (B, M, h, w) / (B, n, M) tokens or ProjectedMemory,
    maskmem_pos_enc or None, t_pos)`` as :meth:`Sam2.condition_on_memory` takes them;
    ``tpos_table`` ``(num_maskmem, M)`` the temporal encodings (row ``num_maskmem - t_pos -
    1``); ``pointers``: :func:`object_pointer_tokens` output or None; ``default_pos``
    ``(1, n, M)``: the position of a memory given without one (None: the sine grid of its
    ``h x w``). -> the projected memories with their rows, and the rest concatenated as
    the official code does (None if empty).
    """
    num_maskmem = tpos_table.shape[0]
    projected, keys_in, values_in = [], [], []
    for feats, pos, t_pos in memories:
        row = num_maskmem - t_pos - 1
        if isinstance(feats, ProjectedMemory):
            projected.append((feats, row))
            continue
        if pos is None:
            pos = default_pos
            if pos is None:
                pos = sine_grid(feats.shape[1], *feats.shape[-2:], device=feats.device, dtype=dtype)
        feats = _tokens(feats.to(dtype))
        keys_in.append(feats + (_tokens(pos.to(dtype)) + tpos_table[row]))
        values_in.append(feats)
    num_rope = sum(x.shape[1] for x in keys_in)
    if pointers is not None:
        keys_in.append(pointers[0] + pointers[1])
        values_in.append(pointers[0])
    if not keys_in:
        return projected, None
    batch = max(x.shape[0] for x in keys_in)
    raw = RawMemory(torch.cat([x.expand(batch, -1, -1) for x in keys_in], dim=1),
                    torch.cat([x.expand(batch, -1, -1) for x in values_in], dim=1), num_rope)
    return projected, raw
