"""``build_edgetam(config) -> Sam2``: EdgeTAM as a SAM 2 with its own three parts.

The result is a :class:`~napari_sam.models.sam2.Sam2` (``family == "sam2"``: the image
predictor, segment everything, :class:`~napari_sam.engine.video.session.VideoSession` and
the automatic tracker use it as any SAM 2) built with

* ``image_encoder``: :class:`~.image_encoder.EdgeTamImageEncoder` (RepViT-M1 + FPN neck),
* ``memory_attention``: :class:`~.memory_attention.EdgeTamMemoryAttention` (2 layers, the
  cross attention reads perceiver latents),
* ``spatial_perceiver``: :class:`~.perceiver.SpatialPerceiver`, applied to every new memory,

and SAM 2.0's prompt encoder, mask decoder, memory encoder and pointer heads. Its
``state_dict()`` keys and shapes are the official EdgeTAM checkpoint's (``strict=True``).
"""

from __future__ import annotations

from ..sam2.model import Sam2
from .config import EDGETAM_CONFIG, EdgeTamConfig
from .image_encoder import EdgeTamImageEncoder
from .memory_attention import EdgeTamMemoryAttention
from .perceiver import SpatialPerceiver


def build_edgetam(config: EdgeTamConfig = EDGETAM_CONFIG) -> Sam2:
    """An EdgeTAM model in eval mode (weights at their initial values: load a checkpoint).

    ``model.config`` is the :class:`~napari_sam.models.sam2.Sam2Config` the engine reads
    (name ``"edgetam"``), ``model.edgetam_config`` the given :class:`EdgeTamConfig`. Build
    on the meta device (``with torch.device("meta"):``) to skip allocation before loading.
    ``model.image_encoder.fuse_()`` folds the trunk (conv + BN as one conv, channels-last)
    in eval mode without autograd: the same image features to ~1e-6 in half the time, but
    not the default (``load_model`` leaves it off): through SAM 2's bf16 memories that rounding
    moves video results by up to ~9e-4 of their range, over the 1e-4 parity tolerance.
    """
    if not isinstance(config, EdgeTamConfig):
        raise TypeError(f"config must be an EdgeTamConfig, got {type(config).__name__}")
    sam2_cfg = config.sam2_config()
    model = Sam2(sam2_cfg, image_encoder=EdgeTamImageEncoder(config),
                 memory_attention=EdgeTamMemoryAttention(config, sam2_cfg),
                 spatial_perceiver=SpatialPerceiver(config))
    model.edgetam_config = config
    return model.eval()
