"""Automatic tracking: segment everything on one frame, track every object with SAM 2, pick up
newcomers by segmenting again every ``every`` frames; follow divisions, close gaps, end the
tracks of cells that leave.

Rules (all in :class:`TrackingParams`, which inherits the lineage rules' parameters of
:class:`~napari_sam.lineage.LineageParams`):

* **start**: the detector's objects of at least ``min_area`` pixels become tracks 1..n.
* **each frame**: every track's mask is the session's logits > 0; a pixel claimed by several
  tracks goes to the one with the highest logit (so the labels never overlap).
* **division, own mask** (``divisions``, first, on those masks): a track whose mask fell
  apart into two well-separated parts of comparable size (``split_mask``: ``split_min_area``,
  ``split_min_ratio``, ``split_min_separation``) has divided: the mother track ends on the
  frame before (it is removed from the session), two daughter tracks with new ids begin on
  this frame, each prompted with its own part (``session.add_mask``), and
  :attr:`AutoTracker.parents` records ``{daughter: mother}``. Only a track seen on an earlier
  frame can divide.
* **division, waist** (``division_max_neck``, on the tracks that did not split): a mask that
  is one piece of two lobes of comparable size joined by a narrow waist (two touching
  daughters under one mask, :func:`~napari_sam.lineage.lobes.neck_split`) has divided, the
  lobes its daughters, if a held frame shows the mother as one cell (turned down, the mask
  stays whole).
* **division, stretched** (``division_stretch``, :mod:`.tracking_stretch`, on the tracks
  that did not split or show a waist): a mask about as large as on the frame before
  (``division_cover``) that became at once elongated (``division_stretch``, and
  ``division_stretch_rise`` x the frame before: two touching daughters under one convex
  mask) has divided on this frame. The tracker waits: when the track later splits (any rule
  below or above), the division is placed on the frame it stretched (not walked back); when
  that frame is about to leave the look-back buffer, or on the last frame, a mask still that
  long is cut across its long axis (turned down, it stays whole); one round again is dropped.
* **division, kept one daughter** (``division_area_drop``, :mod:`.tracking_sister`): a track
  whose mask shrank to at most that share of its mask on the frame before is probed: a click
  where the other daughter should be (the kept one mirrored through the mother's last
  centroid) for a throw-away session object; a cell there of comparable size, outside every
  track, is the other daughter.
* a daughter does not divide within ``division_min_cycle`` frames of her birth.
* **division frame** (``division_lookback``, :mod:`.tracking_lookback`): the last
  ``division_lookback`` frames are held back before they are yielded (SAM 2 keeps one mask
  over touching daughters, so a split is seen late); on a split the division moves back over
  the held frames on which the mother's mask covered both daughters (``division_cover`` of
  their summed area, elongated: ``division_min_elongation``; the mask *uncut*: with the parts
  that ``one_region`` dropped, as a cell parting shows two pieces before they are far enough
  apart to split), the mother's pixels there shared
  between them (seeded watershed). A split whose mother was much smaller on the frame before
  (it took over a neighbour), lay partly under another track, or covered two cells on every
  held frame, is no division; with ``separate_rejected`` (default) its mask is still split:
  the mother keeps the part over its last mask, the other part is a new object without parent
  (from the first frame it covered).
* With ``one_region`` (default) a track then keeps only its largest connected region: a cell
  is one piece, the rest (speckles, a part of a neighbour) goes back to the background, where
  re-detection can find it; a track whose largest region is under ``min_area`` pixels counts
  as empty on that frame. A track whose centroid moves more than ``max_jump`` times its
  diameter (at least 10 px) from where it last was has gone to another object: it counts as
  empty on that frame.
* **re-detection** (frames ``start + k * every``): first, a track whose mask holds two
  detections of comparable size (``split_by_detections``: ``split_min_cover`` of each inside)
  has divided, as above, the daughters prompted with the two detections. Then a detection
  whose IoU with some track is ``>= match_iou`` is that track (nothing changes); one that is
  less than ``max_covered`` covered by tracked pixels is a new object: if it lies within
  ``max_gap_distance`` px of where a track lost for at most ``max_gap`` frames was last seen,
  it is that track found again (``match_lost``, one-to-one): it gets its id back and the
  session is prompted with it; else it gets the next id (ids are never reused). The rest
  (parts of tracked objects) are ignored.
* **leaving** (``leaving``): a mask touching the border (``border_margin``) that is smaller
  than ``leave_fraction`` x the track's median area over its last frames, or an empty mask
  right after a frame at the border, is a cell that left: its mask is dropped and its track
  ends (removed from the session; the id never comes back).
* **end of a lost track**: a track with an empty mask for more than ``max_gap`` frames in a
  row (gap closing on) or more than ``forget_after`` frames (``max_gap=0``; None: never) is
  removed from the session (it keeps its id in the output; it never comes back).

``divisions=False, max_gap=0, leaving=False`` is the tracker before lineage (issue #17).
The same works for a z-stack (frames = slices): the ids are then 3D instances (there, turn
``divisions`` off). Output is streamed frame by frame (``run`` is a generator), with one
tracks-table row (frame, id, centroid y, centroid x, area) per object and frame in
:attr:`AutoTracker.rows`; :attr:`AutoTracker.parents` and :meth:`AutoTracker.lineage` give
the lineage (CTC tracks, a gap splitting a track).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ...lineage import LineageParams
from ...lineage.regions import region_stats
from .tracking_frames import (drop_jumps, frame_rows, id_persistence, keep_largest_regions,
                              match_detections, overlap_table, resolve_logits)
from .tracking_lineage import LineageBook, lineage_from_rows
from .tracking_lookback import FrameBuffer, keeper, swallowed, walk_back
from .tracking_sister import sister_splits
from .tracking_stretch import back_to, due_cuts, stretch_splits

TRACK_COLUMNS = ("frame", "id", "y", "x", "area")
__all__ = ["TRACK_COLUMNS", "AutoTracker", "TrackingParams", "drop_jumps", "frame_rows", "id_persistence",
           "keep_largest_regions", "match_detections", "overlap_table", "resolve_logits"]


@dataclass
class TrackingParams(LineageParams):
    """The tracker's rules (module docstring) plus the lineage rules' (``LineageParams``)."""

    every: int = 10
    match_iou: float = 0.3
    max_covered: float = 0.5
    min_area: int = 25
    forget_after: int | None = 10
    one_region: bool = True
    max_jump: float | None = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.every < 0:
            raise ValueError("every must be >= 0 (0: detect on the start frame only)")
        if not 0 < self.match_iou <= 1 or not 0 <= self.max_covered <= 1:
            raise ValueError("match_iou must be in (0, 1] and max_covered in [0, 1]")


# ---------------------------------------------------------------------------- tracker
Detector = Callable[[int, np.ndarray], np.ndarray]


class AutoTracker:
    """Track every object of a stack. ``detect(t, frame) -> (H, W) labels`` finds objects
    (default: ``AutomaticSegmenter(model).generate`` on the frame, with the stack's contrast
    limits and, if given, the embedding store's features). ``make_session(frames)`` builds
    the tracker session (default: :class:`~napari_sam.engine.video.session.VideoSession`).
    ``tile_shape`` / ``halo`` (micro-sam's meaning, frame pixels): track and detect tile by
    tile (the session, the store opened from a path and the default segmenter get them);
    both None with a tiled embedding store: the store's tiling.
    """

    def __init__(self, model, params: TrackingParams | None = None, detect: Detector | None = None,
                 segmenter=None, make_session=None, tile_shape=None, halo=None, **changes):
        import dataclasses

        self.model = model
        self.tile_shape, self.halo = tile_shape, halo  # None, None: the store's tiling, if any
        self.params = dataclasses.replace(params or TrackingParams(), **changes)
        self._detect = detect
        self._segmenter = segmenter
        self._make_session = make_session
        self.rows: list[tuple] = []
        self.new_objects: dict[int, int] = {}  # id -> frame it was first detected on
        self._book: LineageBook | None = None
        self._buffer = FrameBuffer(0)
        self._separated: set[tuple[int, int]] = set()  # (mother, frame) split without division
        self._pending: dict[int, int] = {}  # track -> frame its mask stretched (a division to place)
        self._n_frames = 0

    def _default_detector(self, frames, store, limits) -> Detector:
        from .segmenter import AutomaticSegmenter

        seg = self._segmenter or AutomaticSegmenter(self.model, tile_shape=self.tile_shape, halo=self.halo)
        tiled_store = getattr(store, "grid", None) is not None

        def detect(t, frame):
            if tiled_store and seg.tiling(np.shape(frame)) is None:
                return seg.generate(frame, contrast_limits=limits)  # a whole-frame segmenter
            if tiled_store:
                return seg.generate(frame, contrast_limits=limits, tile_features=lambda i: store.get(t, tile=i))
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
        if self.tile_shape is None and self.halo is None and getattr(store, "grid", None) is not None:
            self.tile_shape, self.halo = store.grid.tile_shape, store.grid.halo
        detect = self._detect or self._default_detector(stack, store, limits)
        session = self._session(stack, store, limits)
        p = self.params
        book = LineageBook(p)
        buffer = FrameBuffer(p.division_lookback if p.divisions else 0)
        self._buffer = buffer
        last: dict[int, tuple[float, float, float]] = {}
        detected: set[int] = set()
        next_id = 1
        t = start
        self.rows, self.new_objects, self._book = [], {}, book
        self._separated, self._pending = set(), {}
        self._n_frames = n
        while t < n:
            if not session.obj_ids:  # nothing tracked: detect, else emit an empty frame
                if t == start or (p.every and (t - start) % p.every == 0):
                    detected.add(t)
                    empty = np.zeros(stack.frame_shape, np.int32)
                    next_id, _ = self._add(session, book, t, detect(t, stack[t]), empty, empty, next_id)
                if not session.obj_ids:
                    for item in buffer.push(t, np.zeros(stack.frame_shape, np.int32)):
                        yield self._emit(*item, n, start, progress)
                    t += 1
                    continue
            restart = None
            for ti, ids, logits in session.propagate("forward", start=t):
                raw = resolve_logits(logits, ids)
                divided = False
                for mother, a, b, kind in self._candidates(session, book, ti, raw):
                    next_id, done = self._divide(session, book, ti, mother, (a, b), next_id, kind)
                    divided |= done
                if divided:  # re-track this frame with the daughters as prompts
                    restart = ti
                    break
                labels = keep_largest_regions(raw, p.min_area) if p.one_region else raw
                if p.max_jump is not None:
                    labels = drop_jumps(labels, last, p.max_jump)
                if ti not in detected and p.every and (ti - start) % p.every == 0:
                    detected.add(ti)
                    next_id, changed = self._add(session, book, ti, detect(ti, stack[ti]), labels, raw, next_id)
                    if changed:
                        restart = ti  # re-track this frame with the newcomers as prompts
                        break
                labels, gone = book.observe(ti, labels, ids)
                for item in buffer.push(ti, labels, raw if p.one_region else None):
                    yield self._emit(*item, n, start, progress)
                for i in gone:
                    session.remove_object(i)
                if gone:
                    restart = ti + 1
                    break
            if restart is None:
                break
            t = restart
        for item in buffer.flush():
            yield self._emit(*item, n, start, progress)
        close = getattr(session, "close", None)
        if close is not None:
            close()

    @property
    def parents(self) -> dict[int, int]:
        """``{daughter id: mother id}`` for every division found so far (daughters that made
        it into the labels)."""
        book = self._book
        return {} if book is None else {d: m for d, m in book.parents.items() if d in book.seen}

    def lineage(self):
        """The :class:`~napari_sam.lineage.Lineage` of the last run (CTC tracks: a track with a
        gap is split, the later part with the earlier as parent)."""
        return lineage_from_rows(self.rows, self.parents, self._n_frames)

    # ------------------------------------------------------------------ steps
    def _candidates(self, session, book, t, raw):
        """The splits of frame ``t`` to try as divisions, ``(mother, a, b, kind)``: a mask in
        two pieces (``own_splits``, "split"), one of two lobes (``waist_splits``, "waist"), one
        stretched at once into two cells' shape (``stretch_splits``, "stretch"), a track that
        kept one daughter (``sister_splits``, "sister")."""
        out = [(m, a, b, "split") for m, a, b in book.own_splits(raw, t)]
        out += [(m, a, b, "waist") for m, a, b in book.waist_splits(raw, t, skip={c[0] for c in out})]
        for m, _, _ in stretch_splits(book, self._buffer, raw, t, skip={c[0] for c in out}):
            self._pending.setdefault(m, t)  # divides when it splits, or when due (cut then)
        out += [(m, a, b, "stretch") for m, a, b in due_cuts(self._pending, raw, t, self._n_frames - 1, self.params,
                                                             skip={c[0] for c in out})]
        out += [(m, a, b, "sister") for m, a, b in sister_splits(session, book, self._buffer, raw, t,
                                                                 skip={c[0] for c in out})]
        return out

    def _divide(self, session, book, t, mother, masks, next_id, kind="split") -> tuple[int, bool]:
        """``mother`` split into ``masks`` on frame ``t``: place the division on the first
        held frame where the mother's mask covered both daughters (:mod:`.tracking_lookback`)
        unless it is a mask that took over a neighbour (then, with ``separate_rejected``, the
        two parts become two tracks). A "waist" (one piece of two lobes) divides only if a
        held frame shows the mother as one cell, and stays whole when turned down. A mother
        whose mask stretched on a held frame (``_pending``) divides there (no walk-back);
        a "stretch" cut on its own frame divides on ``t``; both unless swallowed. Returns
        ``(next id, divided)``."""
        p, buffer = self.params, self._buffer
        s = self._pending.pop(mother, None)  # the frame it stretched: the division is there
        if s is not None and s < t and s > book.born.get(mother, t) and buffer.held(s) is not None:
            back, single = back_to(buffer, mother, t, masks, s), True
        elif kind == "stretch":
            back, single = [], True
        else:
            back, single = walk_back(buffer, mother, t, masks, book.born.get(mother, t),
                                     p.division_cover, p.division_min_elongation, p.division_back_neck)
        first = back[-1][0] if back else t
        parts = back[-1][1:] if back else masks
        if ((back or kind == "waist") and not single) or swallowed(buffer, mother, first, parts, p.division_cover):
            if kind in ("waist", "stretch") or not p.separate_rejected or (mother, t) in self._separated:  # once a frame
                return next_id, False
            return self._separate(session, book, t, mother, masks, back, first, next_id), True
        session.remove_object(mother)
        book.end(mother)
        ids = []
        for mask in masks:
            ids.append(next_id)
            next_id = self._start(session, book, t, mask, next_id, parent=mother)
        for f, a, b in back:  # the daughters begin on ``first``; the mother ends the frame before
            labels = buffer.held(f)
            labels[labels == mother] = 0
            labels[a], labels[b] = ids[0], ids[1]
        for i in ids:
            book.born[i] = self.new_objects[i] = first
        return next_id, True

    def _separate(self, session, book, t, mother, masks, back, first, next_id) -> int:
        """A split of ``mother`` that is no division still covers two cells: the mother keeps
        the part over its last mask (:func:`keeper`), the other part becomes a new object
        (no parent) from ``first`` on (the held frames of ``back`` relabelled). Returns the
        next id."""
        self._separated.add((mother, t))
        k = keeper(self._buffer, mother, first, back[-1][1:] if back else masks)
        session.add_mask(t, mother, masks[k])
        new = next_id
        next_id = self._start(session, book, t, masks[1 - k], next_id)
        for f, *parts in back:
            self._buffer.held(f)[parts[1 - k]] = new
        book.born[new] = self.new_objects[new] = first
        return next_id

    def _start(self, session, book, t, mask, next_id, parent=0) -> int:
        session.add_mask(t, next_id, mask)
        book.start(next_id, t, parent)
        self.new_objects[next_id] = t
        return next_id + 1

    def _add(self, session, book, t, detections, tracked, raw, next_id) -> tuple[int, bool]:
        """Re-detection on frame ``t``: divisions, tracks found again, newcomers (module rules).
        Returns ``(next id, whether the session changed)``."""
        from ...lineage import match_lost

        detections = np.asarray(detections)
        if detections.shape != tracked.shape:
            raise ValueError(f"detector gave labels of shape {detections.shape}, frame is {tracked.shape}")
        splits = book.detection_splits(raw, detections, t)
        done = []
        for mother, d1, d2 in splits:
            next_id, divided = self._divide(session, book, t, mother, (detections == d1, detections == d2), next_id)
            if divided:
                done.append((mother, d1, d2))
        splits = done
        if splits:
            used = [d for _, d1, d2 in splits for d in (d1, d2)]
            detections = np.where(np.isin(detections, used), 0, detections)
        _, new = match_detections(tracked, detections, self.params)
        back = {}
        if new and self.params.max_gap > 0:
            det_ids, cents, _ = region_stats(detections)
            where = {int(d): (float(c[0]), float(c[1])) for d, c in zip(det_ids, cents)}
            back = match_lost(book.lost(t), {d: where[d] for d in new}, t, self.params)
        for d in new:
            if d in back:
                session.add_mask(t, back[d], detections == d)
            else:
                next_id = self._start(session, book, t, detections == d, next_id)
        return next_id, bool(splits or new)

    def _emit(self, t, labels, n, start, progress):
        self.rows.extend(frame_rows(t, labels))
        if progress is not None:
            progress(t - start + 1, n - start)
        return t, labels

    def _open_store(self, embeddings, stack, limits):
        if embeddings is None or not isinstance(embeddings, (str, bytes)) and not hasattr(embeddings, "__fspath__"):
            return embeddings
        from ..store.embedding_store import EmbeddingStore

        return EmbeddingStore(embeddings, self.model, stack.data, contrast_limits=limits,
                              tile_shape=self.tile_shape, halo=self.halo)

    def _session(self, stack, store, limits):
        if self._make_session is not None:
            return self._make_session(stack)
        from ..video.session import VideoSession

        return VideoSession(self.model, stack.data, embeddings=store, contrast_limits=limits,
                            tile_shape=self.tile_shape, halo=self.halo)
