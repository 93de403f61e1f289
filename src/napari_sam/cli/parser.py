"""The ``napari-sam`` argument parser: every command's options and their help."""

from __future__ import annotations

import argparse

EXIT_BAD_INPUT = 2

EPILOG = ("Memory: the command tunes the C allocator of its own process to keep freed buffers for the "
          "next frame (napari_sam.engine.malloc_tuning; NAPARI_SAM_MALLOC_TUNING=0 turns it off).")
TILING_HELP = ("Tiles (micro-sam's tile_shape and halo, in image pixels): the image is cut into a grid of "
               "tiles, each tile is its core of H x W px plus the halo on each side, and each tile with its "
               "halo is embedded on its own at the model's input size, so a large image is seen at its own "
               "pixel size (without tiles it is shrunk to the model's input). A tile must be at least 32 px "
               "and the halo at most half the tile; a tile larger than the image is clipped to it. Choose the "
               "halo at least one object diameter.")
CACHE_HELP = ("the embedding store the widget uses for this data and model (in <napari-sam cache>/embeddings; "
              "$NAPARI_SAM_CACHE moves it): one the widget made is reused, a missing one is made")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="napari-sam", description="Segment Anything (SAM 1 / SAM 2) for microscopy.",
                                epilog=EPILOG)
    sub = p.add_subparsers(dest="command", required=True)

    models = sub.add_parser("models", help="list (the default), download or verify the official weights")
    msub = models.add_subparsers(dest="action")
    msub.add_parser("list", help="every model, its size and whether it is cached (the default)")
    dl = msub.add_parser("download", help="download one model into the cache (SHA-256 checked)")
    dl.add_argument("name")
    ver = msub.add_parser("verify", help="check the SHA-256 of cached files")
    ver.add_argument("name", nargs="?")

    emb = sub.add_parser("embed", help="precompute the image-encoder features (an EmbeddingStore)", epilog=EPILOG)
    _common(emb, cache=True)
    _tiling(emb, "the store holds one chunk per frame and tile; a store made with other tiles is refused")

    seg = sub.add_parser("segment", help="segment from prompts or everything; writes labels", epilog=EPILOG)
    _common(seg)
    how = seg.add_mutually_exclusive_group(required=True)
    how.add_argument("--prompts", help="CSV or JSON prompt file (see docs/automatic.md)")
    how.add_argument("--auto", action="store_true", help="segment everything")
    _stores(seg)
    _tiling(seg, "clicks and boxes are answered in the tile that holds them best; --auto segments tile by "
            "tile and merges the masks across tile borders")
    seg.add_argument("--point-grid", action="store_true",
                     help="--auto with a model that has micro-sam's instance-segmentation decoder (e.g. "
                          "vit_b_lm): use SAM's point grid instead of the decoder (AIS, the default for "
                          "such a model; AIS runs untiled only, with --tile the point grid is used)")
    _auto_options(seg)

    trk = sub.add_parser("track", help="track objects through a stack; labels + tracks CSV [+ CTC folder, GEFF]",
                         epilog=EPILOG)
    _common(trk)
    trk.add_argument("--tracks", required=True, help="tracks table CSV (frame, id, y, x, area, parent)")
    trk.add_argument("--ctc", metavar="DIR", help="also the lineage as a Cell Tracking Challenge folder (maskTTT.tif "
                     "per frame + res_track.txt); an existing non-empty folder only with --overwrite, and only "
                     "when it is a CTC folder")
    trk.add_argument("--geff", metavar="PATH", help="also the lineage as a GEFF zarr folder (the geff package); "
                     "an existing one only with --overwrite")
    trk.add_argument("--prompts", help="track these objects instead of segmenting everything")
    _stores(trk)
    trk.add_argument("--every", type=int, default=10, help="segment again every K frames for newcomers (0: never)")
    trk.add_argument("--match-iou", type=float, default=0.3, help="IoU that makes a detection an existing track")
    _tiling(trk, "tracking tile by tile needs an automatic tracker that takes tiles (refused with a message "
            "until it does)")
    _auto_options(trk)

    demo = sub.add_parser("demo", help="napari with a synthetic sample, every object segmented and tracked")
    demo.add_argument("--sample", default="timelapse", choices=("timelapse", "nuclei_2d", "nuclei_3d"),
                      help="stacks are segmented and tracked (Track everything), a 2D image segmented")
    demo.add_argument("--model", default=None, help="registry name (default: as the other commands)")
    demo.add_argument("--headless", metavar="DIR", help="no window: write the sample, its labels (and tracks) "
                      "to DIR and print how they compare with the ground truth; progress on stderr")
    demo.add_argument("--quiet", action="store_true", help="--headless without progress bars")
    return p


def _common(sp, cache: bool = False) -> None:
    sp.add_argument("inputs", nargs="+", metavar="INPUT", help="TIFF or zarr image(s)")
    g = sp.add_mutually_exclusive_group(required=True)
    g.add_argument("-o", "--output", help="output path (one input)")
    g.add_argument("--output-dir", help="output folder: one output per input, named after it without its "
                   "image suffix (img.ome.tif -> img_labels.tif, or img.embeddings.zarr for embed); inputs "
                   "that would give outputs of the same name are refused")
    if cache:
        g.add_argument("--embeddings-cache", action="store_true", help="write into " + CACHE_HELP)
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
                    help="8-bit mapping for the model (default: an existing store's, else estimated once per stack)")
    sp.add_argument("--overwrite", action="store_true", help="replace outputs napari-sam wrote before (never "
                    "an input, nor a file or folder napari-sam did not write)")
    sp.add_argument("--scheduler", help="dask.distributed scheduler address (default: local threads)")
    sp.add_argument("--workers", type=int, default=1, help="local threads (default: %(default)s)")
    sp.add_argument("--frames-per-task", type=int, default=8, help="frames per dask task (default: %(default)s)")
    sp.add_argument("--quiet", action="store_true", help="no progress bars")


def _tiling(sp, what: str) -> None:
    g = sp.add_argument_group("tiles (large images)", f"{TILING_HELP} Here: {what}.")
    g.add_argument("--tile", nargs="+", metavar=("H", "W"), help="tile core height and width in pixels (one number: "
                   "square), or 'auto': windows of the model's input size (an image that fits one is not "
                   "tiled). Default: no tiles (the whole image)")
    g.add_argument("--halo", nargs="+", metavar=("H", "W"), help="overlap added on each side of every tile, in pixels "
                   "(one number: both); with --tile only (default: 0, or auto's own with --tile auto)")


def tiling(args) -> tuple:
    """``(tile_shape, halo)`` from ``--tile`` / ``--halo``: ``(None, None)`` (no tiles), ``("auto",
    halo or None)`` or ``((h, w), (h, w))``. Bad values are a ValueError naming them (checked
    before any work, also against the size limits of every tiling)."""
    from ..engine.image.tiling import resolve_tiling

    tile = _pixels(getattr(args, "tile", None), "--tile", allow_auto=True)
    halo = _pixels(getattr(args, "halo", None), "--halo")
    if tile is None and halo is not None:
        raise ValueError(f"--halo {' '.join(args.halo)} needs --tile H W (or --tile auto)")
    try:
        resolve_tiling(tile, halo, (1, 1), 1024)  # the limits that hold whatever the image
    except ValueError as err:
        raise ValueError(f"--tile / --halo: {err}") from None
    return tile, halo


def _pixels(values, flag: str, allow_auto: bool = False):
    if values is None:
        return None
    if allow_auto and len(values) == 1 and values[0].lower() == "auto":
        return "auto"
    if len(values) not in (1, 2) or not all(v.strip().isdigit() for v in values):
        want = "H W, one number or 'auto'" if allow_auto else "H W or one number"
        raise ValueError(f"{flag} {' '.join(values)}: give {want} (whole pixels)")
    h, w = (int(v) for v in (values * 2)[:2])
    return (h, w)


def _stores(sp) -> None:
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--embeddings", help="an EmbeddingStore folder to read / fill")
    g.add_argument("--embeddings-cache", action="store_true", help="read / fill " + CACHE_HELP)


def _auto_options(sp) -> None:
    from dataclasses import fields

    from ..engine.auto.segmenter import AutomaticParams

    g = sp.add_argument_group("segment-everything parameters (docs/automatic.md)")
    for f in fields(AutomaticParams):
        if f.name == "max_mask_fraction":
            g.add_argument("--max-mask-fraction", type=float, default=None, help=f"default {f.default}")
            continue
        if "bool" in str(f.type):  # a switch: --name / --no-name, unset keeps the model's default
            g.add_argument("--" + f.name.replace("_", "-"), action=argparse.BooleanOptionalAction, default=None,
                           help="default: " + ("on when tiled, off untiled" if f.default is None else str(f.default)))
            continue
        typ = int if f.type in ("int", int) else float
        g.add_argument("--" + f.name.replace("_", "-"), type=typ, default=None, help=f"default {f.default:g}")


def auto_changes(args) -> dict:
    """The segment-everything parameters given on the command line (the rest: the model's defaults)."""
    from dataclasses import fields

    from ..engine.auto.segmenter import AutomaticParams

    return {f.name: getattr(args, f.name) for f in fields(AutomaticParams) if getattr(args, f.name, None) is not None}
