"""EdgeTAM (Meta, Apache-2.0): SAM 2 with a RepViT-M1 trunk and a spatial memory perceiver.

:func:`build_edgetam` makes the whole model: a :class:`~napari_sam.models.sam2.Sam2` with
:class:`EdgeTamImageEncoder`, :class:`EdgeTamMemoryAttention` and :class:`SpatialPerceiver`
(official ``image_encoder.*``, ``memory_attention.*``, ``spatial_perceiver.*`` keys); the
rest has SAM 2.0's keys and shapes.
"""

from .build import build_edgetam
from .config import EDGETAM_CONFIG, EdgeTamConfig
from .image_encoder import EdgeTamImageEncoder
from .memory_attention import EdgeTamMemoryAttention, LatentRoPEAttention
from .perceiver import SpatialPerceiver
from .repvit import RepVitTrunk

__all__ = ["EDGETAM_CONFIG", "EdgeTamConfig", "EdgeTamImageEncoder", "EdgeTamMemoryAttention",
           "LatentRoPEAttention", "RepVitTrunk", "SpatialPerceiver", "build_edgetam"]
