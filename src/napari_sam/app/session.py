"""A session over an image or a stack and one model: what the widget's buttons and clicks run.

A :class:`StackSession` owns, for each stack of frames (a key -> frames mapping; one key ``()``
for a plain image or stack), an on-disk :class:`EmbeddingStore` found by the store-location
rule (:mod:`.store_location`: the same data and model reuse it, also from the command line),
an :class:`ImagePredictor` for single images and slice-by-slice models, and a
:class:`VideoSession` for stacks a SAM 2 model tracks. Every engine call takes ``lock`` (an
``RLock``), so a worker thread's long run and a click's preview interleave frame by frame.
No Qt, no napari: the widget adapts layers to keys and frames and writes the results.

A session holds one tiling (``tile_shape`` / ``halo``, micro-sam's meaning, in image pixels;
None: whole frames; ``"auto"``: from the frames and the model), given to every store, predictor
and VideoSession it opens; :meth:`StackSession.set_tiling` changes it (and drops what was opened
for the old one: stores of another tiling live in other folders, nothing is deleted).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from . import automatic
from .frame_range import propagation_frames, resolve_start
from .prompt_mask import best_mask
from .store_location import StoreLocator


def can_track(model, n_frames: int) -> bool:
    """Whether prompts on a stack are tracked (SAM 2 that tracks, more than one frame) rather
    than segmented slice by slice (SAM 1, a SAM 2 with ``can_track = False``, one image)."""
    return getattr(model, "family", None) == "sam2" and getattr(model, "can_track", True) and int(n_frames) > 1


def no_tracking(action: str) -> str:
    """Why ``action`` (propagation, Track everything) cannot run."""
    return (f"{action} needs a SAM 2 model that tracks and an image stack (this model segments "
            "slice by slice: load a SAM 2.1 model, e.g. the bundled 'embedded', to track).")


class StackSession:
    """Engine state for ``stacks`` (``{key: frames}``, each (T, H, W[, 3]) or one (H, W[, 3])
    image, read lazily; a bare array is ``{(): frames}``) and ``model``. ``cache_root``: where
    stores go (default the shared cache, :func:`~.store_location.embeddings_root`)."""

    def __init__(self, model, stacks, cache_root: Path | None = None, divisions: bool = True,
                 tile_shape=None, halo=None):
        from napari_sam.engine.frames import as_frame_stack

        self.model = model
        self.frames = dict(stacks) if isinstance(stacks, Mapping) else {(): stacks}
        if not self.frames:
            raise ValueError("a session needs at least one stack of frames")
        lengths = {len(as_frame_stack(f)) for f in self.frames.values()}
        if len(lengths) != 1:
            raise ValueError(f"every stack needs the same number of frames, got {sorted(lengths)}")
        self.n_frames = lengths.pop()
        self.locator = StoreLocator(model, cache_root)
        self.lock = threading.RLock()
        self.video = can_track(model, self.n_frames)
        self._stores: dict = {}
        self._sessions: dict = {}
        self._predictor = None
        self._predictor_on: tuple | None = None
        self.closed = False
        #: Propagate looks for divisions (see :mod:`.propagation`); False: an object never branches
        self.divisions = bool(divisions)
        #: ``() -> int``: the caller's first free id (the widget: beyond every label and prompt);
        #: daughters of a division get ids from there on, beyond every object of this session too
        self.first_free_id = None
        self._found: dict = {}
        self._top_id = 0
        self.tile_shape = self.halo = None
        self.set_tiling(tile_shape, halo)

    @property
    def cache_root(self) -> Path:
        return self.locator.root

    # ------------------------------------------------------------------ tiles
    def set_tiling(self, tile_shape=None, halo=None) -> None:
        """Use this tiling from now on (ValueError for bad values, nothing changed then). The
        stores, predictor and VideoSessions of the old tiling are let go: prompts start afresh."""
        for frames in self.frames.values():  # refuse bad values for every stack before changing
            self.locator.grid(frames, tile_shape, halo)
        with self.lock:
            if (tile_shape, halo) == (self.tile_shape, self.halo):
                return
            self.tile_shape, self.halo = tile_shape, halo
            for sess in self._sessions.values():
                sess.close()
            self._sessions.clear()
            self._stores.clear()
            self._predictor = self._predictor_on = None

    def grid(self, key=()):
        """The :class:`~napari_sam.engine.image.tiling.TileGrid` of stack ``key``'s frames (None: whole frames)."""
        return self.locator.grid(self.frames[key], self.tile_shape, self.halo)

    def tiling_text(self, key=()) -> str:
        """"16 tiles (4 x 4) of 192 x 192 px, halo 32 x 32 px", or "whole image"."""
        grid = self.grid(key)
        return "whole image" if grid is None else grid.describe()

    def tiles_per_frame(self, key=()) -> int:
        grid = self.grid(key)
        return 1 if grid is None else len(grid)

    def _tiles(self) -> dict:
        """The tiling keywords for the engine (none when untiled)."""
        if self.tile_shape is None and self.halo is None:
            return {}
        return {"tile_shape": self.tile_shape, "halo": self.halo}

    # ------------------------------------------------------------------ stores
    def store(self, key=()):
        """The stack's EmbeddingStore of the session's tiling (opened or created on first use)."""
        with self.lock:
            if key not in self._stores:
                self._stores[key] = self.locator.open(self.frames[key], **self._tiles())
            return self._stores[key]

    def embedded(self) -> tuple[int, Path | None]:
        """(frames embedded so far, cache folder) over the stores opened so far (cheap)."""
        stores = list(self._stores.values())
        done = sum(len(s) - len(s.missing()) for s in stores)
        return done, (stores[0].path.parent if stores and stores[0].path else None)

    def embedded_tiles(self) -> tuple[int, int]:
        """(tiles embedded so far, tiles in all) over the stores opened so far; an untiled
        store counts its frames."""
        done = total = 0
        for s in list(self._stores.values()):
            n = len(s) * (1 if s.grid is None else len(s.grid))
            total += n
            done += n - len(s.missing_tiles())
        return done, total

    def precompute_iter(self) -> Iterator[tuple[int, int]]:
        """Embed every frame of every stack; yields (done, total) first and after each frame
        (tiled: after each tile, counting tiles). Stopping keeps what is done."""
        stores = [self.store(k) for k in self.frames]
        todo = [(s, s.missing_tiles()) for s in stores]
        total = sum(len(s) * (1 if s.grid is None else len(s.grid)) for s in stores)
        done = total - sum(len(m) for _, m in todo)
        yield done, total
        for s, missing in todo:
            for t, i in missing:
                if self.closed:
                    return
                with self.lock:
                    if s.grid is None:
                        s.get(t)  # encodes and stores the frame
                    else:
                        s.get(t, tile=i)  # encodes and stores the tile
                done += 1
                yield done, total

    # ------------------------------------------------------------------ prompts
    def session(self, key=()):
        """The stack's VideoSession (SAM 2), reading the stack's store."""
        with self.lock:
            if key not in self._sessions:
                from napari_sam.engine.video.session import VideoSession

                self._sessions[key] = VideoSession(self.model, self.frames[key], embeddings=self.store(key),
                                                   **self._tiles())
            return self._sessions[key]

    def predict(self, key, frame: int, obj: int, prompt) -> tuple[np.ndarray, float | None]:
        """(H, W) mask of ``obj`` on one frame for ``prompt`` (anything with ``points`` (N, 2)
        (x, y), ``labels`` (N,) and ``box``), and its object score (None for SAM 1). A stack the
        model tracks adds the prompt to the VideoSession; otherwise :func:`~.prompt_mask.best_mask`."""
        with self.lock:
            if self.video:
                sess = self.session(key)
                logits = sess.add_prompts(frame, obj, points=prompt.points, labels=prompt.labels, box=prompt.box)
                return logits > 0, sess.object_scores(frame).get(obj)
            if self._predictor is None:
                from napari_sam.engine.image.predictor import ImagePredictor

                self._predictor = ImagePredictor(self.model, **self._tiles())
            if self._predictor_on != (key, frame):
                self._predictor.set_frame(self.store(key), frame)
                self._predictor_on = (key, frame)
            choice = best_mask(self._predictor, prompt.points, prompt.labels, prompt.box)
            return choice.mask, choice.object_score

    def forget(self, key, frame: int, obj: int) -> None:
        """The object has no prompt left on this frame."""
        with self.lock:
            sess = self._sessions.get(key)
            if sess is not None and obj in sess.obj_ids:
                sess.clear_frame(frame, obj)

    # ------------------------------------------------------------------ propagation
    def propagation_frames(self, key, direction: str, start: int | None = None, max_frames: int | None = None) -> list[int]:
        """The frames :meth:`propagate_iter` visits, in order (see :mod:`.frame_range`)."""
        start = resolve_start(self._sessions.get(key), start)
        return propagation_frames(self.n_frames, direction, start, max_frames)

    def propagate_length(self, key, direction: str, start: int | None = None, max_frames: int | None = None) -> int:
        """How many frames a propagation yields (for the progress bar)."""
        return len(self.propagation_frames(key, direction, start, max_frames))

    def propagate_iter(self, key, direction: str, start: int | None = None,
                       max_frames: int | None = None) -> Iterator[tuple]:
        """Track every object of stack ``key``; yields (frame, {obj: mask}, {obj: score}).
        With :attr:`divisions` an object whose mask splits in two ends there and two
        daughters with new ids go on (:mod:`.propagation`; :meth:`parents` lists them)."""
        sess = self.session(key)
        with self.lock:
            if not sess.obj_ids:
                return
            start = resolve_start(sess, start)
            if self.divisions:
                from .propagation import Divisions, propagate

                found = self._found.setdefault(key, Divisions())
                steps = propagate(sess, direction, start, max_frames, found, self._new_id)
            else:
                steps = self._plain(sess, direction, start, max_frames)
        while not self.closed:
            with self.lock:
                item = next(steps, None)
                if item is None:
                    return
            yield item

    @staticmethod
    def _plain(sess, direction, start, max_frames):
        for frame, obj_ids, logits in sess.propagate(direction=direction, start=start, max_frames=max_frames):
            scores = sess.object_scores(frame)
            yield frame, {int(o): lg > 0 for o, lg in zip(obj_ids, logits)}, {int(o): scores.get(o) for o in obj_ids}

    def parents(self, key=()) -> dict[int, int]:
        """``{daughter: mother}`` of the divisions the propagations of stack ``key`` found."""
        found = self._found.get(key)
        return dict(found.parents) if found is not None else {}

    def _new_id(self) -> int:
        used = [self._top_id, *(int(o) for s in self._sessions.values() for o in s.obj_ids if isinstance(o, int))]
        used += [d for f in self._found.values() for d in f.parents]
        floor = int((self.first_free_id() if self.first_free_id is not None else None) or 1)
        self._top_id = max(floor, max(used) + 1)
        return self._top_id

    # ------------------------------------------------------------------ automatic
    def segment_everything(self, key, frame: int, params=None, progress=None) -> np.ndarray | None:
        """Segment everything on one frame (its stored features); (H, W) labels 1..n, or None
        when the session was closed."""
        with self.lock:
            if self.closed:
                return None
            seg = automatic.make_segmenter(self.model, params, **self._tiles())
            return automatic.segment_stored_frame(seg, self.store(key), frame, progress)

    def track_everything(self, key=(), params=None, tracking=None, progress=None, stop=None):
        """Track every object of stack ``key`` (SAM 2): yields ``(t, labels)`` frame by frame
        and returns the :class:`~napari_sam.engine.auto.tracking.AutoTracker` when it reached
        the last frame (None when ``stop()`` said so or the session closed). ``progress``: given
        to every detection (raise there to stop a long one)."""
        if not self.video:
            raise ValueError(no_tracking("Track everything"))
        tiles = self._tiles() if self.grid(key) is not None else {}  # "auto" on small frames: none
        automatic.check_tracker_tiling(tiles.get("tile_shape"), tiles.get("halo"))
        with self.lock:
            store = self.store(key)
            seg = automatic.make_segmenter(self.model, params, **tiles)
            tracker = automatic.make_tracker(self.model, seg, tracking, store=store, progress=progress, **tiles)
            steps = tracker.run(self.frames[key], embeddings=store, contrast_limits=store.contrast_limits)
        try:
            while not (self.closed or (stop is not None and stop())):
                with self.lock:
                    item = next(steps, None)
                if item is None:
                    return tracker
                yield item
        finally:
            with self.lock:
                steps.close()
        return None

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Stop and free everything. Never blocks: an engine call in flight finishes first
        (in its own thread), then the sessions are freed."""
        self.closed = True

        def release():
            with self.lock:
                for sess in self._sessions.values():
                    sess.close()
                self._sessions.clear()
                self._stores.clear()
                self._predictor = None

        if self.lock.acquire(blocking=False):
            try:
                release()
            finally:
                self.lock.release()
        else:
            threading.Thread(target=release, name="napari-sam-close", daemon=True).start()
