"""Which memories a SAM 2 frame attends to: the official memory-bank selection rules.

Mirrors the bookkeeping of ``SAM2Base._prepare_memory_conditioned_features`` (sam2 1.1.0) in
eval mode, as pure functions of frame indices, so that the video session can decide what to
fetch (from RAM or disk), what to keep in RAM, and which objects can run in one batch:

* spatial memories: the conditioning frames (all of them, or the ``max_cond_frames_in_attn``
  temporally closest: the nearest before, the nearest at/after, then by distance), each with
  temporal slot 0; then the ``num_maskmem - 1`` previous frames in the direction of travel
  (stride ``memory_temporal_stride_for_eval``; the immediately previous frame always), slot
  ``t_pos`` = 1 (farthest) .. ``num_maskmem - 1`` (nearest); frames without an output are
  skipped, and a conditioning frame left out of the selection is used as a plain memory;
* object pointers: those of the selected conditioning frames (only the ones not in the future
  when ``only_obj_ptrs_in_the_past_for_eval``) with a signed (2.1) or absolute (2.0) temporal
  distance, then up to ``min(T, max_obj_ptrs_in_encoder) - 1`` previous frames with distance
  ``t_diff`` = 1, 2, ...; distances are normalised by ``min(T, max_obj_ptrs) - 1``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

COND = "cond"
NONCOND = "noncond"


@dataclass(frozen=True)
class MemoryLayout:
    """The memories one object attends to on one frame.

    ``spatial``: ((t_pos, frame, source), ...) in the official concatenation order;
    ``pointers``: ((temporal distance, frame, source), ...); ``source`` is :data:`COND` (the
    object's conditioning outputs) or :data:`NONCOND` (its tracked / corrected outputs).
    ``ptr_norm``: the divisor of the pointer distances (``min(T, max_ptrs) - 1``).
    """

    frame: int
    reverse: bool
    spatial: tuple[tuple[int, int, str], ...]
    pointers: tuple[tuple[int, int, str], ...]
    ptr_norm: int

    @property
    def key(self) -> tuple:
        """What the batched computation depends on: objects with equal keys share one batch."""
        return (
            tuple(p for p, _, _ in self.spatial),
            tuple(d for d, _, _ in self.pointers),
            self.ptr_norm,
        )

    def frames(self, source: str) -> set[int]:
        """Frames this layout reads from ``source`` (spatial memories or pointers)."""
        return {t for _, t, s in self.spatial + self.pointers if s == source}


def select_cond_frames(frame: int, cond_frames: Sequence[int], max_cond: int) -> tuple[list[int], list[int]]:
    """(selected, unselected) conditioning frames, in the official order.

    ``cond_frames`` in the order the conditioning outputs were stored. ``max_cond == -1``
    (the official default) selects them all.
    """
    cond_frames = list(cond_frames)
    if max_cond == -1 or len(cond_frames) <= max_cond:
        return cond_frames, []
    if max_cond < 2:
        raise ValueError("max_cond_frames_in_attn must allow at least 2 conditioning frames")
    selected: list[int] = []
    before = max((t for t in cond_frames if t < frame), default=None)
    after = min((t for t in cond_frames if t >= frame), default=None)
    for t in (before, after):
        if t is not None:
            selected.append(t)
    rest = sorted((t for t in cond_frames if t not in selected), key=lambda t: abs(t - frame))
    selected += rest[: max_cond - len(selected)]
    return selected, [t for t in cond_frames if t not in selected]


def previous_frames(frame: int, reverse: bool, num_maskmem: int, stride: int) -> list[tuple[int, int]]:
    """((t_pos, frame), ...) of the non-conditioning memory slots, t_pos = 1 .. num_maskmem-1."""
    out = []
    for t_pos in range(1, num_maskmem):
        t_rel = num_maskmem - t_pos  # frames back in the direction of travel
        if t_rel == 1:
            prev = frame + 1 if reverse else frame - 1
        elif not reverse:
            prev = ((frame - 2) // stride) * stride - (t_rel - 2) * stride
        else:
            prev = -(-(frame + 2) // stride) * stride + (t_rel - 2) * stride
        out.append((t_pos, prev))
    return out


def memory_layout(
    cfg,
    frame: int,
    reverse: bool,
    cond_frames: Sequence[int],
    has_output: Callable[[int], bool],
    num_frames: int,
) -> MemoryLayout:
    """The official memory selection for a non-initial frame.

    ``cfg``: the model config (``num_maskmem``, ``max_cond_frames_in_attn``,
    ``memory_temporal_stride_for_eval``, ``use_obj_ptrs_in_encoder``,
    ``max_obj_ptrs_in_encoder``, ``only_obj_ptrs_in_the_past_for_eval``,
    ``use_signed_tpos_enc_to_obj_ptrs``). ``cond_frames``: the object's conditioning frames
    in storage order; ``has_output(t)``: whether the object has a non-conditioning output on
    frame ``t`` (any ``t``, also out of range).
    """
    if not cond_frames:
        raise ValueError("a tracked frame needs at least one conditioning frame")
    selected, unselected = select_cond_frames(frame, cond_frames, cfg.max_cond_frames_in_attn)
    unselected_set = set(unselected)

    def source(t: int) -> str | None:
        if has_output(t):
            return NONCOND
        if t in unselected_set:
            return COND
        return None

    spatial = [(0, t, COND) for t in selected]
    for t_pos, prev in previous_frames(frame, reverse, cfg.num_maskmem, cfg.memory_temporal_stride_for_eval):
        src = source(prev)
        if src is not None:
            spatial.append((t_pos, prev, src))

    pointers: list[tuple[int, int, str]] = []
    max_ptrs = min(num_frames, cfg.max_obj_ptrs_in_encoder)
    if cfg.use_obj_ptrs_in_encoder:
        if cfg.only_obj_ptrs_in_the_past_for_eval:
            ptr_cond = [t for t in selected if (t >= frame if reverse else t <= frame)]
        else:
            ptr_cond = selected
        sign = -1 if reverse else 1
        for t in ptr_cond:
            dist = (frame - t) * sign if cfg.use_signed_tpos_enc_to_obj_ptrs else abs(frame - t)
            pointers.append((dist, t, COND))
        for t_diff in range(1, max_ptrs):
            t = frame + t_diff if reverse else frame - t_diff
            if t < 0 or t >= num_frames:
                break
            src = source(t)
            if src is not None:
                pointers.append((t_diff, t, src))
    return MemoryLayout(frame, reverse, tuple(spatial), tuple(pointers), max_ptrs - 1)


def frames_in_reach(cfg, frame: int, reverse: bool, num_frames: int) -> set[int]:
    """Non-conditioning frames the *next* frame after ``frame`` (in the direction of travel)
    may read: what a propagation has to keep in RAM after processing ``frame``."""
    nxt = frame - 1 if reverse else frame + 1
    keep = {t for _, t in previous_frames(nxt, reverse, cfg.num_maskmem, cfg.memory_temporal_stride_for_eval)}
    if cfg.use_obj_ptrs_in_encoder:
        max_ptrs = min(num_frames, cfg.max_obj_ptrs_in_encoder)
        keep.update(nxt + d if reverse else nxt - d for d in range(1, max_ptrs))
    return {t for t in keep if 0 <= t < num_frames}
