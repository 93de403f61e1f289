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
   tiles painted already: a label holding >= ``contained`` of exactly one earlier label (and
   lying at most ``stray`` of itself on others) is that object, more whole, and grows it; a
   label holding >= ``join`` (0.5) of each of two or more earlier labels (and at most ``stray``
   of itself elsewhere) is one object that earlier tiles saw in pieces (a seam split: the
   pieces were owned on either side of a core edge, or by a tile that saw the object in
   pieces): the pieces become one label and it grows (the id freed is filled by the last id,
   so ids stay 1..n; such a join may relabel pixels painted before, the only repainting); a
   label lying >= ``duplicate`` on earlier labels is an object a neighbour owned already (the
   two saw its centre on either side of the core edge) and is dropped; else its free pixels
   become a new label if at least ``min_area``;
5. **orphans** — a label the tile saw whole but does not own is offered to its owner;
6. **the whole view wins** — an orphan offered by an earlier tile that covers >= ``cover``
   (0.7) of each of two or more of the owner's labels is one object the owner sees in pieces:
   before ownership, those pieces are replaced by the orphan (:func:`adopt_whole_views`). An
   orphan for an owner already done is pasted at once, *before* what earlier tiles offered to
   the present tile, and grows a label it covers >= ``cover`` of (the owner saw that object
   in pieces: the present tile's piece of it then lies on the grown label and goes). What is
   left is pasted after the owner's own labels, only where it lies < ``orphan_overlap`` on
   labels already there (the owner missed that object). :class:`TileStitcher` pastes with
   ``contained`` = ``cover``, ``join`` = 0.5 and ``stray`` = 0.1 throughout.

7. **touching labels that are one object join** — with ``bites``
   (:class:`~.seam.BiteJudge`) and the window's features, every pair of touching labels of the
   image lying wholly inside the window (clear of its inner edges), not looked at before at the
   same areas, is looked at first for a bite: a label takes back the part of it its
   neighbour's label holds (a mask over the neighbour that reached into it; only pixels move,
   ids stay). Then, with a ``judge``
   (:class:`~.merge.UnionJudge`), every such pair, not judged before at
   the same areas, is judged on this window's view, and the pairs found one object become one
   label (:func:`~.merge.merge_touching`; :meth:`LabelBook.settle` keeps the ids 1..n). It
   mends the point grid's splits and the tiling's (pieces owned on either side of a core edge,
   joined by the later window that holds both).

:class:`TileStitcher` runs steps 1-7 for one tile after another into the image's labels.

Ids are handed out in pasting order over the whole image, so they are 1..n; a tile that is
the whole image gives exactly the one-image labels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..frames import read
from .merge import merge_touching, touching_pairs
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
                grid=None, offered=None, cover: float = 0.7) -> tuple[np.ndarray, list]:
    """The labels (outer-window int32, ids in painting order, gaps where a label is not
    owned) that ``tile`` contributes (steps 1-3 and 6 of the module docstring), and the
    *orphans*: ``(owner tile index, y0, x0, bool patch)`` in image pixels for each label it
    saw whole but whose centroid lies in another tile's core (``grid`` given; else none),
    offered to that tile in case it missed the object. ``offered``: orphans earlier tiles
    offered to this one, ``(y0, x0, patch)``; those adopted as whole views of objects this
    tile sees in pieces are removed from the list (in place)."""
    whole = [r for r in records if not cut_by_window(r, tile, image_hw, edge_margin)]
    local = records_to_labels(whole, tile.outer_shape, min_area)
    if offered:
        offered[:] = adopt_whole_views(local, tile, offered, cover)
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


def _clip(tile, y0, x0, patch):
    """(window slices, the part of ``patch`` inside ``tile``'s outer window) or None."""
    oy0, oy1, ox0, ox1 = tile.outer
    ph, pw = patch.shape
    a0, a1 = max(y0, oy0), min(y0 + ph, oy1)
    b0, b1 = max(x0, ox0), min(x0 + pw, ox1)
    if a0 >= a1 or b0 >= b1:
        return None
    part = patch[a0 - y0:a1 - y0, b0 - x0:b1 - x0]
    return (slice(a0 - oy0, a1 - oy0), slice(b0 - ox0, b1 - ox0)), part


def adopt_whole_views(local: np.ndarray, tile, offered: list, cover: float = 0.7) -> list:
    """Step 6: for each ``(y0, x0, patch)`` offered (image pixels) that lies >= ``cover``
    inside the window and covers >= ``cover`` of each of two or more labels of ``local``
    (the tile's window labels, changed in place), those labels are replaced by one new label:
    the offered mask. Returns the offers not adopted."""
    rest = []
    areas = np.bincount(local.ravel()).tolist()
    for y0, x0, patch in offered:
        clipped = _clip(tile, y0, x0, patch)
        total = int(patch.sum())
        if clipped is None or int(clipped[1].sum()) < cover * total:
            rest.append((y0, x0, patch))
            continue
        sl, m = clipped
        view = local[sl]
        under = view[m]
        ids, counts = np.unique(under[under > 0], return_counts=True)
        pieces = [int(k) for k, c in zip(ids.tolist(), counts.tolist()) if c >= cover * areas[k]]
        if len(pieces) < 2:
            rest.append((y0, x0, patch))
            continue
        gone = np.isin(local, pieces)
        local[gone] = 0
        for k in pieces:
            areas[k] = 0
        new = m & (view == 0)
        view[new] = len(areas)
        areas.append(int(new.sum()))
    return rest


class TileStitcher:
    """Steps 1-7 (7 with ``bites`` and/or a ``judge``) for one tile after another, into an (H, W) integer
    labels array ``out`` (numpy or zarr): ``add(tile, records, out, features)`` reads and writes
    only under the tile's outer window (and under orphans' boxes). Tiles must come in ``grid``
    order."""

    def __init__(self, grid, image_hw, min_area: int = 0, edge_margin: int = 2, duplicate: float = 0.5,
                 orphan_overlap: float = 0.1, cover: float = 0.7, stray: float = 0.1, join: float = 0.5,
                 judge=None, bites=None) -> None:
        self.grid, self.image_hw, self.min_area = grid, tuple(image_hw), int(min_area)
        self.edge_margin, self.duplicate, self.orphan_overlap = edge_margin, duplicate, orphan_overlap
        self.cover, self.stray, self.join = cover, stray, join
        self.judge = judge  # a merge.UnionJudge: touching labels that are one object join (step 7)
        self.book = LabelBook()
        self.pending: dict[int, list] = {}  # owner tile -> labels earlier tiles saw whole there
        self.judged: dict[tuple[int, int], tuple[int, int]] = {}  # pair -> its areas when judged
        self.bites = bites  # a seam.BiteJudge: labels take back the bites their neighbours hold (step 7)
        self.bitten: dict[tuple[int, int], tuple[int, int]] = {}  # pair -> its areas when looked at

    def add(self, tile, records: list[MaskRecord], out, features=None) -> None:
        """Steps 1-6 for ``tile`` (its ``records`` in outer-window pixels), then step 7 with
        ``features`` (the window's encoder output) when the stitcher has a ``judge``."""
        offered = self.pending.pop(tile.index, [])
        local, orphans = tile_labels(records, tile, self.image_hw, self.min_area, self.edge_margin, self.grid,
                                     offered, self.cover)
        ys, xs = tile.outer_slices
        window = np.array(read(out[ys, xs]), dtype=np.int64)
        self.book.paste(window, local, self.min_area, contained=self.cover, duplicate=self.duplicate,
                        stray=self.stray, origin=(ys.start, xs.start), join=self.join)
        self._write(out, (ys, xs), window)
        later = []
        for owner, y0, x0, patch in orphans:
            if owner < tile.index:  # owner done: its view of the object was in pieces or missed it
                self._paste_patch(out, y0, x0, patch)
            else:
                later.append((owner, y0, x0, patch))
        for y0, x0, patch in offered:
            self._paste_patch(out, y0, x0, patch)
        for owner, y0, x0, patch in later:
            self.pending.setdefault(owner, []).append((y0, x0, patch))
        if (self.judge is not None or self.bites is not None) and features is not None:
            self._join_touching(tile, out, features)

    def _join_touching(self, tile, out, features) -> None:
        """Step 7: touching labels lying wholly inside the window (clear of its inner edges
        by ``edge_margin``), not judged before at their present areas, are judged on the
        window's features; those found one object join (:func:`~.merge.merge_touching`)."""
        ys, xs = tile.outer_slices
        window = np.array(read(out[ys, xs]), dtype=np.int64)
        oy0, oy1, ox0, ox1 = tile.outer
        ih, iw = self.image_hw
        m = self.edge_margin + 1
        lo_y, hi_y = (oy0 + m if oy0 > 0 else 0), (oy1 - m if oy1 < ih else ih)
        lo_x, hi_x = (ox0 + m if ox0 > 0 else 0), (ox1 - m if ox1 < iw else iw)
        book = self.book

        def inside(k):
            y0, y1, x0, x1 = book.boxes[k]
            return y0 >= lo_y and y1 <= hi_y and x0 >= lo_x and x1 <= hi_x

        def candidate(a, b):
            if not (inside(a) and inside(b)):
                return False
            areas = (book.areas[a], book.areas[b])
            if self.judged.get((a, b)) == areas:
                return False
            self.judged[(a, b)] = areas
            return True

        taken = self._take_bites(window, features, inside, (oy0, ox0)) if self.bites is not None else 0
        done = [] if self.judge is None else merge_touching(window, self.judge, features, candidates=candidate,
                                                            join=lambda a, b: book._merge(window, [a, b]))
        if done or taken:
            self._write(out, (ys, xs), window)

    def _take_bites(self, window, features, inside, origin) -> int:
        """Step 7, first half: touching labels lying wholly inside the window, not looked at
        before at their present areas, take back the bites their neighbours hold of them
        (:class:`~.seam.BiteJudge`). Returns how many did."""
        book = self.book
        todo = {}
        for (a, b), contact in touching_pairs(window, self.bites.rule.min_contact).items():
            areas = (book.areas[a], book.areas[b])
            if inside(a) and inside(b) and self.bitten.get((a, b)) != areas:
                self.bitten[(a, b)] = areas
                todo[(a, b)] = contact
        found = self.bites(window, todo, features) if todo else []
        for piece, biter, pixels in found:
            bite = pixels & (window == biter)
            new = bite | (pixels & (window == 0))  # free pixels not given to another piece already
            book.areas[biter] -= int(bite.sum())
            book.areas[piece] += int(new.sum())
            window[new] = piece
            ys, xs = np.nonzero(pixels)
            book._box(piece, origin[0], origin[1], (slice(int(ys.min()), int(ys.max()) + 1),
                                                    slice(int(xs.min()), int(xs.max()) + 1)))
        return len(found)

    def _paste_patch(self, out, y0, x0, patch) -> None:
        sl = (slice(y0, y0 + patch.shape[0]), slice(x0, x0 + patch.shape[1]))
        region = np.array(read(out[sl]), dtype=np.int64)
        self.book.paste(region, patch.astype(np.int32), self.min_area, contained=self.cover,
                        duplicate=self.orphan_overlap, stray=self.stray, origin=(y0, x0), join=self.join)
        self._write(out, sl, region)

    def _write(self, out, sl, labels) -> None:
        top = np.iinfo(np.dtype(out.dtype)).max
        if len(self.book) > top:
            raise ValueError(f"{len(self.book)} labels do not fit the output's dtype {np.dtype(out.dtype)}")
        out[sl] = labels.astype(out.dtype, copy=False)
        self.book.settle(out)


class LabelBook:
    """The areas and boxes of every label pasted so far (index = id; 0 unused): the running id
    count over the whole image, and what the ``contained`` rule compares with. Ids freed by a
    merge are filled by :meth:`settle` (the last id moves there), so ids stay 1..n."""

    def __init__(self) -> None:
        self.areas = [0]
        self.boxes = [(0, 0, 0, 0)]  # (y0, y1, x0, x1) image pixels, a superset of the label
        self.renames: list = []  # (merged id, id it joined, its box), for settle()

    def __len__(self) -> int:
        return len(self.areas) - 1

    def _box(self, k, oy, ox, sl) -> None:
        y0, y1, x0, x1 = oy + sl[0].start, oy + sl[0].stop, ox + sl[1].start, ox + sl[1].stop
        if k == len(self.boxes):
            self.boxes.append((y0, y1, x0, x1))
        else:
            b = self.boxes[k]
            self.boxes[k] = (min(b[0], y0), max(b[1], y1), min(b[2], x0), max(b[3], x1))

    def paste(self, window: np.ndarray, local: np.ndarray, min_area: int = 0,
              contained: float = 0.9, duplicate: float = 0.5, stray: float = 0.0, origin=(0, 0),
              join: float | None = None) -> int:
        """Paste a tile's ``local`` labels (from :func:`tile_labels`) into ``window`` (the
        image's labels under the tile's outer window, changed in place; ``origin``: its
        top-left pixel in the image) in id order: step 4 of the module docstring; a label
        holding >= ``join`` of each of two or more earlier labels and at most ``stray`` of
        itself elsewhere is one object seen whole that earlier tiles saw in pieces: the pieces
        become one label (renamed outside ``window`` by :meth:`settle`). Returns how many new
        labels were made."""
        first_new = len(self.areas)
        areas = self.areas
        oy, ox = origin
        join = contained if join is None else join
        for k, sl in enumerate(ndimage.find_objects(local), start=1):
            if sl is None:
                continue
            mask = local[sl] == k
            view = window[sl]
            under = view[mask]
            ids, counts = np.unique(under[under > 0], return_counts=True)
            free = mask & (view == 0)
            their = np.array([areas[i] for i in ids.tolist()], dtype=np.int64)
            held = counts >= contained * their
            size = int(mask.sum())
            joined = counts >= join * their
            if joined.sum() >= 2 and int(counts[~joined].sum()) <= stray * size:
                held = joined  # one object an earlier tile saw in pieces: they join
            if held.sum() >= 1 and int(counts[~held].sum()) <= stray * size:
                pieces = ids[held].tolist()
                if len(pieces) > 1:
                    self._merge(window, pieces)
                if pieces:  # the same object, more whole: that label grows
                    k0 = pieces[0]
                    view[free] = k0
                    areas[k0] += int(free.sum())
                    self._box(k0, oy, ox, sl)
                    continue
            if len(ids) and int(counts.sum()) >= duplicate * size:
                continue  # an object a neighbouring tile painted already
            n_free = int(free.sum())
            if n_free >= max(min_area, 1):
                areas.append(n_free)
                view[free] = len(areas) - 1
                self._box(len(areas) - 1, oy, ox, sl)
        return len(areas) - first_new

    def _merge(self, window: np.ndarray, pieces: list[int]) -> None:
        """Pieces (ids) joined into the first in ``window``; their pixels outside it are
        renamed in the image by :meth:`settle`."""
        k0 = pieces[0]
        window[np.isin(window, pieces[1:])] = k0
        for p in pieces[1:]:
            self.areas[k0] += self.areas[p]
            b, c = self.boxes[k0], self.boxes[p]
            self.boxes[k0] = (min(b[0], c[0]), max(b[1], c[1]), min(b[2], c[2]), max(b[3], c[3]))
            self.areas[p] = 0
            self.renames.append((p, k0, c))

    def _relabel(self, out, box, old: int, new: int) -> None:
        y0, y1, x0, x1 = box
        region = np.array(read(out[y0:y1, x0:x1]))
        hit = region == old
        if hit.any():
            region[hit] = new
            out[y0:y1, x0:x1] = region.astype(out.dtype, copy=False)

    def settle(self, out) -> None:
        """After a paste was written to ``out``: merged pieces renamed outside the window, and
        the last ids moved into the ids the merges freed (ids stay 1..n)."""
        renames, self.renames = self.renames, []
        for p, k0, box in renames:
            self._relabel(out, box, p, k0)
        for hole in sorted((p for p, _, _ in renames), reverse=True):
            self._trim()
            last = len(self.areas) - 1
            if hole >= last:
                continue
            self._relabel(out, self.boxes[last], last, hole)
            self.areas[hole], self.boxes[hole] = self.areas[last], self.boxes[last]
            self.areas[last] = 0
        self._trim()

    def _trim(self) -> None:
        while len(self.areas) > 1 and self.areas[-1] == 0:
            self.areas.pop()
            self.boxes.pop()
