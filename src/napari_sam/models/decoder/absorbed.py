"""Cross attention between a few prompt tokens and many image tokens, with the long side's
projections folded into the short side ("absorbed" attention).

The two-way transformer attends 5-12 tokens to 4096 image tokens and back. Written out, the
image side goes through its projections (``(N, C) x (C, D)`` each) although only a few dot
products with the tokens are ever taken of it. Per head ``h`` the same numbers follow from
products with the tokens folded into the weights first:

* tokens -> image (``n`` queries, ``N`` keys): ``q_h . (W_k,h x + b_k,h) = (W_k,h^T q_h) . x +
  q_h . b_k,h``; the last term is the same for every key, and softmax ignores it.
  ``sum_j a_j (W_v,h x_j + b_v,h) = W_v,h (sum_j a_j x_j) + b_v,h`` (the weights sum to 1).
* image -> tokens (``N`` queries, ``n`` keys): ``(W_q,h x + b_q,h) . k_h = x . (W_q,h^T k_h) +
  b_q,h . k_h``, and the output projection of each head's weighted values is the weighted sum
  of the values' projections ``W_o,h v_h``.

The long side then meets ``heads x n`` vectors instead of the ``D``-wide projection (56 vs
128 columns for SAM's 8 heads, 7 tokens and D = 128): fewer than half the multiply-adds on
the 4096 image tokens, the same attention up to float rounding (a few 1e-7 relative). Used
under inference, in float32, with the default attention backend, and only where it is the
cheaper order (:func:`few_queries_pays`, :func:`few_keys_pays`); a forced backend
(``attention_backend("math")`` etc.) gets the written-out attention.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..common.attention import requested_backend

MIN_LONG_SIDE = 256  # below this many image tokens the written-out attention is as fast


def usable(*tensors: torch.Tensor) -> bool:
    """Inference, float32, the default backend: where the folded order may be used."""
    return (
        not torch.is_grad_enabled()
        and all(t.dtype == torch.float32 for t in tensors)
        and requested_backend() == "auto"
    )


def few_queries_pays(heads: int, n_queries: int, batch_q: int, n_keys: int, batch_kv: int, inner: int) -> bool:
    """Tokens -> image: ``batch_q * heads * n_queries`` folded rows against each image token
    vs ``batch_kv * inner`` projected columns (twice: keys and values)."""
    return n_keys >= MIN_LONG_SIDE and batch_q * heads * n_queries < batch_kv * inner


def few_keys_pays(heads: int, n_keys: int, batch_k: int, n_queries: int, batch_q: int, inner: int,
                  q_projected: bool) -> bool:
    """Image -> tokens: the folded scores and output (``2 * batch_k * heads * n_keys`` columns
    per image token, or half of it with the queries already projected) vs the query projection
    (``batch_q * inner``, unless given) plus the output projection (``batch_k * inner``)."""
    if n_queries < MIN_LONG_SIDE:
        return False
    folded = batch_k * heads * n_keys * (1 if q_projected else 2)
    written = batch_k * inner + (0 if q_projected else batch_q * inner)
    return folded < written


def _rows_times(a: torch.Tensor, b_t: torch.Tensor) -> torch.Tensor:
    """``a (P, r, C) @ b_t (1 or P, C, N)``; a batch-1 ``b_t`` is one matrix product for all
    ``P`` (no per-batch copies)."""
    if b_t.shape[0] == 1 and a.shape[0] != 1:
        p, r, c = a.shape
        return (a.reshape(p * r, c) @ b_t[0]).view(p, r, -1)
    return a @ b_t


def few_queries(attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``attn(q, k, v)`` for ``q (P, n, C)`` tokens and ``k``, ``v`` ``(1 or P, N, C_kv)``
    image tokens, with the key and value projections folded into the queries."""
    heads, inner = attn.num_heads, attn.internal_dim
    d = inner // heads
    p, n, _ = q.shape
    c_kv = k.shape[-1]
    qh = attn.project("q", q) * (1.0 / math.sqrt(d))  # (P, H, n, d)
    q_folded = (qh @ attn.k_proj.weight.view(heads, d, c_kv)).reshape(p, heads * n, c_kv)
    weights = _rows_times(q_folded, k.transpose(1, 2)).softmax(dim=-1)  # (P, H n, N)
    mixed = _rows_times(weights, v).view(p, heads, n, c_kv)  # sum_j a_j x_j per head and token
    out = mixed @ attn.v_proj.weight.view(heads, d, c_kv).transpose(1, 2)  # (P, H, n, d)
    out = out + attn.v_proj.bias.view(heads, 1, d)
    return attn.out_proj(out.transpose(1, 2).reshape(p, n, inner))


def few_keys(attn: nn.Module, q: torch.Tensor | None, k: torch.Tensor, v: torch.Tensor,
             q_heads: torch.Tensor | None = None) -> torch.Tensor:
    """``attn(q, k, v)`` for ``q (1 or P, N, C)`` image tokens and ``k``, ``v`` ``(P, n, C)``
    tokens, with the query and output projections folded into the keys and values.
    ``q_heads``: the queries already projected, ``(1 or P, H, N, d)`` (``q`` is then unused)."""
    heads, inner = attn.num_heads, attn.internal_dim
    d = inner // heads
    p, n, _ = k.shape
    kh = attn.project("k", k) * (1.0 / math.sqrt(d))  # (P, H, n, d)
    vh = attn.project("v", v)  # (P, H, n, d)
    c_out = attn.out_proj.weight.shape[0]
    # each head's values through its slice of the output projection: (P, H n, C_out)
    v_out = (vh @ attn.out_proj.weight.view(c_out, heads, d).permute(1, 2, 0)).reshape(p, heads * n, c_out)
    if q_heads is None:
        c_q = q.shape[-1]
        k_folded = (kh @ attn.q_proj.weight.view(heads, d, c_q)).reshape(p, heads * n, c_q)
        k_bias = (kh @ attn.q_proj.bias.view(heads, d, 1)).reshape(p, heads * n, 1)
        scores = _rows_times(k_folded, q.transpose(1, 2)) + k_bias  # (P, H n, N)
    elif q_heads.shape[0] == 1 and p > 1:  # one image for P prompt sets: one product per head
        flat = kh.transpose(0, 1).reshape(heads, p * n, d) @ q_heads[0].transpose(-2, -1)  # (H, P n, N)
        scores = flat.view(heads, p, n, -1).transpose(0, 1).reshape(p, heads * n, -1)
    else:
        scores = (kh @ q_heads.transpose(-2, -1)).reshape(p, heads * n, -1)
    # softmax over each head's n keys: a non-last axis, vectorised along the N image tokens
    weights = scores.view(p, heads, n, -1).softmax(dim=2).view(p, heads * n, -1)
    return torch.baddbmm(attn.out_proj.bias, weights.transpose(1, 2), v_out)
