"""Segment everything: a grid of point prompts -> filtered, de-duplicated masks -> labels.

The first stage reproduces the official automatic mask generators (``SamAutomaticMaskGenerator``,
``SAM2AutomaticMaskGenerator``) for both families: every grid point is decoded as a single
foreground click (three masks each), masks are kept when predicted IoU ``> pred_iou_thresh`` and
stability ``>= stability_score_thresh``, masks cut by a crop edge are dropped, duplicates
are removed by box NMS (per crop by predicted IoU, across crops preferring smaller crops),
and with ``min_mask_region_area > 0`` holes and islands smaller than that are removed
(then NMS again, preferring untouched masks). The microscopy stage then drops masks larger
than ``max_mask_fraction`` of the image (the background) and paints the rest into a labels
image: **the mask with the higher ``predicted_iou * stability_score`` wins a disputed pixel**;
a mask left with fewer than ``max(min_mask_region_area, 1)`` pixels is dropped; ids are
1..n in that order.

Speed: masks failing the IoU test are never upscaled; upscaling, stability and boxes run
in chunks, so memory stays bounded for large images. Masks are kept as patches inside
their boxes (:class:`MaskRecord`), not as full-image arrays.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ...models.decoder import DecoderCache
from ..masks import ops as mask_ops
from ..image.family import transform_for
from ..image.preprocess import to_uint8_rgb

Progress = Callable[[int, int], object]
_UPSCALE_CHUNK_PIXELS = 1 << 24  # logits upscaled at once (64 MiB of float32)


@dataclass
class AutomaticParams:
    """Parameters (names and meaning as in the official generators; defaults for microscopy,
    see docs/automatic.md). ``max_mask_fraction``: masks covering more than this share of
    the image are dropped before painting labels (None keeps all)."""

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.75
    stability_score_thresh: float = 0.9
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    min_mask_region_area: int = 25
    max_mask_fraction: float | None = 0.4
    mask_threshold: float = 0.0

    def __post_init__(self) -> None:
        if self.points_per_side < 1 or self.points_per_batch < 1:
            raise ValueError("points_per_side and points_per_batch must be >= 1")
        if self.crop_n_layers < 0 or self.crop_n_points_downscale_factor < 1:
            raise ValueError("crop_n_layers must be >= 0 and crop_n_points_downscale_factor >= 1")
        if int(self.points_per_side / self.crop_n_points_downscale_factor**self.crop_n_layers) < 1:
            raise ValueError("the deepest crop layer would have no points: lower crop_n_layers or the downscale factor")
        if self.min_mask_region_area < 0:
            raise ValueError("min_mask_region_area must be >= 0")
        if self.max_mask_fraction is not None and not 0 < self.max_mask_fraction <= 1:
            raise ValueError("max_mask_fraction must be in (0, 1] or None")

    @classmethod
    def for_model(cls, model, **changes) -> AutomaticParams:
        """The defaults, with the model's own hints (``model.auto_defaults``: the bundled
        embedded model's softer mask edges need a lower stability threshold), then
        ``changes``."""
        return cls(**{**getattr(model, "auto_defaults", {}), **changes})

    @classmethod
    def official(cls, family: str, **changes) -> AutomaticParams:
        """The official generator's defaults for ``family`` ("sam1" / "sam2"), with no
        microscopy post-processing (``min_mask_region_area=0``, ``max_mask_fraction=None``)."""
        iou = {"sam1": 0.88, "sam2": 0.8}[family]
        base = {"pred_iou_thresh": iou, "stability_score_thresh": 0.95, "min_mask_region_area": 0, "max_mask_fraction": None}
        base.update(changes)
        return cls(**base)


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


def encode(model, rgb: np.ndarray) -> tuple[dict[str, torch.Tensor], tuple[int, int]]:
    """Image features of an (H, W, 3) uint8 image as the official image predictors make
    them, and the (h, w) the image occupies in the model input."""
    tf = transform_for(model)
    return tf.encode(rgb), tf.input_hw(rgb.shape[:2])


def decode_points(model, feats, points_in: torch.Tensor,
                  cache: DecoderCache | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """P single foreground clicks ``(P, 2)`` in model-input pixels, decoded in one batch
    against one image -> low-res logits ``(P, 3, s, s)`` and predicted IoU ``(P, 3)``.
    ``cache``: one per ``feats``, shared by its batches (the decoder's image-side work)."""
    labels = torch.ones(points_in.shape[0], 1, dtype=torch.int64, device=points_in.device)
    with torch.inference_mode():
        low, iou = model.decode(feats, point_coords=points_in[:, None, :], point_labels=labels, multimask=True,
                                image_cache=cache)[:2]
    return low, iou.float()


class AutomaticSegmenter:
    """``AutomaticSegmenter(model, **params).generate(image) -> labels (H, W) int32``.

    ``params``: fields of :class:`AutomaticParams` (or ``params=AutomaticParams(...)``).
    :meth:`generate_records` gives the masks themselves. ``progress(done, total)`` is called
    after every point batch; an exception raised in it aborts the run.
    """

    def __init__(self, model, params: AutomaticParams | None = None, **changes):
        try:
            self.transform = transform_for(model)  # every per-family rule, chosen once
        except ValueError as e:
            raise TypeError(f"AutomaticSegmenter needs a model from napari_sam.load_model(): {e}") from None
        self.model = model.eval()
        self.params = dataclasses.replace(params or AutomaticParams.for_model(model), **changes)
        p = self.params
        self._grids = mask_ops.layer_grids(p.points_per_side, p.crop_n_layers, p.crop_n_points_downscale_factor)

    # ------------------------------------------------------------------ public
    def generate(self, image, contrast_limits=None, features=None, progress: Progress | None = None) -> np.ndarray:
        """Labels (H, W) int32 of an (H, W) or (H, W, 3) image of any dtype; 0 = background."""
        rgb = to_uint8_rgb(image, contrast_limits)
        records = self.generate_records(rgb, features=features, progress=progress)
        return records_to_labels(records, rgb.shape[:2], self.params.min_mask_region_area)

    def generate_records(self, image, contrast_limits=None, features=None,
                         progress: Progress | None = None, postprocess: bool = True) -> list[MaskRecord]:
        """The kept masks, best first within each crop. ``features``: the whole image's
        encoder output made elsewhere (e.g. ``EmbeddingStore.get(t)``), else encoded here.
        ``postprocess=False`` stops after the official-equivalent stage (before small-region
        removal and the ``max_mask_fraction`` filter)."""
        p = self.params
        rgb = to_uint8_rgb(image, contrast_limits)
        hw = rgb.shape[:2]
        crops = mask_ops.crop_boxes(hw, p.crop_n_layers, p.crop_overlap_ratio)
        batches = [-(-len(self._grids[layer]) // p.points_per_batch) for _, layer in crops]
        total, done = sum(batches), 0
        records: list[MaskRecord] = []
        for crop, layer in crops:
            x0, y0, x1, y1 = crop
            pre = features if (layer == 0 and features is not None) else None
            for kept in self._crop(rgb[y0:y1, x0:x1], crop, layer, hw, pre):
                if kept is None:
                    done += 1
                    if progress is not None:
                        progress(done, total)
                else:
                    records.extend(kept)
        if len(crops) > 1 and records:
            boxes = torch.tensor([r.box for r in records], dtype=torch.float32)
            areas = torch.tensor([(c[2] - c[0]) * (c[3] - c[1]) for c in (r.crop_box for r in records)], dtype=torch.float32)
            keep = mask_ops.nms(boxes, 1.0 / areas, p.crop_nms_thresh)
            records = [records[i] for i in keep.tolist()]
        if not postprocess:
            return records
        if p.min_mask_region_area > 0:
            records = clean_records(records, hw, p.min_mask_region_area, max(p.box_nms_thresh, p.crop_nms_thresh))
        if p.max_mask_fraction is not None:
            limit = p.max_mask_fraction * hw[0] * hw[1]
            records = [r for r in records if r.area <= limit]
        return records

    # ------------------------------------------------------------------ one crop
    def _crop(self, rgb, crop, layer, image_hw, features):
        """Yields None after each point batch, then the crop's kept records (one list)."""
        p = self.params
        crop_hw = rgb.shape[:2]
        if features is None:
            feats = self.transform.encode(rgb)
        else:
            feats = {k: torch.as_tensor(v).to(self.transform.device) for k, v in features.items()}
        points = self._grids[layer] * np.array(crop_hw, dtype=np.float64)[::-1]
        parts, cache = [], DecoderCache()  # the decoder's image-side work, shared by this crop's batches
        for start in range(0, len(points), p.points_per_batch):
            batch = points[start:start + p.points_per_batch]
            parts.append(self._batch(feats, batch, crop, crop_hw, image_hw, cache))
            yield None
        logits_free = [part for part in parts if part is not None]
        if not logits_free:
            yield []
            return
        boxes = torch.cat([b for b, _, _, _, _ in logits_free])
        ious = torch.cat([i for _, i, _, _, _ in logits_free])
        keep = mask_ops.nms(boxes, ious, p.box_nms_thresh).tolist()
        flat = [(b, i, s, pt, patch) for part in logits_free for b, i, s, pt, patch in zip(*[_rows(x) for x in part])]
        x0, y0 = crop[0], crop[1]
        out = []
        for k in keep:
            box, iou, stab, pt, patch = flat[k]
            bx0, by0, bx1, by1 = (int(v) for v in box)
            out.append(MaskRecord((bx0 + x0, by0 + y0, bx1 + x0, by1 + y0), patch, float(iou), float(stab),
                                  (float(pt[0]) + x0, float(pt[1]) + y0), tuple(int(v) for v in crop)))
        yield out

    def _batch(self, feats, points, crop, crop_hw, image_hw, cache=None):
        """Decode one point batch; the survivors' (boxes, ious, stabilities, points, patches)."""
        p, tf = self.params, self.transform
        low, iou = decode_points(self.model, feats, tf.points_to_input(points, crop_hw), cache)
        k = low.shape[1]
        low, iou = low.flatten(0, 1), iou.flatten(0, 1)
        pts = np.repeat(points, k, axis=0).astype(tf.record_point_dtype)  # as the official generator keeps them
        idx = torch.arange(len(iou))
        if p.pred_iou_thresh > 0.0:
            idx = idx[(iou > p.pred_iou_thresh).cpu()]
        if len(idx) == 0:
            return None
        h, w = crop_hw
        chunk = max(1, _UPSCALE_CHUNK_PIXELS // (h * w))
        boxes, ious, stabs, keep_pts, patches = [], [], [], [], []
        for start in range(0, len(idx), chunk):
            sel = idx[start:start + chunk]
            logits = tf.upscale(low[sel.to(low.device)], crop_hw)
            stab = mask_ops.stability_score(logits, p.mask_threshold, p.stability_score_offset).cpu()
            ok = stab >= p.stability_score_thresh if p.stability_score_thresh > 0.0 else torch.ones_like(stab, dtype=torch.bool)
            if not ok.any():
                continue
            masks = logits[ok.to(logits.device)] > p.mask_threshold
            bx = mask_ops.masks_to_boxes(masks).cpu()
            edge = mask_ops.near_crop_edge(bx, crop, image_hw)
            sel, stab = sel[ok], stab[ok]
            masks_np = masks.cpu().numpy()
            for j in torch.nonzero(~edge).flatten().tolist():
                bx0, by0, bx1, by1 = bx[j].tolist()
                patches.append(masks_np[j, by0:by1 + 1, bx0:bx1 + 1].copy())
                boxes.append(bx[j])
                ious.append(iou[sel[j]].cpu())
                stabs.append(stab[j])
                keep_pts.append(pts[int(sel[j])])
        if not boxes:
            return None
        return torch.stack(boxes), torch.stack(ious), torch.stack(stabs), np.stack(keep_pts), patches


def _rows(x):
    return list(x) if isinstance(x, list) else [x[i] for i in range(len(x))]


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
