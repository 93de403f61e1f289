"""Paired official / our reduced models for the automatic-segmentation parity tests.

Random weights give masks scattered over the whole image with logits near 0; two changes to
the *shared* weights make the filters meaningful: the hypernetwork output layers are scaled
up (sharper logits -> stability scores spread over ~0.75-0.97) and, for SAM 1, the IoU
head's output bias is raised (its raw predictions would all be negative).
"""

from __future__ import annotations

import torch
from conftest import perturb_

HYPER_GAIN = 50.0


def _sharpen_(model, prefix: str, iou_shift: float) -> None:
    sd = model.state_dict()
    with torch.no_grad():
        for key, value in sd.items():
            if key.startswith(f"{prefix}.output_hypernetworks_mlps.") and key.endswith(".layers.2.weight"):
                value.mul_(HYPER_GAIN)
        sd[f"{prefix}.iou_prediction_head.layers.2.bias"].add_(iou_shift)


def sam1_pair(size: int = 320):
    """(official Sam, our Sam1) with equal weights: 2-block ViT of width 192, ``size`` px."""
    from models.test_sam1_parity import official_sam

    from napari_sam.models.sam1 import Sam1Config, build_sam1

    torch.manual_seed(0)
    ref = perturb_(official_sam(size, 192, 2, 3, (1,)), seed=1)
    _sharpen_(ref, "mask_decoder", iou_shift=1.0)
    cfg = Sam1Config(encoder_embed_dim=192, encoder_depth=2, encoder_num_heads=3,
                     encoder_global_attn_indexes=(1,), image_size=size)
    ours = build_sam1(cfg).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def sam2_pair(version: str = "2.1"):
    """(official SAM2Base, our Sam2) with equal weights, the reduced 256 px config."""
    from models.test_sam2_reference import paired_models

    from napari_sam.models.sam2 import reduced_config

    ref, _ = paired_models(reduced_config(version))
    _sharpen_(ref, "sam_mask_decoder", iou_shift=0.0)
    from napari_sam.models.sam2 import build_sam2

    ours = build_sam2(reduced_config(version)).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours
