"""The engine objects behind one image layer and one model (no Qt, no napari events).

A :class:`Segmenter` owns, per stack of frames, an on-disk :class:`EmbeddingStore` (in a
cache folder keyed by the model and the data's signature, so reopening the same data
reuses it), an :class:`ImagePredictor` for single images, and a :class:`VideoSession` for
stacks (SAM 2). Its methods run in worker threads; ``lock`` serialises every engine call, so
a click's preview can slip in between two frames of a long embedding run.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .geometry import StackGeometry
from .prompts import Prompt


def no_tracking(action: str) -> str:
    """Why ``action`` (propagation, Track everything) cannot run: a SAM 1 model, a SAM 2
    marked ``can_track = False``, or a single image."""
    return (f"{action} needs a SAM 2 model that tracks and an image stack (this model segments "
            "slice by slice: load a SAM 2.1 model, e.g. the bundled 'embedded', to track).")


def embeddings_root() -> Path:
    """Where the widget keeps embedding stores: ``<napari-sam cache>/embeddings``."""
    from napari_sam.registry import cache_dir

    return Path(cache_dir()) / "embeddings"


def model_key(model) -> str:
    from napari_sam.engine.embedding_store import weights_hash

    name = str(getattr(model, "name", None) or getattr(model, "family", "model"))
    return f"{name}-{weights_hash(model)[:16]}"


def store_path(root: Path, model_tag: str, frames) -> Path:
    """``root/<model>/<data signature>.zarr``: same data + same model -> same folder."""
    from napari_sam.engine.frames import data_signature

    sig = json.dumps(data_signature(frames), sort_keys=True, default=str)
    digest = hashlib.blake2b(sig.encode(), digest_size=12).hexdigest()
    return root / model_tag / f"{digest}.zarr"


class Segmenter:
    """Engine state for ``image_layer`` (read through ``geometry``) and ``model``."""

    def __init__(self, model, image_layer, geometry: StackGeometry, cache_root: Path | None = None):
        self.model = model
        self.geometry = geometry
        self.frames = {key: geometry.frames(image_layer, key) for key in geometry.stack_keys()}
        self.cache_root = embeddings_root() if cache_root is None else Path(cache_root)
        self.lock = threading.RLock()
        # SAM 2 propagates through stacks; SAM 1 and a SAM 2 marked as not tracking
        # (``can_track`` False: weights whose memory path is untrained) segment slice by slice
        self.video = (getattr(model, "family", None) == "sam2" and getattr(model, "can_track", True)
                      and geometry.n_frames > 1)
        self._model_tag: str | None = None
        self._stores: dict = {}
        self._sessions: dict = {}
        self._predictor = None
        self._predictor_on: tuple | None = None
        self.closed = False

    # ------------------------------------------------------------------ stores
    def store(self, key):
        """The stack's EmbeddingStore (opened or created on first use)."""
        with self.lock:
            if key not in self._stores:
                import napari_sam as ns

                if self._model_tag is None:
                    self._model_tag = model_key(self.model)
                path = store_path(self.cache_root, self._model_tag, self.frames[key])
                path.parent.mkdir(parents=True, exist_ok=True)
                self._stores[key] = ns.EmbeddingStore(path, self.model, self.frames[key])
            return self._stores[key]

    def embedded(self) -> tuple[int, Path | None]:
        """(slices embedded so far, cache folder) over the stores opened so far (cheap)."""
        stores = list(self._stores.values())
        done = sum(len(s) - len(s.missing()) for s in stores)
        return done, (stores[0].path.parent if stores and stores[0].path else None)

    def precompute_iter(self) -> Iterator[tuple[int, int]]:
        """Embed every frame of every stack; yields (done, total) after each frame."""
        stores = [self.store(k) for k in self.frames]
        total = sum(len(s) for s in stores)
        done = sum(len(s) - len(s.missing()) for s in stores)
        yield done, total
        for s in stores:
            for t in s.missing():
                if self.closed:
                    return
                with self.lock:
                    s.get(t)  # encodes and stores the frame
                done += 1
                yield done, total

    # ------------------------------------------------------------------ prompts
    def session(self, key):
        with self.lock:
            if key not in self._sessions:
                import napari_sam as ns

                self._sessions[key] = ns.VideoSession(self.model, self.frames[key], embeddings=self.store(key))
            return self._sessions[key]

    def predict(self, key, frame: int, obj: int, prompt: Prompt) -> tuple[np.ndarray, float | None]:
        """(H, W) mask of ``obj`` on one slice for ``prompt``, and its object score (or None)."""
        with self.lock:
            if self.video:
                sess = self.session(key)
                logits = sess.add_prompts(frame, obj, points=prompt.points, labels=prompt.labels, box=prompt.box)
                return logits > 0, sess.object_scores(frame).get(obj)
            import napari_sam as ns

            if self._predictor is None:
                self._predictor = ns.ImagePredictor(self.model)
            if self._predictor_on != (key, frame):
                self._predictor.set_frame(self.store(key), frame)
                self._predictor_on = (key, frame)
            single_click = prompt.box is None and prompt.n_points == 1
            res = self._predictor.predict(points=prompt.points, labels=prompt.labels, box=prompt.box, multimask=single_click)
            best = int(np.argmax(res.scores))
            obj_scores = None if res.object_scores is None else np.asarray(res.object_scores).ravel()
            score = None if obj_scores is None else float(obj_scores[min(best, len(obj_scores) - 1)])
            return res.masks[best], score

    def forget(self, key, frame: int, obj: int) -> None:
        """The object has no prompt left on this slice."""
        with self.lock:
            sess = self._sessions.get(key)
            if sess is not None and obj in sess.obj_ids:
                sess.clear_frame(frame, obj)

    def propagate_iter(self, key, direction: str, start: int | None) -> Iterator[tuple]:
        """Track every object of stack ``key``; yields (frame, {obj: mask}, {obj: score})."""
        sess = self.session(key)
        with self.lock:
            if not sess.obj_ids:
                return
            steps = sess.propagate(direction=direction, start=start)
        while not self.closed:
            with self.lock:
                item = next(steps, None)
                if item is None:
                    return
                frame, obj_ids, logits = item
                scores = sess.object_scores(frame)
            yield frame, {int(o): lg > 0 for o, lg in zip(obj_ids, logits)}, {int(o): scores.get(o) for o in obj_ids}

    def propagate_length(self, key, direction: str, start: int | None) -> int:
        """How many frames a propagation yields (for the progress bar)."""
        n = self.geometry.n_frames
        sess = self._sessions.get(key)
        if start is None:
            start = min((f for o in (sess.obj_ids if sess else []) for f in sess.prompted_frames(o)), default=0)
        return {"forward": n - start, "backward": start + 1 if start > 0 else 0, "both": n + 1 if start > 0 else n}[direction]

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
