"""``napari-sam``: the engine from the command line (see docs/automatic.md).

    napari-sam models [list] | download NAME | verify [NAME]
    napari-sam embed  INPUT... (-o STORE.zarr | --output-dir DIR | --embeddings-cache) [--tile H W|auto --halo H W]
    napari-sam segment INPUT... (-o OUT.tif|.zarr | --output-dir DIR) (--prompts FILE | --auto) [--tile H W|auto --halo H W]
    napari-sam track  INPUT -o OUT.tif|.zarr --tracks TRACKS.csv [--prompts FILE] [--ctc DIR] [--geff PATH]
                      [--tile H W|auto --halo H W]
    napari-sam demo   [--sample timelapse|nuclei_2d|nuclei_3d] [--headless DIR]

Thin commands over :mod:`napari_sam.app` (the same rules as the widget: prompt -> best mask,
automatic runs with the model's defaults, where embedding stores live, ids and centroids)
and :mod:`napari_sam.jobs` (units run through dask). One module per command.

Bad input ends with one line on stderr and exit status 2 (1 for anything unexpected);
``NAPARI_SAM_DEBUG=1`` shows the traceback instead. At start the command opts in to the
allocator tuning of :func:`napari_sam.engine.malloc_tuning.tune_malloc` (a process of its
own; ``NAPARI_SAM_MALLOC_TUNING=0`` turns it off).

What the commands never touch: their inputs (images, prompt files, checkpoints, model
configs) — an output that is, holds or lies inside one is refused — and anything napari-sam
did not write: ``--overwrite`` replaces only napari-sam's own outputs (marked as such in the
file). Every check runs before any work; outputs appear under their names only when complete.
"""

from __future__ import annotations

import os
import sys

from .parser import EXIT_BAD_INPUT, build_parser


def _commands() -> dict:
    from . import demo, embed, segment, track, weights

    return {"models": weights.cmd_models, "embed": embed.cmd_embed, "segment": segment.cmd_segment,
            "track": track.cmd_track, "demo": demo.cmd_demo}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from ..engine.malloc_tuning import tune_malloc

    tune_malloc()  # this process is ours: keep freed buffers for the next frame (see docs/automatic.md)
    try:
        return _commands()[args.command](args)
    except KeyboardInterrupt:
        print("napari-sam: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # one line, no traceback, unless debugging
        if os.environ.get("NAPARI_SAM_DEBUG"):
            raise
        from ..checkpoints import CheckpointError
        from ..io import InputError

        bad_input = isinstance(err, (InputError, CheckpointError, ValueError, FileNotFoundError, PermissionError))
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        kind = "error" if bad_input else f"unexpected error ({type(err).__name__})"
        print(f"napari-sam: {kind}: {text}", file=sys.stderr)
        return EXIT_BAD_INPUT if bad_input else 1


__all__ = ["EXIT_BAD_INPUT", "build_parser", "main"]
