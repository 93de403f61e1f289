"""Automatic runs built one way for the widget and the command line: segment everything on a
frame, track everything through a stack, each with the model's own defaults
(:meth:`~napari_sam.engine.auto.segmenter.AutomaticParams.for_model`) under the caller's changes,
reading features from an embedding store when there is one (a frame is never encoded twice).

``progress(done, total)`` callbacks run in the caller's thread; raising from one stops the run
(the widget's Cancel).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Progress = Callable[[int, int], object]


def auto_params(model, params=None, **changes):
    """The :class:`~napari_sam.engine.auto.segmenter.AutomaticParams` for ``model``: ``params`` as
    given (a dataclass or a dict of fields) or the model's defaults, then ``changes``."""
    import dataclasses

    from napari_sam.engine.auto.segmenter import AutomaticParams

    if isinstance(params, AutomaticParams):
        return dataclasses.replace(params, **changes)
    return AutomaticParams.for_model(model, **{**(params or {}), **changes})


def make_segmenter(model, params=None, **changes):
    """An :class:`~napari_sam.engine.auto.segmenter.AutomaticSegmenter` with :func:`auto_params`."""
    from napari_sam.engine.auto.segmenter import AutomaticSegmenter

    return AutomaticSegmenter(model, auto_params(model, params, **changes))


def segment_stored_frame(segmenter, store, t: int, progress: Progress | None = None) -> np.ndarray:
    """Segment everything on frame ``t`` of an EmbeddingStore's frames: its stored features and
    contrast limits. (H, W) int32 labels 1..n."""
    feats = store.get(int(t))
    return segmenter.generate(store.frames[int(t)], contrast_limits=store.contrast_limits, features=feats,
                              progress=progress)


def make_tracker(model, segmenter=None, tracking=None, store=None, contrast_limits=None,
                 progress: Progress | None = None, detect=None):
    """An :class:`~napari_sam.engine.auto.tracking.AutoTracker` whose detector is ``detect``
    (``(t, frame) -> labels``) or ``segmenter`` (default :func:`make_segmenter`) on the frame,
    with ``store``'s features when a store is given and ``progress`` passed to every detection
    (so raising there stops a long one). ``tracking``: TrackingParams (or None: defaults)."""
    from napari_sam.engine.auto.tracking import AutoTracker

    seg = segmenter if segmenter is not None else make_segmenter(model)
    limits = contrast_limits if contrast_limits is not None else (None if store is None else store.contrast_limits)
    if detect is None:
        def detect(t, frame):
            feats = None if store is None else store.get(int(t))
            return seg.generate(frame, contrast_limits=limits, features=feats, progress=progress)

    return AutoTracker(model, tracking, detect=detect, segmenter=seg)


def prompt_detector(model, prompts: dict[int, dict], contrast_limits):
    """A tracker detector giving the prompted objects of ``prompts`` (``{frame: {id: prompt}}``,
    as :func:`napari_sam.io.read_prompts` reads them) on their frames, ids 1..n in id order
    (the tracker gives them track ids), nothing elsewhere."""
    from napari_sam.engine.image.predictor import ImagePredictor

    from .prompt_mask import segment_objects

    pred = ImagePredictor(model)

    def detect(t, frame):
        objects = prompts.get(int(t), {})
        if not objects:
            return np.zeros(frame.shape[:2], np.int32)
        pred.set_image(frame, contrast_limits=contrast_limits)
        numbered = {k: obj for k, (_, obj) in enumerate(sorted(objects.items()), 1)}
        return segment_objects(pred, numbered, frame.shape[:2])

    return detect
