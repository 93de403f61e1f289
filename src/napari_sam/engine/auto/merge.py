"""Two touching labels that are one object: joined when their union is one convex shape and
the model, clicked at the union's centroid, gives back the union.

Segment everything with a point grid splits some objects into two labels (grid points inside
the object gave a part of it a higher score than the whole), and tiles add splits of their own
(the parts were owned by tiles on either side of a core edge). For every pair of labels that
touch along >= ``min_contact`` pixel edges (:func:`touching_pairs`), :class:`UnionJudge`
joins them when all of:

* **convex** — the union fills >= ``solidity`` of its convex hull (two round nuclei touching
  leave a notch on either side of the contact: a union of two equal touching disks fills
  about 0.88 of its hull; the two halves of one nucleus fill it almost entirely);
* **a wide contact** — the contact is >= ``neck`` times the smaller label's equivalent
  diameter (a cut across one object runs the width of the smaller piece; touching nuclei meet
  along a short stretch);
* **the model agrees** — one of the three masks of a single click at the union's centroid
  (which must lie in the union) matches the union with IoU >= ``click_iou``.

Measured on generated nuclei with the bundled model (docs/automatic.md): the model's own
answers barely tell two touching nuclei from two halves of one (a box around two touching
nuclei gives a mask over both about as often as around two halves of one); the shape does.
:func:`merge_touching` runs rounds: a label joined in one round is judged again with its other
neighbours in the next, so three pieces become one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from .seam import BiteJudge, solidity


@dataclass(frozen=True)
class UnionRule:
    """Thresholds of :class:`UnionJudge` (see the module docstring)."""

    solidity: float = 0.9
    neck: float = 0.5
    click_iou: float = 0.7
    min_contact: int = 3
    rounds: int = 3

    def __post_init__(self) -> None:
        for name in ("solidity", "click_iou"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if self.neck < 0 or self.min_contact < 1 or self.rounds < 1:
            raise ValueError(f"neck must be >= 0, min_contact and rounds >= 1: got {self!r}")


def touching_pairs(labels: np.ndarray, min_contact: int = 1) -> dict[tuple[int, int], int]:
    """``{(a, b): contact}`` (a < b): labels with >= ``min_contact`` 4-neighbour pixel pairs."""
    base = int(labels.max()) + 1 if labels.size else 1
    keys = []
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1], labels[1:])):
        m = (a > 0) & (b > 0) & (a != b)
        lo = np.minimum(a[m], b[m]).astype(np.int64)
        hi = np.maximum(a[m], b[m]).astype(np.int64)
        keys.append(lo * base + hi)
    uniq, n = np.unique(np.concatenate(keys), return_counts=True)
    return {(int(k // base), int(k % base)): int(c) for k, c in zip(uniq.tolist(), n.tolist()) if c >= min_contact}


def _iou(m: np.ndarray, u: np.ndarray) -> float:
    return int((m & u).sum()) / max(int((m | u).sum()), 1)


class UnionJudge:
    """``judge(labels, pairs, features) -> list[bool]``: which touching pairs (with their
    contacts, ``{(a, b): contact}``) of ``labels`` (the labels of the image ``features`` were
    encoded from, at its own (H, W)) are one object, by the rule of the module docstring.
    ``model``, ``transform``: what made ``features`` (:func:`~..image.family.transform_for`)."""

    def __init__(self, model, transform, rule: UnionRule | None = None) -> None:
        self.model, self.transform, self.rule = model, transform, rule or UnionRule()

    def __call__(self, labels: np.ndarray, pairs: dict[tuple[int, int], int], features) -> list[bool]:
        rule, hw = self.rule, labels.shape
        verdicts = [False] * len(pairs)
        asks, clicks, unions = [], [], []
        boxes = ndimage.find_objects(labels)  # each label's slices: pairs are cut out, not scanned
        for j, ((a, b), contact) in enumerate(pairs.items()):
            sa, sb = boxes[a - 1], boxes[b - 1]
            by, bx = (slice(min(p.start, q.start), max(p.stop, q.stop)) for p, q in zip(sa, sb))
            part = labels[by, bx]
            ma, mb = part == a, part == b
            diameter = np.sqrt(4.0 / np.pi * min(int(ma.sum()), int(mb.sum())))
            if contact < rule.neck * diameter:
                continue
            ys, xs = np.nonzero(ma | mb)
            ys, xs = ys + by.start, xs + bx.start
            y0, x0 = ys.min(), xs.min()
            u = np.zeros((ys.max() - y0 + 1, xs.max() - x0 + 1), bool)
            u[ys - y0, xs - x0] = True
            cy, cx = float(ys.mean()), float(xs.mean())
            if not u[int(round(cy)) - y0, int(round(cx)) - x0] or solidity(u) < rule.solidity:
                continue
            asks.append(j)
            clicks.append((cx, cy))
            unions.append((y0, x0, u))
        if not asks:
            return verdicts
        tf = self.transform
        feats = {k: torch.as_tensor(v).to(tf.device) for k, v in features.items()}
        pts = tf.points_to_input(np.array(clicks, np.float64)[:, None, :], hw)
        ones = torch.ones(len(asks), 1, dtype=torch.int64, device=pts.device)
        with torch.inference_mode():  # in batches of 64 clicks, as the grid's
            low = torch.cat([self.model.decode(feats, point_coords=pts[i:i + 64], point_labels=ones[i:i + 64],
                                               multimask=True)[0] for i in range(0, len(asks), 64)])
        for j, low_j, (y0, x0, u) in zip(asks, low, unions):
            masks = (tf.upscale(low_j, hw) > 0).cpu().numpy()
            h, w = u.shape
            inside = masks[:, y0:y0 + h, x0:x0 + w]
            outside = masks.sum(axis=(1, 2)) - inside.sum(axis=(1, 2))
            best = max(int((m & u).sum()) / max(int((m | u).sum()) + int(o), 1) for m, o in zip(inside, outside))
            verdicts[j] = best >= rule.click_iou
        return verdicts


def merge_touching(labels: np.ndarray, judge, features, rule: UnionRule | None = None,
                   candidates: Callable[[int, int], bool] | None = None,
                   join: Callable[[int, int], None] | None = None) -> list[tuple[int, int]]:
    """Join the touching labels of ``labels`` that ``judge`` finds one object; returns the
    ``(kept, joined)`` id pairs in order. ``join(a, b)`` does the joining (default: ``b``'s
    pixels of ``labels`` become ``a``, in place); ``candidates(a, b)``: whether a pair may be
    judged (default all). Each label joins at most once a round (the pair with the longest
    contact first); the labels a round changed are judged again with their neighbours in the
    next (``rule.rounds`` rounds at most)."""
    rule = rule or getattr(judge, "rule", None) or UnionRule()
    if join is None:
        def join(a, b):
            labels[labels == b] = a
    done: list[tuple[int, int]] = []
    changed: set[int] | None = None
    for _ in range(rule.rounds):
        pairs = touching_pairs(labels, rule.min_contact)
        todo = {p: c for p, c in sorted(pairs.items(), key=lambda pc: -pc[1])
                if (changed is None or p[0] in changed or p[1] in changed) and (candidates is None or candidates(*p))}
        if not todo:
            break
        used: set[int] = set()
        changed = set()
        for (a, b), ok in zip(todo, judge(labels, todo, features)):
            if ok and a not in used and b not in used:
                join(a, b)
                used |= {a, b}
                changed.add(a)
                done.append((a, b))
        if not changed:
            break
    return done


def join_touching(labels: np.ndarray, model, transform, features, rule: UnionRule | None = None) -> np.ndarray:
    """``labels`` (one image's, ids 1..n) with the bites labels hold of their neighbours taken
    back (:class:`~.seam.BiteJudge`), then the touching labels that are one object joined
    (:func:`merge_touching` with a :class:`UnionJudge`); the last ids move into the ids the
    joins freed (as :class:`~.stitch.LabelBook` does), so ids stay 1..n and one tile's
    labels equal the image's."""
    labels = labels.copy()
    pairs = touching_pairs(labels, 1)
    for piece, biter, pixels in BiteJudge(model, transform)(labels, pairs, features):
        labels[pixels & ((labels == biter) | (labels == 0))] = piece  # the bite back (seam.BiteJudge)
    done = merge_touching(labels, UnionJudge(model, transform, rule), features, rule)
    if not done:
        return labels
    present = np.bincount(labels.ravel()) > 0
    last = len(present) - 1
    for hole in sorted((b for _, b in done), reverse=True):
        while last > 0 and not present[last]:
            last -= 1
        if hole >= last:
            continue
        labels[labels == last] = hole
        present[hole], present[last] = True, False
    return labels
