"""Pure per-frame helpers of the automatic tracker (:mod:`.tracking`): overlaps, matching
detections to tracks, logits to labels, one region per track, jumps, tracks-table rows, and
the id-persistence score. Numpy in, numpy out."""

from __future__ import annotations

import numpy as np


def overlap_table(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel counts of every (a-label, b-label) pair: ``(table[na+1, nb+1], area_a, area_b)``."""
    na, nb = int(a.max(initial=0)), int(b.max(initial=0))
    pair = a.astype(np.int64).ravel() * (nb + 1) + b.astype(np.int64).ravel()
    table = np.bincount(pair, minlength=(na + 1) * (nb + 1)).reshape(na + 1, nb + 1)
    return table, table.sum(1), table.sum(0)


def match_detections(tracked: np.ndarray, detections: np.ndarray, params):
    """Sort a detector's labels against the tracked labels of the same frame.

    Returns ``(matched {detection: track}, new [detection ids])`` (see the module rules);
    detections under ``min_area`` pixels are ignored.
    """
    table, area_t, area_d = overlap_table(tracked, detections)
    matched, new = {}, []
    for d in range(1, len(area_d)):
        if area_d[d] < max(params.min_area, 1):
            continue
        inter = table[1:, d]
        iou = inter / np.maximum(area_t[1:] + area_d[d] - inter, 1)
        if iou.size and iou.max() >= params.match_iou:
            matched[d] = int(np.argmax(iou)) + 1
        elif inter.sum() / area_d[d] < params.max_covered:
            new.append(d)
    return matched, new


def resolve_logits(logits: np.ndarray, ids) -> np.ndarray:
    """(n, H, W) logits -> (H, W) int32 labels: the highest positive logit wins a pixel."""
    if len(ids) == 0:
        return np.zeros(logits.shape[1:], np.int32)
    best = logits.argmax(0)
    lut = np.asarray(ids, dtype=np.int32)
    return np.where(logits.max(0) > 0, lut[best], 0).astype(np.int32)


def keep_largest_regions(labels: np.ndarray, min_area: int = 0) -> np.ndarray:
    """Each label keeps only its largest 8-connected region, dropped entirely when that
    region has fewer than ``min_area`` pixels. Returns a new array."""
    from scipy import ndimage as ndi

    out = np.zeros_like(labels)
    for k, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        mask = labels[box] == k
        regions, n = ndi.label(mask, structure=np.ones((3, 3), bool))
        if n > 1:
            mask = regions == np.argmax(np.bincount(regions.ravel())[1:]) + 1
        if mask.sum() >= min_area:
            out[box][mask] = k
    return out


def drop_jumps(labels: np.ndarray, last: dict[int, tuple[float, float, float]], max_jump: float) -> np.ndarray:
    """Remove the labels whose centroid is more than ``max_jump`` x their last diameter (at
    least 10 px) away from their ``last`` ``{id: (y, x, diameter)}``; update ``last`` with the
    labels kept. Returns a new array."""
    out = labels.copy()
    for _, k, y, x, area in frame_rows(0, labels):
        d = 2.0 * np.sqrt(area / np.pi)
        if k in last:
            ly, lx, ld = last[k]
            if np.hypot(y - ly, x - lx) > max_jump * max(ld, 10.0):
                out[out == k] = 0
                continue
        last[k] = (y, x, d)
    return out


def frame_rows(t: int, labels: np.ndarray) -> list[tuple]:
    """Tracks-table rows (frame, id, centroid y, centroid x, area) of one labels frame."""
    flat = labels.ravel()
    n = int(flat.max(initial=0)) + 1
    area = np.bincount(flat, minlength=n)
    ys, xs = np.indices(labels.shape)
    sy = np.bincount(flat, ys.ravel(), minlength=n)
    sx = np.bincount(flat, xs.ravel(), minlength=n)
    return [(t, i, sy[i] / area[i], sx[i] / area[i], int(area[i])) for i in np.flatnonzero(area[1:]) + 1]


def id_persistence(truth: np.ndarray, pred, min_iou: float = 0.5) -> float:
    """Share of frames each true object keeps its id, averaged over objects.

    On every frame a true object is *found* by the predicted id with IoU >= ``min_iou``;
    its id is the one it is found with most often; a frame counts when it is found with
    that id (missed frames count against it). ``truth`` (T, H, W); ``pred`` frames alike.
    """
    hits: dict[int, dict[int, int]] = {}
    present: dict[int, int] = {}
    for t in range(len(truth)):
        table, area_g, area_p = overlap_table(np.asarray(truth[t]), np.asarray(pred[t]))
        for g in np.flatnonzero(area_g[1:]) + 1:
            present[g] = present.get(g, 0) + 1
            inter = table[g, 1:]
            iou = inter / np.maximum(area_g[g] + area_p[1:] - inter, 1)
            if iou.size and iou.max() >= min_iou:
                p = int(np.argmax(iou)) + 1
                hits.setdefault(g, {})[p] = hits.setdefault(g, {}).get(p, 0) + 1
    if not present:
        return float("nan")
    shares = [max(hits.get(g, {0: 0}).values()) / n for g, n in present.items()]
    return float(np.mean(shares))
