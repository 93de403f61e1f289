"""Held-out quality of a SAM 2 model through the public inference paths.

The held-out set is fixed: generator seeds 500-599 (training draws its scene seeds from
a seeded RNG starting at 1_000_000 and its sub-seeds at random; ``tests/training`` checks
that none of the recorded run's fall below 1_000). Objects of at least ``MIN_AREA`` pixels
on the prompted frame are evaluated.

* :func:`click_and_box_iou` – ``ImagePredictor``: one positive click at each object's centre
  (best of the multimask outputs by predicted IoU) and its bounding box (single mask).
* :func:`propagation_iou` – ``VideoSession``: one click per object on the start frame,
  propagated; mean IoU over (object, frame) pairs where the object exists in the ground
  truth, and the identity rate: among those pairs with a non-empty prediction, how often the
  ground-truth label that overlaps the prediction most is the object's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data import synthetic
from .prompts import bounding_box, centre_point, object_ids

MIN_AREA = 40
HELD_OUT_SEED = 500


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def held_out_images(n: int = 3) -> list[synthetic.Sample]:
    """2D images: default nuclei, whole-cell cytoplasm channel, a time-lapse frame."""
    out = []
    for i in range(n):
        s = HELD_OUT_SEED + i
        out.append(synthetic.nuclei_2d(seed=s))
        cells = synthetic.cells_2d(seed=s)
        out.append(synthetic.Sample(cells.image[1], cells.labels, (1.0, 1.0), "yx", "cells"))
        tl = synthetic.timelapse(n_frames=1, seed=s)
        out.append(synthetic.Sample(tl.image[0], tl.labels[0], (1.0, 1.0), "yx", "timelapse frame"))
    return out


def click_and_box_iou(model, samples=None) -> dict[str, float]:
    """Mean IoU of one centre click and of a box per object, over the held-out images."""
    from ..engine.image.predictor import ImagePredictor

    pred = ImagePredictor(model)
    clicks, boxes = [], []
    for s in samples or held_out_images():
        pred.set_image(s.image)
        for k in object_ids(s.labels, MIN_AREA):
            gt = s.labels == k
            res = pred.predict(points=centre_point(gt)[None], labels=np.array([1]), multimask=True)
            clicks.append(iou(res.best, gt))
            res = pred.predict(box=bounding_box(gt), multimask=False)
            boxes.append(iou(res.masks[0], gt))
    return {"click_iou": float(np.mean(clicks)), "box_iou": float(np.mean(boxes)), "objects": len(clicks)}


@dataclass
class Propagation:
    mean_iou: float
    identity: float
    pairs: int
    objects: int
    false_positive_frames: float  # prediction non-empty where the object is absent


def propagation_iou(model, frames: np.ndarray, labels: np.ndarray, start: int = 0,
                    direction: str = "forward", max_objects: int | None = None) -> Propagation:
    """Click every object on ``frames[start]`` once, propagate, score against ``labels``."""
    from ..engine.video.session import VideoSession

    session = VideoSession(model, frames)
    ids = object_ids(labels[start], MIN_AREA)
    if max_objects is not None:
        ids = ids[:max_objects]
    for k in ids:
        session.add_prompts(start, int(k), points=centre_point(labels[start] == k)[None], labels=np.array([1]))
    masks: dict[int, tuple] = {}
    for t, obj_ids, logits in session.propagate(direction=direction, start=start):
        masks[t] = (list(obj_ids), logits > 0)
    session.close()
    ious, same, fp, absent = [], [], 0, 0
    for t, (obj_ids, m) in masks.items():
        for j, k in enumerate(obj_ids):
            gt = labels[t] == k
            if not gt.any():
                absent += 1
                fp += int(m[j].any())
                continue
            ious.append(iou(m[j], gt))
            if m[j].any():
                hit = labels[t][m[j]]
                hit = hit[hit > 0]
                same.append(hit.size > 0 and np.bincount(hit).argmax() == k)
    return Propagation(float(np.mean(ious)), float(np.mean(same)) if same else 0.0, len(ious), len(ids),
                       fp / absent if absent else 0.0)


def timelapse_quality(model, seed: int = HELD_OUT_SEED, **kw) -> Propagation:
    """The 30-frame held-out time-lapse, clicked on frame 0 and propagated forward."""
    s = synthetic.timelapse(n_frames=30, seed=seed)
    return propagation_iou(model, s.image, s.labels, 0, "forward", **kw)


def zstack_quality(model, seed: int = HELD_OUT_SEED, **kw) -> Propagation:
    """The held-out 3D stack, clicked on the middle slice and propagated both ways."""
    s = synthetic.nuclei_3d(seed=seed)
    mid = s.image.shape[0] // 2
    return propagation_iou(model, s.image, s.labels, mid, "both", **kw)
