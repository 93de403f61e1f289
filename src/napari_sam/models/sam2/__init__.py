"""SAM 2 / 2.1: Hiera + FPN image encoder, memory attention / encoder, SAM heads.

See :mod:`.model` for the model API (image path and the stateless video building blocks).
"""

from .build import build_sam2
from .config import SAM2_CONFIGS, Sam2Config, reduced_config
from .heads import NO_OBJ_SCORE, SamHeadsOutput
from .memory_cache import FrameCache, ProjectedMemory
from .model import Sam2

__all__ = [
    "NO_OBJ_SCORE",
    "SAM2_CONFIGS",
    "FrameCache",
    "ProjectedMemory",
    "Sam2",
    "Sam2Config",
    "SamHeadsOutput",
    "build_sam2",
    "reduced_config",
]
