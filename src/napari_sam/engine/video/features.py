"""Image features of one frame at a time for the video session, never the whole stack.

Either an :class:`~napari_sam.engine.store.embedding_store.EmbeddingStore` (features computed once
and kept on disk, shared with other tools) or, without one, the frame encoded on demand with
exactly the store's preprocessing (same contrast limits for every frame, the official video
loader's resize) — only the last couple of frames stay in RAM.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import torch

from ..frames import FrameStack
from ..image.family import transform_for
from ..image.preprocess import estimate_contrast_limits, to_uint8_rgb


class FrameFeatures:
    """``get(t)`` -> the model's ``encode_image`` output for frame ``t`` (batch 1).

    ``embeddings``: None (encode on demand), an ``EmbeddingStore``, or a folder path for one.
    ``keep``: how many recent frames stay cached in RAM.
    """

    def __init__(self, model, frames: FrameStack, embeddings=None, contrast_limits=None, keep: int = 2):
        self.model = model
        self.transform = transform_for(model)
        self.frames = frames
        self.keep = max(1, int(keep))
        self._cache: OrderedDict[int, dict[str, torch.Tensor]] = OrderedDict()
        self.store = None
        if isinstance(embeddings, (str, os.PathLike)):
            from ..store.embedding_store import EmbeddingStore

            embeddings = EmbeddingStore(embeddings, model, frames.data, contrast_limits)
        if embeddings is not None:
            if not hasattr(embeddings, "get") or len(embeddings) != len(frames):
                raise ValueError(
                    "embeddings must be an EmbeddingStore (or its folder) for these frames: "
                    f"{len(frames)} frames, store of {len(embeddings) if hasattr(embeddings, '__len__') else '?'}"
                )
            grid = getattr(embeddings, "grid", None)
            if grid is not None:
                raise ValueError(f"the EmbeddingStore was made with {grid.describe()}; this session is not tiled: "
                                 "give VideoSession the store's tile_shape / halo, or an untiled store")
            if getattr(embeddings, "model", model) is not model:
                raise ValueError("the EmbeddingStore was opened with another model object")
            self.store = embeddings
            self.contrast_limits = tuple(embeddings.contrast_limits)
        elif contrast_limits is not None:
            lo, hi = (float(v) for v in contrast_limits)
            self.contrast_limits = (lo, hi)
        else:
            self.contrast_limits = tuple(float(v) for v in estimate_contrast_limits(frames))

    def get(self, t: int) -> dict[str, torch.Tensor]:
        hit = self._cache.get(t)
        if hit is not None:
            self._cache.move_to_end(t)
            return hit
        if self.store is not None:
            feats = self.store.get(t)
        else:
            rgb = to_uint8_rgb(self.frames[t], self.contrast_limits)
            feats = self.transform.encode(rgb, frame=True)  # the store's preprocessing and dtype rule
        # contiguous: the official predictor reaches its blocks through (HW, B, C) views that
        # are contiguous again, and convolutions round differently on other layouts
        feats = {k: v.contiguous() for k, v in feats.items()}
        self._cache[t] = feats
        while len(self._cache) > self.keep:
            self._cache.popitem(last=False)
        return feats

    def clear(self) -> None:
        self._cache.clear()
