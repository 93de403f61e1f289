"""``napari-sam embed``: every frame's image-encoder features, once, into an EmbeddingStore."""

from __future__ import annotations

from pathlib import Path

from .common import cached_stores, check_paths, limits, outputs, progress, specs


def fill_store(runner, model_spec, src, store: str, n: int, contrast_limits, quiet: bool, frames_per_task: int,
               desc: str = "embed") -> None:
    """Encode the frames ``store`` misses, ``frames_per_task`` per unit through ``runner``."""
    from ..jobs import blocks, embed_frames

    embed_frames(model_spec, src, store, [], contrast_limits, models=runner.models)  # claim it before the workers
    bar = progress(n, desc, quiet)
    units = [(model_spec, src, store, b, contrast_limits) for b in blocks(n, frames_per_task)]
    for b, _ in zip(blocks(n, frames_per_task), runner.map(embed_frames, units)):
        bar.update(len(b))
    bar.close()


def cmd_embed(args) -> int:
    from ..io import check_target
    from ..jobs import ModelCache, Runner, frame_count

    model_spec, inputs = specs(args)
    models = ModelCache()
    if args.embeddings_cache:
        outs = [Path(p) for p in cached_stores(args, models, model_spec, inputs)]
    else:
        outs = outputs(args, ".embeddings.zarr")
    check_paths(args, [("the output", o) for o in outs])
    for out in outs:  # an existing store is filled up (resumed); --overwrite starts it again
        if args.overwrite or not out.exists():
            check_target(out, "embeddings", True)
    runner = Runner(args.scheduler, args.workers, models=models)
    try:
        for src, out in zip(inputs, outs):
            frames, axis = src.open()
            if out.exists() and args.overwrite:  # napari-sam's own store (checked above)
                import shutil

                shutil.rmtree(out)
            lims = limits(args, frames, out, models.get(model_spec))
            fill_store(runner, model_spec, src, str(out), frame_count(frames, axis), lims, args.quiet,
                       args.frames_per_task, f"embed {Path(src.path).name}")
            if args.embeddings_cache:
                print(f"{src.path}: {out}")
    finally:
        runner.close()
    return 0
