"""The process-wide caches of positional tables must hold normal tensors: a first caller in
inference mode (a click, a propagation) must not break a later caller with autograd (training,
a fine-tune in the same process)."""

import torch

from napari_sam.models.sam2.positions import apply_rope, rope_tables, sine_grid


def test_tables_made_in_inference_mode_serve_autograd_later():
    with torch.inference_mode():
        tables = rope_tables(32, 7, 5, 123.0)  # sizes no other test uses: made here first
        grid = sine_grid(16, 7, 5, 321.0)
    assert not tables.cos.is_inference() and not grid.is_inference()
    x = torch.randn(1, 1, 35, 32, requires_grad=True)
    w = torch.randn(1, 16, 7, 5, requires_grad=True)
    loss = apply_rope(x, rope_tables(32, 7, 5, 123.0)).square().sum() + (w * sine_grid(16, 7, 5, 321.0)).sum()
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and w.grad is not None
