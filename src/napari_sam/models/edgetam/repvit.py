"""RepViT-M1 trunk of EdgeTAM (``image_encoder.trunk.*``), written here without timm.

The official EdgeTAM trunk is ``timm.create_model("repvit_m1.dist_in1k", features_only=True,
out_indices=(0, 1, 2, 3))`` wrapped as ``trunk.body``. timm's feature wrapper flattens the
model's ``stages`` Sequential into ``stages_0`` .. ``stages_3``, so the state-dict keys are
``body.stem.conv1.c.weight``, ``body.stages_2.blocks.5.token_mixer.conv1.bn.running_var``, ...
The modules below reproduce exactly those names and the forward of timm 1.0's ``repvit_m1``
(the *legacy* variant: the 1x1 depth-wise branch of the token mixer is a conv + BN pair and
there is no BN after the residual sum). Outputs: the four stage outputs at strides 4, 8, 16,
32 with 48, 96, 192, 384 channels, highest resolution first.

Batch norms run with their running statistics (inference only).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ConvNorm(nn.Sequential):
    """Conv (no bias) + BatchNorm, keys ``c.*`` / ``bn.*``."""

    def __init__(self, in_dim: int, out_dim: int, ks: int = 1, stride: int = 1, pad: int = 0,
                 groups: int = 1) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(in_dim, out_dim, ks, stride, pad, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(out_dim))


class RepVggDw(nn.Module):
    """Token mixer: ``dw3x3(x) + dw1x1(x) + x`` (each conv with its own BN)."""

    def __init__(self, dim: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = ConvNorm(dim, dim, kernel_size, 1, (kernel_size - 1) // 2, groups=dim)
        self.conv1 = ConvNorm(dim, dim, 1, 1, 0, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.conv1(x) + x


def _se_channels(channels: int, ratio: float = 0.25, divisor: int = 8) -> int:
    """timm's ``make_divisible(channels * ratio, 8, round_limit=0)``."""
    v = channels * ratio
    return max(divisor, int(v + divisor / 2) // divisor * divisor)


class SqueezeExcite(nn.Module):
    """Squeeze-excitation with 1x1 convs (``fc1`` / ``fc2``), ReLU inside, sigmoid gate."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        rd = _se_channels(channels)
        self.fc1 = nn.Conv2d(channels, rd, 1)
        self.fc2 = nn.Conv2d(rd, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(s)


class RepVitMlp(nn.Module):
    """Channel mixer: 1x1 ConvNorm -> GELU -> 1x1 ConvNorm."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = ConvNorm(dim, hidden)
        self.conv2 = ConvNorm(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(nn.functional.gelu(self.conv1(x)))


class RepViTBlock(nn.Module):
    def __init__(self, dim: int, mlp_ratio: int, use_se: bool) -> None:
        super().__init__()
        self.token_mixer = RepVggDw(dim)
        self.se = SqueezeExcite(dim) if use_se else nn.Identity()
        self.channel_mixer = RepVitMlp(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.se(self.token_mixer(x))
        return x + self.channel_mixer(x)


class RepVitStem(nn.Module):
    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        self.conv1 = ConvNorm(in_chs, out_chs // 2, 3, 2, 1)
        self.conv2 = ConvNorm(out_chs // 2, out_chs, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(nn.functional.gelu(self.conv1(x)))


class RepVitDownsample(nn.Module):
    """Block (no SE) -> stride-2 depth-wise ConvNorm -> 1x1 ConvNorm -> residual MLP."""

    def __init__(self, in_dim: int, out_dim: int, mlp_ratio: int) -> None:
        super().__init__()
        self.pre_block = RepViTBlock(in_dim, mlp_ratio, use_se=False)
        self.spatial_downsample = ConvNorm(in_dim, in_dim, 3, 2, 1, groups=in_dim)
        self.channel_downsample = ConvNorm(in_dim, out_dim, 1, 1)
        self.ffn = RepVitMlp(out_dim, out_dim * mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.channel_downsample(self.spatial_downsample(self.pre_block(x)))
        return x + self.ffn(x)


class RepVitStage(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, depth: int, mlp_ratio: int, downsample: bool) -> None:
        super().__init__()
        if downsample:
            self.downsample = RepVitDownsample(in_dim, out_dim, mlp_ratio)
        else:
            if in_dim != out_dim:
                raise ValueError(f"a stage without downsampling keeps its width ({in_dim} != {out_dim})")
            self.downsample = nn.Identity()
        # SE on every other block, starting with the first
        self.blocks = nn.Sequential(*(RepViTBlock(out_dim, mlp_ratio, use_se=i % 2 == 0) for i in range(depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class RepVitBody(nn.Module):
    """The feature extractor: ``stem``, ``stages_0`` .. ``stages_{n-1}``; returns every stage."""

    def __init__(self, embed_dim: Sequence[int], depth: Sequence[int], mlp_ratio: int = 2,
                 in_chans: int = 3) -> None:
        super().__init__()
        if len(embed_dim) != len(depth):
            raise ValueError(f"embed_dim {tuple(embed_dim)} and depth {tuple(depth)} differ in length")
        self.stem = RepVitStem(in_chans, embed_dim[0])
        self.num_stages = len(embed_dim)
        in_dim = embed_dim[0]
        for i, (dim, d) in enumerate(zip(embed_dim, depth)):
            self.add_module(f"stages_{i}", RepVitStage(in_dim, dim, d, mlp_ratio, downsample=i > 0))
            in_dim = dim

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outs = []
        for i in range(self.num_stages):
            x = getattr(self, f"stages_{i}")(x)
            outs.append(x)
        return outs


class RepVitTrunk(nn.Module):
    """EdgeTAM's trunk: ``body`` (keys ``trunk.body.*``) and its ``channel_list`` (lowest res first)."""

    def __init__(self, embed_dim: Sequence[int] = (48, 96, 192, 384), depth: Sequence[int] = (2, 2, 14, 2),
                 mlp_ratio: int = 2) -> None:
        super().__init__()
        self.body = RepVitBody(embed_dim, depth, mlp_ratio)
        self.channel_list = tuple(reversed(tuple(embed_dim)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.body(x)


# ---- inference-time re-parameterisation (after the weights are loaded) -------------------

@torch.no_grad()
def _fuse_conv_norm(m: ConvNorm) -> nn.Conv2d:
    """Fold the BN's running statistics into the conv: one conv with bias."""
    c, bn = m.c, m.bn
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    out = nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding,
                    groups=c.groups, bias=True, device=c.weight.device, dtype=c.weight.dtype)
    out.weight.copy_(c.weight * scale[:, None, None, None])
    out.bias.copy_(bn.bias - bn.running_mean * scale)
    return out


@torch.no_grad()
def _fuse_token_mixer(m: RepVggDw) -> nn.Conv2d:
    """``dw3x3 + dw1x1 + identity`` as one depth-wise 3x3 conv."""
    conv, conv1 = _fuse_conv_norm(m.conv), _fuse_conv_norm(m.conv1)
    k = conv.kernel_size[0]
    centre = k // 2
    conv.weight[:, :, centre, centre] += conv1.weight[:, :, 0, 0] + 1.0
    conv.bias += conv1.bias
    return conv


def fuse_repvit_(module: nn.Module) -> nn.Module:
    """Replace, in place, every token mixer by one conv and every conv + BN by one conv.

    Same function (to float rounding) in eval mode, fewer passes over memory; the state-dict
    keys change, so load the official weights *before* fusing. Returns ``module``.
    """
    for name, child in list(module.named_children()):
        if isinstance(child, RepVggDw):
            setattr(module, name, _fuse_token_mixer(child))
        elif isinstance(child, ConvNorm):
            setattr(module, name, _fuse_conv_norm(child))
        else:
            fuse_repvit_(child)
    return module
