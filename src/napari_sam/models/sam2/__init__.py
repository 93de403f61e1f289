"""SAM 2 / 2.1: Hiera + FPN image encoder, memory attention / encoder, SAM heads.

See :mod:`.model` for the model API (image path and the stateless video building blocks).
The prompt encoder and mask decoder are the shared ones of :mod:`napari_sam.models.decoder`.
"""

from .build import build_sam2
from .config import SAM2_CONFIGS, Sam2Config, reduced_config
from .heads import LOGIT_CLAMP, NO_OBJ_SCORE, AllTokens, SamHeads, SamHeadsOutput, clamp_logits
from .memory_cache import FrameCache, ProjectedMemory
from .model import Sam2

__all__ = [
    "LOGIT_CLAMP",
    "NO_OBJ_SCORE",
    "SAM2_CONFIGS",
    "AllTokens",
    "FrameCache",
    "ProjectedMemory",
    "Sam2",
    "Sam2Config",
    "SamHeads",
    "SamHeadsOutput",
    "build_sam2",
    "clamp_logits",
    "reduced_config",
]
