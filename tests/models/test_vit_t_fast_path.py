"""The vit_t encoder's inference shortcuts: 1x1 convolutions as matrix products over
channels-last pixels (models/common/layers.py: pointwise_conv), GELU in place, channels-last
activations in and out. The encoder's numbers against MobileSAM: tests/models/test_vit_t_parity.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import max_rel_err

from napari_sam.models.common.layers import pointwise_conv
from napari_sam.models.tinyvit import TinyViTConfig, build_sam1_vit_t
from napari_sam.models.tinyvit.conv_bn import gelu_


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("bias", [True, False])
def test_pointwise_conv_equals_conv2d(layout, bias):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 9, 11, generator=g)
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(5, 6, 1, 1, generator=g), (torch.randn(5, generator=g) if bias else None)
    out = pointwise_conv(x, w, b)
    ref = F.conv2d(x.double(), w.double(), None if b is None else b.double())
    assert out.shape == (2, 5, 9, 11)
    assert max_rel_err(out, ref) <= 1e-6
    assert out.is_contiguous(memory_format=torch.channels_last) == (layout == "nhwc")


def test_gelu_in_place_only_without_autograd():
    x = torch.linspace(-4, 4, 101)
    ref = F.gelu(x.double())
    y = x.clone()
    out = gelu_(y)
    assert out.data_ptr() == y.data_ptr() and max_rel_err(out, ref) <= 1e-6  # written over its input
    leaf = x.clone().requires_grad_(True)
    out = gelu_(leaf)
    assert out.data_ptr() != leaf.data_ptr()  # a recorded graph keeps its input
    out.sum().backward()
    assert torch.isfinite(leaf.grad).all() and float(leaf.grad[-1]) == pytest.approx(1.0, abs=1e-3)


def test_encoder_returns_a_contiguous_embedding():
    torch.manual_seed(0)
    cfg = TinyViTConfig(image_size=256, depths=(1, 1, 1, 1))
    enc = build_sam1_vit_t(cfg).eval().image_encoder
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        out = enc(x)
        enc.train()  # the training path (unfolded batch norms, out-of-place activations) ...
        for m in enc.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()  # ... on the running statistics: the same numbers
        ref = enc(x)
        enc.eval()
    assert out.shape == (1, 256, 16, 16) and out.is_contiguous()
    assert max_rel_err(out, ref) <= 1e-5
