"""The AIS decoder's inference shortcuts (models/ais/fused.py, the commuted upsampler, the
channels-last path) give the plain layers' numbers: each against a float64 reference of the
layer it replaces, and the whole decoder in eval mode against the same decoder run through
its plain layer sequences."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import max_rel_err
from golden.make_ais_golden import decoder_state

from napari_sam.models.ais import build_ais_decoder
from napari_sam.models.ais.fused import batch_norm_conv, channel_stats, norm_conv
from napari_sam.models.ais.upsampler import InterpolateUp

TOL = 1e-5  # float32 against float64; the parity tests hold the decoder to 1e-4 of micro-sam


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _reference_norm_conv(x, conv):
    w = conv.weight.double()
    b = None if conv.bias is None else conv.bias.double()
    return F.conv2d(F.instance_norm(x.double(), eps=1e-5), w, b, padding=1)


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("shape", [(1, 8, 37, 45), (2, 6, 3, 3), (1, 4, 2, 9), (1, 5, 2, 2), (1, 3, 64, 40)])
@pytest.mark.parametrize("bias", [True, False])
def test_norm_conv_equals_instance_norm_then_conv(layout, shape, bias):
    # an offset of 5 standard deviations: the folded form subtracts the mean's share in the
    # bias, so a cancellation shows here if the statistics or the frame correction are off
    x = torch.randn(*shape, generator=_gen(1)) + 5.0 * torch.rand(1, shape[1], 1, 1, generator=_gen(2))
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    torch.manual_seed(3)
    conv = torch.nn.Conv2d(shape[1], 7, 3, padding=1, bias=bias)
    with torch.no_grad():
        out = norm_conv(x, conv.weight, conv.bias)
        ref = _reference_norm_conv(x, conv)
    assert out.shape == ref.shape
    assert max_rel_err(out, ref) <= TOL


def test_norm_conv_frame_is_corrected():
    """The frame needs its own correction: folding the norm into weights and bias alone
    (what the test computes as ``naive``) is wrong on the border pixels, norm_conv is not."""
    x = torch.rand(1, 4, 9, 11, generator=_gen(4)) + 3.0
    torch.manual_seed(5)
    conv = torch.nn.Conv2d(4, 4, 3, padding=1)
    with torch.no_grad():
        ref = _reference_norm_conv(x, conv)
        var, mean = torch.var_mean(x.double(), dim=(2, 3), correction=0)
        w = conv.weight.double() * torch.rsqrt(var + 1e-5)[0][None, :, None, None]
        naive = F.conv2d(x.double(), w, conv.bias.double() - (w * mean[0][None, :, None, None]).sum((1, 2, 3)), padding=1)
        out = norm_conv(x, conv.weight, conv.bias)
    scale = float(ref.abs().max())
    assert float((naive - ref)[..., 1:-1, 1:-1].abs().max()) <= 1e-9 * scale  # the interior is the fold
    assert float((naive - ref).abs().max()) > 0.05 * scale  # the frame is not
    assert max_rel_err(out, ref) <= TOL


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_channel_stats_far_from_zero(layout):
    x = 100.0 + torch.randn(6, 301, 307, generator=_gen(6))  # not a multiple of any block
    if layout == "nhwc":
        x = x[None].contiguous(memory_format=torch.channels_last)[0]
    mean, var = channel_stats(x)
    ref_var, ref_mean = torch.var_mean(x.double(), dim=(1, 2), correction=0)
    assert float(((mean.double() - ref_mean) / ref_mean).abs().max()) <= 1e-6
    assert float(((var.double() - ref_var) / ref_var).abs().max()) <= 1e-5


def test_batch_norm_conv_equals_conv_then_batch_norm():
    torch.manual_seed(7)
    conv, bn = torch.nn.Conv2d(5, 6, 3, padding=1), torch.nn.BatchNorm2d(6).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.2, 2), bn.weight.uniform_(0.5, 2), bn.bias.uniform_(-1, 1)
        x = torch.randn(2, 5, 13, 10, generator=_gen(8))
        ref = F.batch_norm(F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=1),
                           bn.running_mean.double(), bn.running_var.double(), bn.weight.double(), bn.bias.double(),
                           eps=bn.eps)
        assert max_rel_err(batch_norm_conv(x, conv, bn), ref) <= TOL


@pytest.mark.parametrize("hw", [(8, 8), (5, 7), (1, 3)])
def test_interpolate_up_is_conv_then_bilinear(hw):
    torch.manual_seed(9)
    up = InterpolateUp(6, 4)
    x = torch.randn(2, 6, *hw, generator=_gen(10))
    with torch.no_grad():
        ref = F.conv2d(F.interpolate(x.double(), scale_factor=2, mode="bilinear", align_corners=False),
                       up.conv.weight.double(), up.conv.bias.double())
        out = up(x)
    assert out.shape == (2, 4, 2 * hw[0], 2 * hw[1])
    assert max_rel_err(out, ref) <= TOL


@pytest.mark.parametrize("transposed", [False, True], ids=["interpolate", "transposed"])
def test_decoder_fast_path_equals_its_plain_layers(transposed):
    """Eval mode (folded norms, channels last) vs the layer sequences themselves (the
    modules in training mode, the batch norms on their running statistics)."""
    decoder = build_ais_decoder(decoder_state(transposed))
    embed = torch.randn(1, 256, 8, 8, generator=_gen(11))
    with torch.no_grad():
        fast = decoder(embed)
        decoder.train()
        for m in decoder.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()
        plain = decoder(embed)
        decoder.eval()
    assert fast.shape == plain.shape == (1, 3, 128, 128)
    assert plain.std() > 0.05
    assert max_rel_err(fast, plain) <= TOL


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_conv_block_parts_equal_the_concatenation(layout):
    """ConvBlock.forward_parts (no cat: each part normalised and convolved with its weight
    slice) against the block's layers on torch.cat of the parts, in float64; one part is a
    channel crop (a non-contiguous view), as the U-Net decoder's skip inputs are."""
    from napari_sam.models.ais.conv_block import ConvBlock

    torch.manual_seed(12)
    block = ConvBlock(10, 6).eval()
    a = torch.randn(1, 4, 19, 23, generator=_gen(13))
    skip = torch.randn(1, 12, 19, 23, generator=_gen(14)).relu_() + 1.0
    if layout == "nhwc":
        a, skip = (t.contiguous(memory_format=torch.channels_last) for t in (a, skip))
    crop = skip[:, 3:9]
    with torch.no_grad():
        out = block.forward_parts([a, crop])
        ref = block.double().train()(torch.cat([a, crop], 1).double())
        block.float().eval()
        with pytest.raises(ValueError, match="the parts hold 4 channels, the block takes 10"):
            block.forward_parts([a])
    assert out.shape == (1, 6, 19, 23)
    assert max_rel_err(out, ref) <= TOL
