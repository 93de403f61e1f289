"""RepViT-M1 trunk of EdgeTAM (``image_encoder.trunk.*``), written here without timm.

The official EdgeTAM trunk is ``timm.create_model("repvit_m1.dist_in1k", features_only=True,
out_indices=(0, 1, 2, 3))`` wrapped as ``trunk.body``. timm's feature wrapper flattens the
model's ``stages`` Sequential into ``stages_0`` .. ``stages_3``, so the state-dict keys are
``body.stem.conv1.c.weight``, ``body.stages_2.blocks.5.token_mixer.conv1.bn.running_var``, ...
The modules below reproduce exactly those names and the forward of timm 1.0's ``repvit_m1``
(the *legacy* variant: the 1x1 depth-wise branch of the token mixer is a conv + BN pair and
there is no BN after the residual sum). Outputs: the four stage outputs at strides 4, 8, 16,
32 with 48, 96, 192, 384 channels, highest resolution first.

Batch norms run with their running statistics (inference only). Folding
(:meth:`RepVitTrunk.fold_`, on in every EdgeTAM that :func:`~.build.build_edgetam` makes):
in eval mode without autograd each conv + BN pair runs as one conv, each token mixer as one
depth-wise conv, channels-last, activations and residual sums in place — the same function
to float rounding, the official ``state_dict()`` unchanged (see :mod:`.folding`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .folding import FoldCache, channels_last, fold_conv_bn


def _inference(m: nn.Module) -> bool:
    """Eval mode and no autograd: the folded / in-place path may run."""
    return not m.training and not torch.is_grad_enabled()


def _gelu(x: torch.Tensor, inplace: bool) -> torch.Tensor:
    return _GELU_(x) if inplace else F.gelu(x)


def _find_gelu_():
    try:
        return torch.ops.aten.gelu_
    except (AttributeError, RuntimeError):  # an older PyTorch: a copy, same numbers
        return lambda x: x.copy_(F.gelu(x))


_GELU_ = _find_gelu_()


class ConvNorm(nn.Sequential):
    """Conv (no bias) + BatchNorm, keys ``c.*`` / ``bn.*``; one folded conv when ``fold``."""

    fold = False

    def __init__(self, in_dim: int, out_dim: int, ks: int = 1, stride: int = 1, pad: int = 0,
                 groups: int = 1) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(in_dim, out_dim, ks, stride, pad, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(out_dim))
        self._folded = FoldCache()

    def _sources(self) -> tuple[torch.Tensor, ...]:
        bn = self.bn
        return (self.c.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weight, bias)`` of the one conv equal to conv + BN (eval), channels-last."""
        def make():
            w, b = fold_conv_bn(self.c.weight, self.bn)
            return channels_last(w), b
        return self._folded.get(self._sources(), make)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fold and _inference(self):
            w, b = self.folded()
            c = self.c
            return F.conv2d(x, w, b, c.stride, c.padding, c.dilation, c.groups)
        return self.bn(self.c(x))


class RepVggDw(nn.Module):
    """Token mixer: ``dw3x3(x) + dw1x1(x) + x`` (each conv with its own BN); one depth-wise
    3x3 conv when ``fold``."""

    fold = False

    def __init__(self, dim: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = ConvNorm(dim, dim, kernel_size, 1, (kernel_size - 1) // 2, groups=dim)
        self.conv1 = ConvNorm(dim, dim, 1, 1, 0, groups=dim)
        self._folded = FoldCache()

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weight, bias)`` of the depth-wise conv equal to the three branches (eval)."""
        def make():
            w, b = fold_conv_bn(self.conv.c.weight, self.conv.bn)
            w1, b1 = fold_conv_bn(self.conv1.c.weight, self.conv1.bn)
            centre = self.conv.c.kernel_size[0] // 2
            w = w.clone()
            w[:, :, centre, centre] += w1[:, :, 0, 0] + 1.0
            return channels_last(w), b + b1
        return self._folded.get(self.conv._sources() + self.conv1._sources(), make)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fold and _inference(self):
            w, b = self.folded()
            c = self.conv.c
            return F.conv2d(x, w, b, c.stride, c.padding, c.dilation, c.groups)
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

    def forward(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """``inplace``: scale ``x`` itself (the caller owns it, no autograd)."""
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
        return x.mul_(s) if inplace else x * s


class RepVitMlp(nn.Module):
    """Channel mixer: 1x1 ConvNorm -> GELU -> 1x1 ConvNorm."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = ConvNorm(dim, hidden)
        self.conv2 = ConvNorm(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(_gelu(self.conv1(x), _inference(self)))


class RepViTBlock(nn.Module):
    def __init__(self, dim: int, mlp_ratio: int, use_se: bool) -> None:
        super().__init__()
        self.token_mixer = RepVggDw(dim)
        self.se = SqueezeExcite(dim) if use_se else nn.Identity()
        self.channel_mixer = RepVitMlp(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inplace = _inference(self)
        x = self.token_mixer(x)  # a new tensor: the block owns it
        if isinstance(self.se, SqueezeExcite):
            x = self.se(x, inplace)
        return self.channel_mixer(x).add_(x) if inplace else x + self.channel_mixer(x)


class RepVitStem(nn.Module):
    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        self.conv1 = ConvNorm(in_chs, out_chs // 2, 3, 2, 1)
        self.conv2 = ConvNorm(out_chs // 2, out_chs, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(_gelu(self.conv1(x), _inference(self)))


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
        return self.ffn(x).add_(x) if _inference(self) else x + self.ffn(x)


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
    """The feature extractor: ``stem``, ``stages_0`` .. ``stages_{n-1}``; returns every stage
    (channels-last when folding runs: the caller makes them contiguous if it needs to)."""

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
        if self.stem.conv1.fold and _inference(self):
            x = x.contiguous(memory_format=torch.channels_last)
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

    @property
    def folded(self) -> bool:
        """Whether the folded path runs (in eval mode without autograd)."""
        return self.body.stem.conv1.fold

    def fold_(self, enabled: bool = True) -> "RepVitTrunk":
        """Turn folding on (or off) for every conv + BN pair and token mixer; the folded
        tensors are made at the first folded forward and remade whenever the weights
        change. Returns ``self``."""
        for m in self.modules():
            if isinstance(m, (ConvNorm, RepVggDw)):
                m.fold = bool(enabled)
        return self
