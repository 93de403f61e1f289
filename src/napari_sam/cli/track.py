"""``napari-sam track``: every object (or the prompted ones) tracked through a stack; labels, a
tracks table (frame, id, centroid y, centroid x, area, parent) and, when asked, the lineage as
a Cell Tracking Challenge folder (``--ctc``) and a GEFF (``--geff``), all written from the same
labels and the tracker's ``parents``, and all committed together or not at all."""

from __future__ import annotations

from pathlib import Path

from .common import (
    cached_stores,
    check_folder_target,
    check_paths,
    frame_hw,
    input_grid,
    limits,
    progress,
    specs,
    tile_kwargs,
)
from .embed import fill_store, fill_tiled_store
from .parser import auto_changes, tiling


class WrittenFrames:
    """The frames a finished :class:`~napari_sam.io.LabelsWriter` holds under its partial name,
    read one at a time (the lineage writers read them twice; the run never holds them all)."""

    def __init__(self, writer):
        self.path, self.kind, self.n = writer.tmp, writer.kind, writer.n_frames
        self._pages = None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, t: int):
        if not 0 <= t < self.n:
            raise IndexError(t)
        if self.kind == "zarr":
            import zarr

            return zarr.open_array(str(self.path), mode="r")[t]
        if self._pages is None:
            import tifffile

            self._tif = tifffile.TiffFile(self.path)
            self._pages = self._tif.pages
        return self._pages[t].asarray()

    def close(self) -> None:
        if self._pages is not None:
            self._tif.close()
            self._pages = None


def lineage_targets(args) -> list[tuple[str, Path]]:
    """``(what, path)`` of the ``--ctc`` folder and ``--geff`` given (checked before any work)."""
    from ..io import InputError
    from ..lineage.ctc import recognise_ctc

    found = []
    if args.ctc:
        check_folder_target(Path(args.ctc), args.overwrite, recognise_ctc, "CTC folder")
        found.append(("the --ctc folder", Path(args.ctc)))
    if args.geff:
        try:
            import geff  # noqa: F401
        except ImportError as err:
            raise InputError(f"--geff {args.geff}: needs the geff package (pip install geff)") from err
        from ..lineage.tables import recognise_geff

        check_folder_target(Path(args.geff), args.overwrite, recognise_geff, "GEFF")
        found.append(("the --geff folder", Path(args.geff)))
    return found


def stage_lineage(args, frames, parents) -> list:
    """The CTC folder and GEFF of ``frames`` + ``parents``, staged (not yet in place)."""
    from ..lineage import stage_ctc, stage_geff

    staged = []
    try:
        if args.ctc:
            staged.append(stage_ctc(args.ctc, frames, parents, overwrite=args.overwrite)[0])
        if args.geff:
            staged.append(stage_geff(args.geff, frames, parents, overwrite=args.overwrite)[0])
    except BaseException:
        for part in staged:
            part.abort()
        raise
    return staged


def cmd_track(args) -> int:
    from ..app.automatic import make_segmenter, make_tracker, prompt_detector, tracker_takes_tiles
    from ..app.ids import table_rows
    from ..engine.auto.tracking import TrackingParams
    from ..io import InputError, LabelsWriter, check_target, commit_together, nothing_kept, read_prompts, write_csv
    from ..jobs import ModelCache, Runner, frame_count
    from ..lineage import TRACK_CSV_COLUMNS

    tiles = tiling(args)
    if tiles != (None, None) and not tracker_takes_tiles():
        raise InputError("--tile: track does not take tiles yet (the automatic tracker has no tiling); run track "
                         "without --tile / --halo (embed and segment take them)")
    model_spec, inputs = specs(args)
    if len(inputs) != 1 or not args.output:
        raise InputError("track takes one input and -o OUTPUT")
    src, out, tracks = inputs[0], Path(args.output), Path(args.tracks)
    writes = [("the output", out), ("the --tracks table", tracks)]
    check_paths(args, writes + [("the --ctc folder", args.ctc), ("the --geff folder", args.geff)])
    writes += lineage_targets(args)
    check_target(out, "labels", args.overwrite)
    check_target(tracks, "table", args.overwrite, header=TRACK_CSV_COLUMNS)
    frames, axis = src.open()
    if axis is None:
        raise InputError(f"{src.path}: one 2-D image; track needs a stack (T or Z axis)")
    n = frame_count(frames, axis)
    hw = frame_hw(frames, axis)
    models = ModelCache()
    store = cached_stores(args, models, model_spec, inputs, tiles)[0]
    if args.embeddings_cache:
        check_paths(args, writes + [("the cached embedding store", store)])
    model = models.get(model_spec)
    grid = input_grid(tiles, frames, model) if tiles != (None, None) else None
    tiled = tile_kwargs(tiles) if grid is not None else {}  # "auto" on small frames: no tiles
    lims = limits(args, frames, store, model, tiles)
    if store:  # every frame's features once, in parallel, then tracking reads them
        runner = Runner(args.scheduler, args.workers, models=models)
        try:
            if grid is None:
                fill_store(runner, model_spec, src, store, n, lims, args.quiet, args.frames_per_task)
            else:
                fill_tiled_store(runner, model_spec, src, store, tiles, lims, args.quiet, args.frames_per_task,
                                 f"embed ({len(grid)} tiles)")
        finally:
            runner.close()
    every, detect = args.every, None
    if args.prompts:
        detect = prompt_detector(model, read_prompts(args.prompts, hw, n), lims, **tiled)
        every = 1  # prompts on later frames add objects there
    opened = None
    if store:
        from ..engine.store.embedding_store import EmbeddingStore

        opened = EmbeddingStore(store, model, frames, contrast_limits=lims, **tiled)
    tracker = make_tracker(model, make_segmenter(model, **tiled, **auto_changes(args)),
                           TrackingParams(every=every, match_iou=args.match_iou), store=opened,
                           contrast_limits=lims, detect=detect, **tiled)
    bar = progress(n, f"track {Path(src.path).name}", args.quiet)
    rows, parts = [], []
    wr = LabelsWriter(out, hw, n, axes=f"{axis}YX", overwrite=args.overwrite)
    try:  # labels, table, CTC folder and GEFF appear together or not at all
        for t, labels in tracker.run(frames, embeddings=opened, contrast_limits=lims):
            wr.write(labels)
            rows += table_rows(t, labels)
            bar.update(1)
        wr.finish()
        parents = {int(d): int(m) for d, m in getattr(tracker, "parents", {}).items()}
        rows = [(*row, parents.get(row[1], 0)) for row in rows]
        parts.append(write_csv(tracks, TRACK_CSV_COLUMNS, rows, overwrite=args.overwrite, commit=False))
        if args.ctc or args.geff:
            written = WrittenFrames(wr)
            try:
                parts += stage_lineage(args, written, parents)
            finally:
                written.close()
    except BaseException as err:
        wr.abort()
        for part in parts:
            part.abort()
        new = nothing_kept(err, [p for _, p in writes])
        if new is err:
            raise
        raise new from err
    bar.close()
    commit_together([wr, *parts])
    return 0
