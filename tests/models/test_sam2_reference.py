"""Helpers for the SAM 2 parity tests: the official model and ours, with equal random weights.

The official model is built with the official ``sam2.build_sam.build_sam2`` (hydra), with
the same overrides the official predictors apply, plus size reductions for speed; ours
from the matching :func:`reduced_config`. Weights: official init + ``perturb_`` noise,
loaded into ours with ``strict=True``.
"""

from __future__ import annotations

import pytest
import torch

from conftest import perturb_
from official_sam2_yaml import yaml_and_overrides
from napari_sam.models.sam2 import Sam2Config, build_sam2, reduced_config

sam2_official = pytest.importorskip("sam2.build_sam")

def official_model(cfg: Sam2Config):
    """The official ``SAM2Base`` for ``cfg`` (reduced: the tiny yaml resized), eval, CPU."""
    yaml, overrides = yaml_and_overrides(cfg)
    # the official video predictor's override (its build_sam2 adds the multimask ones)
    overrides = overrides + ["++model.binarize_mask_from_pts_for_mem_enc=true"]
    return sam2_official.build_sam2(yaml, device="cpu", hydra_overrides_extra=overrides)


def paired_models(cfg: Sam2Config, seed: int = 0):
    """(official, ours) with identical perturbed weights."""
    torch.manual_seed(seed)
    ref = official_model(cfg)
    perturb_(ref, seed=seed)
    ours = build_sam2(cfg)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


@pytest.mark.parametrize("version", ["2.0", "2.1"])
def test_reduced_configs_load_official_weights_strictly(version):
    cfg = reduced_config(version)
    ref, ours = paired_models(cfg)
    assert set(ref.state_dict()) == set(ours.state_dict())
    for k, v in ref.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k
    # the official flags our config mirrors
    for flag in ("directly_add_no_mem_embed", "use_high_res_features_in_sam", "multimask_output_in_sam",
                 "multimask_min_pt_num", "multimask_max_pt_num", "multimask_output_for_tracking",
                 "use_multimask_token_for_obj_ptr", "iou_prediction_use_sigmoid", "use_obj_ptrs_in_encoder",
                 "add_tpos_enc_to_obj_ptrs", "proj_tpos_enc_in_obj_ptrs", "use_signed_tpos_enc_to_obj_ptrs",
                 "only_obj_ptrs_in_the_past_for_eval", "pred_obj_scores", "pred_obj_scores_mlp",
                 "fixed_no_obj_ptr", "soft_no_obj_ptr", "use_mlp_for_obj_ptr_proj",
                 "sigmoid_scale_for_mem_enc", "sigmoid_bias_for_mem_enc", "num_maskmem",
                 "use_mask_input_as_output_without_sam", "binarize_mask_from_pts_for_mem_enc",
                 "max_obj_ptrs_in_encoder", "max_cond_frames_in_attn", "memory_temporal_stride_for_eval",
                 "non_overlap_masks_for_mem_enc", "image_size", "num_maskmem"):
        assert getattr(ref, flag) == getattr(cfg, flag), flag
    assert (ref.no_obj_embed_spatial is not None) == cfg.no_obj_embed_spatial
    dec = ref.sam_mask_decoder
    assert dec.dynamic_multimask_via_stability == cfg.dynamic_multimask_via_stability
    assert dec.dynamic_multimask_stability_delta == cfg.dynamic_multimask_stability_delta
    assert dec.dynamic_multimask_stability_thresh == cfg.dynamic_multimask_stability_thresh
