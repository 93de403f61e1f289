"""``napari-sam``: the engine from the command line (see docs/automatic.md).

    napari-sam models list | download NAME | verify [NAME]
    napari-sam embed  INPUT... (-o STORE.zarr | --output-dir DIR)
    napari-sam segment INPUT... (-o OUT.tif|.zarr | --output-dir DIR) (--prompts FILE | --auto)
    napari-sam track  INPUT -o OUT.tif|.zarr --tracks TRACKS.csv [--prompts FILE]
    napari-sam demo   [--sample timelapse|nuclei_2d|nuclei_3d] [--headless DIR]

Bad input ends with one line on stderr and exit status 2 (1 for anything unexpected);
``NAPARI_SAM_DEBUG=1`` shows the traceback instead.

What the commands never touch: their inputs (images, prompt files, checkpoints, model
configs) — an output that is, holds or lies inside one is refused — and anything napari-sam
did not write: ``--overwrite`` replaces only napari-sam's own outputs (marked as such in the
file). Every check runs before any work; outputs appear under their names only when complete.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXIT_BAD_INPUT = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="napari-sam", description="Segment Anything (SAM 1 / SAM 2) for microscopy.")
    sub = p.add_subparsers(dest="command", required=True)

    models = sub.add_parser("models", help="list, download or verify the official weights")
    msub = models.add_subparsers(dest="action", required=True)
    msub.add_parser("list", help="every model, its size and whether it is cached")
    dl = msub.add_parser("download", help="download one model into the cache (SHA-256 checked)")
    dl.add_argument("name")
    ver = msub.add_parser("verify", help="check the SHA-256 of cached files")
    ver.add_argument("name", nargs="?")

    def common(sp, outputs=True):
        sp.add_argument("inputs", nargs="+", metavar="INPUT", help="TIFF or zarr image(s)")
        if outputs:
            g = sp.add_mutually_exclusive_group(required=True)
            g.add_argument("-o", "--output", help="output path (one input)")
            g.add_argument("--output-dir", help="output folder: one output per input, named after it without its "
                           "image suffix (img.ome.tif -> img_labels.tif, or img.embeddings.zarr for embed); inputs "
                           "that would give outputs of the same name are refused")
        sp.add_argument("--model", default=None,
                        help="registry name (default: the preferred cached official model, else 'embedded')")
        sp.add_argument("--checkpoint", help="weights file in the official format (default: the cached official file)")
        sp.add_argument("--model-config", help="architecture JSON for a model not in the registry (needs --checkpoint)")
        sp.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
        sp.add_argument("--axes", help="the file's axes, one letter each (T Z C Y X S), overriding its metadata")
        sp.add_argument("--axis", help="the stack axis when several axes could be (T or Z)")
        sp.add_argument("--channel", help="channel index (0-based) or name, or 'rgb'")
        sp.add_argument("--index", action="append", default=[], metavar="AXIS=N", help="fix another axis, e.g. Z=3")
        sp.add_argument("--contrast-limits", nargs=2, type=float, metavar=("LOW", "HIGH"),
                        help="8-bit mapping for the model (default: estimated once per stack)")
        sp.add_argument("--overwrite", action="store_true", help="replace outputs napari-sam wrote before (never "
                        "an input, nor a file or folder napari-sam did not write)")
        sp.add_argument("--scheduler", help="dask.distributed scheduler address (default: local threads)")
        sp.add_argument("--workers", type=int, default=1, help="local threads (default: %(default)s)")
        sp.add_argument("--frames-per-task", type=int, default=8, help="frames per dask task (default: %(default)s)")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")

    emb = sub.add_parser("embed", help="precompute the image-encoder features (an EmbeddingStore)")
    common(emb)

    seg = sub.add_parser("segment", help="segment from prompts or everything; writes labels")
    common(seg)
    how = seg.add_mutually_exclusive_group(required=True)
    how.add_argument("--prompts", help="CSV or JSON prompt file (see docs/automatic.md)")
    how.add_argument("--auto", action="store_true", help="segment everything")
    seg.add_argument("--embeddings", help="an EmbeddingStore folder to read / fill")
    _auto_options(seg)

    trk = sub.add_parser("track", help="track objects through a stack; labels + tracks CSV")
    common(trk)
    trk.add_argument("--tracks", required=True, help="tracks table CSV (frame, id, y, x, area)")
    trk.add_argument("--prompts", help="track these objects instead of segmenting everything")
    trk.add_argument("--embeddings", help="an EmbeddingStore folder to read / fill")
    trk.add_argument("--every", type=int, default=10, help="segment again every K frames for newcomers (0: never)")
    trk.add_argument("--match-iou", type=float, default=0.3, help="IoU that makes a detection an existing track")
    _auto_options(trk)

    demo = sub.add_parser("demo", help="napari with a synthetic sample, every object segmented and tracked")
    demo.add_argument("--sample", default="timelapse", choices=("timelapse", "nuclei_2d", "nuclei_3d"),
                      help="stacks are segmented and tracked (Track everything), a 2D image segmented")
    demo.add_argument("--model", default=None, help="registry name (default: as the other commands)")
    demo.add_argument("--headless", metavar="DIR", help="no window: write the sample, its labels (and tracks) "
                      "to DIR and print how they compare with the ground truth")
    return p


def _auto_options(sp) -> None:
    from dataclasses import fields

    g = sp.add_argument_group("segment-everything parameters (docs/automatic.md)")
    for f in fields(_params_cls()):
        if f.name == "max_mask_fraction":
            g.add_argument("--max-mask-fraction", type=float, default=None, help=f"default {f.default}")
            continue
        typ = int if f.type in ("int", int) else float
        g.add_argument("--" + f.name.replace("_", "-"), type=typ, default=None, help=f"default {f.default:g}")


def _params_cls():
    from .engine.automatic import AutomaticParams

    return AutomaticParams


def _auto_params(args) -> dict:
    from dataclasses import fields

    return {f.name: getattr(args, f.name) for f in fields(_params_cls()) if getattr(args, f.name, None) is not None}


# ---------------------------------------------------------------------------- helpers
def _progress(total, desc, quiet):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=quiet, file=sys.stderr, leave=False)


def _specs(args):
    from .io import InputError
    from .jobs import InputSpec, ModelSpec, check_device

    index = []
    for item in args.index:
        letter, _, pos = item.partition("=")
        if not letter or not pos.strip().lstrip("-").isdigit():
            raise InputError(f"--index {item!r}: write AXIS=N, e.g. Z=3")
        index.append((letter.strip().upper(), int(pos)))
    from .registry import default_model

    check_device(args.device)  # before any work
    name = args.model or ("custom" if args.model_config else default_model())  # a config file names its own
    model = ModelSpec(name, args.checkpoint, args.model_config, args.device)
    inputs = [InputSpec(str(i), args.axes, args.axis, args.channel, tuple(index)) for i in args.inputs]
    return model, inputs


def _outputs(args, suffix: str) -> list[Path]:
    from .io import InputError

    if args.output:
        if len(args.inputs) > 1:
            raise InputError("several inputs: use --output-dir instead of -o")
        return [Path(args.output)]
    folder = Path(args.output_dir)
    if not folder.is_dir():
        raise InputError(f"{folder}: output folder does not exist")
    from .jobs import outputs_in

    return outputs_in(folder, args.inputs, suffix)


def _check_paths(args, writes) -> None:
    """No output may be, hold or lie inside an input, or another output (before any work)."""
    from .jobs import refuse_overlaps

    reads = [("an input image", i) for i in args.inputs] + [
        (f"the --{k.replace('_', '-')} file", getattr(args, k, None)) for k in ("prompts", "checkpoint", "model_config")]
    refuse_overlaps(reads, [*writes, ("the --embeddings store", getattr(args, "embeddings", None))])


def _limits(args, frames):
    if args.contrast_limits:
        return tuple(args.contrast_limits)
    from .engine.frames import as_frame_stack
    from .engine.preprocess import estimate_contrast_limits

    return tuple(float(v) for v in estimate_contrast_limits(as_frame_stack(frames)))


# ---------------------------------------------------------------------------- commands
def cmd_models(args) -> int:
    from . import checkpoints
    from .registry import list_models, model_info

    if args.action == "list":
        for m in list_models():
            print(f"{m.name:24s} {m.family}  {m.size_text:>10s}  {'cached' if m.cached else '-'}")
        return 0
    if args.action == "download":
        info = model_info(args.name)
        path = checkpoints.fetch(info, progressbar=True)
        print(f"{info.name}: {path}" + (" (bundled: nothing to download)" if info.bundled else ""))
        return 0
    # every file present is checked, also one of the wrong size (which the registry does not count as cached)
    infos = [model_info(args.name)] if args.name else [m for m in list_models() if m.path.is_file()]
    bad = 0
    for info in infos:
        if not info.path.is_file():
            print(f"{info.name}: not cached")
            bad += 1
        elif checkpoints.sha256_of(info.path) != info.sha256:
            print(f"{info.name}: CORRUPT ({info.path}); download it again")
            bad += 1
        else:
            print(f"{info.name}: ok")
    if not infos:
        print("no cached models")
    return 1 if bad else 0


def cmd_embed(args) -> int:
    from .io import check_target
    from .jobs import Runner, blocks, embed_frames, frame_count

    model, inputs = _specs(args)
    outs = _outputs(args, ".embeddings.zarr")
    _check_paths(args, [("the output", o) for o in outs])
    for out in outs:  # an existing store is filled up (resumed); --overwrite starts it again
        if args.overwrite or not out.exists():
            check_target(out, "embeddings", True)
    runner = Runner(args.scheduler, args.workers)
    try:
        for src, out in zip(inputs, outs):
            frames, axis = src.open()
            n = frame_count(frames, axis)
            if out.exists() and args.overwrite:  # napari-sam's own store (checked above)
                import shutil

                shutil.rmtree(out)
            limits = _limits(args, frames)
            embed_frames(model, src, str(out), [], limits)  # claim the store before the workers
            bar = _progress(n, f"embed {Path(src.path).name}", args.quiet)
            units = [(model, src, str(out), b, limits) for b in blocks(n, args.frames_per_task)]
            for b, _ in zip(blocks(n, args.frames_per_task), runner.map(embed_frames, units)):
                bar.update(len(b))
            bar.close()
    finally:
        runner.close()
    return 0


def cmd_segment(args) -> int:
    from .io import LabelsWriter, check_target
    from .jobs import Runner, blocks, frame_count, segment_frames

    model, inputs = _specs(args)
    outs = _outputs(args, "_labels.tif")
    _check_paths(args, [("the output", o) for o in outs])
    for out in outs:
        check_target(out, "labels", args.overwrite)
    if args.prompts:
        if len(inputs) > 1:
            from .io import InputError

            raise InputError("--prompts works on one input")
        return _segment_prompts(args, model, inputs[0], outs[0])
    params = _auto_params(args)
    runner = Runner(args.scheduler, args.workers)
    try:
        for src, out in zip(inputs, outs):
            frames, axis = src.open()
            n = frame_count(frames, axis)
            limits = _limits(args, frames)
            store = args.embeddings if len(inputs) == 1 else None
            if store:
                from .jobs import embed_frames

                embed_frames(model, src, store, [], limits)
            h, w = _frame_hw(frames, axis)
            bar = _progress(n, f"segment {Path(src.path).name}", args.quiet)
            units = [(model, src, b, params, limits, store) for b in blocks(n, args.frames_per_task)]
            with LabelsWriter(out, (h, w), None if axis is None else n, axes=f"{axis or ''}YX", overwrite=args.overwrite) as wr:
                for labels_block in runner.map(segment_frames, units):
                    for labels in labels_block:
                        wr.write(labels)
                        bar.update(1)
            bar.close()
    finally:
        runner.close()
    return 0


def _frame_hw(frames, axis):
    shape = frames.shape[1:] if axis is not None else frames.shape
    return int(shape[0]), int(shape[1])


def _segment_prompts(args, model_spec, src, out) -> int:
    import numpy as np

    from .engine.image_predictor import ImagePredictor
    from .io import LabelsWriter, read_prompts
    from .jobs import frame_at, frame_count

    frames, axis = src.open()
    n = frame_count(frames, axis)
    hw = _frame_hw(frames, axis)
    prompts = read_prompts(args.prompts, hw, n)
    limits = _limits(args, frames)
    pred = ImagePredictor(model_spec.load())
    bar = _progress(n, f"segment {Path(src.path).name}", args.quiet)
    with LabelsWriter(out, hw, None if axis is None else n, axes=f"{axis or ''}YX", overwrite=args.overwrite) as wr:
        for t in range(n):
            labels = np.zeros(hw, np.int32)
            if t in prompts:
                pred.set_image(frame_at(frames, axis, t), contrast_limits=limits)
                results = []
                for oid, obj in prompts[t].items():
                    pts = np.asarray(obj["points"]) if obj["points"] else None
                    lab = np.asarray(obj["labels"]) if obj["points"] else None
                    res = pred.predict(pts, lab, box=obj["box"], multimask=len(obj["points"]) == 1 and obj["box"] is None)
                    best = int(np.argmax(res.scores))
                    results.append((float(res.scores[best]), oid, res.masks[best]))
                for _, oid, mask in sorted(results, key=lambda r: r[0]):  # higher predicted IoU painted last: wins
                    labels[mask] = oid
            wr.write(labels)
            bar.update(1)
    bar.close()
    return 0


def cmd_track(args) -> int:
    from .engine.auto_tracking import TRACK_COLUMNS, AutoTracker, TrackingParams
    from .io import InputError, LabelsWriter, check_target, commit_together, nothing_kept, read_prompts, write_csv
    from .jobs import Runner, blocks, embed_frames, frame_count

    model_spec, inputs = _specs(args)
    if len(inputs) != 1 or not args.output:
        raise InputError("track takes one input and -o OUTPUT")
    src, out, tracks = inputs[0], Path(args.output), Path(args.tracks)
    _check_paths(args, [("the output", out), ("the --tracks table", tracks)])
    check_target(out, "labels", args.overwrite)
    check_target(tracks, "table", args.overwrite, header=TRACK_COLUMNS)
    frames, axis = src.open()
    if axis is None:
        raise InputError(f"{src.path}: one 2-D image; track needs a stack (T or Z axis)")
    n = frame_count(frames, axis)
    hw = _frame_hw(frames, axis)
    limits = _limits(args, frames)
    store = args.embeddings
    if store:  # every frame's features once, in parallel, then tracking reads them
        runner = Runner(args.scheduler, args.workers)
        try:
            embed_frames(model_spec, src, store, [], limits)
            bar = _progress(n, "embed", args.quiet)
            units = [(model_spec, src, store, b, limits) for b in blocks(n, args.frames_per_task)]
            for b, _ in zip(blocks(n, args.frames_per_task), runner.map(embed_frames, units)):
                bar.update(len(b))
            bar.close()
        finally:
            runner.close()
    model = model_spec.load()
    detect = None
    every = args.every
    if args.prompts:
        detect = _prompt_detector(model, frames, read_prompts(args.prompts, hw, n), limits)
        every = 1  # prompts on later frames add objects there
    from .engine.automatic import AutomaticSegmenter

    tracker = AutoTracker(model, TrackingParams(every=every, match_iou=args.match_iou), detect=detect,
                          segmenter=AutomaticSegmenter(model, **_auto_params(args)))
    bar = _progress(n, f"track {Path(src.path).name}", args.quiet)
    wr = LabelsWriter(out, hw, n, axes=f"{axis}YX", overwrite=args.overwrite)
    try:  # labels and table appear together or not at all
        for _, labels in tracker.run(frames, embeddings=store, contrast_limits=limits):
            wr.write(labels)
            bar.update(1)
        wr.finish()
        table = write_csv(tracks, TRACK_COLUMNS, tracker.rows, overwrite=args.overwrite, commit=False)
    except BaseException as err:
        wr.abort()
        new = nothing_kept(err, [out, tracks])
        if new is err:
            raise
        raise new from err
    bar.close()
    commit_together([wr, table])
    return 0


def _prompt_detector(model, frames, prompts, limits):
    """Prompted objects as "detections" on their frames (ids renumbered by the tracker)."""
    import numpy as np

    from .engine.image_predictor import ImagePredictor

    pred = ImagePredictor(model)

    def detect(t, frame):
        labels = np.zeros(frame.shape[:2], np.int32)
        for k, (oid, obj) in enumerate(sorted(prompts.get(t, {}).items()), 1):
            if k == 1:
                pred.set_image(frame, contrast_limits=limits)
            pts = np.asarray(obj["points"]) if obj["points"] else None
            lab = np.asarray(obj["labels"]) if obj["points"] else None
            labels[pred.predict(pts, lab, box=obj["box"], multimask=False).best] = k
        return labels

    return detect


def cmd_demo(args) -> int:
    if not args.headless:
        from .ui.demo import run_demo

        run_demo(args.sample, args.model)
        return 0
    import numpy as np
    import tifffile

    from .data.samples import sample as make_sample
    from .engine.auto_tracking import TRACK_COLUMNS, id_persistence
    from .io import InputError, check_target, write_sample

    out = Path(args.headless)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: not a folder (demo --headless DIR writes its files into a folder)")
    out.mkdir(parents=True, exist_ok=True)
    image, labels = out / f"{args.sample}.tif", out / f"{args.sample}_labels.tif"
    tracks = out / f"{args.sample}_tracks.csv"
    for path, kind in ((image, "sample"), (labels, "labels"), (tracks, "table"))[: 2 if args.sample == "nuclei_2d" else 3]:
        check_target(path, kind, True, header=TRACK_COLUMNS)  # replaces only its own earlier files
    sample = make_sample(args.sample)
    axes = {"timelapse": "TYX", "nuclei_3d": "ZYX", "nuclei_2d": "YX"}[args.sample]
    write_sample(image, sample.image, axes)
    model = ["--model", args.model] if args.model else []
    if sample.image.ndim == 2:
        code = main(["segment", str(image), "-o", str(labels), "--auto", "--overwrite", "--quiet", *model])
    else:
        code = main(["track", str(image), "-o", str(labels), "--tracks", str(tracks), "--overwrite", "--quiet", *model])
    if code:
        return code
    pred = tifffile.imread(labels)
    truth = sample.labels
    found = len(np.unique(pred[pred > 0]))
    line = f"{args.sample}: {found} objects segmented (ground truth: {len(np.unique(truth[truth > 0]))}); labels in {labels}"
    if sample.image.ndim == 3:
        line += f"; each object keeps its id on {id_persistence(truth, pred):.0%} of its frames"
    print(line)
    return 0


COMMANDS = {"models": cmd_models, "embed": cmd_embed, "segment": cmd_segment, "track": cmd_track, "demo": cmd_demo}


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("napari-sam: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # one line, no traceback, unless debugging
        if os.environ.get("NAPARI_SAM_DEBUG"):
            raise
        from .checkpoints import CheckpointError
        from .io import InputError

        bad_input = isinstance(err, (InputError, CheckpointError, ValueError, FileNotFoundError, PermissionError))
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        kind = "error" if bad_input else f"unexpected error ({type(err).__name__})"
        print(f"napari-sam: {kind}: {text}", file=sys.stderr)
        return EXIT_BAD_INPUT if bad_input else 1


if __name__ == "__main__":
    sys.exit(main())
