"""Automatic runs built one way for the widget and the command line: segment everything on a
frame, track everything through a stack, each with the model's own defaults
(:meth:`~napari_sam.engine.auto.segmenter.AutomaticParams.for_model`) under the caller's changes,
reading features from an embedding store when there is one (a frame is never encoded twice).

``progress(done, total)`` callbacks run in the caller's thread; raising from one stops the run
(the widget's Cancel).

Tiles (``tile_shape`` / ``halo``, micro-sam's meaning, see
:mod:`napari_sam.engine.image.tiling`): the segmenter segments tile by tile (progress per
tile); a tiled store's features are read per tile. The tracker takes the tiling only once
:class:`~napari_sam.engine.auto.tracking.AutoTracker` does (:func:`tracker_takes_tiles`);
until then a tiled tracking run is refused (:func:`check_tracker_tiling`).

AIS: a model with micro-sam's decoder (``load_model("vit_b_lm")``) segments everything with it
(:class:`~napari_sam.engine.auto.ais.AisSegmenter`, tiled or not) unless the point grid is
asked for (``point_grid=True`` or point-grid parameters).
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


def has_ais_decoder(model) -> bool:
    """Whether ``model`` carries micro-sam's instance-segmentation decoder (``ais_decoder_state``)."""
    return getattr(model, "ais_decoder_state", None) is not None


def segmenter_method(model, params=None, tile_shape=None, halo=None, point_grid=None, **changes) -> str:
    """``"ais"`` or ``"grid"``: which segmenter :func:`make_segmenter` builds. AIS when the model
    has a decoder, unless ``point_grid`` is true or point-grid parameters are given (an
    AutomaticParams or its fields in ``changes``); tiled or not (``tile_shape`` / ``halo`` do
    not change the method)."""
    from napari_sam.engine.auto.ais import AisParams
    from napari_sam.engine.auto.segmenter import AutomaticParams

    if point_grid or not has_ais_decoder(model):
        return "grid"
    if isinstance(params, AisParams):
        return "ais"
    grid_fields = set(AutomaticParams.__dataclass_fields__)
    if isinstance(params, AutomaticParams) or (isinstance(params, dict) and set(params) & grid_fields):
        return "grid"
    return "grid" if set(changes) & grid_fields else "ais"


def make_segmenter(model, params=None, tile_shape=None, halo=None, point_grid=None, **changes):
    """The segment-everything engine for ``model``: :class:`~napari_sam.engine.auto.ais.AisSegmenter`
    (micro-sam's decoder, ``params`` an AisParams or None, ``changes`` its fields) where
    :func:`segmenter_method` says ``"ais"``, else an
    :class:`~napari_sam.engine.auto.segmenter.AutomaticSegmenter` (the point grid) with
    :func:`auto_params`; either with the tiling ``tile_shape`` / ``halo`` (None: the whole
    image). ``point_grid=True``: the point grid even when the model has a decoder."""
    from napari_sam.engine.auto.ais import AisParams, AisSegmenter
    from napari_sam.engine.auto.segmenter import AutomaticSegmenter

    tiles = {} if tile_shape is None and halo is None else {"tile_shape": tile_shape, "halo": halo}
    if segmenter_method(model, params, tile_shape, halo, point_grid, **changes) == "ais":
        return AisSegmenter(model, params if isinstance(params, AisParams) else None, **tiles, **changes)
    if isinstance(params, AisParams):
        params = None  # AIS parameters, but the point grid asked for: its model defaults
    ais_fields = set(AisParams.__dataclass_fields__)
    changes = {k: v for k, v in changes.items() if k not in ais_fields}
    return AutomaticSegmenter(model, auto_params(model, params, **changes), **tiles)


def stored_features(store, t: int) -> dict:
    """``generate`` keywords reading frame ``t``'s features from ``store``: ``features=`` for an
    untiled store, ``tile_features=`` (tile index -> features) for a tiled one."""
    t = int(t)
    if getattr(store, "grid", None) is None:
        return {"features": store.get(t)}
    return {"tile_features": lambda i: store.get(t, tile=int(i))}


def segment_stored_frame(segmenter, store, t: int, progress: Progress | None = None) -> np.ndarray:
    """Segment everything on frame ``t`` of an EmbeddingStore's frames: its stored features and
    contrast limits. (H, W) int32 labels 1..n. A tiled store needs a segmenter of the same
    tiling; its frame is read one tile window at a time."""
    if getattr(store, "grid", None) is not None:
        from napari_sam.engine.image.tiled import FrameView

        frame = FrameView(store.frames, int(t))
    else:
        frame = store.frames[int(t)]
    return segmenter.generate(frame, contrast_limits=store.contrast_limits, progress=progress,
                              **stored_features(store, t))


def tracker_takes_tiles() -> bool:
    """Whether :class:`~napari_sam.engine.auto.tracking.AutoTracker` takes ``tile_shape`` / ``halo``."""
    import inspect

    from napari_sam.engine.auto.tracking import AutoTracker

    params = inspect.signature(AutoTracker.__init__).parameters
    return "tile_shape" in params and "halo" in params


NO_TILED_TRACKING = ("tracking everything on tiles is not available yet (the automatic tracker does not take "
                     "a tiling): track without tiles")


def check_tracker_tiling(tile_shape, halo) -> None:
    """ValueError when a tiling is asked of a tracker that cannot take one (not yet)."""
    if (tile_shape is not None or halo is not None) and not tracker_takes_tiles():
        raise ValueError(NO_TILED_TRACKING)


def make_tracker(model, segmenter=None, tracking=None, store=None, contrast_limits=None,
                 progress: Progress | None = None, detect=None, tile_shape=None, halo=None):
    """An :class:`~napari_sam.engine.auto.tracking.AutoTracker` whose detector is ``detect``
    (``(t, frame) -> labels``) or ``segmenter`` (default :func:`make_segmenter`) on the frame,
    with ``store``'s features when a store is given and ``progress`` passed to every detection
    (so raising there stops a long one). ``tracking``: TrackingParams (or None: defaults).
    ``tile_shape`` / ``halo``: given to the tracker (ValueError while it takes none, see
    :func:`check_tracker_tiling`); the default segmenter gets them too."""
    from napari_sam.engine.auto.tracking import AutoTracker

    check_tracker_tiling(tile_shape, halo)
    seg = segmenter if segmenter is not None else make_segmenter(model, tile_shape=tile_shape, halo=halo)
    limits = contrast_limits if contrast_limits is not None else (None if store is None else store.contrast_limits)
    if detect is None:
        def detect(t, frame):
            feats = {} if store is None else stored_features(store, t)
            return seg.generate(frame, contrast_limits=limits, progress=progress, **feats)

    tiles = {} if tile_shape is None and halo is None else {"tile_shape": tile_shape, "halo": halo}
    return AutoTracker(model, tracking, detect=detect, segmenter=seg, **tiles)


def prompt_detector(model, prompts: dict[int, dict], contrast_limits, tile_shape=None, halo=None):
    """A tracker detector giving the prompted objects of ``prompts`` (``{frame: {id: prompt}}``,
    as :func:`napari_sam.io.read_prompts` reads them) on their frames, ids 1..n in id order
    (the tracker gives them track ids), nothing elsewhere. ``tile_shape`` / ``halo``: the
    predictor's tiling."""
    from napari_sam.engine.image.predictor import ImagePredictor

    from .prompt_mask import segment_objects

    pred = ImagePredictor(model, tile_shape=tile_shape, halo=halo)

    def detect(t, frame):
        objects = prompts.get(int(t), {})
        if not objects:
            return np.zeros(frame.shape[:2], np.int32)
        pred.set_image(frame, contrast_limits=contrast_limits)
        numbered = {k: obj for k, (_, obj) in enumerate(sorted(objects.items()), 1)}
        return segment_objects(pred, numbered, frame.shape[:2])

    return detect
