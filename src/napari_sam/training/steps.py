"""One training step of each path; both return ``(loss, stats)`` for ``loss.backward()``.

* :func:`image_step`: a few 2D scenes encoded once; per scene up to ``objects`` prompt sets
  (one click, a box, or a few clicks), then ``rounds - 1`` SAM-style corrective rounds (a click
  in the largest error region, the previous logits fed back as the mask prompt).
* :func:`video_step`: a clip; frame 0 gets a click or a box per object (no memory), every
  later frame is tracked from memories and object pointers chosen by the video engine's
  rules (:func:`~napari_sam.engine.video.memory_bank.memory_layout`, the official selection: the
  conditioning frame + the ``num_maskmem - 1`` previous frames, pointers at their frame
  distance). Gradients flow through the memories over the clip.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.video.memory_bank import COND, memory_layout
from ..models.sam2 import clamp_logits
from . import prompts as P
from .data import Example
from .heads import choose, decode_all
from .losses import prompt_losses


def _pad(sets: list[tuple[list, list]]):
    """Per-object (points, labels) lists -> padded ``(B, N, 2)`` float, ``(B, N)`` int64."""
    n = max(len(p) for p, _ in sets)
    coords = np.zeros((len(sets), n, 2), np.float32)
    labels = -np.ones((len(sets), n), np.int64)
    for i, (pts, labs) in enumerate(sets):
        if pts:
            coords[i, : len(pts)] = np.asarray(pts, np.float32)
            labels[i, : len(labs)] = labs
    return torch.from_numpy(coords), torch.from_numpy(labels)


def initial_prompt(rng: np.random.Generator, gt: np.ndarray, p_box: float = 0.3, p_multi: float = 0.15):
    """(points, labels) for one object: one inner click, a (maybe jittered) box, or 2-3 clicks."""
    u = rng.random()
    if u < p_box:
        box = P.bounding_box(gt) if rng.random() < 0.5 else P.jittered_box(rng, gt)
        return [box[:2], box[2:]], [2, 3]
    if u < p_box + p_multi:
        k = int(rng.integers(2, 4))
        return [P.inner_point(rng, gt, 1.0) for _ in range(k)], [1] * k
    pt = P.centre_point(gt) if rng.random() < 0.3 else P.inner_point(rng, gt, 2.0)
    return [pt], [1]


def _upsample(x, size):
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def low_res_target(gts: np.ndarray, size: int) -> torch.Tensor:
    """(..., S, S) bool ground truth -> (..., L, L) area fractions at the decoder's resolution
    (the losses run on the low-res logits: 16x cheaper than at input size)."""
    t = torch.from_numpy(gts).float()
    lead = t.shape[:-2]
    t = F.interpolate(t.reshape(-1, 1, *t.shape[-2:]), size=(size, size), mode="area")
    return t.reshape(*lead, size, size)


def _scored(dec, S: int, full_res: bool):
    """The mask logits the losses see: low-res, or upsampled to the input size as inference does."""
    return _upsample(dec.masks, S) if full_res else dec.masks


def _pick(rng, ids, k):
    return ids if len(ids) <= k else rng.choice(ids, size=k, replace=False)


def image_step(model, examples: list[Example], rng: np.random.Generator, objects: int = 12, rounds: int = 3,
               p_box: float = 0.3, token0_on_multimask: bool = True, full_res: bool = False,
               plain_bce: float = 0.0):
    """Image path over ``examples`` (one frame each); all their prompt sets decode as one batch.

    ``full_res``: the mask losses compare the logits upsampled to the input size with the
    binary ground truth (what inference thresholds), instead of low-res area fractions;
    ``plain_bce``: see :func:`.losses.prompt_losses` (``plain_bce_weight``)."""
    S, L = model.image_size, model.config.low_res_size
    dev = model.device
    feats = model.encode_image(torch.cat([ex.images for ex in examples]).to(dev))
    embed = model.no_memory_features(feats["image_embed"])
    owner, gts = [], []
    for i, ex in enumerate(examples):
        lab = ex.labels[0].numpy()
        for k in _pick(rng, P.object_ids(lab), objects):
            owner.append(i)
            gts.append(lab == k)
    if not gts:
        return None, {}
    gts = np.stack(gts)
    idx = torch.tensor(owner, device=dev)
    pix = embed[idx]
    hr = [feats["high_res_s0"][idx], feats["high_res_s1"][idx]]
    target = low_res_target(gts, S if full_res else L).to(dev)
    sets = [initial_prompt(rng, g, p_box=p_box) for g in gts]
    mask_input, total, stats = None, 0.0, {}
    for r in range(rounds):
        coords, labels = _pad(sets)
        multimask = torch.tensor([len(l) == 1 and l[0] == 1 for _, l in sets], device=dev)
        dec = decode_all(model, pix, hr, coords.to(dev), labels.to(dev), mask_input)
        loss, st = prompt_losses(_scored(dec, S, full_res), dec.ious, dec.object_logits, target, multimask,
                                 token0_on_multimask, plain_bce_weight=plain_bce)
        total = total + loss / rounds
        stats.update({f"r{r}_{k}": v for k, v in st.items()})
        if r + 1 == rounds:
            break
        low, _ = choose(model, dec, multimask)
        low = low.detach()
        pred = (_upsample(low, S)[:, 0] > 0).cpu().numpy()
        for j, (g, pr) in enumerate(zip(gts, pred)):
            click = P.corrective_click(rng, pr, g)
            if click is not None:
                sets[j][0].append(click[0])
                sets[j][1].append(click[1])
        mask_input = clamp_logits(low)
    return total, stats


def video_step(model, ex: Example, rng: np.random.Generator, objects: int = 4, p_box: float = 0.25,
               token0_on_multimask: bool = True, start: int = 0, full_res: bool = False, plain_bce: float = 0.0):
    """Video path over one clip ``ex`` (T frames), up to ``objects`` objects of frame ``start``.

    Frame ``start`` is prompted; tracking runs forward to the end, then backward from
    ``start`` to frame 0 (when ``start > 0``) with memories chosen as the official predictor
    chooses them when it runs in reverse after a forward run: the frames "before" a frame in
    the reverse direction are later frames, which the forward run has already filled — what
    propagating both ways from a middle slice does."""
    cfg, S, L = model.config, model.image_size, model.config.low_res_size
    T, dev = ex.images.shape[0], model.device
    feats = model.encode_image(ex.images.to(dev))
    lab = ex.labels.numpy()
    c = start
    ids = _pick(rng, P.object_ids(lab[c], min_area=30), objects)
    if len(ids) == 0:
        return None, {}
    gts = np.stack([lab == k for k in ids], axis=1)  # (T, B, S, S)
    target = low_res_target(gts, S if full_res else L).to(dev)
    B = len(ids)
    embed = feats["image_embed"]

    def hr(t):
        return [feats["high_res_s0"][t : t + 1], feats["high_res_s1"][t : t + 1]]

    sets = [initial_prompt(rng, g, p_box=p_box, p_multi=0.0) for g in gts[c]]
    coords, labels = _pad(sets)
    multimask = torch.tensor([len(l) == 1 for _, l in sets], device=dev)  # official: 1 point -> multimask
    dec = decode_all(model, model.no_memory_features(embed[c : c + 1]), hr(c), coords.to(dev), labels.to(dev))
    loss, st = prompt_losses(_scored(dec, S, full_res), dec.ious, dec.object_logits, target[c], multimask,
                             token0_on_multimask, plain_bce_weight=plain_bce)
    total, stats = loss, {f"f0_{k}": v for k, v in st.items()}
    low, ptr0 = choose(model, dec, multimask)
    mem0, _ = model.encode_memory(embed[c : c + 1].expand(B, -1, -1, -1), _upsample(low.detach(), S),
                                  dec.object_logits.detach(), True)
    mems, ptrs = {}, {}
    tracked = torch.ones(B, dtype=torch.bool, device=dev)  # no clicks on tracked frames: multimask
    track_stats: dict[str, float] = {}
    order = [(t, 1) for t in range(c + 1, T)] + [(t, -1) for t in range(c - 1, -1, -1)]
    for t, r in order:
        # the prompted frame c is the one conditioning frame; tracked frames are in mems / ptrs
        layout = memory_layout(cfg, t, r < 0, [c], mems.__contains__, ex.num_frames)
        memories = [(mem0 if src == COND else mems[f], None, t_pos) for t_pos, f, src in layout.spatial]
        pointers = [(ptr0 if src == COND else ptrs[f], d) for d, f, src in layout.pointers]
        pix = model.condition_on_memory(embed[t : t + 1], memories, pointers, ex.num_frames)
        coords, labels = torch.zeros(B, 1, 2, device=dev), -torch.ones(B, 1, dtype=torch.int64, device=dev)
        dec = decode_all(model, pix, hr(t), coords, labels)
        loss, st = prompt_losses(_scored(dec, S, full_res), dec.ious, dec.object_logits, target[t], tracked,
                                 token0_on_multimask, plain_bce_weight=plain_bce)
        total = total + loss
        for k, v in st.items():
            track_stats[k] = track_stats.get(k, 0.0) + v / (T - 1)
        low, ptrs[t] = choose(model, dec, tracked)
        mems[t], _ = model.encode_memory(embed[t : t + 1].expand(B, -1, -1, -1), _upsample(low.detach(), S),
                                         dec.object_logits.detach(), False)
    stats.update({f"track_{k}": v for k, v in track_stats.items()})
    return total / T, stats
