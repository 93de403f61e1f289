"""micro-sam's automatic instance segmentation (AIS) decoder, written here in plain PyTorch.

One component per file: ``conv_block`` (norm-conv-ReLU x2), ``upsampler`` (bilinear + 1x1 or
transposed conv), ``deconv_block`` (one x2 step of the embedding path), ``unet_decoder`` (the
three U-Net levels), ``decoder`` (:class:`AisDecoder`, the whole UNETR decoder) and ``build``
(from micro-sam's ``decoder_state``, strict).
"""

from .build import build_ais_decoder, uses_transposed_convs
from .decoder import FEATURES, OUT_CHANNELS, AisDecoder

__all__ = ["FEATURES", "OUT_CHANNELS", "AisDecoder", "build_ais_decoder", "uses_transposed_convs"]
