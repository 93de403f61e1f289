"""A label takes back the bite its neighbour's label holds of it.

The point grid's commonest error on touching nuclei is a mask over one nucleus that reaches
into its neighbour: painted first (higher quality), it holds a *bite* of the neighbour, whose
own label is the rest, a second piece. Across a core edge the windows on either side often
paint a pair so, and the two pieces of the bitten nucleus are no convex shape, so :mod:`.merge`
rightly does not join them.

:class:`BiteJudge` looks at every pair of touching labels where one, the *biter*, is not
convex (fills < ``biter_solidity`` of its hull: a nucleus with a bulge): a click at the most
interior pixel of the other, the *piece*, gives three masks; the first (by predicted IoU)
that :func:`carve` accepts is the piece seen whole and takes its pixels: the bite comes back
from the biter, and the piece grows over the mask's unlabelled pixels. :func:`carve` accepts a
mask (its largest part, holes filled) that fills >= ``min_solidity`` of its hull, holds
>= ``join`` of the piece, lies on the biter for >= ``min_bite`` of the piece, on unlabelled
pixels for <= ``free`` and on other labels for <= ``third`` of itself, and leaves the biter
>= ``keep`` of itself, in one piece (specks cut off go with the bite), and more convex by
>= ``gain``. A mask over a nucleus and a bite of a round neighbour leaves a notch in that
neighbour (less convex): refused. Thresholds chosen on generated nuclei (docs/automatic.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError


@dataclass(frozen=True)
class BiteRule:
    """Thresholds of :class:`BiteJudge` and :func:`carve` (see the module docstring)."""

    biter_solidity: float = 0.88
    piece_solidity: float = 1.0
    min_solidity: float = 0.85
    join: float = 0.5
    keep: float = 0.4
    gain: float = 0.03
    free: float = 0.3
    third: float = 0.1
    min_bite: float = 0.1
    min_contact: int = 3

    def __post_init__(self) -> None:
        for name in ("biter_solidity", "piece_solidity", "min_solidity", "join", "keep", "free", "third", "min_bite"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if not -1.0 <= self.gain <= 1.0:
            raise ValueError(f"gain must be in [-1, 1], got {self.gain!r}")
        if self.min_contact < 1:
            raise ValueError(f"min_contact must be >= 1, got {self.min_contact!r}")


def solidity(mask: np.ndarray) -> float:
    """The mask's area over the area of the convex hull of its pixels' squares."""
    area = int(np.count_nonzero(mask))
    if area == 0:
        return 0.0
    # the hull of the pixels' corners is the hull of the outline pixels' corners (a pixel whose
    # four neighbours are in the mask has no corner that is a hull vertex)
    padded = np.pad(np.asarray(mask, bool), 1)
    inner = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    ys, xs = np.nonzero(np.asarray(mask, bool) & ~inner)
    corners = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)]).astype(np.float64)
    try:
        hull = ConvexHull(np.unique(corners, axis=0)).volume
    except QhullError:  # a straight line of pixels
        return 1.0
    return float(area / hull)


def _largest(mask: np.ndarray) -> np.ndarray:
    """The mask's largest 4-connected piece with its holes filled."""
    lab, n = ndimage.label(mask)
    if n > 1:
        mask = lab == 1 + int(np.argmax(np.bincount(lab.ravel())[1:]))
    return ndimage.binary_fill_holes(mask)


def carve(labels: np.ndarray, mask: np.ndarray, piece: int, biter: int, areas, rule: BiteRule | None = None,
          min_area: int = 0) -> np.ndarray | None:
    """The pixels ``mask`` (a view of label ``piece``, bool like ``labels``; its largest piece
    with holes filled) gives to ``piece`` (the bite taken back from ``biter``, and the mask's
    unlabelled pixels) by the rule of the module docstring, or None. ``areas[k]``: label
    ``k``'s area (``piece`` and ``biter`` must lie whole in ``labels``)."""
    rule = rule or BiteRule()
    if not mask.any():
        return None
    mask = _largest(mask)
    n = int(mask.sum())
    under = labels[mask]
    ids, counts = np.unique(under, return_counts=True)
    got = dict(zip(ids.tolist(), counts.tolist()))
    n_piece, n_bite, n_free = got.get(piece, 0), got.get(biter, 0), got.get(0, 0)
    n_third = n - n_piece - n_bite - n_free
    if (n_piece < rule.join * areas[piece] or n_bite < rule.min_bite * areas[piece] or n_free > rule.free * n
            or n_third > rule.third * n):
        return None
    own = labels == biter
    rest = own & ~mask
    lab, k = ndimage.label(rest)
    if k > 1:  # specks cut off by the mask go with the bite
        rest = lab == 1 + int(np.argmax(np.bincount(lab.ravel())[1:]))
    n_rest = int(rest.sum())
    if n_rest < max(min_area, 1) or n_rest < rule.keep * areas[biter]:
        return None
    if solidity(mask) < rule.min_solidity or solidity(rest) < solidity(own) + rule.gain:
        return None
    return (own & ~rest) | (mask & (labels == 0))


def _interior(mask: np.ndarray) -> tuple[float, float]:
    """(x, y) of the pixel farthest from the mask's outline (inside it)."""
    dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return float(x), float(y)


def _around(sa, sb, hw, margin: int) -> tuple[slice, slice]:
    return tuple(slice(max(min(p.start, q.start) - margin, 0), min(max(p.stop, q.stop) + margin, n))
                 for p, q, n in zip(sa, sb, hw))


class BiteJudge:
    """``judge(labels, pairs, features) -> [(piece, biter, pixels)]``: for the touching pairs
    ``{(a, b): contact}`` of ``labels`` (the labels of the image ``features`` were encoded
    from, at its own (H, W)), the bites to take back (``pixels``: a bool array like
    ``labels``, what goes to ``piece``) by the rule of the module docstring. ``model``,
    ``transform``: what made ``features``."""

    def __init__(self, model, transform, rule: BiteRule | None = None, min_area: int = 0) -> None:
        self.model, self.transform, self.rule, self.min_area = model, transform, rule or BiteRule(), int(min_area)

    def __call__(self, labels: np.ndarray, pairs: dict[tuple[int, int], int], features) -> list:
        rule, hw = self.rule, labels.shape
        boxes = ndimage.find_objects(labels)
        shape_of: dict[int, float] = {}

        def convex(k):
            if k not in shape_of:
                shape_of[k] = solidity(labels[boxes[k - 1]] == k)
            return shape_of[k]

        asks = []
        for (a, b), contact in pairs.items():
            if contact < rule.min_contact:
                continue
            for piece, biter in ((a, b), (b, a)):
                if convex(biter) < rule.biter_solidity and convex(piece) <= rule.piece_solidity:
                    sl = boxes[piece - 1]
                    x, y = _interior(labels[sl] == piece)
                    asks.append((piece, biter, (x + sl[1].start, y + sl[0].start)))
        if not asks:
            return []
        tf = self.transform
        feats = {k: torch.as_tensor(v).to(tf.device) for k, v in features.items()}
        pts = tf.points_to_input(np.array([c for _, _, c in asks], np.float64)[:, None, :], hw)
        ones = torch.ones(len(asks), 1, dtype=torch.int64, device=pts.device)
        with torch.inference_mode():
            low, iou = [], []
            for i in range(0, len(asks), 64):
                lo, io = self.model.decode(feats, point_coords=pts[i:i + 64], point_labels=ones[i:i + 64],
                                           multimask=True)[:2]
                low.append(lo)
                iou.append(io)
            low, iou = torch.cat(low), torch.cat(iou).float().cpu().numpy()
        found, taken = [], set()
        for (piece, biter, _), low_j, iou_j in zip(asks, low, iou):
            if piece in taken or biter in taken:
                continue
            sl = _around(boxes[piece - 1], boxes[biter - 1], hw, 8)
            part = labels[sl]
            areas = {piece: int((part == piece).sum()), biter: int((part == biter).sum())}
            masks = (tf.upscale(low_j, hw) > 0).cpu().numpy()[(slice(None), *sl)]
            for m in np.argsort(-iou_j).tolist():
                pixels = carve(part, masks[m], piece, biter, areas, rule, self.min_area)
                if pixels is not None:
                    full = np.zeros(hw, bool)
                    full[sl] = pixels
                    found.append((piece, biter, full))
                    taken |= {piece, biter}
                    break
        return found
