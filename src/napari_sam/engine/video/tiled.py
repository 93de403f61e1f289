"""TiledVideoSession: SAM 2 tracking on large frames, tile by tile, at the frames' own pixels.

What ``VideoSession(model, frames, ..., tile_shape=..., halo=...)`` builds. The frames are cut
into the tiles of a :class:`~napari_sam.engine.image.tiling.TileGrid`; each tile's outer window
(its core plus the halo) is a stack of its own, embedded separately at the model's input size.

* **One ordinary session per tile**: a :class:`~napari_sam.engine.video.session.VideoSession`
  over a lazy view of the tile's window of every frame, made when a first object lives there
  and closed when the last one leaves. Every tile maps frames to 8 bit with the contrast
  limits of the whole stack (estimated once, or given, or the store's), so tiles have no
  contrast seam. With ``embeddings=`` a tiled ``EmbeddingStore`` of the same grid, the tile
  sessions read its features (``store.get(t, tile=i)``); without one they encode on demand.
* **An object lives in one tile at a time**: the tile whose window gives its prompt the most
  room (distance from a cut window edge). Its id is the same everywhere.
* **Hand-over**: after each tracked frame, an object whose mask comes within half a halo of
  a window edge that is not the image border moves to the tile giving it the most room: it
  is removed from the old tile's session and its current mask is given to the new one on that
  frame (``add_mask``; SAM 2 keeps a mask prompt as the output), with every prompt of the
  user's that fits the new window. A prompt that fits no longer waits here and takes the
  object back to a tile holding it when tracking reaches its frame. An object moving less
  than half a halo per frame is whole when it is handed over.
* **Output** at the full frame size, as the untiled session: ``propagate`` yields
  ``(t, obj_ids, logits (n_obj, H, W) float32)``, each object's tile logits pasted into place
  and :data:`~napari_sam.engine.video.tiled_parts.OUTSIDE` (-1024) elsewhere. That is
  ``4 * H * W`` bytes an object (64 MB for a 4,096² frame): :meth:`propagate_windows` yields
  each object's window and its logits there instead, for memory-bound callers.

Objects larger than a window cannot be whole in one tile: make the halo at least an object
diameter (``tile_shape="auto"`` with ``object_size``). Not thread-safe, as the untiled session.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..frames import as_frame_stack
from .checks import frame_index, prompt_args
from .tiled_parts import OUTSIDE, MaskRecord, Placement, PointsRecord, TileEmbeddings, TileFrames, same_grid
from .tiled_run import TiledPropagation

_OPTIONS = {"corrections_as_cond", "memory_dir", "projection_cache_bytes", "max_batch",
            "object_score_threshold", "stop_after_absent"}  # VideoSession's keywords


class TiledVideoSession(TiledPropagation):
    """Track objects through large frames tile by tile (module docstring). Built by
    ``VideoSession(..., tile_shape=, halo=)``; ``grid`` is the resolved ``TileGrid``; the
    keyword options are those of ``VideoSession``, passed to every tile's session."""

    def __init__(self, model, frames, grid, embeddings=None, contrast_limits=None, fill_hole_area=8, *,
                 tile_session, **options):
        # ``tile_session``: the class of the per-tile sessions (VideoSession passes itself, so
        # this module never imports the session module that routes here)
        self._tile_session = tile_session
        if getattr(model, "family", None) != "sam2":
            raise ValueError("VideoSession needs a SAM 2 model (napari_sam.load_model('sam2...'))")
        if int(fill_hole_area) < 0:
            raise ValueError(f"fill_hole_area must be >= 0, got {fill_hole_area}")
        self.model = model.eval()
        self.frames = as_frame_stack(frames)
        self.num_frames = len(self.frames)
        self.frame_shape = tuple(self.frames.frame_shape)
        if tuple(grid.image_shape) != self.frame_shape:
            raise ValueError(f"the tile grid is for {grid.image_shape} images, frames are {self.frame_shape}")
        self.grid = grid
        self.fill_hole_area = int(fill_hole_area)
        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            raise TypeError(f"VideoSession got unexpected keyword argument(s) {unknown}")
        if options.get("max_batch") is not None and int(options["max_batch"]) < 1:
            raise ValueError(f"max_batch must be >= 1 or None, got {options['max_batch']}")
        self._options = options
        self._store = self._open_store(embeddings, contrast_limits)
        if self._store is not None:
            self.contrast_limits = tuple(float(v) for v in self._store.contrast_limits)
        elif contrast_limits is not None:
            self.contrast_limits = tuple(float(v) for v in contrast_limits)
        else:
            from ..image.preprocess import estimate_contrast_limits

            self.contrast_limits = tuple(float(v) for v in estimate_contrast_limits(self.frames))
        self._place = Placement(grid)
        self._sessions: dict[int, object] = {}  # tile index -> its VideoSession
        self._home: dict[object, int] = {}  # obj id -> tile index, in creation order
        self._prompts: dict[object, dict[int, PointsRecord | MaskRecord]] = {}
        self._placed: dict[object, set[int]] = {}  # frames whose prompts the home session holds
        self._scores: dict[object, np.ndarray] = {}
        self._closed = False

    def _open_store(self, embeddings, contrast_limits):
        if embeddings is None:
            return None
        if isinstance(embeddings, (str, bytes)) or hasattr(embeddings, "__fspath__"):
            from ..store.embedding_store import EmbeddingStore

            embeddings = EmbeddingStore(embeddings, self.model, self.frames.data, contrast_limits,
                                        tile_shape=self.grid.tile_shape, halo=self.grid.halo)
        if not hasattr(embeddings, "get") or len(embeddings) != self.num_frames:
            raise ValueError(f"embeddings must be an EmbeddingStore (or its folder) for these {self.num_frames} frames")
        theirs = getattr(embeddings, "grid", None)
        if not same_grid(theirs, self.grid):
            made = "without tiles" if theirs is None else f"with {theirs.describe()}"
            raise ValueError(f"the EmbeddingStore was made {made}; this session tiles with {self.grid.describe()}: "
                             "give the store's tile_shape / halo, or another store")
        if getattr(embeddings, "model", self.model) is not self.model:
            raise ValueError("the EmbeddingStore was opened with another model object")
        return embeddings

    # ------------------------------------------------------------------ info
    @property
    def obj_ids(self) -> list:
        return list(self._home)

    def tile_of(self, obj_id) -> int:
        """Index of the tile ``obj_id`` lives in now."""
        return self._home[self._known(obj_id)]

    def object_scores(self, frame: int) -> dict:
        t = self._frame_index(frame)
        return {o: float(s[t]) for o, s in self._scores.items() if np.isfinite(s[t])}

    def prompted_frames(self, obj_id) -> list[int]:
        return sorted(self._prompts[self._known(obj_id)])

    # ------------------------------------------------------------------ prompts
    def add_prompts(self, frame, obj_id, points=None, labels=None, box=None, clear=True) -> np.ndarray:
        """As :meth:`VideoSession.add_prompts`, in image pixels; (H, W) logits at full size."""
        self._check_open()
        t, pts, lab, b = prompt_args(frame, points, labels, box, clear, self.frame_shape, self.num_frames)
        key = self._new_key(obj_id)
        old = self._prompts.get(key, {}).get(t)
        if not clear and isinstance(old, PointsRecord) and pts is not None:
            if old.points is not None:
                pts, lab = np.concatenate([old.points, pts]), np.concatenate([old.labels, lab])
            b = old.box
        rec = PointsRecord(None if pts is None else np.asarray(pts, np.float64),
                           None if lab is None else np.asarray(lab), None if b is None else np.asarray(b, np.float64))
        return self._prompt(key, t, rec)

    def add_mask(self, frame, obj_id, mask) -> np.ndarray:
        """As :meth:`VideoSession.add_mask` (a (H, W) mask of the whole frame); a mask larger
        than any tile window is cut to the best one, with a warning."""
        self._check_open()
        t = self._frame_index(frame)
        m = np.asarray(mask)
        if m.shape != self.frame_shape:
            raise ValueError(f"mask must have the frame's shape {self.frame_shape}, got {m.shape}")
        return self._prompt(self._new_key(obj_id), t, MaskRecord.of(m != 0))

    def _prompt(self, key, t: int, rec) -> np.ndarray:
        box = rec.extent()
        home = self._home.get(key)
        if box is None:  # an empty mask: where the object is, else the first tile
            target = 0 if home is None else home
        elif home is not None and self._place.fits(home, box) and self._place.handover(home, box) is None:
            target = home
        else:
            target = self._place.best(box)
            if not self._place.fits(target, box):
                self._refuse_or_warn(key, t, rec, target)
        self._prompts.setdefault(key, {})[t] = rec
        self._scores.setdefault(key, np.full(self.num_frames, np.nan, np.float32))
        if target != home:
            tile_logits = self._move(key, target, t, rec)
        else:
            tile_logits = rec.send(self._sessions[home], t, key, self.grid[home].outer)
            self._placed[key].add(t)
        self._note_score(key, target, t)
        return self._paste_one(target, tile_logits)

    def _refuse_or_warn(self, key, t, rec, target) -> None:
        window = self.grid[target].outer
        if isinstance(rec, PointsRecord):
            y0, y1, x0, x1 = rec.extent()
            if y0 < window[0] or y1 > window[1] or x0 < window[2] or x1 > window[3]:
                raise ValueError(
                    f"the prompts of object {key!r} on frame {t} span {y1 - y0} x {x1 - x0} px, more than one "
                    f"tile window ({self.grid.describe()}): use a larger tile_shape / halo"
                )
        else:
            warnings.warn(f"the mask of object {key!r} on frame {t} does not fit in one tile window "
                          f"({self.grid.describe()}): the part outside tile {target}'s window is dropped; "
                          "use a halo of at least an object's diameter", UserWarning, stacklevel=4)

    # ------------------------------------------------------------------ moving between tiles
    def _session(self, index: int, create: bool = True):
        s = self._sessions.get(index)
        if s is None and create:
            tile = self.grid[index]
            emb = None if self._store is None else TileEmbeddings(self._store, index)
            s = self._tile_session(self.model, TileFrames(self.frames, tile.outer), embeddings=emb,
                             contrast_limits=self.contrast_limits, fill_hole_area=self.fill_hole_area, **self._options)
            self._sessions[index] = s
        return s

    def _leave(self, key) -> None:
        """Take ``key`` out of its home tile's session (closed when no object is left)."""
        home = self._home.get(key)
        s = self._sessions.get(home)
        if s is not None and key in s.obj_ids:
            s.remove_object(key)
            if not s.obj_ids:
                s.close()
                del self._sessions[home]

    def _move(self, key, target: int, t: int, current) -> np.ndarray:
        """Make tile ``target`` the home of ``key``: its prompts that fit there go along, then
        ``current`` (a prompt record or the mask it has now) on frame ``t``; returns the tile
        logits on ``t``."""
        self._leave(key)
        self._home[key] = target
        s = self._session(target)
        window = self.grid[target].outer
        placed = set()
        for f, rec in sorted(self._prompts.get(key, {}).items()):
            box = rec.extent()
            if f != t and (box is None or self._place.fits(target, box)):
                rec.send(s, f, key, window)
                placed.add(f)
        out = current.send(s, t, key, window)
        placed.add(t)  # a user prompt on t, or the mask the old tile made with it
        self._placed[key] = placed
        return out

    # ------------------------------------------------------------------ edits
    def clear_frame(self, frame, obj_id=None) -> None:
        """As :meth:`VideoSession.clear_frame`."""
        t = self._frame_index(frame)
        keys = list(self._home) if obj_id is None else [self._known(obj_id)]
        for key in keys:
            self._prompts[key].pop(t, None)
            s = self._sessions.get(self._home[key])
            if s is not None and key in s.obj_ids:
                s.clear_frame(t, key)
            self._placed[key].discard(t)
            self._note_score(key, self._home[key], t)

    def remove_object(self, obj_id) -> None:
        """Forget ``obj_id``: its prompts, outputs and memories, in whichever tile."""
        key = self._known(obj_id)
        self._leave(key)
        for d in (self._home, self._prompts, self._placed, self._scores):
            d.pop(key, None)

    def reset(self) -> None:
        """Forget every object (every tile session is closed)."""
        for s in self._sessions.values():
            s.close()
        for d in (self._sessions, self._home, self._prompts, self._placed, self._scores):
            d.clear()

    def close(self) -> None:
        """Close every tile's session; this session cannot be used afterwards."""
        self._closed = True
        self.reset()

    # ------------------------------------------------------------------ helpers
    def _paste_one(self, index: int, tile_logits: np.ndarray) -> np.ndarray:
        y0, y1, x0, x1 = self.grid[index].outer
        out = np.full(self.frame_shape, OUTSIDE, np.float32)
        out[y0:y1, x0:x1] = tile_logits
        return out

    def _note_score(self, key, index: int, t: int) -> None:
        s = self._sessions.get(index)
        o = None if s is None else s._objects.get(key)  # the tile session's record (same package)
        self._scores[key][t] = np.nan if o is None else o.scores[t]

    def _new_key(self, obj_id):
        key = int(obj_id) if isinstance(obj_id, np.integer) else obj_id
        try:
            hash(key)
        except TypeError:
            raise ValueError(f"object id must be hashable (an int label), got {obj_id!r}") from None
        return key

    def _known(self, obj_id):
        key = self._new_key(obj_id)
        if key not in self._home:
            raise ValueError(f"unknown object id {obj_id!r}; known: {self.obj_ids}")
        return key

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("this VideoSession is closed: make a new one")

    def _frame_index(self, frame) -> int:
        return frame_index(frame, self.num_frames)

    def __repr__(self) -> str:
        return (f"VideoSession({self.num_frames} frames of {self.frame_shape}, {len(self._home)} object(s) "
                f"in {len(self._sessions)} of {self.grid.describe()}, model {getattr(self.model.config, 'name', '?')})")
