"""Merging one tile's masks into the labels of the whole image, with no seams.

A tile's masks are found on its *outer* window (core + halo). Per tile:

1. **cut masks go** — a mask whose box comes within ``edge_margin`` pixels of an outer-window
   edge that is not the image border is an object the window cuts (a neighbour sees it whole);
2. **the tile's own labels** — the rest are painted into labels of the window by the one-image
   rule (:func:`~napari_sam.engine.auto.segmenter.records_to_labels`: higher quality first, on
   free pixels; a fragment grows to the whole object that holds it), so fragments and whole
   masks of an object are resolved where the object is seen whole;
3. **ownership** — of those labels the tile keeps the ones whose centroid lies in its *core*
   (every pixel lies in exactly one core: an object cut by a core edge is resolved by the one
   tile that holds its centre, and sees it whole when the halo is at least its radius);
4. **pasting** (:meth:`LabelBook.paste`) into the window of the image's labels, where earlier
   tiles painted already: a label holding >= ``contained`` of exactly one earlier label is
   that object, more whole, and grows it; a label lying >= ``duplicate`` on earlier labels is
   an object a neighbour owned already (the two saw its centre on either side of the core
   edge) and is dropped; else its free pixels become a new label if at least ``min_area``.

5. **orphans** — a label the tile saw whole but does not own is offered to its owner: pasted
   after the owner's own labels (at once if the owner came earlier), only where it lies
   < ``orphan_overlap`` on labels already there (the owner missed that object).

Ids are handed out in pasting order over the whole image, so they are 1..n; a tile that is
the whole image gives exactly the one-image labels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .records import MaskRecord, records_to_labels


def cut_by_window(r: MaskRecord, tile, image_hw, edge_margin: int = 2) -> bool:
    """Whether record ``r`` (box in outer-window coordinates) reaches an inner window edge."""
    oy0, oy1, ox0, ox1 = tile.outer
    wh, ww = oy1 - oy0, ox1 - ox0
    ih, iw = image_hw
    m = int(edge_margin)
    x0, y0, x1, y1 = r.box
    return bool((ox0 > 0 and x0 <= m) or (oy0 > 0 and y0 <= m)
                or (ox1 < iw and x1 >= ww - 1 - m) or (oy1 < ih and y1 >= wh - 1 - m))


def tile_labels(records: list[MaskRecord], tile, image_hw, min_area: int = 0, edge_margin: int = 2,
                grid=None) -> tuple[np.ndarray, list]:
    """The labels (outer-window int32, ids in painting order, gaps where a label is not
    owned) that ``tile`` contributes (steps 1-3 of the module docstring), and the *orphans*:
    ``(owner tile index, y0, x0, bool patch)`` in image pixels for each label it saw whole
    but whose centroid lies in another tile's core (``grid`` given; else none), offered to
    that tile in case it missed the object."""
    whole = [r for r in records if not cut_by_window(r, tile, image_hw, edge_margin)]
    local = records_to_labels(whole, tile.outer_shape, min_area)
    n = int(local.max())
    if n == 0:
        return local, []
    ys, xs = np.nonzero(local)
    ids = local[ys, xs]
    area = np.bincount(ids, minlength=n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cy = np.bincount(ids, weights=ys, minlength=n + 1) / area
        cx = np.bincount(ids, weights=xs, minlength=n + 1) / area
    cyi, cxi = tile.core_in_outer
    own = (cy >= cyi.start) & (cy < cyi.stop) & (cx >= cxi.start) & (cx < cxi.stop)
    own[0] = True
    orphans = []
    if grid is not None:
        oy, ox = tile.outer[0], tile.outer[2]
        for k, sl in enumerate(ndimage.find_objects(local), start=1):
            if sl is not None and not own[k]:
                owner = grid.tile_at(oy + cy[k], ox + cx[k]).index
                orphans.append((owner, oy + sl[0].start, ox + sl[1].start, local[sl] == k))
    local[~own[local]] = 0
    return local, orphans


class LabelBook:
    """The areas of every label pasted so far (index = id; 0 unused): the running id count over
    the whole image, and what the ``contained`` rule compares with."""

    def __init__(self) -> None:
        self.areas = [0]

    def __len__(self) -> int:
        return len(self.areas) - 1

    def paste(self, window: np.ndarray, local: np.ndarray, min_area: int = 0,
              contained: float = 0.9, duplicate: float = 0.5) -> int:
        """Paste a tile's ``local`` labels (from :func:`tile_labels`) into ``window`` (the
        image's labels under the tile's outer window, changed in place) in id order: step 4
        of the module docstring. Returns how many new labels were made."""
        first_new = len(self.areas)
        areas = self.areas
        for k, sl in enumerate(ndimage.find_objects(local), start=1):
            if sl is None:
                continue
            mask = local[sl] == k
            view = window[sl]
            under = view[mask]
            ids, counts = np.unique(under[under > 0], return_counts=True)
            free = mask & (view == 0)
            if len(ids) == 1 and counts[0] >= contained * areas[ids[0]]:
                grown = int(free.sum())
                view[free] = ids[0]
                areas[ids[0]] += grown
                continue
            if len(ids) and int(counts.sum()) >= duplicate * int(mask.sum()):
                continue  # an object a neighbouring tile painted already
            n_free = int(free.sum())
            if n_free >= max(min_area, 1):
                areas.append(n_free)
                view[free] = len(areas) - 1
        return len(areas) - first_new
