"""VideoSession: SAM 2 prompts on some frames of a z-stack / time-lapse, tracked through all.

Semantics are those of the official ``SAM2VideoPredictor`` (sam2 1.1.0, eval mode):

* a prompt on a frame the object was not yet tracked on makes an *initial conditioning
  frame* (segmented like an image, no memory); a prompt on an already tracked frame is a
  *correction* (memory-conditioned, the frame's earlier logits fed back as a mask prompt);
* tracking attends to the conditioning frames plus the ``num_maskmem - 1`` previous frames
  in the direction of travel and up to 16 object pointers; an object whose object score
  says "absent" gets an empty mask and a no-object memory;
* objects can be added at any time; every object is tracked on every propagated frame.

**Objects that end** (``object_score_threshold``, ``stop_after_absent``; off by default, the
official behaviour): on a tracked frame an object is *absent* when its object-score logit is
below ``object_score_threshold`` (the model itself blanks it below 0) or its mask is empty;
absent frames yield an empty mask. With ``stop_after_absent=k`` an object absent on ``k``
tracked frames in a row *ends* for the rest of that pass: it is no longer tracked, its frames
yield empty masks and count as untracked (a prompt there starts it anew); a prompted frame
of it later in the pass takes it up again. Each pass of ``propagate`` starts afresh, so
``"both"`` stops a nucleus at both of its ends in a z-stack. The threshold decides what is
reported, not what the model remembers (memories are the model's own).

``corrections_as_cond`` is the official ``add_all_frames_to_correct_as_cond``. Its default
here is ``True`` (the official default is ``False``): a corrected frame then joins the
conditioning frames and is never re-tracked over, so propagating again re-tracks from the
correction. With ``False`` the official default applies exactly, including its quirk that a
later propagation over a corrected frame re-tracks it without the correction.

Memory stays flat in the number of frames: see :mod:`~napari_sam.engine.video.memory_store` and
``docs/video.md``. Not thread-safe: drive one session from one thread at a time.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from . import steps
from ..frames import as_frame_stack
from .memory_bank import COND, NONCOND, frames_in_reach, memory_layout
from .memory_store import FrameOutput, FrameOutputStore
from .projection_cache import ProjectionCache, prune
from .checks import end_args, frame_index, pass_frames, prompt_args, propagate_args
from .features import FrameFeatures
from .state import UNTRACKED, MaskPrompt, ObjectTrack, PassEnds, PointPrompt



class VideoSession:
    """Track objects through the frames of ``frames`` with a SAM 2 ``model``.

    ``frames``: (T, H, W) or (T, H, W, 3) array-like (numpy, zarr, dask), any dtype, read one
    frame at a time. ``embeddings``: None (frames encoded on demand), an
    :class:`~napari_sam.engine.store.embedding_store.EmbeddingStore` of these frames, or its folder.
    ``contrast_limits``: (lo, hi) for the 8-bit mapping (default: one estimate for the stack).
    ``fill_hole_area``: background specks of up to this many low-res pixels become
    foreground (0 disables; the official default is 8). ``memory_dir``: where per-frame
    memories are spilled (a temporary folder by default, removed on :meth:`close`).
    ``projection_cache_bytes``: RAM for per-memory-frame key / value projections reused
    across frames (see :mod:`~napari_sam.engine.video.projection_cache`; 0 disables).
    ``max_batch``: most objects per batched forward (None: all on a GPU; on a CPU as many as
    keep a batch's memory keys and values within ~32 MiB, which measured fastest there).
    ``tile_shape`` / ``halo``: track at the frames' own pixels, tile by tile (a
    :class:`~napari_sam.engine.video.tiled.TiledVideoSession` is returned; None, or "auto" on
    frames no larger than the model input: the whole frame, as here).
    ``object_score_threshold`` (default 0.0, the model's own rule) / ``stop_after_absent``
    (None: never; k >= 1): objects that end, see the module docstring.
    """

    def __new__(cls, model, frames, embeddings=None, contrast_limits=None, fill_hole_area=8,
                tile_shape=None, halo=None, **options):
        # tiles (``tile_shape`` / ``halo`` as micro-sam's, in frame pixels): a TiledVideoSession
        # (engine/video/tiled.py) with one ordinary session per tile; None: the whole frame
        if cls is VideoSession and (tile_shape is not None or halo is not None):
            grid = _tiling(model, frames, tile_shape, halo)
            if grid is not None:
                from .tiled import TiledVideoSession

                return TiledVideoSession(model, frames, grid, embeddings, contrast_limits, fill_hole_area,
                                         tile_session=VideoSession, **options)
        return super().__new__(cls)

    def __init__(self, model, frames, embeddings=None, contrast_limits=None, fill_hole_area=8,
                 tile_shape=None, halo=None, *, corrections_as_cond: bool = True, memory_dir=None,
                 projection_cache_bytes: int = 0, max_batch: int | None = None,
                 object_score_threshold: float = 0.0, stop_after_absent: int | None = None):
        self.grid = None  # tile_shape / halo resolved to no tiling in __new__
        if getattr(model, "family", None) != "sam2":
            raise ValueError("VideoSession needs a SAM 2 model (napari_sam.load_model('sam2...'))")
        if not getattr(model, "can_track", True):
            import warnings

            warnings.warn(f"{getattr(model, 'name', 'this model')} does not track well (can_track is False): "
                          "propagated masks will be poor; use a SAM 2.1 model that tracks", stacklevel=2)
        if int(fill_hole_area) < 0:
            raise ValueError(f"fill_hole_area must be >= 0, got {fill_hole_area}")
        self.object_score_threshold, self.stop_after_absent = end_args(object_score_threshold, stop_after_absent)
        self.model = model.eval()
        self.cfg = model.config
        self.frames = as_frame_stack(frames)
        self.num_frames = len(self.frames)
        self.frame_shape = tuple(self.frames.frame_shape)
        self.fill_hole_area = int(fill_hole_area)
        self.corrections_as_cond = bool(corrections_as_cond)
        self._features = FrameFeatures(model, self.frames, embeddings, contrast_limits)
        self.contrast_limits = self._features.contrast_limits
        feat = self.cfg.image_size // self.cfg.backbone_stride
        self._store = FrameOutputStore(
            self.num_frames, steps.memory_shape(model), self.cfg.d_model, feat * 4, memory_dir
        )
        self._objects: dict[object, ObjectTrack] = {}
        self._projections = ProjectionCache(projection_cache_bytes) if projection_cache_bytes > 0 else None
        p = next(model.parameters())
        self._device, self._dtype = p.device, p.dtype
        if max_batch is not None and int(max_batch) < 1:
            raise ValueError(f"max_batch must be >= 1 or None, got {max_batch}")
        self.max_batch = steps.auto_batch(model, self._device) if max_batch is None else int(max_batch)
        self._closed = False

    # ------------------------------------------------------------------ info
    @property
    def obj_ids(self) -> list:
        """Object ids in the order their logits are stacked."""
        return list(self._objects)

    def object_scores(self, frame: int) -> dict:
        """``{obj_id: object-score logit}`` on ``frame`` (> 0: visible); unknown ones left out."""
        t = self._frame_index(frame)
        return {oid: float(o.scores[t]) for oid, o in self._objects.items() if np.isfinite(o.scores[t])}

    def prompted_frames(self, obj_id) -> list[int]:
        """Frames holding prompts of ``obj_id``, ascending."""
        return sorted(self._object(obj_id).prompts)

    # ------------------------------------------------------------------ prompts
    def add_prompts(self, frame, obj_id, points=None, labels=None, box=None, clear=True) -> np.ndarray:
        """Clicks and / or a box for ``obj_id`` on ``frame``; returns its (H, W) float32 logits.

        ``points`` (N, 2) (x, y) pixels of the frame, ``labels`` (N,) 1 fg / 0 bg, ``box``
        (x0, y0, x1, y1). ``clear=True`` replaces the object's prompts on this frame;
        ``False`` appends the clicks (a box always replaces).
        """
        self._check_open()
        t, pts, lab, b = prompt_args(frame, points, labels, box, clear, self.frame_shape, self.num_frames)
        obj = self._object(obj_id, create=True)
        coords = torch.zeros(0, 2) if pts is None else torch.tensor(pts, dtype=torch.float32)
        labs = torch.zeros(0, dtype=torch.int32) if lab is None else torch.tensor(lab, dtype=torch.int32)
        coords, labs = coords[None], labs[None]
        if b is not None:
            corners = torch.tensor(b, dtype=torch.float32).reshape(1, 2, 2)
            coords = torch.cat([corners, coords], dim=1)
            labs = torch.cat([torch.tensor([[2, 3]], dtype=torch.int32), labs], dim=1)
        h, w = self.frame_shape
        coords = coords / torch.tensor([w, h]) * self.cfg.image_size
        old = obj.prompts.get(t)
        if not clear and isinstance(old, PointPrompt):
            coords = torch.cat([old.coords, coords], dim=1)
            labs = torch.cat([old.labels, labs], dim=1)
        obj.prompts[t] = PointPrompt(coords, labs)
        return self._run_prompt(obj, t)

    def add_mask(self, frame, obj_id, mask) -> np.ndarray:
        """A (H, W) mask (bool or 0 / non-zero) for ``obj_id`` on ``frame``; returns its logits."""
        self._check_open()
        t = self._frame_index(frame)
        m = np.asarray(mask)
        if m.shape != self.frame_shape:
            raise ValueError(f"mask must have the frame's shape {self.frame_shape}, got {m.shape}")
        obj = self._object(obj_id, create=True)
        x = torch.from_numpy(m != 0)[None, None].float()
        size = self.cfg.image_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            x = (x >= 0.5).float()
        obj.prompts[t] = MaskPrompt(x)
        return self._run_prompt(obj, t)

    @torch.inference_mode()
    def _run_prompt(self, obj: ObjectTrack, t: int) -> np.ndarray:
        prompt = obj.prompts[t]
        # a frame the object was tracked on gets a correction; with no conditioning frame
        # left to correct against (all cleared; the official predictor fails there) it
        # starts over as an initial conditioning frame
        is_init = not obj.is_tracked(t) or not obj.cond
        is_cond = is_init or self.corrections_as_cond
        feats = self._features.get(t)
        memories = None
        if not is_init:
            layout = self._layout(obj, t, obj.reverse_on(t))
            memories = steps.gather_memories([layout], lambda i, f, s: self._fetch(obj, f, s),
                                             self._dtype, self._device, self.model, self._projections,
                                             [obj.obj_id])
        if isinstance(prompt, MaskPrompt):
            out = steps.prompt_step(self.model, feats, self.num_frames, mask=prompt.mask.to(self._device),
                                    memories=memories, fill_hole_area=self.fill_hole_area)
        else:
            prev = self._latest_logits(obj, t, is_cond)
            out = steps.prompt_step(self.model, feats, self.num_frames, points=prompt, memories=memories,
                                    prev_logits=prev, fill_hole_area=self.fill_hole_area)
        obj.pending[is_cond][t] = out
        obj.scores[t] = float(out.score)
        self._store.keep(obj.obj_id, ())
        return steps.to_frame_size(out.low_res[None], self.frame_shape)[0].cpu().numpy()

    def _latest_logits(self, obj: ObjectTrack, t: int, is_cond: bool):
        """The frame's most recent output logits, looked up as the official predictor does."""
        out = obj.pending[is_cond].get(t)
        if out is None:
            out = obj.cond.get(t)
        if out is not None:
            return out.low_res
        if self._store.has(obj.obj_id, t):
            return self._store.get_low_res(obj.obj_id, t)
        return None

    # ------------------------------------------------------------------ edits
    def clear_frame(self, frame, obj_id=None) -> None:
        """Remove the prompts of ``obj_id`` (None: of every object) on ``frame``.

        As the official ``clear_all_prompts_in_frame``: a conditioning output on that frame
        is kept as a plain tracked output, and the frame counts as untracked again.
        """
        t = self._frame_index(frame)
        targets = self._objects.values() if obj_id is None else [self._object(obj_id)]
        for obj in targets:
            obj.prompts.pop(t, None)
            obj.pending[False].pop(t, None)
            obj.pending[True].pop(t, None)
            out = obj.cond.pop(t, None)
            if out is not None:
                self._put(obj, t, out)
                obj.direction[t] = UNTRACKED
            obj.scores[t] = float(self._store.get(obj.obj_id, t).score) if self._store.has(obj.obj_id, t) else np.nan
            self._store.keep(obj.obj_id, ())

    def remove_object(self, obj_id) -> None:
        """Forget ``obj_id``: its prompts, outputs and memories."""
        self._object(obj_id)
        key = self._norm_id(obj_id)
        del self._objects[key]
        self._store.remove_object(key)
        if self._projections is not None:
            self._projections.invalidate_object(key)

    def reset(self) -> None:
        """Forget every object (the frames and their features stay)."""
        self._objects.clear()
        self._store.clear()
        if self._projections is not None:
            self._projections.clear()

    def close(self) -> None:
        """Delete the spilled memories; the session cannot be used afterwards (a running
        :meth:`propagate` ends; closing again does nothing)."""
        self._closed = True
        self.reset()
        self._features.clear()
        self._store.close()

    # ------------------------------------------------------------------ propagation
    def propagate(self, direction: str = "forward", start=None, max_frames=None) -> Iterator:
        """Track every object; yields ``(frame_index, obj_ids, logits (n_obj, H, W) float32)``.

        ``start``: first frame (default: the earliest conditioning frame of any object);
        ``max_frames``: how many frames to go beyond ``start`` (default: to the end), as the
        official ``max_frame_num_to_track``. ``"both"`` runs forward then backward from
        ``start`` (the start frame is yielded by both passes). Backward from frame 0 yields
        nothing. Objects left without any prompt are not tracked (``obj_ids`` lists the
        tracked ones); with none to track it is a ``ValueError``. Arguments are checked, and
        pending prompts consolidated, at the call.

        Edits between two yielded frames apply from the next frame: an object removed or left
        without prompts is no longer tracked nor listed; with none left the run just ends.
        """
        self._check_open()
        start, max_frames = propagate_args(direction, start, max_frames, self.num_frames)
        self._consolidate()
        if start is None:
            start = min(t for o in self._objects.values() for t in o.cond)
        passes = {"forward": [False], "backward": [True], "both": [False, True]}[direction]
        return self._propagate(passes, start, max_frames)

    def _propagate(self, passes, start, max_frames):
        limit = self.num_frames if max_frames is None else int(max_frames)
        for reverse in passes:
            order = pass_frames(reverse, start, limit, self.num_frames)
            ends = PassEnds(self.object_score_threshold, self.stop_after_absent)  # afresh each pass
            for t in order:
                if self._closed or not any(o.cond for o in self._objects.values()):
                    return  # the last tracked object went away between two frames
                yield self._track_frame(t, reverse, ends)

    @torch.inference_mode()
    def _track_frame(self, t: int, reverse: bool, ends: PassEnds | None = None):
        ends = PassEnds() if ends is None else ends
        objs = [o for o in self._objects.values() if o.cond]
        todo = [o for o in objs if t not in o.cond and o.obj_id not in ends.ended]
        tracked: dict[object, torch.Tensor] = {}
        if todo:
            feats = self._features.get(t)
            groups: dict[tuple, list] = {}
            for o in todo:
                lay = self._layout(o, t, reverse)
                groups.setdefault(lay.key, []).append((o, lay))
            batches = [g[i : i + self.max_batch] for g in groups.values() for i in range(0, len(g), self.max_batch)]
            # the image-only layer-0 work once per frame, whatever the number of batches
            shared = self.model.memory_frame_cache(feats["image_embed"]) if len(batches) > 1 else None
            for members in batches:
                layouts = [lay for _, lay in members]
                mems = steps.gather_memories(
                    layouts, lambda i, f, s: self._fetch(members[i][0], f, s), self._dtype, self._device,
                    self.model, self._projections, [o.obj_id for o, _ in members],
                )
                outs = steps.track_step(self.model, feats, self.num_frames, mems, self.fill_hole_area, shared)
                for (o, _), out in zip(members, outs):
                    self._put(o, t, out)
                    tracked[o.obj_id] = out.low_res
                    o.scores[t] = float(out.score)
        reach = frames_in_reach(self.cfg, t, reverse, self.num_frames)
        lows = []
        for o in objs:
            if t in o.cond:  # a prompted frame: present, and taken up again if it had ended
                ends.prompted(o.obj_id)
                low = o.cond[t].low_res
            elif o.obj_id in ends.ended:  # ended in this pass: not tracked here
                self._store.discard(o.obj_id, t)
                o.direction[t], o.scores[t] = UNTRACKED, np.nan
                lows.append(ends.blank(o.cond[next(iter(o.cond))].low_res))
                self._store.keep(o.obj_id, reach)
                continue
            else:
                low = ends.observe(o.obj_id, tracked[o.obj_id], float(o.scores[t]))
            o.direction[t] = 1 if reverse else 0
            lows.append(low)
            self._store.keep(o.obj_id, reach)
        if self._projections is not None:
            prune(self._projections, lambda key: all(src == COND or f in reach for f, src in key[1]))
        logits = steps.to_frame_size(torch.stack(lows), self.frame_shape).cpu().numpy()
        return t, [o.obj_id for o in objs], logits

    @torch.inference_mode()
    def _consolidate(self) -> None:
        """Encode the memories of prompted frames and file them (official preflight)."""
        if not self._objects:
            raise ValueError("no objects yet: add prompts first")
        if not any(o.cond or o.has_pending() for o in self._objects.values()):
            raise ValueError("no object has prompts left: add prompts first")
        by_frame: dict[int, list[FrameOutput]] = {}
        for o in self._objects.values():
            for is_cond in (False, True):
                for t, out in o.pending[is_cond].items():
                    if out.maskmem is None:
                        by_frame.setdefault(t, []).append(out)
        for t, outs in by_frame.items():
            steps.encode_prompted(self.model, self._features.get(t), outs)
        for o in self._objects.values():
            for is_cond in (False, True):
                for t, out in o.pending[is_cond].items():
                    if is_cond:
                        o.cond[t] = out
                        self._changed(o.obj_id, t)
                    else:
                        self._put(o, t, out)
                o.pending[is_cond].clear()
            for t in o.cond:
                self._store.discard(o.obj_id, t)
            self._store.keep(o.obj_id, ())

    # ------------------------------------------------------------------ helpers
    def _put(self, obj: ObjectTrack, t: int, out: FrameOutput) -> None:
        """File a non-conditioning output (disk + RAM window)."""
        self._store.put(obj.obj_id, t, out)
        self._changed(obj.obj_id, t)

    def _changed(self, obj_id, t: int) -> None:
        if self._projections is not None:
            self._projections.invalidate(obj_id, t)

    def _layout(self, obj: ObjectTrack, t: int, reverse: bool):
        return memory_layout(self.cfg, t, reverse, list(obj.cond),
                             lambda f: self._store.has(obj.obj_id, f), self.num_frames)

    def _fetch(self, obj: ObjectTrack, frame: int, source: str) -> FrameOutput:
        if source == COND:
            return obj.cond[frame]
        assert source == NONCOND
        return self._store.get(obj.obj_id, frame)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("this VideoSession is closed: make a new one")

    def _frame_index(self, frame) -> int:
        return frame_index(frame, self.num_frames)

    @staticmethod
    def _norm_id(obj_id):
        return int(obj_id) if isinstance(obj_id, np.integer) else obj_id

    def _object(self, obj_id, create: bool = False) -> ObjectTrack:
        key = self._norm_id(obj_id)
        try:
            hash(key)
        except TypeError:
            raise ValueError(f"object id must be hashable (an int label), got {obj_id!r}") from None
        obj = self._objects.get(key)
        if obj is None:
            if not create:
                raise ValueError(f"unknown object id {obj_id!r}; known: {self.obj_ids}")
            obj = ObjectTrack(key, self.num_frames)
            self._objects[key] = obj
            self._store.add_object(key)
        return obj

    def __repr__(self) -> str:
        return (f"VideoSession({self.num_frames} frames of {self.frame_shape}, "
                f"{len(self._objects)} object(s), model {getattr(self.cfg, 'name', '?')})")


def _tiling(model, frames, tile_shape, halo):
    """The TileGrid for ``tile_shape`` / ``halo`` on these frames, or None (no tiling)."""
    from ..image.tiling import resolve_tiling

    size = int(getattr(getattr(model, "config", None), "image_size", 1024))
    return resolve_tiling(tile_shape, halo, as_frame_stack(frames).frame_shape, size)
