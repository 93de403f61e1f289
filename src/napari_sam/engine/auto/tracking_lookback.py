"""Placing a division on the frame it happened (the automatic tracker, :mod:`.tracking`).

SAM 2 keeps one mask over two daughters as long as they touch, so the tracker sees a split
only once they have parted, frames after the division. The tracker holds back its last
``division_lookback`` frames (:class:`FrameBuffer`) and, when a track splits on frame ``t``,
:func:`walk_back` looks at the mother's mask on the held frames: while it is about as large
as the two daughters together (``>= division_cover`` x their summed area on ``t``) it covered
both, and the division moves back to that frame. The mother's mask there is its *uncut* one
(:meth:`FrameBuffer.mask`): daughters parting show two pieces, too close for a split, frames
before the split; the tracker cut that mask to its largest piece, one daughter. There the
mother's pixels are shared between the daughters (:func:`share_mask`: a seeded watershed on the distance transform of the mask,
seeded with each daughter's pixels on the next frame). :func:`swallowed` tells a mask that
took over a neighbour from a division: the mother's area had been as large before (it never
grew), or one part lay under another track on the frame before. A split turned down still
splits the mask (the tracker's ``separate_rejected``): :func:`keeper` picks the part the mother's track keeps.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from scipy import ndimage as ndi

from ...lineage.lobes import neck_split


class FrameBuffer:
    """The last frames' labels, held back before they are given out (oldest first); the
    newest frame given out stays readable as :attr:`previous`."""

    def __init__(self, size: int):
        self.size = max(int(size), 0)
        self.frames: deque[tuple[int, np.ndarray]] = deque()
        self.previous: tuple[int, np.ndarray] | None = None
        self.uncut: dict[int, np.ndarray] = {}  # frame -> the tracks' labels before any cut

    def push(self, t: int, labels: np.ndarray, uncut: np.ndarray | None = None) -> list[tuple[int, np.ndarray]]:
        """Hold frame ``t`` (``uncut``: its labels before each track was cut to its largest
        region, see :meth:`mask`); returns the frames that leave the buffer (to be given out)."""
        self.frames.append((t, labels))
        if uncut is not None:
            self.uncut[t] = uncut
        out = []
        while len(self.frames) > self.size:
            out.append(self.frames.popleft())
        if out:
            self.previous = out[-1]
        keep = {f for f, _ in self.frames} | ({self.previous[0]} if self.previous else set())
        for f in [f for f in self.uncut if f not in keep]:
            del self.uncut[f]
        return out

    def mask(self, t: int, obj_id: int) -> np.ndarray | None:
        """Track ``obj_id``'s whole mask on frame ``t`` (held or the last given out; else
        None): its labels plus the pixels its uncut mask had there that no label took (the
        parts ``keep_largest_regions`` dropped). A cell that has begun to divide is already
        in two pieces before the split is accepted; its cut mask is one daughter."""
        labels = self.get(t)
        if labels is None:
            return None
        m = labels == obj_id
        uncut = self.uncut.get(t)
        if uncut is not None and m.any():  # (an empty cut mask stays empty: dropped on purpose)
            m |= (uncut == obj_id) & (labels == 0)
        return m

    def flush(self) -> list[tuple[int, np.ndarray]]:
        out = list(self.frames)
        self.frames.clear()
        if out:
            self.previous = out[-1]
        return out

    def held(self, t: int) -> np.ndarray | None:
        """Labels of frame ``t`` if still held (they may change), else None."""
        for f, labels in self.frames:
            if f == t:
                return labels
        return None

    def get(self, t: int) -> np.ndarray | None:
        """Labels of frame ``t`` if held (or the last given out), else None."""
        for f, labels in self.frames:
            if f == t:
                return labels
        if self.previous is not None and self.previous[0] == t:
            return self.previous[1]
        return None


def share_mask(mask: np.ndarray, seed_a: np.ndarray, seed_b: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Split ``mask`` between two daughters: a watershed on the mask's distance transform
    seeded with ``seed_a`` / ``seed_b`` (where they lie inside the mask; else the mask pixel
    nearest each seed's centroid). None when the seeds do not give two parts."""
    from skimage.segmentation import watershed

    markers = np.zeros(mask.shape, np.int32)
    for k, seed in ((1, seed_a), (2, seed_b)):
        inside = ndi.binary_erosion(seed, iterations=1) & mask
        if not inside.any():
            inside = seed & mask
        if not inside.any():
            ys, xs = np.nonzero(seed)
            if not len(ys):
                return None
            my, mx = np.nonzero(mask)
            j = int(np.argmin((my - ys.mean()) ** 2 + (mx - xs.mean()) ** 2))
            inside = np.zeros(mask.shape, bool)
            inside[my[j], mx[j]] = True
        markers[inside & (markers == 0)] = k
    if not ((markers == 1).any() and (markers == 2).any()):
        return None
    dist = ndi.distance_transform_edt(mask)
    parts = watershed(-dist, markers, mask=mask)
    a, b = parts == 1, parts == 2
    return (a, b) if a.any() and b.any() else None


def elongation(mask: np.ndarray) -> float:
    """sqrt of the ratio of the mask's principal second moments (1: round; two touching
    discs side by side: ~2)."""
    ys, xs = np.nonzero(mask)
    if len(ys) < 3:
        return 1.0
    ev = np.linalg.eigvalsh(np.cov(np.stack([ys, xs]).astype(float)))
    return float(np.sqrt(ev[1] / max(ev[0], 1e-6)))


def walk_back(buffer: FrameBuffer, mother: int, t: int, parts, born: int, cover: float, min_elongation: float,
              max_neck: float = 1.0):
    """The frames before ``t`` on which ``mother``'s mask covered both daughters ``parts``
    (their masks on ``t``): at least ``cover`` x their summed area on ``t`` and elongated
    (``>= min_elongation``; a cell about to divide is round) and, with ``max_neck`` < 1, of
    two lobes (``neck_split`` with that waist limit). Returns ``(frames, single)``:
    ``frames`` newest first, each with the mother's pixels shared between the daughters,
    ``[(frame, part_a, part_b), ...]`` (empty: the division is on ``t``); ``single``: whether
    the frame before the first of them shows the mother as one cell (True) or the walk ran
    out of held frames or reached the mother's first frame ``born`` (False)."""
    a, b = parts
    need = cover * (int(a.sum()) + int(b.sum()))
    out = []
    for f in range(t - 1, born - 1, -1):
        labels = buffer.held(f) if f > born else None
        if labels is None:
            return out, False  # given out already (it cannot change), or the mother's first frame
        m = buffer.mask(f, mother)
        if m.sum() < need or elongation(m) < min_elongation:
            return out, True
        if max_neck < 1 and not _two_lobes(m, max_neck):
            return out, True
        shared = share_mask(m, a, b)
        if shared is None:
            return out, True
        a, b = shared
        out.append((f, a, b))
    return out, False


def _two_lobes(mask: np.ndarray, max_neck: float) -> bool:
    """Two pieces (a parting cell, uncut) or one piece with a waist (``neck_split``)."""
    parts, n = ndi.label(mask, structure=np.ones((3, 3), bool))
    if n > 1 and np.sort(np.bincount(parts.ravel())[1:])[-2] >= 0.2 * mask.sum():
        return True
    return neck_split(mask, max_neck, min_area=1, min_ratio=0.2) is not None


def swallowed(buffer: FrameBuffer, mother: int, first: int, parts, cover: float) -> bool:
    """Whether a "division" of ``mother`` on frame ``first`` into ``parts`` (masks on
    ``first``) is a mask that took over a neighbour: on the frame before, the mother's mask
    was much smaller than both parts (under ``cover`` x their area: it grew over a neighbour;
    a cell about to divide is as large as its daughters together), or one part lay mostly
    under another track."""
    prev = buffer.get(first - 1)
    if prev is None:
        return False
    total = int(parts[0].sum()) + int(parts[1].sum())
    before = int(buffer.mask(first - 1, mother).sum())  # uncut: a dividing cell may be in two pieces
    if 0 < before < cover * total:
        return True
    for part in parts:
        under = prev[part]
        others = under[(under > 0) & (under != mother)]
        if others.size and np.bincount(others).max() >= 0.3 * part.sum():
            return True
    return False


def keeper(buffer: FrameBuffer, mother: int, first: int, parts) -> int:
    """Which of ``parts`` (masks on ``first``) stays ``mother``'s when its split is no
    division: the one over most of its pixels on the frame before (ties, or no such frame:
    the larger part); 0 or 1."""
    prev = buffer.get(first - 1)
    over = [int((prev[part] == mother).sum()) if prev is not None else 0 for part in parts]
    if over[0] != over[1]:
        return 0 if over[0] > over[1] else 1
    return 0 if parts[0].sum() >= parts[1].sum() else 1
