"""``napari-sam track``: every object (or the prompted ones) tracked through a stack; labels and
a tracks table (frame, id, centroid y, centroid x, area), written together or not at all."""

from __future__ import annotations

from pathlib import Path

from .common import cached_stores, check_paths, frame_hw, limits, progress, specs
from .embed import fill_store
from .parser import auto_changes


def cmd_track(args) -> int:
    from ..app.automatic import make_segmenter, make_tracker, prompt_detector
    from ..app.ids import TABLE_COLUMNS, table_rows
    from ..engine.auto.tracking import TrackingParams
    from ..io import InputError, LabelsWriter, check_target, commit_together, nothing_kept, read_prompts, write_csv
    from ..jobs import ModelCache, Runner, frame_count

    model_spec, inputs = specs(args)
    if len(inputs) != 1 or not args.output:
        raise InputError("track takes one input and -o OUTPUT")
    src, out, tracks = inputs[0], Path(args.output), Path(args.tracks)
    check_paths(args, [("the output", out), ("the --tracks table", tracks)])
    check_target(out, "labels", args.overwrite)
    check_target(tracks, "table", args.overwrite, header=TABLE_COLUMNS)
    frames, axis = src.open()
    if axis is None:
        raise InputError(f"{src.path}: one 2-D image; track needs a stack (T or Z axis)")
    n = frame_count(frames, axis)
    hw = frame_hw(frames, axis)
    models = ModelCache()
    store = cached_stores(args, models, model_spec, inputs)[0]
    if args.embeddings_cache:
        check_paths(args, [("the output", out), ("the --tracks table", tracks), ("the cached embedding store", store)])
    model = models.get(model_spec)
    lims = limits(args, frames, store, model)
    if store:  # every frame's features once, in parallel, then tracking reads them
        runner = Runner(args.scheduler, args.workers, models=models)
        try:
            fill_store(runner, model_spec, src, store, n, lims, args.quiet, args.frames_per_task)
        finally:
            runner.close()
    every, detect = args.every, None
    if args.prompts:
        detect = prompt_detector(model, read_prompts(args.prompts, hw, n), lims)
        every = 1  # prompts on later frames add objects there
    opened = None
    if store:
        from ..engine.store.embedding_store import EmbeddingStore

        opened = EmbeddingStore(store, model, frames, contrast_limits=lims)
    tracker = make_tracker(model, make_segmenter(model, **auto_changes(args)),
                           TrackingParams(every=every, match_iou=args.match_iou), store=opened,
                           contrast_limits=lims, detect=detect)
    bar = progress(n, f"track {Path(src.path).name}", args.quiet)
    rows = []
    wr = LabelsWriter(out, hw, n, axes=f"{axis}YX", overwrite=args.overwrite)
    try:  # labels and table appear together or not at all
        for t, labels in tracker.run(frames, embeddings=opened, contrast_limits=lims):
            wr.write(labels)
            rows += table_rows(t, labels)
            bar.update(1)
        wr.finish()
        table = write_csv(tracks, TABLE_COLUMNS, rows, overwrite=args.overwrite, commit=False)
    except BaseException as err:
        wr.abort()
        new = nothing_kept(err, [out, tracks])
        if new is err:
            raise
        raise new from err
    bar.close()
    commit_together([wr, table])
    return 0
