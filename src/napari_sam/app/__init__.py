"""The application layer: what the widget and the command line both do, without Qt or napari.

It imports the engine and the registry, never ``ui``/``cli``; ``ui`` and ``cli`` import it.
Importing it is cheap (numpy only): the engine and torch load on first use.

Sessions (:mod:`.session`) — the widget's engine state, one object per image layer and model:

* ``StackSession(model, stacks, cache_root=None, divisions=True, tile_shape=None, halo=None)``: ``stacks`` ``{key: frames}`` (a bare array:
  ``{(): frames}``); ``.frames``, ``.n_frames``, ``.video`` (prompts are tracked), ``.lock``,
  ``.closed``; ``store(key)``, ``embedded()``, ``precompute_iter()``, ``session(key)``,
  ``predict(key, frame, obj, prompt) -> (mask, object score)``, ``forget(key, frame, obj)``,
  ``propagation_frames / propagate_length / propagate_iter(key, direction, start=None)``,
  ``segment_everything(key, frame, params, progress)``, ``track_everything(key, params,
  tracking, progress, stop)`` (a generator of ``(t, labels)`` returning the tracker), ``close()``;
  ``.divisions`` (Propagate splits a mask that falls in two), ``.first_free_id``, ``parents(key)``
  (``{daughter: mother}`` found by Propagate; :mod:`.propagation`); ``set_tiling(tile_shape, halo)``,
  ``grid()``, ``tiling_text()``, ``tiles_per_frame()``, ``embedded_tiles()`` (tiles at the image's own pixels);
* ``can_track(model, n_frames)``, ``no_tracking(action)`` (the message when it cannot).

Prompt -> best mask (:mod:`.prompt_mask`): ``wants_multimask(points, box)``, ``best_mask(predictor,
points, labels, box) -> MaskChoice(mask, score, object_score)``, ``paint(shape, choices)`` (higher
predicted IoU painted last), ``segment_objects(predictor, objects, shape)``.

Frame ranges (:mod:`.frame_range`): ``propagation_frames(n_frames, direction, start, max_frames)``,
``first_prompted_frame(session)``, ``resolve_start(session, start)``, ``DIRECTIONS``.

Ids (:mod:`.ids`): ``next_free_id(labels, used)``, ``shift_ids(labels, offset)``,
``shift_past(slices, first_free, dtype)`` (ValueError when they do not fit), ``id_limit(dtype)``,
``object_centroids(labels)``, ``table_rows(t, labels)`` (the tracks table), ``centroid_tracks(labels,
objects, video_axis)`` (napari Tracks data).

Store location (:mod:`.store_location`): ``embeddings_root()``, ``model_key(model)``,
``store_path(root, model_tag, frames)``, ``StoreLocator(model, root).path(frames) / .open(frames)``.

Automatic runs (:mod:`.automatic`): ``auto_params(model, params, **changes)`` (the model's
defaults), ``make_segmenter(model, params, **changes)``, ``segment_stored_frame(segmenter, store, t,
progress)``, ``make_tracker(model, segmenter, tracking, store, contrast_limits, progress, detect)``,
``prompt_detector(model, prompts, contrast_limits)``.

What the widget calls instead of its own copies (the ui keeps layers, Qt and undo):

* ``ui/segmenter.Segmenter(model, layer, geometry)`` -> ``StackSession(model, {key:
  geometry.frames(layer, key) for key in geometry.stack_keys()})`` plus the geometry (same method
  names and results; ``propagate_length`` now by the one frame rule, ``max_frames`` passed on);
  ``embeddings_root`` / ``model_key`` / ``store_path`` -> :mod:`.store_location`;
  ``no_tracking`` -> :func:`.session.no_tracking`;
* ``AutomaticPanel``: ``AutomaticParams.for_model`` -> ``auto_params(model)``; its run bodies ->
  ``session.segment_everything(key, frame, params, progress)`` and ``tracker = yield from
  session.track_everything(key, params, tracking, progress=check, stop=cancelled)``; ``_write``'s
  offset and dtype check -> ``shift_past(slices, max(next_free_id(chosen.data, prompt ids),
  next_free_id(labels.data)), labels.data.dtype)`` (its ValueError is the status line);
* ``labels_writer.next_free_id(layer, used)`` -> ``next_free_id(layer.data, used)``;
  ``labels_writer.centroid_tracks`` -> ``centroid_tracks``; ``automatic_panel.shift_ids`` -> ``shift_ids``.

The command line (``napari_sam.cli``) uses the same: ``best_mask`` / ``segment_objects`` for prompt
files, ``make_segmenter`` / ``make_tracker`` / ``prompt_detector`` for ``--auto`` and ``track``,
``table_rows`` for the tracks table, ``StoreLocator`` for ``--embeddings-cache``.
"""

from .automatic import auto_params, make_segmenter, make_tracker, prompt_detector, segment_stored_frame
from .frame_range import DIRECTIONS, first_prompted_frame, propagation_frames, resolve_start
from .ids import centroid_tracks, id_limit, next_free_id, object_centroids, shift_ids, shift_past, table_rows
from .prompt_mask import MaskChoice, best_mask, paint, segment_objects, wants_multimask
from .session import StackSession, can_track, no_tracking
from .store_location import StoreLocator, embeddings_root, model_key, store_path

__all__ = [
    "DIRECTIONS", "MaskChoice", "StackSession", "StoreLocator", "auto_params", "best_mask", "can_track",
    "centroid_tracks", "embeddings_root", "first_prompted_frame", "id_limit", "make_segmenter", "make_tracker",
    "model_key", "next_free_id", "no_tracking", "object_centroids", "paint", "prompt_detector", "propagation_frames",
    "resolve_start", "segment_objects", "segment_stored_frame", "shift_ids", "shift_past", "store_path", "table_rows",
    "wants_multimask",
]
