"""How well tiled segment everything does against ground truth (tests and benchmarks).

* :func:`found` — which true objects a labels image finds (a label with IoU >= 0.5);
* :func:`crossing_ids` — the true objects cut by a core edge of a tile grid;
* :func:`split_ids` — true objects two (or more) predicted labels each cover >= 20 % of;
* :func:`joined_ids` — true objects one predicted label covers >= 50 % of together with
  another true object (a false join: two nuclei in one label);
* :func:`seam_split_ids` — of those, the ones whose pieces lie in different tile cores (a
  split the tiling made, not the model);
* :func:`seam_steps` — pairs of neighbouring foreground pixels with different labels across
  the given rows / columns (a seam shows as many more of them on core edges than elsewhere).
"""

from __future__ import annotations

import numpy as np


def overlaps(truth: np.ndarray, pred: np.ndarray):
    """(true ids, predicted ids, shared pixels) of every overlapping pair, and the areas of
    every true and predicted id (bincounts)."""
    t = np.asarray(truth).ravel().astype(np.int64)
    p = np.asarray(pred).ravel().astype(np.int64)
    both = (t > 0) & (p > 0)
    big = int(p.max()) + 1 if p.size else 1
    keys, counts = np.unique(t[both] * big + p[both], return_counts=True)
    return keys // big, keys % big, counts, np.bincount(t), np.bincount(p)


def found(truth: np.ndarray, pred: np.ndarray, iou: float = 0.5) -> set[int]:
    """True ids matched by a predicted label with IoU >= ``iou``."""
    ti, pi, n, ta, pa = overlaps(truth, pred)
    ious = n / (ta[ti] + pa[pi] - n)
    return set(ti[ious >= iou].tolist())


def interior_ids(labels: np.ndarray) -> set[int]:
    """Ids that do not touch the array's border."""
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    return set(np.unique(labels[labels > 0]).tolist()) - set(np.unique(edge).tolist())


def crossing_ids(truth: np.ndarray, grid) -> set[int]:
    """True ids with pixels in two or more tile cores of ``grid``."""
    ys, xs = np.nonzero(truth)
    th, tw = grid.tile_shape
    tile = (ys // th) * grid.cols + xs // tw
    pairs = np.unique(truth[ys, xs].astype(np.int64) * len(grid) + tile)
    ids, n = np.unique(pairs // len(grid), return_counts=True)
    return set(ids[n >= 2].tolist())


def split_ids(truth: np.ndarray, pred: np.ndarray, ids=None, share: float = 0.2) -> set[int]:
    """True ids (of ``ids``, default all) of which two or more predicted labels each cover
    >= ``share``."""
    ti, _, n, ta, _ = overlaps(truth, pred)
    big = n >= share * ta[ti]
    uniq, count = np.unique(ti[big], return_counts=True)
    out = set(uniq[count >= 2].tolist())
    return out if ids is None else out & set(ids)


def joined_ids(truth: np.ndarray, pred: np.ndarray, ids=None, share: float = 0.5) -> set[int]:
    """True ids (of ``ids``, default all) of which a predicted label covers >= ``share`` while
    covering >= ``share`` of another true id too."""
    ti, pi, n, ta, _ = overlaps(truth, pred)
    big = n >= share * ta[ti]
    labels, count = np.unique(pi[big], return_counts=True)
    out = set(ti[big & np.isin(pi, labels[count >= 2])].tolist())
    return out if ids is None else out & set(ids)


def label_cores(pred: np.ndarray, grid) -> np.ndarray:
    """The core (tile index) holding each predicted label's centroid; index = label id."""
    ys, xs = np.nonzero(pred)
    ids = pred[ys, xs].astype(np.int64)
    n = np.maximum(np.bincount(ids), 1)
    cy = (np.bincount(ids, weights=ys) / n).astype(int)
    cx = (np.bincount(ids, weights=xs) / n).astype(int)
    th, tw = grid.tile_shape
    return np.minimum(cy // th, grid.rows - 1) * grid.cols + np.minimum(cx // tw, grid.cols - 1)


def seam_split_ids(truth: np.ndarray, pred: np.ndarray, grid, ids=None, share: float = 0.2) -> set[int]:
    """True ids split (as :func:`split_ids`) into pieces whose centroids lie in different cores."""
    ti, pi, n, ta, _ = overlaps(truth, pred)
    big = n >= share * ta[ti]
    cores = label_cores(pred, grid)
    out = set()
    for t in np.unique(ti[big]).tolist():
        if len(set(cores[pi[big & (ti == t)]].tolist())) >= 2:
            out.add(t)
    return out if ids is None else out & set(ids)


def seam_steps(labels: np.ndarray, rows=(), cols=()) -> int:
    """Neighbouring pixel pairs across row boundary ``r`` (rows r-1 | r) and column boundary
    ``c`` where both pixels are foreground with different labels."""
    n = 0
    for r in rows:
        a, b = labels[r - 1], labels[r]
        n += int(((a > 0) & (b > 0) & (a != b)).sum())
    for c in cols:
        a, b = labels[:, c - 1], labels[:, c]
        n += int(((a > 0) & (b > 0) & (a != b)).sum())
    return n
