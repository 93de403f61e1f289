"""The shared attention function: backends agree, selection follows the rules."""

from __future__ import annotations

import pytest
import torch

from napari_sam.models.common.attention import (
    attention,
    attention_backend,
    math_attention,
    select_backend,
)


def _qkv(seed=0, b=2, h=3, n=17, m=23, d=16):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, h, n, d, generator=g), torch.randn(b, h, m, d, generator=g),
            torch.randn(b, h, m, d, generator=g), torch.randn(b, h, n, m, generator=g))


def test_sdpa_equals_math_with_and_without_bias():
    q, k, v, bias = _qkv()
    for bb in (None, bias):
        ref = math_attention(q.double(), k.double(), v.double(), None if bb is None else bb.double())
        with attention_backend("sdpa"):
            out = attention(q, k, v, bb)
        with attention_backend("math"):
            out_math = attention(q, k, v, bb)
        torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out_math.double(), ref, rtol=1e-5, atol=1e-5)


def test_custom_scale_and_broadcast_bias():
    q, k, v, bias = _qkv(1)
    b1 = bias[:1, :1]  # broadcast over batch and heads
    ref = math_attention(q, k, v, b1, scale=0.3)
    torch.testing.assert_close(attention(q, k, v, b1, scale=0.3), ref, rtol=1e-5, atol=1e-5)


def test_backend_selection_rules(monkeypatch):
    q, _, _, bias = _qkv()
    assert select_backend(q) == "sdpa"  # CPU fp32: never flash
    with attention_backend("math"):
        assert select_backend(q) == "math"
    with attention_backend("flash"):  # flash impossible here -> sdpa, not a wrong result
        assert select_backend(q, bias) == "sdpa"
    monkeypatch.setenv("NAPARI_SAM_ATTENTION", "math")
    assert select_backend(q) == "math"
    monkeypatch.setenv("NAPARI_SAM_ATTENTION", "bogus")
    with pytest.raises(ValueError, match="NAPARI_SAM_ATTENTION"):
        select_backend(q)
    with pytest.raises(ValueError, match="unknown attention backend"):
        with attention_backend("fast"):
            pass


@pytest.mark.skipif(not torch.cuda.is_available(), reason="flash-attn needs a CUDA GPU")
def test_flash_matches_sdpa_on_gpu():
    pytest.importorskip("flash_attn")
    q, k, v, _ = (t.cuda().half() for t in _qkv(d=64))
    assert select_backend(q) == "flash"
    out = attention(q, k, v)
    with attention_backend("sdpa"):
        ref = attention(q, k, v)
    torch.testing.assert_close(out.float(), ref.float(), rtol=2e-3, atol=2e-3)


def test_forced_backend_holds_for_its_own_thread_only():
    """Two threads at once: one forces ``math`` while the other, unforced, keeps ``sdpa``; and
    the forcing thread keeps ``math`` while the other thread enters and leaves its own block."""
    import threading

    q, _, _, _ = _qkv()
    inside, other_done = threading.Event(), threading.Event()
    seen: dict[str, list[str]] = {"forcing": [], "other": []}

    def forcing():
        with attention_backend("math"):
            seen["forcing"].append(select_backend(q))
            inside.set()
            other_done.wait(10)
            seen["forcing"].append(select_backend(q))  # the other thread's block came and went
        seen["forcing"].append(select_backend(q))

    def other():
        inside.wait(10)
        seen["other"].append(select_backend(q))  # while the first thread forces math
        with attention_backend("sdpa"):
            seen["other"].append(select_backend(q))
        other_done.set()

    threads = [threading.Thread(target=forcing), threading.Thread(target=other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen == {"forcing": ["math", "math", "sdpa"], "other": ["sdpa", "sdpa"]}
    assert select_backend(q) == "sdpa"  # the main thread never saw either block
