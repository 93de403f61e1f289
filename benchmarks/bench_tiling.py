"""Tiled embeddings (issue 12): quality and speed of ImagePredictor with tiles, and micro-sam's.

Quality (bundled "embedded" model, input 256 px, tiles 192 + halo 32 = 256-px windows, the
image at its own resolution): on generated nuclei mosaics (nuclei 15-30 px) of 2,048² and
4,096², one centre click (best of 3 by predicted IoU) and one bounding box per sampled whole
object, tiled, against the same object's figure on its own single-tile crop (a 256² window
centred on it, the same contrast limits); objects straddling a core edge against interior
ones. And the held-out 512² scenes (seeds 500-502): tiled against today's whole-image figures.

Speed (CPU, medians): embedding the 4,096² mosaic against (number of tiles x one tile),
interleaved; a click on the cached tiled 4,096² image (bundled model, and SAM 1 vit_b random
weights with 768 + 128 tiles), each against the same click on an untiled predictor holding
that tile's features (the tiling's overhead); and side by side with micro-sam 1.8.14
(``micro_sam.util.precompute_image_embeddings(predictor, image, tile_shape=, halo=)``,
``micro_sam.prompt_based_segmentation.segment_from_points`` / ``segment_from_box``) on the
same SAM 1 vit_b random weights and the same tile_shape / halo (768 + 128 on a 768 x 1,536
mosaic: 1 x 2 tiles; embeddings interleaved, prompts alternating); figures per tile.
Results are merged into results/tiling.json (see results/tiling.md).

    OMP_NUM_THREADS=1 python benchmarks/bench_tiling.py [--quick] [--stages ...] [--vitb-threads 2]
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
from common import load_average, machine  # noqa: E402

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


def embedding_ratio(model, size, repeats=2, singles=8):
    """Tiled embedding of a ``size``² mosaic against (number of tiles x one tile), interleaved:
    ``singles`` encodes of one 256² window (the same contrast limits), then one tiled
    embedding, ``repeats`` times, then ``singles`` more; medians of each."""
    from napari_sam.engine.image.tiled import whole_image_limits

    s = mosaic((size, size), scene=512, distinct=4, seed=0)
    limits, window = whole_image_limits(s.image), s.image[:OUTER, :OUTER]
    one, tiled = ns.ImagePredictor(model), ns.ImagePredictor(model, tile_shape=TILE, halo=HALO)
    one.set_image(window, contrast_limits=limits)  # warm-up
    t_one, t_tiled = [], []

    def singles_():
        for _ in range(singles):
            t0 = time.perf_counter()
            one.set_image(window, contrast_limits=limits)
            t_one.append(time.perf_counter() - t0)

    for _ in range(repeats):
        singles_()
        t0 = time.perf_counter()
        tiled.set_image(s.image)
        t_tiled.append(time.perf_counter() - t0)
    singles_()
    n, o, t = len(tiled.grid), statistics.median(t_one), statistics.median(t_tiled)
    return {"size": size, "grid": tiled.grid.describe(), "tiles": n, "repeats": repeats,
            "embed_s_median": round(t, 2), "embed_s_all": [round(v, 2) for v in t_tiled],
            "per_tile_ms": round(1000 * t / n, 1), "one_tile_ms_median": round(1000 * o, 1),
            "ratio_to_tiles_x_one": round(t / (n * o), 3), "threads": torch.get_num_threads(),
            "load_average": load_average()}


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


def vit_b_random(d):
    """SAM 1 vit_b with seed-0 random weights: (official Sam, ours loaded from the same checkpoint)."""
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    sam = sam_model_registry["vit_b"]().eval()
    ckpt = Path(d) / "vit_b_random.pth"
    torch.save(sam.state_dict(), ckpt)
    return sam, ns.load_model("sam_vit_b", checkpoint=ckpt, device="cpu")


def cached_click(model, size, tile, halo, n_clicks=20, seed=0, span=None):
    """Median ms of a click on a cached tiled ``size``² mosaic: the tiles the clicks need are
    encoded by an untimed first pass (all of them for the bundled model would be the same
    figure: a click only ever decodes one window), then every click is timed again."""
    from scipy import ndimage

    from napari_sam.engine.image.tiled import TiledImage, whole_image_limits
    from napari_sam.engine.image.tiling import resolve_tiling

    s = mosaic((size, size), scene=512, distinct=4, seed=seed)
    pred = ns.ImagePredictor(model, tile_shape=tile, halo=halo)
    grid = resolve_tiling(tile, halo, s.image.shape, pred.image_size)
    tiled = TiledImage(pred.model, pred.transform, grid, s.image, whole_image_limits(s.image))
    pred._set_tiled(tiled)  # tiles encoded lazily: only those the clicks need
    if span is None:  # objects well inside the centre tile's core: one tile encoded
        cy0, cy1, cx0, cx1 = grid.tile_at(size / 2, size / 2).core
    else:  # objects in the centre span² of the image (its tiles encoded)
        cy0 = cx0 = (size - span) // 2
        cy1 = cx1 = cy0 + span
    objs = ndimage.find_objects(s.labels)
    ids = [k for k, sl in enumerate(objs, start=1) if sl is not None and sl[0].start > cy0 + 40 and
           sl[0].stop < cy1 - 40 and sl[1].start > cx0 + 40 and sl[1].stop < cx1 - 40][:n_clicks]
    clicks = [centre_point(s.labels == k) for k in ids]
    windows = [pred.predict(points=c[None], labels=[1]).window for c in clicks]
    # the reference: the same click on the untiled predictor holding that window's features
    # (what the decoder costs on a window-sized image); the difference is the tiling's overhead
    refs = {}
    for w in set(windows):
        ref = refs[w] = ns.ImagePredictor(model)
        i = next(t.index for t in grid if t.outer == w)
        ref.set_embedding(pred.embedding(tile=i), (w[1] - w[0], w[3] - w[2]))
    times, ref_times = [], []
    for c, w in zip(clicks, windows):
        t0 = time.perf_counter()
        pred.predict(points=c[None], labels=[1])
        times.append(time.perf_counter() - t0)
        local = c - np.array([w[2], w[0]], float)
        t0 = time.perf_counter()
        refs[w].predict(points=local[None], labels=[1])
        ref_times.append(time.perf_counter() - t0)
    med, ref_med = statistics.median(times), statistics.median(ref_times)
    return {"size": size, "grid": grid.describe(), "region": [cy0, cy1, cx0, cx1],
            "tiles_encoded": len(tiled._tiles), "clicks": len(times), "click_ms_median": round(1000 * med, 1),
            "untiled_window_click_ms_median": round(1000 * ref_med, 1),
            "tiling_overhead_ms": round(1000 * (med - ref_med), 1), "threads": torch.get_num_threads(),
            "load_average": load_average()}


def versus_micro_sam(shape, tile, halo, n_prompts, repeats=1):
    """Same SAM 1 vit_b random weights, same tile_shape / halo, same uint8 image; embeddings
    interleaved (ours, micro-sam, ours, ...), prompts alternating one by one."""
    from micro_sam import prompt_based_segmentation as mps
    from micro_sam import util as mu
    from segment_anything import SamPredictor

    load_before = load_average()
    with tempfile.TemporaryDirectory() as d:
        sam, ours = vit_b_random(d)
    s = mosaic(shape, scene=512, distinct=2, seed=7)
    image = to_uint8_rgb(s.image)[..., 0]
    official = SamPredictor(sam)
    # what micro_sam.util.get_sam_model sets on its predictor (its embedding signature reads them)
    official.model_type = official.model_name = "vit_b"
    official._hash, official.checkpoint_path = None, None
    pred = ns.ImagePredictor(ours, tile_shape=tile, halo=halo)
    emb, t_ours, t_ms = None, [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        pred.set_image(image)
        t_ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        emb = mu.precompute_image_embeddings(official, image, tile_shape=tile, halo=halo, verbose=False)
        t_ms.append(time.perf_counter() - t0)
    try:
        ms_tiles = len(list(emb["features"].keys()))
    except Exception:  # noqa: BLE001 - a count for the record only
        ms_tiles = None
    across, inside = whole_objects(s.labels, 512, tile[0])
    ids = (inside + across)[:n_prompts + 1]
    times = {k: [] for k in ("ours_click", "ms_click", "ours_box", "ms_box")}
    for k in ids:
        gt = s.labels == k
        x, y = centre_point(gt)
        box = bounding_box(gt)
        for name, fn in (("ours_click", lambda: pred.predict(points=[[x, y]], labels=[1])),
                         ("ms_click", lambda: mps.segment_from_points(official, np.array([[y, x]]), np.array([1]),
                                                                      image_embeddings=emb)),
                         ("ours_box", lambda: pred.predict(box=box, multimask=False)),
                         ("ms_box", lambda: mps.segment_from_box(official, box[[1, 0, 3, 2]], image_embeddings=emb))):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v[1:]) for k, v in times.items()}  # the first prompt of each is a warm-up
    oe, me, n = statistics.median(t_ours), statistics.median(t_ms), len(pred.grid)
    return {"shape": list(shape), "tile_shape": list(tile), "halo": list(halo), "tiles": n, "micro_sam_tiles": ms_tiles,
            "embed_repeats": repeats, "ours_embed_s": round(oe, 2), "micro_sam_embed_s": round(me, 2),
            "ours_embed_s_per_tile": round(oe / n, 2), "micro_sam_embed_s_per_tile": round(me / n, 2),
            "embed_ratio": round(oe / me, 3),
            **{f"{k}_ms": round(1000 * v, 1) for k, v in med.items()},
            "click_ratio": round(med["ours_click"] / med["ms_click"], 3),
            "box_ratio": round(med["ours_box"] / med["ms_box"], 3), "prompts": len(ids) - 1,
            "threads": torch.get_num_threads(), "load_average_before": load_before,
            "load_average_after": load_average()}


STAGES = ("quality", "embedding", "click", "native", "vitb_click", "micro_sam")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller images and samples (a smoke run)")
    ap.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES),
                    help="what to measure; results are merged into tiling.json (other stages kept)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096], help="mosaic sizes for quality")
    ap.add_argument("--vitb-threads", type=int, default=None, help="torch threads for the vit_b stages only")
    ap.add_argument("--ms-shape", type=int, nargs=2, default=[768, 1536],
                    help="image (H W) side by side with micro-sam (tiles 768 + halo 128: 1 x 2 tiles)")
    ap.add_argument("--ms-repeats", type=int, default=1, help="interleaved embedding repeats side by side")
    args = ap.parse_args(argv)
    model = ns.load_model("embedded", device="cpu")
    out = json.loads(RESULTS.read_text()) if RESULTS.exists() and not args.quick else {}
    out |= {"machine": machine(), "note": "bundled model; tiles 192 + halo 32 (256-px windows)"}
    out.pop("status", None)
    sizes, n_each = ((1024,), 10) if args.quick else (tuple(args.sizes), 40)
    stages = set(args.stages)

    def save(key, value):  # after every stage: a run cut short keeps what it measured
        out[key] = value
        print(json.dumps({key: value}), flush=True)
        if not args.quick:
            RESULTS.write_text(json.dumps(out, indent=1) + "\n")

    if "quality" in stages:
        for size in sizes:
            q = quality(model, size, n_each)[0] | {"threads": torch.get_num_threads(), "load_average": load_average()}
            save("quality", [r for r in out.get("quality", []) if r["size"] != size] + [q])
    if "embedding" in stages:
        save("embedding", embedding_ratio(model, 1024 if args.quick else 4096, 1 if args.quick else 2))
    if "click" in stages:
        save("click_bundled", cached_click(model, 1024 if args.quick else 4096, TILE, HALO, span=512))
    if "native" in stages:
        save("native_512", native_512(model) | {"threads": torch.get_num_threads(), "load_average": load_average()})
    threads = torch.get_num_threads()
    if args.vitb_threads:
        torch.set_num_threads(args.vitb_threads)
    if "vitb_click" in stages:
        with tempfile.TemporaryDirectory() as d:
            _, vitb = vit_b_random(d)
        save("click_vit_b", cached_click(vitb, 2048 if args.quick else 4096, (768, 768), (128, 128), n_clicks=10))
    if "micro_sam" in stages:
        import micro_sam

        shape, tile, halo = ((384, 768), (384, 384), (64, 64)) if args.quick else (tuple(args.ms_shape), (768, 768), (128, 128))
        save("micro_sam", {"version": micro_sam.__version__,
                           **versus_micro_sam(shape, tile, halo, 5 if args.quick else 10, args.ms_repeats)})
    torch.set_num_threads(threads)
    if not args.quick:
        print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
