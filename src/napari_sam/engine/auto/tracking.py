"""Automatic tracking: segment everything on one frame, track every object with SAM 2, pick up
newcomers by segmenting again every ``every`` frames.

Rules (all in :class:`TrackingParams`):

* **start**: the detector's objects of at least ``min_area`` pixels become tracks 1..n.
* **each frame**: every track's mask is the session's logits > 0; a pixel claimed by several
  tracks goes to the one with the highest logit (so the labels never overlap). With
  ``one_region`` (default) a track keeps only its largest connected region: a cell is one
  piece, and the rest (speckles, a part of a neighbour, the second daughter of a division)
  goes back to the background, where re-detection can find it; a track whose largest region
  is under ``min_area`` pixels counts as empty on that frame. A track whose centroid moves
  more than ``max_jump`` times its diameter (at least 10 px) from where it last was has gone
  to another object: it counts as empty on that frame.
* **re-detection** (frames ``start + k * every``): a detection whose IoU with some track is
  ``>= match_iou`` is that track (nothing changes); one that is less than ``max_covered``
  covered by tracked pixels is a new object and gets the next id (ids are never reused);
  the rest (parts of tracked objects) are ignored.
* **retirement**: a track with an empty mask for more than ``forget_after`` frames in a row
  is removed from the session (it keeps its id in the output; it never comes back).

The same works for a z-stack (frames = slices): the ids are then 3D instances.
Output is streamed frame by frame (``run`` is a generator), with one tracks-table row
(frame, id, centroid y, centroid x, area) per object and frame in :attr:`AutoTracker.rows`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

TRACK_COLUMNS = ("frame", "id", "y", "x", "area")


@dataclass
class TrackingParams:
    every: int = 10
    match_iou: float = 0.3
    max_covered: float = 0.5
    min_area: int = 25
    forget_after: int | None = 10
    one_region: bool = True
    max_jump: float | None = 2.0

    def __post_init__(self) -> None:
        if self.every < 0:
            raise ValueError("every must be >= 0 (0: detect on the start frame only)")
        if not 0 < self.match_iou <= 1 or not 0 <= self.max_covered <= 1:
            raise ValueError("match_iou must be in (0, 1] and max_covered in [0, 1]")


# ---------------------------------------------------------------------------- pure helpers
def overlap_table(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel counts of every (a-label, b-label) pair: ``(table[na+1, nb+1], area_a, area_b)``."""
    na, nb = int(a.max(initial=0)), int(b.max(initial=0))
    pair = a.astype(np.int64).ravel() * (nb + 1) + b.astype(np.int64).ravel()
    table = np.bincount(pair, minlength=(na + 1) * (nb + 1)).reshape(na + 1, nb + 1)
    return table, table.sum(1), table.sum(0)


def match_detections(tracked: np.ndarray, detections: np.ndarray, params: TrackingParams):
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


# ---------------------------------------------------------------------------- tracker
Detector = Callable[[int, np.ndarray], np.ndarray]


class AutoTracker:
    """Track every object of a stack. ``detect(t, frame) -> (H, W) labels`` finds objects
    (default: ``AutomaticSegmenter(model).generate`` on the frame, with the stack's contrast
    limits and, if given, the embedding store's features). ``make_session(frames)`` builds
    the tracker session (default: :class:`~napari_sam.engine.video.session.VideoSession`).
    """

    def __init__(self, model, params: TrackingParams | None = None, detect: Detector | None = None,
                 segmenter=None, make_session=None, **changes):
        import dataclasses

        self.model = model
        self.params = dataclasses.replace(params or TrackingParams(), **changes)
        self._detect = detect
        self._segmenter = segmenter
        self._make_session = make_session
        self.rows: list[tuple] = []
        self.new_objects: dict[int, int] = {}  # id -> frame it was first detected on

    def _default_detector(self, frames, store, limits) -> Detector:
        from .segmenter import AutomaticSegmenter

        seg = self._segmenter or AutomaticSegmenter(self.model)

        def detect(t, frame):
            feats = None if store is None else store.get(t)
            return seg.generate(frame, contrast_limits=limits, features=feats)

        return detect

    def run(self, frames, embeddings=None, contrast_limits=None, start: int = 0,
            progress: Callable[[int, int], object] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yields ``(t, labels (H, W) int32)`` for ``t = start .. T-1``; ids persist over time."""
        from ..frames import as_frame_stack
        from ..image.preprocess import estimate_contrast_limits

        if self._make_session is None and getattr(self.model, "family", None) != "sam2":
            raise ValueError("automatic tracking needs a SAM 2 model (it tracks with VideoSession)")
        stack = as_frame_stack(frames)
        n = len(stack)
        if not 0 <= start < n:
            raise ValueError(f"start frame {start} out of range for {n} frames")
        limits = tuple(contrast_limits) if contrast_limits is not None else estimate_contrast_limits(stack)
        store = self._open_store(embeddings, stack, limits)
        detect = self._detect or self._default_detector(stack, store, limits)
        session = self._session(stack, store, limits)
        p = self.params
        absent: dict[int, int] = {}
        last: dict[int, tuple[float, float, float]] = {}
        next_id = 1
        t = start
        self.rows, self.new_objects = [], {}
        while t < n:
            if not session.obj_ids:  # nothing tracked: detect, else emit an empty frame
                if t == start or (p.every and (t - start) % p.every == 0):
                    next_id = self._add(session, t, detect(t, stack[t]), np.zeros(stack.frame_shape, np.int32), next_id)
                if not session.obj_ids:
                    yield self._emit(t, np.zeros(stack.frame_shape, np.int32), n, start, progress)
                    t += 1
                    continue
            restart = None
            for ti, ids, logits in session.propagate("forward", start=t):
                labels = resolve_logits(logits, ids)
                if p.one_region:
                    labels = keep_largest_regions(labels, p.min_area)
                if p.max_jump is not None:
                    labels = drop_jumps(labels, last, p.max_jump)
                if ti != t and p.every and (ti - start) % p.every == 0:
                    before = next_id
                    next_id = self._add(session, ti, detect(ti, stack[ti]), labels, next_id)
                    if next_id != before:
                        restart = ti  # re-track this frame with the newcomers as prompts
                        break
                yield self._emit(ti, labels, n, start, progress)
                if self._retire(session, labels, absent, ids):
                    restart = ti + 1
                    break
            if restart is None:
                break
            t = restart
        close = getattr(session, "close", None)
        if close is not None:
            close()

    # ------------------------------------------------------------------ steps
    def _add(self, session, t, detections, tracked, next_id) -> int:
        detections = np.asarray(detections)
        if detections.shape != tracked.shape:
            raise ValueError(f"detector gave labels of shape {detections.shape}, frame is {tracked.shape}")
        _, new = match_detections(tracked, detections, self.params)
        for d in new:
            session.add_mask(t, next_id, detections == d)
            self.new_objects[next_id] = t
            next_id += 1
        return next_id

    def _retire(self, session, labels, absent, ids) -> bool:
        limit = self.params.forget_after
        if limit is None:
            return False
        present = set(np.unique(labels).tolist())
        gone = []
        for i in ids:
            absent[i] = 0 if i in present else absent.get(i, 0) + 1
            if absent[i] > limit:
                gone.append(i)
        for i in gone:
            session.remove_object(i)
        return bool(gone)

    def _emit(self, t, labels, n, start, progress):
        self.rows.extend(frame_rows(t, labels))
        if progress is not None:
            progress(t - start + 1, n - start)
        return t, labels

    def _open_store(self, embeddings, stack, limits):
        if embeddings is None or not isinstance(embeddings, (str, bytes)) and not hasattr(embeddings, "__fspath__"):
            return embeddings
        from ..store.embedding_store import EmbeddingStore

        return EmbeddingStore(embeddings, self.model, stack.data, contrast_limits=limits)

    def _session(self, stack, store, limits):
        if self._make_session is not None:
            return self._make_session(stack)
        from ..video.session import VideoSession

        return VideoSession(self.model, stack.data, embeddings=store, contrast_limits=limits)
