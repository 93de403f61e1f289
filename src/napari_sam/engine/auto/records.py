"""Segment-everything masks as records, and their post-processing: holes filled, islands
dropped, box NMS, and painting into one labels image (the official generator's rules)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from ..masks import ops as mask_ops


@dataclass
class MaskRecord:
    """One mask: ``box`` (x0, y0, x1, y1) inclusive image pixels, ``patch`` the bool mask
    inside that box, the scores, the grid ``point`` (x, y) that made it and its ``crop_box``
    (x0, y0, x1, y1), exclusive ends."""

    box: tuple[int, int, int, int]
    patch: np.ndarray
    predicted_iou: float
    stability_score: float
    point: tuple[float, float]
    crop_box: tuple[int, int, int, int]

    @property
    def area(self) -> int:
        return int(self.patch.sum())

    @property
    def quality(self) -> float:
        """What decides a pixel claimed by two masks: predicted IoU x stability score."""
        return self.predicted_iou * self.stability_score

    def mask(self, image_hw: tuple[int, int]) -> np.ndarray:
        out = np.zeros(image_hw, dtype=bool)
        x0, y0, x1, y1 = self.box
        out[y0:y1 + 1, x0:x1 + 1] = self.patch
        return out

    def to_dict(self, image_hw: tuple[int, int]) -> dict:
        """The official record layout (``segmentation`` a full bool mask, boxes XYWH)."""
        x0, y0, x1, y1 = self.box
        cx0, cy0, cx1, cy1 = self.crop_box
        return {
            "segmentation": self.mask(image_hw), "area": self.area, "bbox": [x0, y0, x1 - x0, y1 - y0],
            "predicted_iou": self.predicted_iou, "point_coords": [list(self.point)],
            "stability_score": self.stability_score, "crop_box": [cx0, cy0, cx1 - cx0, cy1 - cy0],
        }



# ---------------------------------------------------------------------------- post-processing
def clean_records(records: list[MaskRecord], image_hw, min_area: int, nms_thresh: float) -> list[MaskRecord]:
    """Fill holes and drop islands smaller than ``min_area`` in every mask, then box NMS
    (threshold ``nms_thresh``) preferring the masks that needed no change."""
    if not records:
        return records
    cleaned, scores = [], []
    for r in records:
        filled, c1 = _fill_holes(r, image_hw, min_area)
        new, c2 = _drop_islands(filled, min_area)
        cleaned.append(new)
        scores.append(0.0 if (c1 or c2) else 1.0)
    boxes = torch.tensor([c.box for c in cleaned], dtype=torch.float32)
    keep = mask_ops.nms(boxes, torch.tensor(scores), nms_thresh)
    return [cleaned[i] for i in keep.tolist()]


def _fill_holes(r: MaskRecord, image_hw, min_area: int) -> tuple[MaskRecord, bool]:
    """Holes as on the full image, computed on the box patch plus a one-pixel ring where the
    box does not reach the image border (the ring joins everything outside the box)."""
    h, w = image_hw
    x0, y0, x1, y1 = r.box
    outside = _outside_areas(r.box, image_hw)
    if any(a < min_area for a in outside):  # a small region outside the box could be a hole
        full, changed = mask_ops.remove_small_regions(r.mask(image_hw), min_area, "holes")
        return (_from_full(r, full) if changed else r), changed
    pads = (int(y0 > 0), int(y1 < h - 1), int(x0 > 0), int(x1 < w - 1))
    padded = np.pad(r.patch, ((pads[0], pads[1]), (pads[2], pads[3])), constant_values=False)
    from scipy import ndimage

    labels, n = ndimage.label(~padded, structure=np.ones((3, 3), bool))
    if n == 0:
        return r, False
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    ring = np.ones_like(padded)
    ring[pads[0]:padded.shape[0] - pads[1], pads[2]:padded.shape[1] - pads[3]] = False
    small = sizes < min_area
    small[0] = False
    small[np.unique(labels[ring])] = False  # joined to the (large) outside
    if not small.any():
        return r, False
    patch = r.patch | small[labels][pads[0]:padded.shape[0] - pads[1], pads[2]:padded.shape[1] - pads[3]]
    return dataclasses.replace(r, patch=patch), True


def _outside_areas(box, image_hw) -> list[int]:
    """Areas of the connected pieces of the image outside ``box`` (4-connected regions)."""
    h, w = image_hw
    x0, y0, x1, y1 = box
    span_w, span_h = x0 == 0 and x1 == w - 1, y0 == 0 and y1 == h - 1
    if span_w and span_h:
        return []
    if span_w:
        return [a for a in (y0 * w, (h - 1 - y1) * w) if a > 0]
    if span_h:
        return [a for a in (x0 * h, (w - 1 - x1) * h) if a > 0]
    return [h * w - (x1 - x0 + 1) * (y1 - y0 + 1)]


def _drop_islands(r: MaskRecord, min_area: int) -> tuple[MaskRecord, bool]:
    patch, changed = mask_ops.remove_small_regions(r.patch, min_area, "islands")
    if not changed:
        return r, False
    ys, xs = np.nonzero(patch)
    if len(ys) == 0:
        return dataclasses.replace(r, patch=patch[:1, :1], box=(0, 0, 0, 0)), True
    x0, y0 = r.box[0], r.box[1]
    box = (x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()), y0 + int(ys.max()))
    return dataclasses.replace(r, patch=patch[ys.min():ys.max() + 1, xs.min():xs.max() + 1], box=box), True


def _from_full(r: MaskRecord, full: np.ndarray) -> MaskRecord:
    box = tuple(int(v) for v in mask_ops.masks_to_boxes(torch.from_numpy(full)[None])[0])
    x0, y0, x1, y1 = box
    return dataclasses.replace(r, box=box, patch=full[y0:y1 + 1, x0:x1 + 1].copy())


def records_to_labels(records: list[MaskRecord], image_hw, min_area: int = 0, contained: float = 0.9) -> np.ndarray:
    """Paint masks into (H, W) int32 labels: higher ``quality`` first, each only on pixels
    still free; masks left with fewer than ``max(min_area, 1)`` pixels are dropped; ids 1..n.
    A mask that overlaps exactly one painted label and holds at least ``contained`` of it is
    the same object, more whole: that label grows over the mask's free pixels (a fragment
    painted first would otherwise split the object in two labels)."""
    labels = np.zeros(image_hw, dtype=np.int32)
    areas = [0]
    order = sorted(range(len(records)), key=lambda i: -records[i].quality)
    for i in order:
        r = records[i]
        x0, y0, x1, y1 = r.box
        view = labels[y0:y1 + 1, x0:x1 + 1]
        free = r.patch & (view == 0)
        under = view[r.patch]
        ids, counts = np.unique(under[under > 0], return_counts=True)
        if len(ids) == 1 and counts[0] >= contained * areas[ids[0]]:
            view[free] = ids[0]
            areas[ids[0]] += int(free.sum())
        elif free.sum() >= max(min_area, 1):
            areas.append(int(free.sum()))
            view[free] = len(areas) - 1
    return labels
