"""Propagation of prompted objects through a stack, with divisions (issue #17).

SAM 2 following a cell through mitosis usually goes on covering both daughters with the
mother's mask. With divisions on, each frame the propagation tracks (forward in time) is
checked: when an object's mask falls apart into two daughters
(:func:`napari_sam.lineage.divisions.split_mask`, its default :class:`LineageParams`), the
mother ends on the frame before, and two daughters with new ids begin on that frame, each
prompted with its own mask in the SAM 2 session (its own memory from there on). The
propagation then goes on from the next frame with the daughters in place of the mother.

* Only forward passes look for divisions (backward in time two cells merge into one); a
  ``"both"`` run looks for them in its forward pass.
* The mother is removed from the SAM 2 session (her frames before the division stay as
  written); a new prompt on her makes her a tracked object again.
* A daughter is never yielded before the frame she was born on (a later propagation from
  an earlier frame tracks her there too: those masks are left out).

No Qt, no napari, no locks: :class:`~.session.StackSession` drives :func:`propagate` one frame
per ``next()`` under its lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Divisions:
    """What the propagations of one stack found: ``parents`` ``{daughter: mother}``, ``born``
    ``{daughter: first frame}``, ``ended`` ``{mother: last frame}``."""

    parents: dict[int, int] = field(default_factory=dict)
    born: dict[int, int] = field(default_factory=dict)
    ended: dict[int, int] = field(default_factory=dict)


def _forward_end(n_frames: int, start: int, max_frames: int | None) -> int:
    limit = n_frames if max_frames is None else int(max_frames)
    return min(start + limit, n_frames - 1)


def _split(sess, t: int, obj_ids, logits, found: Divisions, params) -> dict:
    """``{mother: (mask_a, mask_b)}`` of the objects whose tracked mask split on frame ``t``."""
    from napari_sam.lineage.divisions import split_mask

    out = {}
    for obj, lg in zip(obj_ids, logits):
        if found.born.get(obj, -1) >= t or t in sess.prompted_frames(obj):
            continue  # a prompted frame says what the user (or a division) gave it
        parts = split_mask(lg > 0, params)
        if parts is not None:
            out[obj] = parts
    return out


def propagate(sess, direction: str, start: int, max_frames: int | None, found: Divisions,
              new_id: Callable[[], int], params=None) -> Iterator[tuple[int, dict, dict]]:
    """Track every object of the VideoSession ``sess`` from ``start``; yields ``(frame,
    {obj: mask}, {obj: object score or None})``. Divisions found go into ``found``; daughters
    get ids from ``new_id()`` (a new one per call)."""
    passes = {"forward": ["forward"], "backward": ["backward"], "both": ["forward", "backward"]}[direction]
    for way in passes:
        steps = sess.propagate(direction=way, start=start, max_frames=max_frames)
        end = _forward_end(sess.num_frames, start, max_frames)
        while True:
            item = next(steps, None)
            if item is None:
                break
            t, obj_ids, logits = item
            obj_ids = [int(o) if isinstance(o, np.integer) else o for o in obj_ids]
            masks = {o: lg > 0 for o, lg in zip(obj_ids, logits) if found.born.get(o, -1) <= t}
            splits = _split(sess, t, obj_ids, logits, found, params) if way == "forward" else {}
            for mother, parts in splits.items():
                del masks[mother]
                sess.remove_object(mother)
                found.ended[mother] = t - 1
                for part in parts:
                    d = int(new_id())
                    sess.add_mask(t, d, part)
                    found.parents[d], found.born[d] = mother, t
                    masks[d] = part
            scores = sess.object_scores(t)
            yield t, masks, {o: scores.get(o) for o in masks}
            if splits:  # the daughters' prompts count from the next frame on
                steps.close()
                if t >= end:
                    break
                steps = sess.propagate(direction="forward", start=t + 1, max_frames=end - (t + 1))
