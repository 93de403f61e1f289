"""Mask arithmetic for "segment everything": stability, boxes, box NMS, crops, RLE, clean-up.

Conventions follow the official automatic mask generators so records compare one to one:

* boxes are ``(x0, y0, x1, y1)`` with *inclusive* pixel coordinates of the extreme mask pixels
  (an empty mask gets ``(0, 0, 0, 0)``); box area and IoU use ``(x1 - x0) * (y1 - y0)``;
* NMS is greedy in order of decreasing score (ties keep input order) and drops a box whose
  IoU with a kept one is *greater* than the threshold;
* the stability score is ``#(logit > t + offset) / #(logit > t - offset)``;
* run-length encodings are COCO's uncompressed form (column-major counts, first run = 0s).

No torchvision: everything here is plain torch / numpy / scipy.
"""

from __future__ import annotations

import math
from itertools import product

import numpy as np
import torch
from scipy import ndimage

_EIGHT = np.ones((3, 3), dtype=bool)


# ---------------------------------------------------------------------------- scores
def stability_score(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """IoU of the masks cut at ``threshold + offset`` and ``threshold - offset`` (one lies
    inside the other, so it is a ratio of pixel counts). ``logits``: (N, H, W) -> (N,)."""
    inner = (logits > threshold + offset).flatten(1).sum(1, dtype=torch.int32)
    outer = (logits > threshold - offset).flatten(1).sum(1, dtype=torch.int32)
    return inner / outer


# ---------------------------------------------------------------------------- boxes
def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool -> (N, 4) int64 inclusive boxes; empty masks give zeros."""
    n, h, w = masks.shape
    if n == 0:
        return torch.zeros(0, 4, dtype=torch.int64, device=masks.device)
    rows = masks.any(2)  # (N, H)
    cols = masks.any(1)  # (N, W)
    ys = torch.arange(h, device=masks.device)
    xs = torch.arange(w, device=masks.device)
    big_y, big_x = torch.full_like(ys, h), torch.full_like(xs, w)
    y0 = torch.where(rows, ys, big_y).amin(1)
    y1 = torch.where(rows, ys, -1).amax(1)
    x0 = torch.where(cols, xs, big_x).amin(1)
    x1 = torch.where(cols, xs, -1).amax(1)
    boxes = torch.stack([x0, y0, x1, y1], 1)
    empty = ~rows.any(1)
    boxes[empty] = 0
    return boxes


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def pairwise_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, 4) x (M, 4) float boxes -> (N, M) IoU (two empty boxes give NaN: never "over")."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter / union


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression; indices of the kept boxes by decreasing score."""
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64)
    boxes = boxes.detach().to("cpu", torch.float32)
    order = torch.sort(scores.detach().cpu(), descending=True, stable=True).indices
    iou = pairwise_box_iou(boxes[order], boxes[order]).numpy()
    over = iou > iou_threshold
    alive = np.ones(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):
        if alive[i]:
            keep.append(i)
            alive[i + 1:] &= ~over[i, i + 1:]
    return order[torch.as_tensor(keep, dtype=torch.int64)]


# ---------------------------------------------------------------------------- grids and crops
def point_grid(n_per_side: int) -> np.ndarray:
    """(n^2, 2) points (x, y) at the centres of an n x n grid of cells over [0, 1]^2, row by row."""
    half_cell = 1 / (2 * n_per_side)
    centres = np.linspace(half_cell, 1 - half_cell, n_per_side)
    xs, ys = np.meshgrid(centres, centres)
    return np.stack([xs, ys], -1).reshape(-1, 2)


def layer_grids(n_per_side: int, n_layers: int, downscale: int) -> list[np.ndarray]:
    """One point grid per crop layer; layer i has ``int(n / downscale**i)`` points a side."""
    return [point_grid(int(n_per_side / downscale**i)) for i in range(n_layers + 1)]


def crop_boxes(image_hw: tuple[int, int], n_layers: int, overlap_ratio: float) -> list[tuple[tuple[int, int, int, int], int]]:
    """``[(crop (x0, y0, x1, y1) exclusive ends, layer)]``: the whole image, then layer i's
    ``2**i x 2**i`` overlapping crops (overlap = ratio x short side x 2 / crops per side)."""
    h, w = image_hw
    out = [((0, 0, w, h), 0)]
    for layer in range(1, n_layers + 1):
        per_side = 2**layer
        overlap = int(overlap_ratio * min(h, w) * (2 / per_side))
        cw = math.ceil((overlap * (per_side - 1) + w) / per_side)
        ch = math.ceil((overlap * (per_side - 1) + h) / per_side)
        x0s = [int((cw - overlap) * i) for i in range(per_side)]
        y0s = [int((ch - overlap) * i) for i in range(per_side)]
        for x0, y0 in product(x0s, y0s):
            out.append(((x0, y0, min(x0 + cw, w), min(y0 + ch, h)), layer))
    return out


def near_crop_edge(boxes: torch.Tensor, crop: tuple[int, int, int, int], image_hw: tuple[int, int],
                   atol: float = 20.0) -> torch.Tensor:
    """(N,) True where a box (crop coordinates) lies within ``atol`` of a crop edge that is
    not also an image edge: such masks are likely cut by the crop."""
    x0, y0 = crop[0], crop[1]
    shifted = boxes.float() + torch.tensor([x0, y0, x0, y0], dtype=torch.float32, device=boxes.device)
    crop_t = torch.tensor(crop, dtype=torch.float32, device=boxes.device)
    img_t = torch.tensor([0, 0, image_hw[1], image_hw[0]], dtype=torch.float32, device=boxes.device)
    at_crop = (shifted - crop_t).abs() <= atol
    at_image = (shifted - img_t).abs() <= atol
    return (at_crop & ~at_image).any(1)


# ---------------------------------------------------------------------------- RLE
def rle_encode(mask: np.ndarray) -> dict:
    """(H, W) bool -> COCO uncompressed RLE ``{"size": [H, W], "counts": [...]}``."""
    h, w = mask.shape
    flat = np.asarray(mask, dtype=bool).T.reshape(-1)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"size": [h, w], "counts": counts}


def rle_decode(rle: dict) -> np.ndarray:
    h, w = rle["size"]
    counts = np.asarray(rle["counts"], dtype=np.int64)
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape(w, h).T


# ---------------------------------------------------------------------------- clean-up
def remove_small_regions(mask: np.ndarray, min_area: int, mode: str) -> tuple[np.ndarray, bool]:
    """Fill holes (``mode="holes"``) or drop islands (``"islands"``) under ``min_area`` pixels.

    8-connected components. Holes are background components (the outside counts too, so a
    small patch of background at the image border is also filled, as in the official code);
    when every island is small the largest one stays. Returns (mask, changed).
    """
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    holes = mode == "holes"
    work = ~mask if holes else mask
    labels, n = ndimage.label(work, structure=_EIGHT)
    if n == 0:
        return mask, False
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    small = sizes < min_area
    if not small.any():
        return mask, False
    if holes:
        fill = np.concatenate([[False], small])
        return mask | fill[labels], True
    keep = np.concatenate([[False], ~small])
    if not keep.any():
        keep[int(np.argmax(sizes)) + 1] = True
    return keep[labels], True
