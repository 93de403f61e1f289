"""micro-sam's instance-segmentation decoder: torch_em's UNETR decoder over SAM's image embedding.

What ``micro_sam.instance_segmentation.get_decoder`` builds (``get_unetr``: ``UNETR(backbone=
"sam", out_channels=3, use_sam_stats=True, final_activation="Sigmoid",
use_skip_connection=False, resize_input=True)``, wrapped in ``DecoderAdapter``). It reads only
the encoder's final, 256-channel embedding (after SAM's neck) — no intermediate ViT features
and no image: without skip connections torch_em's UNETR builds its whole upsampling path from
that embedding. So the embedding an :class:`~napari_sam.engine.image.ImagePredictor` computes
(SamPredictor's preprocessing: longest side to S, normalised, zero-padded) is its input.

Embedding (B, C, s, s), s = S/16:

* ``deconv1..4`` — a chain of :class:`DeconvBlock` (x2 each): C -> 512 (2s), 256 (4s),
  128 (8s), 64 (16s).
* ``base`` — :class:`ConvBlock` C -> 512 at s; ``decoder`` — three U-Net levels joined with
  the outputs of deconv1..3 (centre-cropped, see :mod:`.unet_decoder`) -> 64 channels at 8s.
* ``deconv_out`` x2 -> 16s; concatenated with deconv4's output; ``decoder_head`` 128 -> 64;
  ``out_conv`` 1x1 -> 3; sigmoid.

Output (B, 3, S, S) in [0, 1]: foreground, distance to the object centre, distance to the
object boundary. :meth:`AisDecoder.to_image` brings the maps to the image's size as torch_em's
``postprocess_masks`` does (bilinear to S x S, crop the padding, bilinear to (H, W)).

Speed (eval mode, same numbers up to float32 rounding; tests/models/test_ais_fast_path.py):
on a CPU the maps are computed in the channels-last memory format (oneDNN's native layout:
its convolutions and the bilinear upsampling run without reordering), the 1x1 convolutions
of the upsamplers run before the interpolation, batch and instance norms are folded into the
convolutions next to them (:mod:`.fused`) and activations are applied in place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..common.layers import pointwise_conv

from .conv_block import ConvBlock
from .deconv_block import DeconvBlock
from .unet_decoder import UNetDecoder
from .upsampler import upsampler

#: torch_em's UNETR decoder widths: initial_features 64, gain 2, depth 3 (finest last)
FEATURES = (512, 256, 128, 64)
OUT_CHANNELS = 3  # foreground, centre distance, boundary distance


class AisDecoder(nn.Module):
    def __init__(self, embed_dim: int = 256, transposed: bool = False) -> None:
        super().__init__()
        f = FEATURES
        self.embed_dim, self.transposed = embed_dim, transposed
        self.base = ConvBlock(embed_dim, f[0])
        self.decoder = UNetDecoder(f, transposed)
        self.deconv1 = DeconvBlock(embed_dim, f[0], transposed)
        self.deconv2 = DeconvBlock(f[0], f[1], transposed)
        self.deconv3 = DeconvBlock(f[1], f[2], transposed)
        self.deconv4 = DeconvBlock(f[2], f[3], transposed)
        self.deconv_out = upsampler(f[-1], f[-1], transposed)
        self.decoder_head = ConvBlock(2 * f[-1], f[-1])
        self.out_conv = nn.Conv2d(f[-1], OUT_CHANNELS, kernel_size=1)

    def forward(self, embedding: Tensor) -> Tensor:
        """(B, C, s, s) image embedding -> (B, 3, 16s, 16s) maps in [0, 1]."""
        if embedding.ndim != 4 or embedding.shape[1] != self.embed_dim:
            raise ValueError(f"the AIS decoder reads (B, {self.embed_dim}, h, w) image embeddings, "
                             f"got shape {tuple(embedding.shape)}")
        if not self.training and embedding.device.type == "cpu":
            embedding = embedding.contiguous(memory_format=torch.channels_last)
        z9 = self.deconv1(embedding)
        z6 = self.deconv2(z9)
        z3 = self.deconv3(z6)
        z0 = self.deconv4(z3)
        x = self.decoder(self.base(embedding), [z9, z6, z3])
        x = self.decoder_head.forward_parts([self.deconv_out(x), z0])  # = decoder_head(cat([...], 1))
        return pointwise_conv(x, self.out_conv.weight, self.out_conv.bias).sigmoid_()

    @staticmethod
    def to_image(maps: Tensor, input_hw: tuple[int, int], image_hw: tuple[int, int],
                 image_size: int) -> Tensor:
        """(B, 3, 16s, 16s) -> (B, 3, H, W): bilinear to the model input's S x S, the image's
        ``input_hw`` part of it (the rest is padding), bilinear to ``image_hw``."""
        if tuple(maps.shape[-2:]) != (image_size, image_size):  # same size: bilinear is the identity
            maps = F.interpolate(maps, (image_size, image_size), mode="bilinear", align_corners=False)
        maps = maps[..., : int(input_hw[0]), : int(input_hw[1])]
        if tuple(maps.shape[-2:]) == (int(image_hw[0]), int(image_hw[1])):
            return maps.contiguous()
        maps = F.interpolate(maps, (int(image_hw[0]), int(image_hw[1])), mode="bilinear", align_corners=False)
        return maps.contiguous()
