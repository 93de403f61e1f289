"""What every command does first: read the model and input options, name and check the
outputs (before any work), the contrast limits, progress bars on stderr."""

from __future__ import annotations

import sys
from pathlib import Path


def progress(total, desc, quiet, unit="frame"):
    """A tqdm bar on stderr (``quiet``: none)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=quiet, file=sys.stderr, leave=False)


def specs(args):
    """``(ModelSpec, [InputSpec])`` from the options; the device is checked before any work."""
    from ..io import InputError
    from ..jobs import InputSpec, ModelSpec, check_device
    from ..registry import default_model

    index = []
    for item in args.index:
        letter, _, pos = item.partition("=")
        if not letter or not pos.strip().lstrip("-").isdigit():
            raise InputError(f"--index {item!r}: write AXIS=N, e.g. Z=3")
        index.append((letter.strip().upper(), int(pos)))
    check_device(args.device)
    name = args.model or ("custom" if args.model_config else default_model())  # a config file names its own
    model = ModelSpec(name, args.checkpoint, args.model_config, args.device)
    inputs = [InputSpec(str(i), args.axes, args.axis, args.channel, tuple(index)) for i in args.inputs]
    return model, inputs


def outputs(args, suffix: str) -> list[Path]:
    """One output per input: ``-o`` (one input) or named in ``--output-dir``."""
    from ..io import InputError
    from ..jobs import outputs_in

    if args.output:
        if len(args.inputs) > 1:
            raise InputError("several inputs: use --output-dir instead of -o")
        return [Path(args.output)]
    folder = Path(args.output_dir)
    if not folder.is_dir():
        raise InputError(f"{folder}: output folder does not exist")
    return outputs_in(folder, args.inputs, suffix)


def check_paths(args, writes) -> None:
    """No output may be, hold or lie inside an input, or another output (before any work)."""
    from ..jobs import refuse_overlaps

    reads = [("an input image", i) for i in args.inputs] + [
        (f"the --{k.replace('_', '-')} file", getattr(args, k, None)) for k in ("prompts", "checkpoint", "model_config")]
    refuse_overlaps(reads, [*writes, ("the --embeddings store", getattr(args, "embeddings", None))])


def check_folder_target(path: Path, overwrite: bool, recognise, kind: str) -> None:
    """Refuse an output folder before any work, by the rule its writer applies when it commits
    (:class:`napari_sam.lineage.PendingFolder`): its parent must exist; an existing non-empty
    folder is replaced only with ``overwrite`` and only when ``recognise(path)`` says it is a
    ``kind`` (returns None; else why not)."""
    from ..io import InputError
    from ..io.outputs import check_writable_parent
    from ..lineage._files import check_folder

    check_writable_parent(path)
    try:
        check_folder(path, overwrite, recognise, kind)
    except FileExistsError as err:
        raise InputError(str(err)) from None


def tile_kwargs(tiles) -> dict:
    """``tile_shape=`` / ``halo=`` for the engine from ``(tile_shape, halo)`` (none when untiled)."""
    tile, halo = tiles
    return {} if tile is None and halo is None else {"tile_shape": tile, "halo": halo}


def input_grid(tiles, frames, model):
    """The :class:`~napari_sam.engine.image.tiling.TileGrid` ``tiles`` give ``frames`` with
    ``model`` (None: whole frames); a ValueError for values that do not fit these frames."""
    from ..app.store_location import StoreLocator

    try:
        return StoreLocator(model).grid(frames, *tiles)
    except ValueError as err:
        raise ValueError(f"--tile / --halo: {err}") from None


def cached_stores(args, models, model_spec, inputs, tiles=(None, None)) -> list[str | None]:
    """Per input, the store to read / fill: ``--embeddings`` (one input), the shared cache's
    store of that input with that tiling (``--embeddings-cache``, found by the widget's rule),
    or None."""
    if getattr(args, "embeddings_cache", False):
        from ..app.store_location import StoreLocator

        locator = StoreLocator(models.get(model_spec))
        paths = []
        for src in inputs:
            path = locator.path(src.open()[0], *tiles)
            path.parent.mkdir(parents=True, exist_ok=True)
            paths.append(str(path))
        return paths
    store = getattr(args, "embeddings", None)
    return [store if len(inputs) == 1 else None for _ in inputs]


def limits(args, frames, store=None, model=None, tiles=(None, None)):
    """``--contrast-limits``, else those an existing ``store`` (of that tiling) recorded, else one
    estimate for the stack."""
    if args.contrast_limits:
        return tuple(args.contrast_limits)
    if store is not None and model is not None:
        from ..io import written_by_napari_sam

        if written_by_napari_sam(store, "embeddings"):
            from ..engine.store.embedding_store import EmbeddingStore

            return tuple(float(v) for v in EmbeddingStore(store, model, frames, **tile_kwargs(tiles)).contrast_limits)
    from ..engine.frames import as_frame_stack
    from ..engine.image.preprocess import estimate_contrast_limits

    return tuple(float(v) for v in estimate_contrast_limits(as_frame_stack(frames)))


def frame_hw(frames, axis) -> tuple[int, int]:
    shape = frames.shape[1:] if axis is not None else frames.shape
    return int(shape[0]), int(shape[1])
