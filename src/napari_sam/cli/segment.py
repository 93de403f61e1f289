"""``napari-sam segment``: labels from a prompt file (the best mask per object, as the widget's
clicks) or of everything (the model's automatic defaults under the options given). With
``--tile``: at the image's own pixel size, tile by tile (progress counts tiles)."""

from __future__ import annotations

from pathlib import Path

from .common import cached_stores, check_paths, frame_hw, input_grid, limits, outputs, progress, specs, tile_kwargs
from .parser import auto_changes, tiling


def cmd_segment(args) -> int:
    from ..io import InputError, LabelsWriter, check_target
    from ..jobs import ModelCache, Runner, blocks, embed_frames, frame_count, segment_frames

    tiles = tiling(args)
    model_spec, inputs = specs(args)
    outs = outputs(args, "_labels.tif")
    check_paths(args, [("the output", o) for o in outs])
    for out in outs:
        check_target(out, "labels", args.overwrite)
    models = ModelCache()
    if args.prompts:
        if len(inputs) > 1:
            raise InputError("--prompts works on one input")
        return _segment_prompts(args, models.get(model_spec), inputs[0], outs[0], tiles)
    params = _method(args, models.get(model_spec), auto_changes(args))
    stores = cached_stores(args, models, model_spec, inputs, tiles)
    if args.embeddings_cache:  # the cache's stores are outputs too
        check_paths(args, [("the output", o) for o in outs] + [("the cached embedding store", s) for s in stores])
    opened = [src.open() for src in inputs]
    grids = [input_grid(tiles, f, models.get(model_spec)) if tiles != (None, None) else None for f, _ in opened]
    runner = Runner(args.scheduler, args.workers, models=models)
    try:
        for src, out, store, (frames, axis), grid in zip(inputs, outs, stores, opened, grids):
            n = frame_count(frames, axis)
            lims = limits(args, frames, store, models.get(model_spec) if store else None, tiles)
            desc = f"segment {Path(src.path).name}"
            with LabelsWriter(out, frame_hw(frames, axis), None if axis is None else n, axes=f"{axis or ''}YX",
                              overwrite=args.overwrite) as wr:
                if grid is not None:
                    _segment_tiled(args, runner, model_spec, src, store, n, params, lims, tiles, len(grid), wr, desc)
                    continue
                if store:
                    embed_frames(model_spec, src, store, [], lims, models=models)  # claim it before the workers
                bar = progress(n, desc, args.quiet)
                units = [(model_spec, src, b, params, lims, store) for b in blocks(n, args.frames_per_task)]
                for labels_block in runner.map(segment_frames, units):
                    for labels in labels_block:
                        wr.write(labels)
                        bar.update(1)
                bar.close()
    finally:
        runner.close()
    return 0


def _method(args, model, params: dict) -> dict:
    """``params`` with ``point_grid=True`` for ``--point-grid``. A model with a decoder runs AIS,
    tiled or not: point-grid options without ``--point-grid`` are refused (they would be
    ignored)."""
    from ..app.automatic import has_ais_decoder
    from ..io import InputError

    if getattr(args, "point_grid", False):
        return {**params, "point_grid": True}
    if has_ais_decoder(model) and params:
        flags = " ".join("--" + k.replace("_", "-") for k in params)
        raise InputError(f"{flags}: point-grid options, but this model segments everything with its "
                         "instance-segmentation decoder (AIS): add --point-grid to use the point grid")
    return params


def segment_tiled_frames(model_spec, source, frames_todo, params: dict, contrast_limits, store_path, tile_shape,
                         halo, models=None, progress=None) -> list:
    """A unit: segment everything tile by tile on each of ``frames_todo`` (features from the
    tiled store at ``store_path`` when given); their (H, W) int32 labels, in order.
    ``progress(done, total)``: after each tile of each frame."""
    from ..app.automatic import make_segmenter, stored_features
    from ..jobs import frame_at

    model = model_spec.load() if models is None else models.get(model_spec)
    frames, axis = source.open()
    store = None
    if store_path is not None:
        from ..engine.store.embedding_store import EmbeddingStore

        store = EmbeddingStore(store_path, model, frames, contrast_limits=contrast_limits, tile_shape=tile_shape,
                               halo=halo)
    seg = make_segmenter(model, tile_shape=tile_shape, halo=halo, **params)
    out = []
    for t in frames_todo:
        feats = {} if store is None else stored_features(store, int(t))
        out.append(seg.generate(frame_at(frames, axis, int(t)), contrast_limits=contrast_limits, progress=progress,
                                **feats))
    return out


def _segment_tiled(args, runner, model_spec, src, store, n, params, lims, tiles, n_tiles, wr, desc) -> None:
    """Segment everything on every frame tile by tile, the bar counting tiles: in this process
    (one local worker), else frames through ``runner`` (``--frames-per-task`` per unit)."""
    from ..jobs import blocks

    if store:  # make (claim) the tiled store before any worker opens it
        from ..engine.store.embedding_store import EmbeddingStore

        frames, _ = src.open()
        EmbeddingStore(store, runner.models.get(model_spec), frames, contrast_limits=lims, **tile_kwargs(tiles))
    bar = progress(n * n_tiles, f"{desc} ({n_tiles} tiles)", args.quiet, unit="tile")
    if runner.scheduler is None and runner.workers <= 1:
        for t in range(n):
            base = t * n_tiles

            def step(done, total, base=base):
                bar.n = base + int(done)
                bar.refresh()

            (labels,) = segment_tiled_frames(model_spec, src, [t], params, lims, store, *tiles,
                                             models=runner.models, progress=step)
            wr.write(labels)
    else:
        units = [(model_spec, src, b, params, lims, store, *tiles) for b in blocks(n, args.frames_per_task)]
        for labels_block in runner.map(segment_tiled_frames, units):
            for labels in labels_block:
                wr.write(labels)
                bar.update(n_tiles)
    bar.close()


def _segment_prompts(args, model, src, out, tiles=(None, None)) -> int:
    from ..app.prompt_mask import segment_objects
    from ..engine.image.predictor import ImagePredictor
    from ..io import LabelsWriter, read_prompts
    from ..jobs import frame_at, frame_count

    frames, axis = src.open()
    n = frame_count(frames, axis)
    hw = frame_hw(frames, axis)
    prompts = read_prompts(args.prompts, hw, n)
    grid = input_grid(tiles, frames, model) if tiles != (None, None) else None
    lims = limits(args, frames)
    pred = ImagePredictor(model, **tile_kwargs(tiles))
    if grid is None:
        bar = progress(n, f"segment {Path(src.path).name}", args.quiet)
    else:  # the bar counts the tiles embedded (frames without prompts are not embedded)
        bar = progress(len(prompts) * len(grid), f"segment {Path(src.path).name} ({len(grid)} tiles)", args.quiet,
                       unit="tile")
    with LabelsWriter(out, hw, None if axis is None else n, axes=f"{axis or ''}YX", overwrite=args.overwrite) as wr:
        for t in range(n):
            if t in prompts:
                base = bar.n
                pred.set_image(frame_at(frames, axis, t), contrast_limits=lims,
                               progress=None if grid is None else (lambda d, _, b=base: _to(bar, b + d)))
                wr.write(segment_objects(pred, prompts[t], hw))
            else:
                import numpy as np

                wr.write(np.zeros(hw, np.int32))
            if grid is None:
                bar.update(1)
    bar.close()
    return 0


def _to(bar, n) -> None:
    bar.n = int(n)
    bar.refresh()
