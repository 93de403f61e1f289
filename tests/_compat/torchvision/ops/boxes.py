"""Greedy non-maximum suppression on (x0, y0, x1, y1) boxes, as torchvision documents it:
boxes are visited by decreasing score (ties in input order); a box whose IoU with a kept box
is greater than ``iou_threshold`` is dropped. Returns the kept indices by decreasing score."""

from __future__ import annotations

import torch


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    b = boxes if boxes.is_floating_point() else boxes.float()
    order = torch.sort(scores, descending=True, stable=True).indices
    area = box_area(b)
    suppressed = torch.zeros(len(b), dtype=torch.bool)
    keep = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        w = (torch.minimum(b[i, 2], b[:, 2]) - torch.maximum(b[i, 0], b[:, 0])).clamp(min=0)
        h = (torch.minimum(b[i, 3], b[:, 3]) - torch.maximum(b[i, 1], b[:, 1])).clamp(min=0)
        inter = w * h
        iou = inter / (area[i] + area - inter)
        suppressed |= iou > iou_threshold
    return torch.tensor(keep, dtype=torch.int64, device=boxes.device)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """NMS within each category of ``idxs``; boxes of different categories never suppress."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    keep = torch.cat([torch.nonzero(idxs == c).flatten()[nms(boxes[idxs == c], scores[idxs == c], iou_threshold)]
                      for c in torch.unique(idxs)])
    return keep[torch.sort(scores[keep], descending=True, stable=True).indices]
