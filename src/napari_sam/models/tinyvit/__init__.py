"""MobileSAM's TinyViT image encoder (micro-sam's ``vit_t`` models), written here in plain PyTorch.

One component per file: ``conv_bn`` (conv + batch norm), ``patch_embed`` (stem), ``mbconv``
(first-stage block), ``patch_merging`` (between stages), ``attention`` (window attention with
offset biases), ``block`` (transformer block), ``stage``, ``encoder`` (TinyViT + SAM neck),
``config`` and ``build``.
"""

from .build import build_sam1_vit_t
from .config import VIT_T, TinyViTConfig
from .encoder import TinyViTEncoder

__all__ = ["VIT_T", "TinyViTConfig", "TinyViTEncoder", "build_sam1_vit_t"]
