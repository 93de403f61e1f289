"""SAM 2 / 2.1: Hiera + FPN image encoder, memory attention / encoder, SAM heads."""

from .build import build_sam2
from .config import SAM2_CONFIGS, Sam2Config, reduced_config
from .model import Sam2, SamHeadsOutput

__all__ = ["SAM2_CONFIGS", "Sam2", "Sam2Config", "SamHeadsOutput", "build_sam2", "reduced_config"]
