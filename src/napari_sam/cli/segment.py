"""``napari-sam segment``: labels from a prompt file (the best mask per object, as the widget's
clicks) or of everything (the model's automatic defaults under the options given)."""

from __future__ import annotations

from pathlib import Path

from .common import cached_stores, check_paths, frame_hw, limits, outputs, progress, specs
from .parser import auto_changes


def cmd_segment(args) -> int:
    from ..io import InputError, LabelsWriter, check_target
    from ..jobs import ModelCache, Runner, blocks, embed_frames, frame_count, segment_frames

    model_spec, inputs = specs(args)
    outs = outputs(args, "_labels.tif")
    check_paths(args, [("the output", o) for o in outs])
    for out in outs:
        check_target(out, "labels", args.overwrite)
    models = ModelCache()
    if args.prompts:
        if len(inputs) > 1:
            raise InputError("--prompts works on one input")
        return _segment_prompts(args, models.get(model_spec), inputs[0], outs[0])
    params = auto_changes(args)
    stores = cached_stores(args, models, model_spec, inputs)
    if args.embeddings_cache:  # the cache's stores are outputs too
        check_paths(args, [("the output", o) for o in outs] + [("the cached embedding store", s) for s in stores])
    runner = Runner(args.scheduler, args.workers, models=models)
    try:
        for src, out, store in zip(inputs, outs, stores):
            frames, axis = src.open()
            n = frame_count(frames, axis)
            lims = limits(args, frames, store, models.get(model_spec) if store else None)
            if store:
                embed_frames(model_spec, src, store, [], lims, models=models)  # claim it before the workers
            bar = progress(n, f"segment {Path(src.path).name}", args.quiet)
            units = [(model_spec, src, b, params, lims, store) for b in blocks(n, args.frames_per_task)]
            with LabelsWriter(out, frame_hw(frames, axis), None if axis is None else n, axes=f"{axis or ''}YX",
                              overwrite=args.overwrite) as wr:
                for labels_block in runner.map(segment_frames, units):
                    for labels in labels_block:
                        wr.write(labels)
                        bar.update(1)
            bar.close()
    finally:
        runner.close()
    return 0


def _segment_prompts(args, model, src, out) -> int:
    from ..app.prompt_mask import segment_objects
    from ..engine.image.predictor import ImagePredictor
    from ..io import LabelsWriter, read_prompts
    from ..jobs import frame_at, frame_count

    frames, axis = src.open()
    n = frame_count(frames, axis)
    hw = frame_hw(frames, axis)
    prompts = read_prompts(args.prompts, hw, n)
    lims = limits(args, frames)
    pred = ImagePredictor(model)
    bar = progress(n, f"segment {Path(src.path).name}", args.quiet)
    with LabelsWriter(out, hw, None if axis is None else n, axes=f"{axis or ''}YX", overwrite=args.overwrite) as wr:
        for t in range(n):
            if t in prompts:
                pred.set_image(frame_at(frames, axis, t), contrast_limits=lims)
                wr.write(segment_objects(pred, prompts[t], hw))
            else:
                import numpy as np

                wr.write(np.zeros(hw, np.int32))
            bar.update(1)
    bar.close()
    return 0
