"""What a :class:`~napari_sam.engine.video.session.VideoSession` knows about one object.

Mirrors the per-object slices of the official ``SAM2VideoPredictor`` inference state:

=====================  ====================================================================
ours                   official ``inference_state``
=====================  ====================================================================
``prompts``            ``point_inputs_per_obj`` / ``mask_inputs_per_obj`` (one per frame)
``cond``               ``output_dict_per_obj[i]["cond_frame_outputs"]`` (kept in RAM)
``pending``            ``temp_output_dict_per_obj[i]`` (``True``: cond, ``False``: non-cond)
``direction``          ``frames_tracked_per_obj[i]`` (-1 untracked, 0 forward, 1 reverse)
(the session's store)  ``output_dict_per_obj[i]["non_cond_frame_outputs"]`` (on disk)
=====================  ====================================================================

Per-frame arrays are tiny metadata (one byte and one float a frame); everything large per
frame lives in the :class:`~napari_sam.engine.video.memory_store.FrameOutputStore`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ...models.sam2 import NO_OBJ_SCORE
from .memory_store import FrameOutput

UNTRACKED = -1


@dataclass
class PointPrompt:
    """Clicks (and box corners, labels 2 / 3 first) in model-input pixels, batch 1."""

    coords: torch.Tensor  # (1, N, 2) float32
    labels: torch.Tensor  # (1, N) int32

    @property
    def num_points(self) -> int:
        return int(self.labels.shape[1])


@dataclass
class MaskPrompt:
    """A mask resized to the model input: (1, 1, S, S) float 0 / 1."""

    mask: torch.Tensor


@dataclass
class ObjectTrack:
    """Prompts, conditioning outputs and tracking metadata of one object."""

    obj_id: object
    num_frames: int
    prompts: dict[int, PointPrompt | MaskPrompt] = field(default_factory=dict)
    cond: dict[int, FrameOutput] = field(default_factory=dict)
    pending: dict[bool, dict[int, FrameOutput]] = field(
        default_factory=lambda: {False: {}, True: {}}
    )
    direction: np.ndarray = None  # (T,) int8
    scores: np.ndarray = None  # (T,) float32 object-score logits, NaN unknown

    def __post_init__(self) -> None:
        if self.direction is None:
            self.direction = np.full(self.num_frames, UNTRACKED, dtype=np.int8)
        if self.scores is None:
            self.scores = np.full(self.num_frames, np.nan, dtype=np.float32)

    def is_tracked(self, t: int) -> bool:
        return bool(self.direction[t] != UNTRACKED)

    def reverse_on(self, t: int) -> bool:
        """The direction frame ``t`` was last tracked in (True: backward)."""
        return bool(self.direction[t] == 1)

    def has_pending(self) -> bool:
        return bool(self.pending[False] or self.pending[True])


class PassEnds:
    """Objects that end, over one propagation pass (see ``VideoSession``'s docstring).

    ``threshold``: an object-score logit below it blanks the frame's mask (the model blanks
    below 0 itself); ``stop_after``: an object absent (empty mask) on that many tracked frames
    in a row is in :attr:`ended` for the rest of the pass (None: never)."""

    def __init__(self, threshold: float = 0.0, stop_after: int | None = None) -> None:
        self.threshold, self.stop_after = float(threshold), stop_after
        self.runs: dict = {}  # obj_id -> absent tracked frames in a row
        self.ended: set = set()

    @staticmethod
    def blank(low_res: torch.Tensor) -> torch.Tensor:
        return torch.full_like(low_res, NO_OBJ_SCORE)

    def prompted(self, obj_id) -> None:
        """A prompted frame of ``obj_id``: present, and tracked again if it had ended."""
        self.ended.discard(obj_id)
        self.runs[obj_id] = 0

    def observe(self, obj_id, low_res: torch.Tensor, score: float) -> torch.Tensor:
        """The logits to report for a tracked frame of ``obj_id``; counts its absent frames."""
        if score < self.threshold:
            low_res = self.blank(low_res)
        if bool((low_res > 0).any()):
            self.runs[obj_id] = 0
            return low_res
        self.runs[obj_id] = self.runs.get(obj_id, 0) + 1
        if self.stop_after is not None and self.runs[obj_id] >= self.stop_after:
            self.ended.add(obj_id)
        return low_res
