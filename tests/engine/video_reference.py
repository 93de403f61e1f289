"""Test / benchmark helpers: the official ``SAM2VideoPredictor`` beside our ``VideoSession``.

Both get the same random weights (official init + ``perturb_``, loaded into ours with
``strict=True``) and the same frames: the official loader reads ``<t>.jpg`` files through
PIL, which detects the format from the content, so the frames are written as lossless PNG
data under those names.

On CPU the official predictor stores memories in bfloat16 and then fails to compute with
them in fp32 (it relies on CUDA autocast); :class:`Fp32MemoryPredictor` casts them back to
float32 right after they are stored (the values keep their bf16 rounding, which is part of
the official numbers). Nothing else of the official code is changed.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from official_sam2_yaml import yaml_and_overrides

from napari_sam.models.sam2 import Sam2Config, build_sam2

def _fp32_predictor_class():
    from sam2.sam2_video_predictor import SAM2VideoPredictor

    class Fp32MemoryPredictor(SAM2VideoPredictor):
        """The official predictor, its bf16-stored memories cast back to fp32 for CPU."""

        def _run_single_frame_inference(self, *args, **kwargs):
            out, masks = super()._run_single_frame_inference(*args, **kwargs)
            if out["maskmem_features"] is not None:
                out["maskmem_features"] = out["maskmem_features"].float()
            return out, masks

        def _run_memory_encoder(self, *args, **kwargs):
            feats, pos = super()._run_memory_encoder(*args, **kwargs)
            return feats.float(), pos

    return Fp32MemoryPredictor


def official_predictor(cfg: Sam2Config, seed: int = 0, corrections_as_cond: bool = False,
                       perturb=None):
    """(official video predictor, our model) with identical perturbed weights; no hole filling.

    The memory-bank options of ``cfg`` (``memory_temporal_stride_for_eval``,
    ``max_cond_frames_in_attn``) are passed on to the official model too.
    """
    from sam2.build_sam import build_sam2_video_predictor

    yaml, overrides = yaml_and_overrides(cfg)
    if corrections_as_cond:
        overrides.append("++model.add_all_frames_to_correct_as_cond=true")
    overrides += [
        f"++model.memory_temporal_stride_for_eval={cfg.memory_temporal_stride_for_eval}",
        f"++model.max_cond_frames_in_attn={cfg.max_cond_frames_in_attn}",
    ]
    torch.manual_seed(seed)
    pred = build_sam2_video_predictor(yaml, device="cpu", hydra_overrides_extra=overrides)
    pred.__class__ = _fp32_predictor_class()
    pred.fill_hole_area = 0
    if perturb is not None:
        perturb(pred, seed=seed)
    ours = build_sam2(cfg)
    ours.load_state_dict(pred.state_dict(), strict=True)
    return pred.eval(), ours.eval()


def write_frames(frames: np.ndarray, folder) -> str:
    """Write (T, H, W, 3) uint8 frames as lossless PNG data named ``<t>.jpg``."""
    os.makedirs(folder, exist_ok=True)
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(os.path.join(folder, f"{t}.jpg"), format="PNG")
    return os.fspath(folder)


def moving_blobs(num_frames: int, h: int, w: int, seed: int = 0, vanish=()) -> np.ndarray:
    """(T, H, W, 3) uint8: two textured disks drifting over a noisy background.

    ``vanish``: frames on which the first disk is missing.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = np.empty((num_frames, h, w, 3), np.uint8)
    for t in range(num_frames):
        img = 30 + 10 * rng.standard_normal((h, w)).astype(np.float32)
        disks = [(0.35 * h + 0.01 * h * t, 0.3 * w + 0.02 * w * t, 0.16 * min(h, w), 200.0),
                 (0.65 * h - 0.01 * h * t, 0.7 * w - 0.015 * w * t, 0.12 * min(h, w), 140.0)]
        for i, (cy, cx, r, b) in enumerate(disks):
            if i == 0 and t in vanish:
                continue
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            img[inside] = b + 15 * np.sin(xx[inside] / 3.0) + 8 * rng.standard_normal(inside.sum())
        frames[t] = np.clip(img, 0, 255).astype(np.uint8)[..., None].repeat(3, axis=-1)
    frames[..., 1] = np.clip(frames[..., 1].astype(int) + 20, 0, 255)
    return frames
