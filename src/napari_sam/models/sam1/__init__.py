"""SAM 1 (segment-anything 1.0) in plain PyTorch: the ViT image encoder and the model object.

Its prompt encoder, two-way transformer and mask decoder are the shared ones of
:mod:`napari_sam.models.decoder` (SAM 2 uses the same classes).
"""

from .image_encoder import ImageEncoderViT
from .sam import SAM1_PRESETS, Sam1, Sam1Config, build_sam1

__all__ = ["SAM1_PRESETS", "ImageEncoderViT", "Sam1", "Sam1Config", "build_sam1"]
