"""``napari-sam demo``: napari with a sample, every object segmented (and tracked), or with
``--headless DIR`` the same into files, its progress on stderr stage by stage and frame by frame."""

from __future__ import annotations

from pathlib import Path

from .common import progress

AXES = {"timelapse": "TYX", "nuclei_3d": "ZYX", "nuclei_2d": "YX"}


def cmd_demo(args) -> int:
    if not args.headless:
        from ..ui.demo import run_demo

        run_demo(args.sample, args.model)
        return 0
    import numpy as np
    import tifffile

    from ..app.ids import TABLE_COLUMNS
    from ..data.samples import sample as make_sample
    from ..engine.auto.tracking import id_persistence
    from ..io import InputError, check_target, write_sample
    from .parser import build_parser

    out = Path(args.headless)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: not a folder (demo --headless DIR writes its files into a folder)")
    out.mkdir(parents=True, exist_ok=True)
    image, labels = out / f"{args.sample}.tif", out / f"{args.sample}_labels.tif"
    tracks = out / f"{args.sample}_tracks.csv"
    stack = args.sample != "nuclei_2d"
    for path, kind in ((image, "sample"), (labels, "labels"), (tracks, "table"))[: 3 if stack else 2]:
        check_target(path, kind, True, header=TABLE_COLUMNS)  # replaces only its own earlier files
    stages = progress(3, f"demo {args.sample}", args.quiet, unit="stage")
    try:
        stages.set_postfix_str("making the sample")
        sample = make_sample(args.sample)
        write_sample(image, sample.image, AXES[args.sample])
        stages.update(1)
        stages.set_postfix_str("loading the model, " + ("tracking every object" if stack else "segmenting everything"))
        model = ["--model", args.model] if args.model else []
        quiet = ["--quiet"] if args.quiet else []
        if stack:
            from .track import cmd_track as run

            argv = ["track", str(image), "-o", str(labels), "--tracks", str(tracks), "--overwrite", *quiet, *model]
        else:
            from .segment import cmd_segment as run

            argv = ["segment", str(image), "-o", str(labels), "--auto", "--overwrite", *quiet, *model]
        code = run(build_parser().parse_args(argv))
        if code:
            return code
        stages.update(1)
        stages.set_postfix_str("comparing with the ground truth")
        pred = tifffile.imread(labels)
        truth = sample.labels
        found = len(np.unique(pred[pred > 0]))
        line = (f"{args.sample}: {found} objects segmented (ground truth: {len(np.unique(truth[truth > 0]))}); "
                f"labels in {labels}")
        if stack:
            line += f"; each object keeps its id on {id_persistence(truth, pred):.0%} of its frames"
        stages.update(1)
    finally:
        stages.close()
    print(line)
    return 0
