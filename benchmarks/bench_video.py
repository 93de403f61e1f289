"""SAM 2 video propagation: our VideoSession vs the official SAM2VideoPredictor, per frame.

Same random weights, same frames, CPU fp32, in one process. Image features are computed
beforehand for both sides (the encoder is timed separately), so the per-frame time is the
tracking alone: memory attention, SAM heads, memory encoding, for every object. The two
propagations run interleaved frame by frame (load drifts hit both alike); the first tracked
frames are a warm-up, the figure is the median of the rest.

Benchmark-only patches of the official predictor: its bf16-stored memories are cast back to
fp32 (it cannot compute with them on CPU otherwise), and its per-frame feature cache is filled
from the precomputed features.

    python benchmarks/bench_video.py --config sam2.1_hiera_tiny --frames 4 --objects 1 20
    python benchmarks/bench_video.py --config reduced --size 512 --frames 10 --objects 1 20
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
from common import interleaved, load_average, machine

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "engine")]

from conftest import perturb_  # noqa: E402
from video_reference import moving_blobs, official_predictor, write_frames  # noqa: E402

from napari_sam.engine.malloc_tuning import tune_malloc  # noqa: E402
from napari_sam.engine.image.preprocess import preprocess_sam2_video, to_uint8_rgb  # noqa: E402
from napari_sam.engine.video.session import VideoSession  # noqa: E402
from napari_sam.models.sam2 import SAM2_CONFIGS, reduced_config  # noqa: E402

RESULTS = Path(__file__).parent / "results"


class Precomputed:
    """Stands in for an EmbeddingStore: every frame's features computed beforehand."""

    def __init__(self, model, feats):
        self.model, self.feats, self.contrast_limits = model, feats, (0.0, 255.0)

    def __len__(self):
        return len(self.feats)

    def get(self, t):
        return self.feats[t]


def click_grid(k: int, h: int, w: int) -> list[list[float]]:
    n = int(np.ceil(np.sqrt(k)))
    ys, xs = np.linspace(0.2 * h, 0.8 * h, n), np.linspace(0.2 * w, 0.8 * w, n)
    return [[float(x), float(y)] for y in ys for x in xs][:k]


def run(cfg, frames, k: int, warmup: int, tmp: Path, cache_bytes: int) -> dict:
    pred, ours = official_predictor(cfg, seed=0, perturb=lambda m, seed: perturb_(m, seed=seed, scale=0.06))
    n, h, w = frames.shape[:3]
    x = [preprocess_sam2_video(to_uint8_rgb(f, (0, 255)), cfg.image_size) for f in frames]
    with torch.inference_mode():
        enc = interleaved({"official": lambda: pred.forward_image(x[0]), "ours": lambda: ours.encode_image(x[0])},
                          repeats=3)
        ours_feats = [ours.encode_image(xi) for xi in x]
        ref_feats = [(xi, pred.forward_image(xi)) for xi in x]

    state = pred.init_state(write_frames(frames, tmp / f"frames_{k}"))
    original = pred._get_image_feature

    def from_precomputed(inference_state, frame_idx, batch_size):
        inference_state["cached_features"] = {frame_idx: ref_feats[frame_idx]}
        return original(inference_state, frame_idx, batch_size)

    pred._get_image_feature = from_precomputed
    session = VideoSession(ours, frames, embeddings=Precomputed(ours, ours_feats), fill_hole_area=0,
                           projection_cache_bytes=cache_bytes)
    with torch.inference_mode():
        for i, (px, py) in enumerate(click_grid(k, h, w)):
            pred.add_new_points_or_box(state, 0, i + 1, points=[[px, py]], labels=[1])
            session.add_prompts(0, i + 1, points=[[px, py]], labels=[1])
        gens = {"official": pred.propagate_in_video(state), "ours": session.propagate()}
        times = {"official": [], "ours": []}
        for _ in range(n):
            for name, gen in gens.items():
                t0 = time.perf_counter()
                next(gen)
                times[name].append(time.perf_counter() - t0)
    tracked = {name: t[1 + warmup:] for name, t in times.items()}  # frame 0 holds the clicks
    med = {name: statistics.median(t) for name, t in tracked.items()}
    return {"objects": k, "official_s": med["official"], "ours_s": med["ours"],
            "ratio": med["ours"] / med["official"], "frames_timed": len(tracked["ours"]),
            "encoder_official_s": enc["official"], "encoder_ours_s": enc["ours"],
            "all_official_s": times["official"], "all_ours_s": times["ours"]}


def write_markdown() -> None:
    rows = []
    for f in sorted(RESULTS.glob("video_speed_*.json")):
        rows.append(json.loads(f.read_text()))
    lines = ["# SAM 2 video propagation: VideoSession vs official SAM2VideoPredictor", "",
             "Per-frame tracking time (all objects, image features precomputed), median after a",
             "warm-up, the two runs interleaved frame by frame in one process; CPU fp32.",
             "Produced by `benchmarks/bench_video.py`.", ""]
    for r in rows:
        lines += [f"## {r['config']} at {r['image_size']} px, {r['frame_shape'][0]}x{r['frame_shape'][1]} frames",
                  "", f"Machine: {r['machine']}; {r['frames']} frames, clicks on frame 0, the first "
                  f"{r['warmup']} tracked frame(s) not timed (the memory bank holds all 7 memories from frame 7 on); "
                  f"projection cache {r['cache_mb']} MiB." + (f" {r['note']}." if r.get("note") else ""), "",
                  "| measure | official | ours | ratio (ours / official) |", "|---|---|---|---|"]
        enc = r["runs"][0]
        lines.append(f"| image encoder, one frame | {enc['encoder_official_s']:.3f} s | {enc['encoder_ours_s']:.3f} s "
                     f"| {enc['encoder_ours_s'] / enc['encoder_official_s']:.2f}x |")
        for run_ in r["runs"]:
            lines.append(f"| propagation per frame, {run_['objects']} object(s) (median of {run_['frames_timed']}) "
                         f"| {run_['official_s']:.3f} s | {run_['ours_s']:.3f} s | {run_['ratio']:.2f}x |")
        lines.append("")
    (RESULTS / "video.md").write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="reduced", help="'reduced' or an official name, e.g. sam2.1_hiera_tiny")
    ap.add_argument("--size", type=int, default=None, help="model input size (default: the config's)")
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--objects", type=int, nargs="+", default=[1, 20])
    ap.add_argument("--frame-shape", type=int, nargs=2, default=[512, 512])
    ap.add_argument("--cache-mb", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--note", default="", help="written into the results, e.g. that the machine was shared")
    ap.add_argument("--tag", default="", help="appended to the result file's name (e.g. run1)")
    args = ap.parse_args()
    tune_malloc()  # opt in to the allocator settings the CLI / widget use (engine/malloc_tuning.py)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = reduced_config("2.1") if args.config == "reduced" else SAM2_CONFIGS[args.config]
    if args.size:
        cfg = cfg.replace(image_size=args.size)
    frames = moving_blobs(args.frames, *args.frame_shape)
    runs, load_start = [], load_average()
    with tempfile.TemporaryDirectory() as tmp:
        for k in args.objects:
            r = run(cfg, frames, k, args.warmup, Path(tmp), args.cache_mb * 2**20)
            print(f"{k} object(s): official {r['official_s']:.3f} s/frame, ours {r['ours_s']:.3f} s/frame, "
                  f"ratio {r['ratio']:.2f}x (encoder {r['encoder_official_s']:.3f} vs {r['encoder_ours_s']:.3f} s)",
                  flush=True)
            runs.append(r)
    record = {"config": args.config, "image_size": cfg.image_size, "frame_shape": args.frame_shape,
              "frames": args.frames, "warmup": args.warmup, "cache_mb": args.cache_mb,
              "machine": machine(), "runs": runs, "note": args.note,
              "load_average_start": load_start, "load_average_end": load_average()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"video_speed_{args.config}_{cfg.image_size}_f{args.frames}w{args.warmup}_o{'-'.join(map(str, args.objects))}{args.tag}"
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=1))
    write_markdown()
    print((RESULTS / "video.md").read_text())


if __name__ == "__main__":
    main()
