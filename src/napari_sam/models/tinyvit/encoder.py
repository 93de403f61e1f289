"""MobileSAM's image encoder: TinyViT (a conv stage, three window-attention stages) + SAM's neck.

Parameter names follow MobileSAM's checkpoints (``image_encoder.*`` keys of ``mobile_sam.pt``
and micro-sam's ``vit_t*`` files), so they load with ``strict=True``. The classification head
(``norm_head``, ``head``) is in those files and therefore here, though SAM never uses it.
"""

from __future__ import annotations

import torch
from torch import nn

from ..common import LayerNorm2d
from .config import TinyViTConfig
from .patch_embed import PatchEmbed
from .patch_merging import PatchMerging
from .stage import AttentionStage, ConvStage


class TinyViTEncoder(nn.Module):
    """``(B, 3, S, S)`` preprocessed image -> ``(B, out_chans, S/16, S/16)`` image embedding."""

    def __init__(self, cfg: TinyViTConfig) -> None:
        super().__init__()
        self.img_size = cfg.image_size
        dims = cfg.embed_dims
        self.patch_embed = PatchEmbed(3, dims[0])
        res = (cfg.image_size // 4, cfg.image_size // 4)
        self.layers = nn.ModuleList()
        for i, depth in enumerate(cfg.depths):
            merge = None
            if i < len(dims) - 1:
                stride = cfg.last_merge_stride if i == len(dims) - 2 else 2
                merge = PatchMerging(res, dims[i], dims[i + 1], stride)
            if i == 0:
                stage = ConvStage(dims[0], depth, cfg.mbconv_expand_ratio, merge)
            else:
                stage = AttentionStage(dims[i], res, depth, cfg.num_heads[i], cfg.window_sizes[i],
                                       cfg.mlp_ratio, cfg.local_conv_size, merge)
            self.layers.append(stage)
            if merge is not None:
                res = merge.out_resolution
        self.grid = res
        self.norm_head = nn.LayerNorm(dims[-1])
        self.head = nn.Linear(dims[-1], cfg.num_classes) if cfg.num_classes else nn.Identity()
        out = cfg.out_chans
        self.neck = nn.Sequential(
            nn.Conv2d(dims[-1], out, kernel_size=1, bias=False),
            LayerNorm2d(out),
            nn.Conv2d(out, out, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu":  # oneDNN's native layout: its (depthwise) convs run without reorders
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.patch_embed(x)
        for stage in self.layers:
            x = stage(x)
        b, _, c = x.shape
        h, w = self.grid
        # tokens viewed as a channels-last image; the embedding is returned contiguous
        return self.neck(x.view(b, h, w, c).permute(0, 3, 1, 2)).contiguous()
