"""Checking and normalising user prompts (numpy): clicks, labels, boxes, mask logits.

Every problem is a ``ValueError`` that says what is wrong; nothing is silently dropped.
Coordinates are (x, y) pixels of the image (x = column), as in the official SAM code. A
point counts as inside when it lies on a pixel of the image: -0.5 <= x <= W - 0.5.
"""

from __future__ import annotations

import numpy as np


def check_points(points, labels, image_hw: tuple[int, int]):
    """(N, 2) float points and (N,) int labels (1 foreground, 0 background), or (None, None)."""
    if points is None and labels is None:
        return None, None
    if points is None or labels is None:
        raise ValueError("points and labels go together: give both or neither")
    pts = np.asarray(points, dtype=np.float64)
    if pts.size == 0 and np.asarray(labels).size == 0:
        return None, None
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must be an (N, 2) array of (x, y), got shape {pts.shape}")
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != pts.shape[0]:
        raise ValueError(f"labels must have one entry per point: {pts.shape[0]} points, labels of shape {lab.shape}")
    if not np.all(np.isin(lab, (0, 1))):
        raise ValueError(f"labels must be 1 (foreground) or 0 (background), got {np.unique(lab).tolist()}")
    if not np.all(np.isfinite(pts)):
        raise ValueError("points contain NaN or infinite coordinates")
    h, w = image_hw
    outside = (pts[:, 0] < -0.5) | (pts[:, 0] > w - 0.5) | (pts[:, 1] < -0.5) | (pts[:, 1] > h - 0.5)
    if outside.any():
        bad = pts[outside][0]
        raise ValueError(
            f"{int(outside.sum())} point(s) outside the {w}x{h} (width x height) image, "
            f"e.g. (x={bad[0]:g}, y={bad[1]:g}); points are (x, y) = (column, row)"
        )
    return pts, lab.astype(np.int64)


def check_box(box, image_hw: tuple[int, int]):
    """A (4,) float box x0, y0, x1, y1 clipped to the image, or None.

    x1 < x0 or y1 < y0 is an error; a box partly outside is clipped (every coordinate onto
    the pixel centres 0..W-1, 0..H-1, so it stays ordered); one entirely outside is an error.
    """
    if box is None:
        return None
    b = np.asarray(box, dtype=np.float64).reshape(-1)
    if b.shape != (4,):
        raise ValueError(f"box must be (x0, y0, x1, y1), got {np.asarray(box).shape}")
    if not np.all(np.isfinite(b)):
        raise ValueError("box contains NaN or infinite coordinates")
    x0, y0, x1, y1 = b
    if x1 < x0 or y1 < y0:
        raise ValueError(f"box must have x0 <= x1 and y0 <= y1, got {b.tolist()}")
    h, w = image_hw
    if x1 < -0.5 or y1 < -0.5 or x0 > w - 0.5 or y0 > h - 0.5:
        raise ValueError(f"box {b.tolist()} lies entirely outside the {w}x{h} image")
    return np.clip(b, 0.0, [w - 1.0, h - 1.0, w - 1.0, h - 1.0])  # both ends: stays ordered


def check_mask_logits(mask_logits, low_res: int):
    """(1, low_res, low_res) float32 logits from an earlier prediction, or None."""
    if mask_logits is None:
        return None
    m = np.asarray(mask_logits, dtype=np.float32)
    if m.ndim == 2:
        m = m[None]
    if m.shape != (1, low_res, low_res):
        raise ValueError(
            f"mask_logits must be one ({low_res}, {low_res}) low-resolution logit map "
            f"(res.logits[i] of an earlier prediction), got shape {np.asarray(mask_logits).shape}"
        )
    if not np.all(np.isfinite(m)):
        raise ValueError("mask_logits contain NaN or infinite values")
    return m
