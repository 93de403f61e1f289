"""Propagation of the tiled video session: every tile's session run in lock-step, frame by
frame, with the hand-overs between tiles made after each frame (see
:mod:`~napari_sam.engine.video.tiled`)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .checks import pass_frames, propagate_args
from .tiled_parts import OUTSIDE, MaskRecord



class TiledPropagation:
    """``propagate`` / ``propagate_windows`` of :class:`~napari_sam.engine.video.tiled.TiledVideoSession`."""

    # ------------------------------------------------------------------ propagation
    def propagate(self, direction: str = "forward", start=None, max_frames=None) -> Iterator:
        """As :meth:`VideoSession.propagate`: yields ``(t, obj_ids, logits (n_obj, H, W))``."""
        windows = self.propagate_windows(direction, start, max_frames)
        return (self._paste(t, ids, parts) for t, ids, parts in windows)

    def propagate_windows(self, direction: str = "forward", start=None, max_frames=None) -> Iterator:
        """As :meth:`propagate`, but yields ``(t, obj_ids, parts)`` with ``parts[i]`` =
        ``((y0, y1, x0, x1), logits (h, w) float32)``: object ``i``'s tile window and its
        logits there (``OUTSIDE`` everywhere else)."""
        self._check_open()
        start, max_frames = propagate_args(direction, start, max_frames, self.num_frames)
        if not self._home:
            raise ValueError("no objects yet: add prompts first")
        self._place_waiting()
        firsts = [f for s in self._sessions.values() for f in _cond_frames(s)]
        if not firsts:
            raise ValueError("no object has prompts left: add prompts first")
        if start is None:  # the earliest conditioning frame, or prompt waiting for its tile
            start = min(firsts + [f for p in self._prompts.values() for f in p])
        limit = self.num_frames if max_frames is None else int(max_frames)
        passes = {"forward": [False], "backward": [True], "both": [False, True]}[direction]
        first = self._start_pass(passes[0], start, limit)  # consolidates now, as the untiled session
        return self._run(passes, start, limit, first)

    def _place_waiting(self) -> None:
        """An object its home no longer tracks (its prompts there cleared) goes to its earliest
        waiting prompt's tile."""
        for key in list(self._home):
            s = self._sessions.get(self._home[key])
            if s is not None and _tracks(s, key):
                continue
            waiting = sorted(set(self._prompts[key]) - self._placed[key])
            if waiting:
                f = waiting[0]
                rec = self._prompts[key][f]
                self._move(key, self._place.best(rec.extent()) if rec.extent() else self._home[key], f, rec)

    def _start_pass(self, reverse: bool, start: int, limit: int) -> dict:
        return {i: self._tile_run(i, reverse, start, limit) for i, s in list(self._sessions.items()) if _live(s)}

    def _tile_run(self, index: int, reverse: bool, start: int, limit: int):
        return self._sessions[index].propagate("backward" if reverse else "forward", start=start, max_frames=limit)

    def _run(self, passes, start: int, limit: int, first: dict):
        for n, reverse in enumerate(passes):
            order = pass_frames(reverse, start, limit, self.num_frames)
            end = order[-1] if len(order) else start  # the pass's last frame
            runs = first if n == 0 else self._start_pass(reverse, start, limit)
            step = -1 if reverse else 1
            try:
                for t in order:
                    if self._closed or not self._home:
                        return
                    out = self._frame(t, runs, reverse, step, abs(end - t))
                    if out is None:
                        return
                    yield out
            finally:
                for g in runs.values():
                    g.close()

    def _frame(self, t: int, runs: dict, reverse: bool, step: int, left: int):
        """One frame of a pass: waiting prompts placed, every tile tracked, hand-overs made."""
        for key in list(self._home):  # a user prompt on t that the home tile does not hold
            if t in self._prompts.get(key, {}) and t not in self._placed[key]:
                rec = self._prompts[key][t]
                box = rec.extent()
                target = self._place.best(box) if box else self._home[key]
                self._move(key, target, t, rec)
                self._restart(runs, target, reverse, t, left)
        results: dict[object, tuple[int, np.ndarray]] = {}
        for i, g in list(runs.items()):
            if i not in self._sessions:
                runs.pop(i).close()
                continue
            try:
                ti, ids, logits = next(g)
            except StopIteration:
                del runs[i]
                continue
            assert ti == t, (ti, t)
            for k, key in enumerate(ids):
                if self._home.get(key) == i:
                    results[key] = (i, logits[k])
        if not results and not runs:
            return None
        restart = set()
        for key, (i, lg) in list(results.items()):
            self._note_score(key, i, t)
            mask = lg > 0
            if not mask.any():
                continue
            rec = MaskRecord.of(mask, self.grid[i].outer[::2])
            target = self._place.handover(i, rec.box)
            if target is not None:
                results[key] = (target, self._move(key, target, t, rec))
                self._note_score(key, target, t)
                restart.add(target)
        for i in restart:
            if left > 0:
                self._restart(runs, i, reverse, t + step, left - 1)
        ids = [k for k in self._home if k in results]
        return t, ids, [(self.grid[results[k][0]].outer, results[k][1]) for k in ids]

    def _restart(self, runs: dict, index: int, reverse: bool, t: int, limit: int) -> None:
        old = runs.pop(index, None)
        if old is not None:
            old.close()
        if index in self._sessions and _live(self._sessions[index]):
            runs[index] = self._tile_run(index, reverse, t, limit)

    def _paste(self, t: int, ids: list, parts: list):
        h, w = self.frame_shape
        out = np.full((len(ids), h, w), OUTSIDE, np.float32)
        for k, ((y0, y1, x0, x1), lg) in enumerate(parts):
            out[k, y0:y1, x0:x1] = lg
        return t, ids, out


def _tracks(session, key) -> bool:
    o = session._objects.get(key)  # same package: the tile session's own object records
    return o is not None and bool(o.cond or o.has_pending())


def _cond_frames(session) -> list[int]:
    return [t for o in session._objects.values() for t in (*o.cond, *o.pending[True], *o.pending[False])]


def _live(session) -> bool:
    return any(o.cond or o.has_pending() for o in session._objects.values())
