"""``napari-sam embed``: every frame's image-encoder features, once, into an EmbeddingStore
(with ``--tile``: every frame's tiles, one chunk per frame and tile)."""

from __future__ import annotations

from pathlib import Path

from .common import cached_stores, check_paths, input_grid, limits, outputs, progress, specs, tile_kwargs
from .parser import tiling


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


def embed_tiles(model_spec, source, store_path: str, slots, contrast_limits, tile_shape, halo, models=None) -> int:
    """A unit: compute and store the tiles ``slots`` ((frame, tile) pairs) of a tiled store;
    returns how many were new."""
    from ..engine.store.embedding_store import EmbeddingStore

    frames, _ = source.open()
    model = model_spec.load() if models is None else models.get(model_spec)
    store = EmbeddingStore(store_path, model, frames, contrast_limits=contrast_limits,
                           tile_shape=tile_shape, halo=halo)
    new = 0
    for t, i in slots:
        if not store.has(int(t), tile=int(i)):
            store.get(int(t), tile=int(i))
            new += 1
    return new


def fill_tiled_store(runner, model_spec, src, store: str, tiles, contrast_limits, quiet: bool, per_task: int,
                     desc: str = "embed") -> None:
    """Encode the tiles a tiled ``store`` misses, the progress bar counting tiles: in this
    process tile by tile (one local worker), else ``per_task`` tiles per unit through ``runner``."""
    from ..engine.store.embedding_store import EmbeddingStore
    from ..jobs import blocks

    frames, _ = src.open()
    opened = EmbeddingStore(store, runner.models.get(model_spec), frames, contrast_limits=contrast_limits,
                            **tile_kwargs(tiles))  # made (claimed) before any worker
    bar = progress(len(opened) * len(opened.grid), desc, quiet, unit="tile")
    if runner.scheduler is None and runner.workers <= 1:
        for done, _ in opened.precompute_iter():
            bar.n = done
            bar.refresh()
    else:
        todo = opened.missing_tiles()
        bar.n = bar.total - len(todo)
        groups = [[todo[k] for k in b] for b in blocks(len(todo), max(1, per_task))]
        units = [(model_spec, src, store, g, contrast_limits, *tiles) for g in groups]
        for g, _ in zip(groups, runner.map(embed_tiles, units)):
            bar.update(len(g))
    bar.close()


def cmd_embed(args) -> int:
    from ..io import check_target
    from ..jobs import ModelCache, Runner, frame_count

    tiles = tiling(args)
    model_spec, inputs = specs(args)
    models = ModelCache()
    if args.embeddings_cache:
        outs = [Path(p) for p in cached_stores(args, models, model_spec, inputs, tiles)]
    else:
        outs = outputs(args, ".embeddings.zarr")
    check_paths(args, [("the output", o) for o in outs])
    for out in outs:  # an existing store is filled up (resumed); --overwrite starts it again
        if args.overwrite or not out.exists():
            check_target(out, "embeddings", True)
    opened = [src.open() for src in inputs]
    if tiles != (None, None):  # every input's tiling fits it, before any work
        grids = [input_grid(tiles, frames, models.get(model_spec)) for frames, _ in opened]
    else:
        grids = [None] * len(inputs)
    runner = Runner(args.scheduler, args.workers, models=models)
    try:
        for src, out, (frames, axis), grid in zip(inputs, outs, opened, grids):
            if out.exists() and args.overwrite:  # napari-sam's own store (checked above)
                import shutil

                shutil.rmtree(out)
            lims = limits(args, frames, out, models.get(model_spec), tiles)
            desc = f"embed {Path(src.path).name}"
            if grid is None:  # no tiles (also "auto" on an image that fits the model's input)
                fill_store(runner, model_spec, src, str(out), frame_count(frames, axis), lims, args.quiet,
                           args.frames_per_task, desc)
            else:
                fill_tiled_store(runner, model_spec, src, str(out), tiles, lims, args.quiet, args.frames_per_task,
                                 f"{desc} ({len(grid)} tiles)")
            if args.embeddings_cache:
                print(f"{src.path}: {out}")
    finally:
        runner.close()
    return 0
