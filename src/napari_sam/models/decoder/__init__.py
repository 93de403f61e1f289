"""The SAM decoder, shared by SAM 1 and SAM 2: prompt encoder, two-way transformer, mask
decoder (the SAM 2 extras switched on by arguments), and the per-image decoder cache.

Parameter names follow the official checkpoints: ``prompt_encoder.*`` / ``mask_decoder.*``
in SAM 1, ``sam_prompt_encoder.*`` / ``sam_mask_decoder.*`` in SAM 2 (the same structure;
SAM 2's two-way transformer names its MLP ``layers.i``: ``mlp_style="sam2"``).
"""

from .decode import decode_prompts
from .image_cache import DecoderCache, ImageWork, image_work
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder, RandomFourierPositions
from .transformer import TwoWayTransformer

__all__ = [
    "DecoderCache",
    "ImageWork",
    "MaskDecoder",
    "PromptEncoder",
    "RandomFourierPositions",
    "TwoWayTransformer",
    "decode_prompts",
    "image_work",
]
