"""SAM 2 video building blocks vs the official ``SAM2Base`` pieces (reduced configs).

SAM heads (``_forward_sam_heads``, with object-score gating), mask as output
(``_use_mask_as_output``), memory encoding (``_encode_new_memory``) and memory
conditioning (``_prepare_memory_conditioned_features``), for 2.0 and 2.1. Memories are fed
as float32 to both sides.
"""

from __future__ import annotations

import pytest
import torch

from conftest import max_rel_err
from napari_sam.models.sam2 import reduced_config
from test_sam2_reference import paired_models

TOL = 1e-4
HEAD_FIELDS = ("low_res_multimasks", "high_res_multimasks", "ious", "low_res_masks", "high_res_masks",
               "obj_ptr", "object_score_logits")


def _check(ours, ref, what):
    err = max_rel_err(ours, ref)
    print(f"[parity] {what}: {err:.2e}")  # shown with -s
    assert err <= TOL, f"{what}: max rel err {err:.3g}"


@pytest.fixture(scope="module", params=["2.0", "2.1"])
def pair(request):
    cfg = reduced_config(request.param)
    ref, ours = paired_models(cfg, seed=7)
    return cfg, ref, ours


@pytest.fixture(scope="module", params=["2.0", "2.1"])
def memory_pair(request):
    """Like ``pair`` but with the temporal encodings boosted, so a wrong ``t_pos``, pointer
    distance or normalisation moves the output far beyond the tolerance (random init keeps
    them at ~0.05, which the randn-sized features would drown)."""
    cfg = reduced_config(request.param)
    ref, ours = paired_models(cfg, seed=8)
    with torch.no_grad():
        for model in (ref, ours):
            model.maskmem_tpos_enc.mul_(40.0)
            if cfg.proj_tpos_enc_in_obj_ptrs:
                model.obj_ptr_tpos_proj.weight.mul_(20.0)
    return cfg, ref, ours


def _frame(cfg, ours, seed=0, batch=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 3, cfg.image_size, cfg.image_size, generator=g)
    with torch.no_grad():
        feats = ours.encode_image(x)
    return {k: v.expand(batch, -1, -1, -1) for k, v in feats.items()}


def _seq(x):  # (B, C, h, w) -> official (hw, B, C)
    return x.flatten(2).permute(2, 0, 1)


def _compare_heads(ours_out, ref_out, tag):
    for name, ref_t in zip(HEAD_FIELDS, ref_out):
        _check(getattr(ours_out, name), ref_t, f"{tag} {name}")


@pytest.fixture
def force_object(pair):
    """Set the object-score head's last bias on both models (present: +, absent: -)."""
    _, ref, ours = pair
    bias_ref = ref.sam_mask_decoder.pred_obj_score_head.layers[2].bias
    bias_ours = ours.sam_mask_decoder.pred_obj_score_head.layers[2].bias
    saved = bias_ref.detach().clone()

    def set_(value):
        with torch.no_grad():
            for b in (bias_ref, bias_ours):
                b.copy_(saved + value)

    yield set_
    set_(0.0)


@torch.no_grad()
@pytest.mark.parametrize("presence", [50.0, -50.0, 0.0], ids=["present", "absent", "as-is"])
@pytest.mark.parametrize("prompt", ["click", "clicks+box", "mask", "none"])
@pytest.mark.parametrize("multimask", [True, False], ids=["multi", "single"])
def test_forward_sam_heads(pair, force_object, presence, prompt, multimask):
    cfg, ref, ours = pair
    force_object(presence)
    B = 2
    feats = _frame(cfg, ours, seed=3, batch=B)
    g = torch.Generator().manual_seed(4)
    pix = feats["image_embed"] + 0.3 * torch.randn(feats["image_embed"].shape, generator=g)
    high = [feats["high_res_s0"], feats["high_res_s1"]]
    points = mask = None
    if prompt == "click":
        points = (torch.tensor([[[100.0, 70.0]], [[30.0, 190.0]]]), torch.tensor([[1], [1]], dtype=torch.int32))
    elif prompt == "clicks+box":
        points = (torch.tensor([[[40.0, 50.0], [170.0, 140.0], [100.0, 70.0]]] * 2),
                  torch.tensor([[2, 3, 0]] * 2, dtype=torch.int32))
    elif prompt == "mask":  # a full-size mask: resized with antialias inside
        mask = (torch.randn(B, 1, cfg.image_size, cfg.image_size, generator=g) > 0.5).float()
    ref_out = ref._forward_sam_heads(
        pix, point_inputs=None if points is None else {"point_coords": points[0], "point_labels": points[1]},
        mask_inputs=mask, high_res_features=high, multimask_output=multimask,
    )
    ours_out = ours.forward_sam_heads(pix, high, *(points or (None, None)), mask_input=mask, multimask=multimask)
    _compare_heads(ours_out, ref_out, "sam heads")
    if presence < 0:
        assert (ours_out.low_res_masks == -1024.0).all()


@torch.no_grad()
def test_use_multimask_matches_official(pair):
    _, ref, ours = pair
    for init in (True, False):
        for n in range(4):
            pts = None if n == 0 else {"point_labels": torch.ones(1, n)}
            assert ours.use_multimask(init, n) == ref._use_multimask(init, pts)


@torch.no_grad()
def test_mask_as_output(pair):
    cfg, ref, ours = pair
    B = 3
    feats = _frame(cfg, ours, seed=5, batch=B)
    g = torch.Generator().manual_seed(6)
    mask = torch.randn(B, 1, cfg.image_size, cfg.image_size, generator=g) > 0.8
    mask[1] = False  # an empty mask: object absent
    high = [feats["high_res_s0"], feats["high_res_s1"]]
    ref_out = ref._use_mask_as_output(feats["image_embed"], high, mask)
    ours_out = ours.mask_as_output(feats["image_embed"][:1], high, mask)
    _compare_heads(ours_out, ref_out, "mask as output")
    assert ours_out.object_score_logits[:, 0].tolist() == [10.0, -10.0, 10.0]


@torch.no_grad()
@pytest.mark.parametrize("from_points", [True, False], ids=["clicks", "tracked"])
def test_encode_memory(pair, from_points):
    cfg, ref, ours = pair
    B = 2
    feats = _frame(cfg, ours, seed=8, batch=B)
    g = torch.Generator().manual_seed(9)
    masks = torch.randn(B, 1, cfg.image_size, cfg.image_size, generator=g) * 6
    scores = torch.tensor([[3.0], [-2.0]])  # second object absent
    ref_feat, ref_pos = ref._encode_new_memory(
        [_seq(feats["image_embed"])], [(cfg.feat_size, cfg.feat_size)], masks, scores, from_points)
    feat, pos = ours.encode_memory(feats["image_embed"][:1], masks, scores, from_points)
    _check(feat, ref_feat, "memory features")
    _check(pos.expand(B, -1, -1, -1), ref_pos[-1], "memory pos enc")


def _memory_bank(cfg, B, frames, cond, seed):
    """Random per-frame outputs as the official predictor keeps them (float32)."""
    g = torch.Generator().manual_seed(seed)
    n = cfg.feat_size
    pos = torch.zeros(1)  # filled below with the model's constant encoding
    out = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    for t in frames:
        entry = {
            "maskmem_features": torch.randn(B, cfg.mem_dim, n, n, generator=g),
            "obj_ptr": torch.randn(B, cfg.d_model, generator=g),
            "maskmem_pos_enc": pos,
        }
        out["cond_frame_outputs" if t in cond else "non_cond_frame_outputs"][t] = entry
    return out


def _select(cfg, bank, frame, num_frames, reverse):
    """The official frame selection (all cond frames, stride 1), in our block's inputs."""
    sign = -1 if reverse else 1
    cond, non_cond = bank["cond_frame_outputs"], bank["non_cond_frame_outputs"]
    memories = [(o["maskmem_features"], None, 0) for o in cond.values()]
    for t_pos in range(1, cfg.num_maskmem):
        t = frame - sign * (cfg.num_maskmem - t_pos)
        if t in non_cond:
            memories.append((non_cond[t]["maskmem_features"], None, t_pos))
    max_ptrs = min(num_frames, cfg.max_obj_ptrs_in_encoder)
    ptrs = [(o["obj_ptr"], (frame - t) * sign) for t, o in cond.items()
            if (t >= frame if reverse else t <= frame)]
    for d in range(1, max_ptrs):
        t = frame - sign * d
        if t < 0 or t >= num_frames:
            break
        if t in non_cond:
            ptrs.append((non_cond[t]["obj_ptr"], d))
    return memories, ptrs


SCENARIOS = {
    # frame, num_frames, reverse, frames with outputs, conditioning frames
    "forward": (9, 20, False, [0, 1, 2, 3, 4, 5, 6, 7, 8, 14], {0, 14}),
    "reverse": (5, 12, True, [0, 6, 7, 8, 9, 10, 11], {0, 9}),
    "few frames": (2, 3, False, [0, 1], {0}),
}


@torch.no_grad()
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_condition_on_memory(memory_pair, scenario):
    cfg, ref, ours = memory_pair
    frame, num_frames, reverse, frames, cond = SCENARIOS[scenario]
    B = 2
    feats = _frame(cfg, ours, seed=10, batch=1)
    bank = _memory_bank(cfg, B, frames, cond, seed=11)
    mem_pos = ours.memory_pos_enc().expand(B, -1, -1, -1)
    for group in bank.values():
        for o in group.values():
            o["maskmem_pos_enc"] = [mem_pos]
    n = cfg.feat_size
    img = feats["image_embed"].expand(B, -1, -1, -1)
    img_pos = ours.image_pos_enc().expand(B, -1, -1, -1)
    ref_out = ref._prepare_memory_conditioned_features(
        frame_idx=frame, is_init_cond_frame=False, current_vision_feats=[_seq(img)],
        current_vision_pos_embeds=[_seq(img_pos)], feat_sizes=[(n, n)], output_dict=bank,
        num_frames=num_frames, track_in_reverse=reverse)

    memories, ptrs = _select(cfg, bank, frame, num_frames, reverse)
    assert len(ptrs) > 0 and len(memories) > 1
    out = ours.condition_on_memory(img, memories, ptrs, num_frames)  # one copy per object
    _check(out, ref_out, f"memory conditioning ({scenario})")
    shared = ours.condition_on_memory(feats["image_embed"], memories, ptrs, num_frames)  # batch-1 frame
    _check(shared, ref_out, f"memory conditioning, shared frame ({scenario})")
    # bf16-stored memories (as the official predictor keeps them) are computed in float32
    bf16 = [(m.to(torch.bfloat16), p, t) for m, p, t in memories]
    rounded = [(m.to(torch.bfloat16).float(), p, t) for m, p, t in memories]
    assert torch.equal(ours.condition_on_memory(img, bf16, ptrs, num_frames),
                       ours.condition_on_memory(img, rounded, ptrs, num_frames))


@torch.no_grad()
def test_initial_frame_adds_no_mem_embed(pair):
    cfg, ref, ours = pair
    feats = _frame(cfg, ours, seed=12)
    n = cfg.feat_size
    ref_out = ref._prepare_memory_conditioned_features(
        frame_idx=0, is_init_cond_frame=True, current_vision_feats=[_seq(feats["image_embed"])],
        current_vision_pos_embeds=[_seq(ours.image_pos_enc())], feat_sizes=[(n, n)],
        output_dict={"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}, num_frames=5)
    _check(ours.no_memory_features(feats["image_embed"]), ref_out, "no-memory features")


@torch.no_grad()
def test_memory_attention_module_matches_official(pair):
    """The plain module path (no model wrapper) with a pointer tail excluded from RoPE."""
    cfg, ref, ours = pair
    g = torch.Generator().manual_seed(13)
    B, hw, C, M = 2, cfg.feat_size**2, cfg.d_model, cfg.mem_dim
    curr = torch.randn(hw, B, C, generator=g)
    curr_pos = torch.randn(hw, B, C, generator=g)
    n_ptr = 8
    memory = torch.randn(3 * hw + n_ptr, B, M, generator=g)
    memory_pos = torch.randn(3 * hw + n_ptr, B, M, generator=g)
    ref_out = ref.memory_attention(curr, memory, curr_pos, memory_pos, num_obj_ptr_tokens=n_ptr)
    ours_out = ours.memory_attention(curr.transpose(0, 1), curr_pos.transpose(0, 1),
                                     memory.transpose(0, 1), memory_pos.transpose(0, 1), n_ptr)
    _check(ours_out.transpose(0, 1), ref_out, "memory attention module")
