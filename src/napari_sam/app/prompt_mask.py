"""Prompt -> best mask, on one image: the rule the widget's clicks and the command line's
prompt files share.

* one click and no box is ambiguous (a nucleus, its cell, the cluster): ask the model for
  its three masks and keep the one with the highest predicted IoU;
* several clicks or a box say which object: one mask;
* several objects on one image are painted in order of predicted IoU, the highest last, so
  where masks overlap the one the model is surest of wins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MaskChoice:
    """The chosen ``mask`` (H, W) bool, its predicted IoU ``score`` and, for SAM 2, its
    object-presence logit ``object_score`` (> 0: the object is visible; None for SAM 1)."""

    mask: np.ndarray
    score: float
    object_score: float | None


def wants_multimask(points=None, box=None) -> bool:
    """True for a single click without a box (the ambiguous prompt)."""
    n_points = 0 if points is None else len(points)
    return box is None and n_points == 1


def best_mask(predictor, points=None, labels=None, box=None) -> MaskChoice:
    """The best mask of ``predictor`` (an :class:`~napari_sam.engine.image.predictor.ImagePredictor`
    with its image set) for clicks ``points`` (N, 2) (x, y) with ``labels`` (N,) 1/0 and/or a
    ``box`` (x0, y0, x1, y1)."""
    if points is not None and len(points) == 0:
        points = labels = None
    res = predictor.predict(points=points, labels=labels, box=box, multimask=wants_multimask(points, box))
    best = int(np.argmax(res.scores))
    obj = None
    if res.object_scores is not None:
        scores = np.asarray(res.object_scores).ravel()
        obj = float(scores[min(best, len(scores) - 1)])
    return MaskChoice(res.masks[best], float(res.scores[best]), obj)


def paint(shape, choices: dict[int, MaskChoice]) -> np.ndarray:
    """(H, W) int32 labels: each object's id on its mask, the higher predicted IoU painted last."""
    labels = np.zeros(tuple(shape), np.int32)
    for oid, choice in sorted(choices.items(), key=lambda item: item[1].score):
        labels[choice.mask] = int(oid)
    return labels


def segment_objects(predictor, objects: dict[int, dict], shape) -> np.ndarray:
    """Labels of ``objects`` ``{id: {"points": [(x, y)], "labels": [1|0], "box": (x0, y0, x1, y1) | None}}``
    (what :func:`napari_sam.io.read_prompts` gives per frame) on the predictor's image."""
    choices = {}
    for oid, obj in objects.items():
        pts = np.asarray(obj["points"], float) if obj.get("points") else None
        lab = np.asarray(obj["labels"]) if obj.get("points") else None
        choices[int(oid)] = best_mask(predictor, pts, lab, obj.get("box"))
    return paint(shape, choices)
