"""Prompt sampling for training: clicks inside objects, boxes, corrective clicks.

Coordinates are (x, y) = (column, row) in model-input pixels, as the model takes them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def object_ids(labels: np.ndarray, min_area: int = 20) -> np.ndarray:
    """Labels present in ``labels`` with at least ``min_area`` pixels."""
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    return ids[counts >= min_area]


def inner_point(rng: np.random.Generator, mask: np.ndarray, power: float = 2.0) -> np.ndarray:
    """A random (x, y) inside ``mask``, drawn with probability ~ distance-to-edge ** power
    (large ``power``: near the centre). An empty mask gives the image centre."""
    if not mask.any():
        return np.array([mask.shape[1] / 2, mask.shape[0] / 2])
    dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    w = dist[mask] ** power
    ys, xs = np.nonzero(mask)
    i = rng.choice(len(ys), p=w / w.sum())
    return np.array([xs[i], ys[i]], dtype=np.float64)


def centre_point(mask: np.ndarray) -> np.ndarray:
    """The object's centre: its centroid if inside, else its innermost pixel. (x, y)."""
    ys, xs = np.nonzero(mask)
    cy, cx = int(round(ys.mean())), int(round(xs.mean()))
    if mask[cy, cx]:
        return np.array([cx, cy], dtype=np.float64)
    dist = ndimage.distance_transform_edt(mask)
    y, x = np.unravel_index(np.argmax(dist), mask.shape)
    return np.array([x, y], dtype=np.float64)


def bounding_box(mask: np.ndarray) -> np.ndarray:
    """(x0, y0, x1, y1) around the mask's pixels (x1, y1 inclusive pixel indices)."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float64)


def jittered_box(rng: np.random.Generator, mask: np.ndarray, rel: float = 0.1, cap: float = 10.0) -> np.ndarray:
    """SAM's noisy box: each coordinate moved by N(0, rel * side), at most ``cap`` px."""
    box = bounding_box(mask)
    side = np.array([box[2] - box[0], box[3] - box[1]] * 2) + 1
    noise = np.clip(rng.normal(0, rel * side), -cap, cap)
    h, w = mask.shape
    out = np.clip(box + noise, 0, [w - 1, h - 1, w - 1, h - 1])
    return np.array([min(out[0], out[2]), min(out[1], out[3]), max(out[0], out[2]), max(out[1], out[3])])


def corrective_click(rng: np.random.Generator, pred: np.ndarray, gt: np.ndarray):
    """SAM-style next click: inside the larger error region, near its centre.

    Returns ``((x, y), label)``: label 1 on missed object pixels, 0 on false positives;
    ``None`` when the prediction is perfect.
    """
    fn, fp = gt & ~pred, pred & ~gt
    if not fn.any() and not fp.any():
        return None
    positive = fn.sum() >= fp.sum()
    region = fn if positive else fp
    comps, n = ndimage.label(region)
    if n > 1:  # the largest connected error region
        sizes = ndimage.sum(region, comps, index=np.arange(1, n + 1))
        region = comps == (1 + int(np.argmax(sizes)))
    return inner_point(rng, region, power=1.0), int(positive)
