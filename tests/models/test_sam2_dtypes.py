"""A bfloat16 SAM 2 runs every block (GPU users run half precision) and stays close to fp32.

Not a parity test (the official code runs bf16 only under CUDA autocast): the bar here is
"runs, finite, binarised masks agree on >= 98 % of pixels with the float32 model".
"""

from __future__ import annotations

import torch

from conftest import mask_agreement, perturb_
from napari_sam.models.sam2 import build_sam2, reduced_config


def _run(model, x):
    pts, lab = torch.tensor([[[100.0, 70.0]]]), torch.ones(1, 1, dtype=torch.int32)
    with torch.no_grad():
        f = model.encode_image(x.to(model.dtype))
        high = [f["high_res_s0"], f["high_res_s1"]]
        logits, _ = model.decode(f, pts, lab)
        heads = model.forward_sam_heads(model.no_memory_features(f["image_embed"]), high, pts, lab, multimask=True)
        mem, _ = model.encode_memory(f["image_embed"], heads.high_res_masks, heads.object_score_logits, True)
        given = model.mask_as_output(f["image_embed"], high, heads.high_res_masks > 0)
        # a float32 memory (as stored) feeds a bf16 model: inputs are cast to the model dtype
        pix = model.condition_on_memory(f["image_embed"], [(mem.float(), None, 0), (mem, None, 6)],
                                        [(heads.obj_ptr, 0), (given.obj_ptr.float(), 1)], 10)
        tracked = model.forward_sam_heads(pix, high)
    return logits, heads.low_res_masks, tracked.low_res_masks


def test_bfloat16_model_runs_all_blocks():
    torch.manual_seed(0)
    ref = perturb_(build_sam2(reduced_config("2.1")), seed=1)
    half = build_sam2(reduced_config("2.1"))
    half.load_state_dict(ref.state_dict())
    half = half.to(torch.bfloat16)
    assert half.dtype == torch.bfloat16
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(2))
    for a, b in zip(_run(ref, x), _run(half, x)):
        assert torch.isfinite(b.float()).all()
        assert mask_agreement(b.float(), a) >= 0.98
