"""Tiled embeddings (issue 12): quality and speed of ImagePredictor with tiles, and micro-sam's.

Quality (bundled "embedded" model, input 256 px, tiles 192 + halo 32 = 256-px windows, the
image at its own resolution): on generated nuclei mosaics (nuclei 15-30 px) of 2,048² and
4,096², one centre click (best of 3 by predicted IoU) and one bounding box per sampled whole
object, tiled, against the same object's figure on its own single-tile crop (a 256² window
centred on it, the same contrast limits); objects straddling a core edge against interior
ones. And the held-out 512² scenes (seeds 500-502): tiled against today's whole-image figures.

Speed (CPU, medians): embedding the 4,096² mosaic against (number of tiles x one tile); a
click on the cached tiled image; and side by side with micro-sam 1.8.14
(``micro_sam.util.precompute_image_embeddings(predictor, image, tile_shape=, halo=)``,
``micro_sam.prompt_based_segmentation.segment_from_points`` / ``segment_from_box``) on the
same SAM 1 vit_b random weights and the same tile_shape / halo.

    OMP_NUM_THREADS=2 python benchmarks/bench_tiling.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, median_time  # noqa: E402

import napari_sam as ns  # noqa: E402
from napari_sam.data.mosaic import mosaic  # noqa: E402
from napari_sam.engine.image.preprocess import robust_limits, to_uint8_rgb  # noqa: E402
from napari_sam.training.evaluate import iou  # noqa: E402
from napari_sam.training.prompts import bounding_box, centre_point  # noqa: E402

TILE, HALO, OUTER = (192, 192), (32, 32), 256
RESULTS = Path(__file__).parent / "results" / "tiling.json"


def whole_objects(labels, scene, tile):
    """(straddling, interior) ids of objects >= 40 px not cut by a scene edge / the border."""
    from scipy import ndimage

    across, inside = [], []
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None or (labels[sl] == k).sum() < 40:
            continue
        spans = [(s.start, s.stop) for s in sl]
        if any(lo // scene != (hi - 1) // scene or lo % scene == 0 or hi % scene == 0 for lo, hi in spans):
            continue
        (across if any(lo // tile != (hi - 1) // tile for lo, hi in spans) else inside).append(k)
    return across, inside


def quality(model, size, n_each, seed=0, scene=512):
    s = mosaic((size, size), scene=scene, distinct=4, seed=seed)
    pred = ns.ImagePredictor(model, tile_shape=TILE, halo=HALO)
    t0 = time.perf_counter()
    pred.set_image(s.image)
    embed_s = time.perf_counter() - t0
    across, inside = whole_objects(s.labels, scene, TILE[0])
    rng = np.random.default_rng(seed)
    picks = [(1, k) for k in rng.choice(across, min(n_each, len(across)), replace=False)]
    picks += [(0, k) for k in rng.choice(inside, min(n_each, len(inside)), replace=False)]
    limits, crop_pred, rows, click_s = robust_limits(s.image), ns.ImagePredictor(model), [], []
    for crosses, k in picks:
        gt = s.labels == k
        click, box = centre_point(gt), bounding_box(gt)
        t0 = time.perf_counter()
        res = pred.predict(points=click[None], labels=[1])
        click_s.append(time.perf_counter() - t0)
        t_click, t_box = iou(res.best, gt), iou(pred.predict(box=box, multimask=False).masks[0], gt)
        ys, xs = np.nonzero(gt)
        y0 = int(np.clip((ys.min() + ys.max()) // 2 - OUTER // 2, 0, size - OUTER))
        x0 = int(np.clip((xs.min() + xs.max()) // 2 - OUTER // 2, 0, size - OUTER))
        crop = (slice(y0, y0 + OUTER), slice(x0, x0 + OUTER))
        crop_pred.set_image(s.image[crop], contrast_limits=limits)
        sh = np.array([x0, y0], float)
        c_click = iou(crop_pred.predict(points=(click - sh)[None], labels=[1]).best, gt[crop])
        c_box = iou(crop_pred.predict(box=box - np.tile(sh, 2), multimask=False).masks[0], gt[crop])
        rows.append((crosses, t_click, t_box, c_click, c_box))
    r = np.array(rows)
    a, i = r[r[:, 0] == 1], r[r[:, 0] == 0]
    out = {
        "size": size, "tiles": len(pred.grid), "grid": pred.grid.describe(), "objects": len(r),
        "straddling": len(a), "interior": len(i), "embed_s": round(embed_s, 2),
        "click_ms_median": round(1000 * statistics.median(click_s), 1),
        "tiled_click_iou": r[:, 1].mean(), "tiled_box_iou": r[:, 2].mean(),
        "crop_click_iou": r[:, 3].mean(), "crop_box_iou": r[:, 4].mean(),
        "straddling_click_iou": a[:, 1].mean(), "interior_click_iou": i[:, 1].mean(),
        "straddling_box_iou": a[:, 2].mean(), "interior_box_iou": i[:, 2].mean(),
    }
    out["click_ratio_tiled_vs_crop"] = out["tiled_click_iou"] / out["crop_click_iou"]
    out["box_ratio_tiled_vs_crop"] = out["tiled_box_iou"] / out["crop_box_iou"]
    out["click_ratio_straddling_vs_interior"] = out["straddling_click_iou"] / out["interior_click_iou"]
    out["box_ratio_straddling_vs_interior"] = out["straddling_box_iou"] / out["interior_box_iou"]
    return {k: round(float(v), 4) if isinstance(v, float) else v for k, v in out.items()}, pred, s


def one_tile_time(model, image, repeats=5):
    window = image[:OUTER, :OUTER]
    p = ns.ImagePredictor(model)
    return median_time(lambda: p.set_image(window), repeats=repeats)


def native_512(model):
    """Held-out 512² scenes (seeds 500-502): whole image (shrunk to 256) vs tiles (own resolution)."""
    from napari_sam.training.evaluate import MIN_AREA
    from napari_sam.training.prompts import object_ids

    figs, grid = {"whole": ([], []), "tiled": ([], [])}, None
    for seed in (500, 501, 502):
        s = mosaic((512, 512), scene=512, distinct=1, seed=seed)
        for name, pred in (("whole", ns.ImagePredictor(model)), ("tiled", ns.ImagePredictor(model, "auto"))):
            pred.set_image(s.image)
            grid = pred.grid.describe() if pred.grid is not None else grid
            for k in object_ids(s.labels, MIN_AREA):
                gt = s.labels == k
                figs[name][0].append(iou(pred.predict(points=centre_point(gt)[None], labels=[1]).best, gt))
                figs[name][1].append(iou(pred.predict(box=bounding_box(gt), multimask=False).masks[0], gt))
    return {f"{n}_{w}_iou": round(float(np.mean(v[j])), 4) for n, v in figs.items() for j, w in enumerate(("click", "box"))} | {
        "objects": len(figs["whole"][0]), "grid": f"auto: {grid}"}


def versus_micro_sam(size, tile, halo, n_clicks):
    """Same SAM 1 vit_b random weights, same tile_shape / halo, same uint8 image."""
    from micro_sam import prompt_based_segmentation as mps
    from micro_sam import util as mu
    from segment_anything import SamPredictor, sam_model_registry

    torch.manual_seed(0)
    sam = sam_model_registry["vit_b"]().eval()
    with tempfile.TemporaryDirectory() as d:
        ckpt = Path(d) / "vit_b_random.pth"
        torch.save(sam.state_dict(), ckpt)
        ours = ns.load_model("sam_vit_b", checkpoint=ckpt, device="cpu")
    s = mosaic((size, size), scene=512, distinct=2, seed=7)
    image = to_uint8_rgb(s.image)[..., 0]
    official = SamPredictor(sam)
    pred = ns.ImagePredictor(ours, tile_shape=tile, halo=halo)
    t0 = time.perf_counter()
    pred.set_image(image)
    ours_embed = time.perf_counter() - t0
    t0 = time.perf_counter()
    emb = mu.precompute_image_embeddings(official, image, tile_shape=tile, halo=halo, verbose=False)
    ms_embed = time.perf_counter() - t0
    across, inside = whole_objects(s.labels, 512, tile[0])
    ids = (inside + across)[:n_clicks]
    ours_t, ms_t = [], []
    for k in ids:
        gt = s.labels == k
        x, y = centre_point(gt)
        box = bounding_box(gt)
        t0 = time.perf_counter()
        pred.predict(points=[[x, y]], labels=[1])
        pred.predict(box=box, multimask=False)
        ours_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        mps.segment_from_points(official, np.array([[y, x]]), np.array([1]), image_embeddings=emb)
        mps.segment_from_box(official, box[[1, 0, 3, 2]], image_embeddings=emb)
        ms_t.append(time.perf_counter() - t0)
    om, mm = statistics.median(ours_t[1:]), statistics.median(ms_t[1:])
    return {"size": size, "tile_shape": list(tile), "halo": list(halo), "tiles": len(pred.grid),
            "ours_embed_s": round(ours_embed, 2), "micro_sam_embed_s": round(ms_embed, 2),
            "embed_ratio": round(ours_embed / ms_embed, 3),
            "ours_click_and_box_ms": round(1000 * om, 1), "micro_sam_click_and_box_ms": round(1000 * mm, 1),
            "prompt_ratio": round(om / mm, 3), "prompts": len(ids) - 1}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller images and samples (a smoke run)")
    ap.add_argument("--no-micro-sam", action="store_true")
    ap.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096], help="mosaic sizes for quality")
    args = ap.parse_args(argv)
    model = ns.load_model("embedded", device="cpu")
    out = {"machine": machine(), "quality": [], "note": "bundled model; tiles 192 + halo 32 (256-px windows)"}
    sizes, n_each = ((1024,), 10) if args.quick else (tuple(args.sizes), 40)

    def save():  # after every stage: a run cut short keeps what it measured
        if not args.quick:
            RESULTS.write_text(json.dumps(out, indent=1) + "\n")

    for size in sizes:
        q, pred, s = quality(model, size, n_each)
        print(json.dumps(q), flush=True)
        out["quality"].append(q)
        save()
    one = one_tile_time(model, s.image)
    q = out["quality"][-1]
    out["embedding"] = {"size": q["size"], "tiles": q["tiles"], "embed_s": q["embed_s"], "one_tile_s": round(one, 4),
                        "ratio_to_tiles_x_one": round(q["embed_s"] / (q["tiles"] * one), 3),
                        "click_ms_median": q["click_ms_median"]}
    print(json.dumps(out["embedding"]), flush=True)
    save()
    out["native_512"] = native_512(model)
    print(json.dumps(out["native_512"]), flush=True)
    save()
    if not args.no_micro_sam:
        import micro_sam

        size, tile, halo = (1024, (384, 384), (64, 64)) if args.quick else (1536, (768, 768), (128, 128))
        out["micro_sam"] = {"version": micro_sam.__version__, **versus_micro_sam(size, tile, halo, 6 if args.quick else 11)}
        print(json.dumps(out["micro_sam"]), flush=True)
    save()
    if not args.quick:
        print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
