"""``build_sam1_vit_t()``: MobileSAM's model (TinyViT encoder + SAM 1 heads) as a :class:`Sam1`."""

from __future__ import annotations

from ..sam1.sam import Sam1, build_sam1_heads
from .config import VIT_T, TinyViTConfig
from .encoder import TinyViTEncoder


def build_sam1_vit_t(cfg: TinyViTConfig = VIT_T) -> Sam1:
    """A randomly initialised vit_t whose ``state_dict()`` keys and shapes equal
    ``mobile_sam.pt`` (load with ``strict=True``). Works under ``torch.device("meta")``."""
    return Sam1(TinyViTEncoder(cfg), *build_sam1_heads(cfg), cfg)
