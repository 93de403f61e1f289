"""Fill small holes in mask logits, as the official SAM 2 video predictor's ``fill_hole_area``.

The official post-processing (``sam2.utils.misc.fill_holes_in_mask_scores``) labels the
background (logit <= 0) of each low-resolution mask with 8-connectivity and sets every
background component of at most ``max_area`` pixels to the logit 0.1 (foreground). It needs
the package's CUDA extension and is skipped on CPU installs; this is the same rule on CPU,
with :func:`scipy.ndimage.label`. Components touching the border count too, as there.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

_EIGHT = np.ones((3, 3), dtype=bool)
HOLE_LOGIT = 0.1


def fill_small_holes(logits: torch.Tensor, max_area: int) -> torch.Tensor:
    """Background components of ``<= max_area`` pixels -> logit 0.1, per (…, H, W) mask.

    ``logits``: (..., H, W) float tensor. ``max_area <= 0`` returns it unchanged. Returns a new
    tensor (the input is not modified) when anything is filled.
    """
    if max_area <= 0:
        return logits
    flat = logits.detach().reshape(-1, *logits.shape[-2:])
    background = (flat <= 0).cpu().numpy()
    fill = np.zeros_like(background)
    for i, bg in enumerate(background):
        if not bg.any():
            continue
        labels, n = ndimage.label(bg, structure=_EIGHT)
        if n == 0:
            continue
        areas = np.bincount(labels.ravel(), minlength=n + 1)
        small = areas <= max_area
        small[0] = False  # label 0 is the foreground
        if small.any():
            fill[i] = small[labels]
    if not fill.any():
        return logits
    hole = torch.from_numpy(fill).to(logits.device).reshape(logits.shape)
    return torch.where(hole, torch.tensor(HOLE_LOGIT, dtype=logits.dtype, device=logits.device), logits)
