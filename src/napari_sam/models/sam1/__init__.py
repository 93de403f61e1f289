"""SAM 1 (segment-anything 1.0) in plain PyTorch: ViT encoder, prompt encoder, mask decoder.

The prompt encoder, two-way transformer and mask decoder are shared with SAM 2
(``TwoWayTransformer(mlp_style="sam2")``, ``MaskDecoder(use_high_res_features=True, ...)``).
"""

from .image_encoder import ImageEncoderViT
from .mask_decoder import MaskDecoder, decoder_cache
from .prompt_encoder import PromptEncoder
from .sam import SAM1_PRESETS, Sam1, Sam1Config, build_sam1
from .transformer import TwoWayTransformer

__all__ = [
    "SAM1_PRESETS",
    "ImageEncoderViT",
    "MaskDecoder",
    "PromptEncoder",
    "Sam1",
    "Sam1Config",
    "TwoWayTransformer",
    "build_sam1",
    "decoder_cache",
]
