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
from ..frames import read
from ..image.family import transform_for
from ..image.preprocess import to_uint8_rgb
from ..image.tiling import resolve_tiling
from .records import MaskRecord, clean_records, records_to_labels

Progress = Callable[[int, int], object]
_UPSCALE_CHUNK_PIXELS = 1 << 24  # logits upscaled at once (64 MiB of float32)


@dataclass
class AutomaticParams:
    """Parameters (names and meaning as in the official generators; defaults for microscopy,
    see docs/automatic.md). ``max_mask_fraction``: masks covering more than this share of
    the image are dropped before painting labels (None keeps all). ``join_touching``: join
    touching labels that are one object (:mod:`.merge`); None: only when tiled."""

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
    join_touching: bool | None = None

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
    after every point batch (tiled: after every tile); an exception raised in it aborts the run.

    ``tile_shape`` / ``halo`` ((h, w) image pixels, micro-sam's meaning; ``"auto"``: from the
    image and the model, see :mod:`napari_sam.engine.image.tiling`): segment each tile's outer
    window at its own resolution and merge the masks across tile borders
    (:mod:`napari_sam.engine.auto.tiled`). None: the whole image at once, as before.
    """

    def __init__(self, model, params: AutomaticParams | None = None, tile_shape=None, halo=None, **changes):
        try:
            self.transform = transform_for(model)  # every per-family rule, chosen once
        except ValueError as e:
            raise TypeError(f"AutomaticSegmenter needs a model from napari_sam.load_model(): {e}") from None
        self.model = model.eval()
        self.params = dataclasses.replace(params or AutomaticParams.for_model(model), **changes)
        p = self.params
        self._grids = mask_ops.layer_grids(p.points_per_side, p.crop_n_layers, p.crop_n_points_downscale_factor)
        # bad tilings are refused now (checked before a tile is clamped to the image)
        resolve_tiling(tile_shape, halo, (1, 1), self.transform.image_size)
        self.tile_shape, self.halo = tile_shape, halo

    def tiling(self, image_shape):
        """The :class:`~napari_sam.engine.image.tiling.TileGrid` used on an image of
        ``image_shape`` ((H, W[, C])), or None when it is segmented whole."""
        return resolve_tiling(self.tile_shape, self.halo, tuple(image_shape)[:2], self.transform.image_size)

    # ------------------------------------------------------------------ public
    def generate(self, image, contrast_limits=None, features=None, progress: Progress | None = None,
                 tile_features=None, out=None):
        """Labels (H, W) int32 of an (H, W) or (H, W, 3) image of any dtype; 0 = background.

        ``features``: the whole image's encoder output (untiled only). ``tile_features(i)``:
        tile ``i``'s encoder output or None (an untiled image is tile 0). ``out``: an (H, W)
        integer array (numpy, zarr) the labels are written into (tile by tile when tiled) and
        returned. Tiled, ``image`` may be any array-like (zarr, dask, memory-mapped): one
        outer window is read at a time, with the whole image's contrast limits (given, or
        estimated once)."""
        from .tiled import check_image, generate_tiled

        grid = self.tiling(check_image(image))
        if grid is not None:
            if features is not None:
                raise ValueError("features= is one whole image's encoder output; with tiles give "
                                 "tile_features=(tile index -> features) instead")
            return generate_tiled(self, image, grid, contrast_limits, tile_features, progress, out)
        if features is None and tile_features is not None:
            features = tile_features(0)
        rgb = to_uint8_rgb(read(image), contrast_limits)
        if self.params.join_touching and features is None:
            features = self.transform.encode(rgb)  # shared by the grid and the judge
        records = self.generate_records(rgb, features=features, progress=progress)
        labels = records_to_labels(records, rgb.shape[:2], self.params.min_mask_region_area)
        if self.params.join_touching:  # opt-in when untiled: the labels above are the official rule's
            from .merge import join_touching

            labels = join_touching(labels, self.model, self.transform, features)
        if out is None:
            return labels
        from .tiled import write_whole

        return write_whole(out, labels)

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
