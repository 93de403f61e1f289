"""The one attention function every attention layer of napari-sam calls.

Backends, in order of preference:

* ``flash`` - the ``flash_attn`` package (optional extra ``napari-sam[gpu]``), used only when
  it is installed, the tensors are CUDA fp16/bf16, there is no additive bias and the head
  width is one flash-attn supports.
* ``sdpa`` - :func:`torch.nn.functional.scaled_dot_product_attention` (the default; on CUDA it
  picks its own flash / memory-efficient kernels). An additive bias (SAM 1's decomposed
  relative positions) is passed as its ``attn_mask``.
* ``math`` - softmax(q k^T * scale + bias) v written out; the last fallback, and a reference.

The environment variable ``NAPARI_SAM_ATTENTION`` (``auto`` | ``flash`` | ``sdpa`` | ``math``)
or the :func:`attention_backend` context manager forces one. The context manager holds for the
thread that entered it only: a napari worker thread that forces ``math`` does not change what
the GUI thread or another worker computes with. A forced ``flash`` whose conditions do not
hold falls back to ``sdpa`` (never a silent wrong result).
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import threading
from collections.abc import Iterator

import torch
import torch.nn.functional as F

BACKENDS = ("auto", "flash", "sdpa", "math")
_flash_func = None  # the optional package's function, looked up once (a fact, not a setting)


class _Forced(threading.local):
    """The stack of backends forced with :func:`attention_backend`, one per thread."""

    def __init__(self) -> None:
        self.stack: list[str] = []


_forced = _Forced()


def _flash_available() -> bool:
    global _flash_func
    if _flash_func is None:
        if importlib.util.find_spec("flash_attn") is None:
            _flash_func = False
        else:
            try:
                from flash_attn import flash_attn_func

                _flash_func = flash_attn_func
            except Exception:  # a broken build must not break the plugin
                _flash_func = False
    return _flash_func is not False


def requested_backend() -> str:
    """The backend asked for: the innermost :func:`attention_backend`, else the env var."""
    if _forced.stack:
        return _forced.stack[-1]
    name = os.environ.get("NAPARI_SAM_ATTENTION", "auto").lower()
    if name not in BACKENDS:
        raise ValueError(f"NAPARI_SAM_ATTENTION={name!r}: choose one of {', '.join(BACKENDS)}")
    return name


@contextlib.contextmanager
def attention_backend(name: str) -> Iterator[None]:
    """Force one backend inside a ``with`` block (``auto`` restores the default choice)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}: choose one of {', '.join(BACKENDS)}")
    _forced.stack.append(name)
    try:
        yield
    finally:
        _forced.stack.pop()


def _flash_ok(q: torch.Tensor, bias: torch.Tensor | None) -> bool:
    return (
        bias is None
        and q.is_cuda
        and q.dtype in (torch.float16, torch.bfloat16)
        and q.shape[-1] <= 256
        and q.shape[-1] % 8 == 0
        and _flash_available()
    )


def select_backend(q: torch.Tensor, bias: torch.Tensor | None = None) -> str:
    """Which backend :func:`attention` will use for these inputs."""
    name = requested_backend()
    if name == "math":
        return "math"
    if name in ("auto", "flash") and _flash_ok(q, bias):
        return "flash"
    return "sdpa"


def math_attention(q, k, v, bias=None, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    attn = (q * scale) @ k.transpose(-2, -1)
    if bias is not None:
        attn = attn + bias
    return attn.softmax(dim=-1) @ v


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """softmax(q k^T * scale + bias) v for ``(..., heads, tokens, head_dim)`` tensors.

    ``bias`` is an additive float mask broadcastable to ``(..., heads, q_tokens, k_tokens)``.
    ``scale`` defaults to 1/sqrt(head_dim). Returns ``(..., heads, q_tokens, v_dim)``.
    """
    backend = select_backend(q, bias)
    if backend == "flash":
        lead = q.shape[:-3]
        # flash_attn wants (batch, tokens, heads, head_dim)
        qf, kf, vf = (t.reshape(-1, *t.shape[-3:]).transpose(1, 2) for t in (q, k, v))
        out = _flash_func(qf.contiguous(), kf.contiguous(), vf.contiguous(), softmax_scale=scale)
        return out.transpose(1, 2).reshape(*lead, q.shape[-3], q.shape[-2], v.shape[-1])
    if backend == "math":
        return math_attention(q, k, v, bias, scale)
    if bias is None and _pad_keys(q, k):
        k, v, bias = _padded_keys(k, v)
    if bias is not None and bias.dtype != q.dtype:
        bias = bias.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)


_KEY_BLOCK = 16


def _pad_keys(q: torch.Tensor, k: torch.Tensor) -> bool:
    """Many queries against a few keys on CPU (image tokens -> prompt tokens): PyTorch's CPU
    attention kernel takes 2-3x longer when the key count is not a multiple of 16."""
    nk = k.shape[-2]
    return q.device.type == "cpu" and nk % _KEY_BLOCK != 0 and nk < 4 * _KEY_BLOCK and q.shape[-2] >= 256


def _padded_keys(k: torch.Tensor, v: torch.Tensor):
    """Keys and values padded with zeros to a multiple of 16, and the additive mask that gives
    the padding zero weight (exp(-inf) = 0: the same softmax over the real keys)."""
    nk = k.shape[-2]
    extra = -nk % _KEY_BLOCK
    k = F.pad(k, (0, 0, 0, extra))
    v = F.pad(v, (0, 0, 0, extra))
    mask = k.new_zeros(1, nk + extra)
    mask[:, nk:] = float("-inf")
    return k, v, mask
