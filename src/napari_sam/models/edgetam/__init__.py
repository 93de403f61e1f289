"""EdgeTAM (Meta, Apache-2.0): SAM 2 with a RepViT-M1 trunk and a spatial memory perceiver.

So far: :class:`EdgeTamImageEncoder` and :class:`SpatialPerceiver` (official ``image_encoder.*``
and ``spatial_perceiver.*`` keys); the rest of the model has SAM 2.0's keys and shapes.
"""

from .config import EDGETAM_CONFIG, EdgeTamConfig
from .image_encoder import EdgeTamImageEncoder
from .perceiver import SpatialPerceiver
from .repvit import RepVitTrunk

__all__ = ["EDGETAM_CONFIG", "EdgeTamConfig", "EdgeTamImageEncoder", "RepVitTrunk", "SpatialPerceiver"]
