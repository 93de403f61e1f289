"""Training losses: class-balanced BCE + dice on masks, L1 on predicted IoU, BCE on
object presence.

Mask losses apply where the object is present; with several candidate masks (multimask) only
the best one (lowest loss) is trained, the IoU predictions of all are. SAM's 20 x focal + dice
left a from-scratch model predicting nothing after 40 iterations on small nuclei (objects are
< 1 % of the pixels); balanced BCE weighs an object's pixels as much as the background's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BCE_WEIGHT, DICE_WEIGHT, IOU_WEIGHT, OBJECT_WEIGHT = 1.0, 1.0, 1.0, 1.0


def balanced_bce(logits, target):
    """Per-mask BCE, the mean over object pixels plus the mean over background pixels
    (soft targets split their weight); 0.5 x the plain BCE on a half-and-half mask."""
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(-2)
    t = target.flatten(-2)
    pos = (ce * t).sum(-1) / t.sum(-1).clamp_min(1.0)
    neg = (ce * (1 - t)).sum(-1) / (1 - t).sum(-1).clamp_min(1.0)
    return 0.5 * (pos + neg)


def plain_bce(logits, target):
    """Per-mask BCE, the mean over all pixels: a missed object pixel costs what a false one does."""
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(-2).mean(-1)


def dice_loss(logits, target):
    p = torch.sigmoid(logits).flatten(-2)
    t = target.flatten(-2)
    return 1 - (2 * (p * t).sum(-1) + 1) / (p.sum(-1) + t.sum(-1) + 1)


def hard_iou(logits, target):
    """IoU of ``logits > 0`` with ``target`` per mask (1 where both are empty)."""
    pred = (logits > 0).flatten(-2).float()
    t = (target > 0.5).flatten(-2).float()
    inter, union = (pred * t).sum(-1), ((pred + t) > 0).float().sum(-1)
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def prompt_losses(masks, ious, object_logits, target, multimask, token0_on_multimask: bool = True,
                  plain_bce_weight: float = 0.0):
    """Losses of ``B`` prompt sets with 4 mask tokens each.

    ``masks`` ``(B, 4, L, L)`` logits at the target's size, ``ious`` ``(B, 4)``,
    ``object_logits`` ``(B, 1)``, ``target`` ``(B, L, L)`` float in [0, 1] (area-downsampled
    ground truth: soft at the edges), ``multimask`` ``(B,)`` bool (train the best
    of tokens 1-3; token 0 as well unless ``token0_on_multimask`` is False — the official
    SAM 2 training's choice: token 0 is then the single-mask output of unambiguous prompts
    only, boxes and several clicks, instead of a compromise over ambiguous single clicks).
    ``plain_bce_weight`` > 0: plain BCE with that weight instead of the balanced one (a later
    stage: balanced BCE weighs a small object's pixels ~100x the background's and so biases
    masks towards false positives — most of a box prompt's error once the model works).
    Returns ``(loss, stats)``; loss averaged over B.
    """
    tgt = target[:, None].expand_as(masks)
    bce = plain_bce_weight * plain_bce(masks, tgt) if plain_bce_weight > 0 else BCE_WEIGHT * balanced_bce(masks, tgt)
    per = bce + DICE_WEIGHT * dice_loss(masks, tgt)  # (B, 4)
    present = (target.flatten(1).amax(1) > 0).float()
    best_multi = per[:, 1:].min(dim=1).values
    mm = multimask.float()
    mask = (1 - mm) * per[:, 0] + mm * best_multi + (mm * per[:, 0] if token0_on_multimask else 0)
    with torch.no_grad():
        actual = hard_iou(masks, tgt)
    iou = (ious - actual).abs().mean(1)
    obj = F.binary_cross_entropy_with_logits(object_logits[:, 0], present, reduction="none")
    loss = ((mask + IOU_WEIGHT * iou) * present + OBJECT_WEIGHT * obj).mean()
    picked = actual[:, 1:].gather(1, ious[:, 1:].argmax(1, keepdim=True))[:, 0]
    chosen = torch.where(multimask, picked, actual[:, 0])  # IoU of the mask inference keeps
    n = present.sum().clamp_min(1)
    stats = {
        "loss": float(loss.detach()),
        "iou": float((chosen * present).sum() / n),
        "obj_acc": float(((object_logits[:, 0] > 0).float() == present).float().mean()),
    }
    return loss, stats
