"""EdgeTAM side by side, in one process: ours vs the official EdgeTAM code, and vs SAM 2.1 tiny.

Image embedding at ``--size`` px (default 1024, the models' input): our EdgeTAM image encoder
(as loaded, and with its trunk fused: batch norms and re-parameterised branches folded) against
the official ``edgetam-dimos`` 1.0.1 model's (the reference installed by path in ``.edgetam_ref``,
see tests/models/test_edgetam_parity.py), the same random perturbed weights; and our SAM 2.1
tiny encoder. All run interleaved (load drifts hit all alike), medians after a warm-up.

Tracking per frame (``--frames`` > 0): our ``VideoSession`` with EdgeTAM and with SAM 2.1
tiny, and the official EdgeTAM video predictor (``official_video_predictor`` of
tests/golden/make_edgetam_golden.py, one inference state per object as the official code
needs; same weights as our EdgeTAM), on the same moving blobs, image features precomputed
for all, 1 and 20 objects clicked on frame 0, stepped interleaved frame by frame; medians
after ``--warmup`` tracked frames. (The inputs must be a multiple of 256 px for the
perceiver's 16 x 16 latent grid.)

    python benchmarks/bench_edgetam.py --threads 1                      # the lead's quiet-machine run
    python benchmarks/bench_edgetam.py --threads 2 --frames 6 --objects 1 20
    python benchmarks/bench_edgetam.py --size 256 --repeats 1 --frames 0 --tag smoke   # seconds

Writes ``benchmarks/results/edgetam[_TAG].json`` and ``.md``. CPU fp32.
"""

from __future__ import annotations

import argparse
import importlib.util
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
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "models"), str(ROOT / "tests" / "engine")]

from conftest import perturb_  # noqa: E402

from napari_sam.models.edgetam import EDGETAM_CONFIG, EdgeTamImageEncoder  # noqa: E402
from napari_sam.models.sam2 import SAM2_CONFIGS, build_sam2  # noqa: E402

RESULTS = Path(__file__).parent / "results"
HAS_BUILD = importlib.util.find_spec("napari_sam.models.edgetam.build") is not None


def official_edgetam():
    """The official EdgeTAM model (random init, perturbed), or None where the reference is missing."""
    try:
        from test_edgetam_parity import build_official_edgetam

        torch.manual_seed(0)
        return perturb_(build_official_edgetam(), seed=1)
    except BaseException as err:  # pytest.skip raises a BaseException subclass
        print(f"no official EdgeTAM reference: {err}", flush=True)
        return None


def embedding(size: int, repeats: int, warmup: int) -> dict:
    """Seconds per image embedding at ``size`` px: ours, ours fused, official, SAM 2.1 tiny."""
    ref = official_edgetam()
    ours = EdgeTamImageEncoder(EDGETAM_CONFIG.replace(image_size=size)).eval()
    if ref is not None:
        sd = {k[len("image_encoder."):]: v for k, v in ref.state_dict().items() if k.startswith("image_encoder.")}
        ours.load_state_dict(sd, strict=True)
    else:
        perturb_(ours, seed=1)
    fused = EdgeTamImageEncoder(EDGETAM_CONFIG.replace(image_size=size)).eval()
    fused.load_state_dict(ours.state_dict(), strict=True)
    fused.fuse_()
    torch.manual_seed(2)
    tiny = perturb_(build_sam2(SAM2_CONFIGS["sam2.1_hiera_tiny"].replace(image_size=size)), seed=2).eval()
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(3))
    fns = {"edgetam_ours": lambda: ours(x), "edgetam_ours_fused": lambda: fused(x),
           "sam2.1_tiny_ours": lambda: tiny.encode_image(x)}
    if ref is not None:
        fns["edgetam_official"] = lambda: ref.image_encoder(x)
        with torch.inference_mode():
            err = (ours(x)[-1] - ref.image_encoder(x)["vision_features"]).abs().max().item()
        print(f"ours vs official, same weights: max |diff| of the stride-16 features {err:.2e}", flush=True)
    with torch.inference_mode():
        return interleaved(fns, repeats=repeats, warmup=warmup)


def _click_grid(k: int, h: int, w: int) -> list[list[float]]:
    n = int(np.ceil(np.sqrt(k)))
    ys, xs = np.linspace(0.2 * h, 0.8 * h, n), np.linspace(0.2 * w, 0.8 * w, n)
    return [[float(x), float(y)] for y in ys for x in xs][:k]


def _official_tracker(size: int):
    """(official EdgeTAM video predictor, our EdgeTAM with its weights), or (None, ours)."""
    from napari_sam.models.edgetam.build import build_edgetam

    ours = build_edgetam(config=EDGETAM_CONFIG.replace(image_size=size))
    try:
        from golden.make_edgetam_golden import official_video_predictor

        torch.manual_seed(4)
        pred = perturb_(official_video_predictor(size), seed=4, scale=0.06)
        ours.load_state_dict(pred.state_dict(), strict=True)
        return pred, ours.eval()
    except BaseException as err:  # the reference, timm or hydra missing
        print(f"no official EdgeTAM video predictor: {err!r}", flush=True)
        return None, perturb_(ours, seed=4).eval()


def _official_steps(pred, frames, x, clicks, folder: Path):
    """One generator per object (the official EdgeTAM predictor tracks one object per state:
    its perceiver fails on a batch of objects, see tests/golden/make_edgetam_golden.py); each
    state reads the precomputed image features (as bench_video.py does)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{t}.jpg", format="PNG")  # lossless, under the names it reads
    with torch.inference_mode():
        feats = [(xi, pred.forward_image(xi)) for xi in x]
    original = pred._get_image_feature

    def from_precomputed(inference_state, frame_idx, batch_size):
        inference_state["cached_features"] = {frame_idx: feats[frame_idx]}
        return original(inference_state, frame_idx, batch_size)

    pred._get_image_feature = from_precomputed
    gens = []
    with torch.inference_mode():
        for i, (px, py) in enumerate(clicks):
            state = pred.init_state(str(folder))
            pred.add_new_points_or_box(state, 0, i + 1, points=[[px, py]], labels=[1])
            gens.append(pred.propagate_in_video(state))
    return gens


def tracking(size: int, n_frames: int, objects: list[int], warmup: int, tmp: Path) -> list[dict]:
    """Median seconds per tracked frame (all objects): our VideoSession with EdgeTAM and with
    SAM 2.1 tiny, and the official EdgeTAM predictor (the sum over its per-object states)."""
    from video_reference import moving_blobs

    from napari_sam.engine.image.preprocess import preprocess_sam2_video, to_uint8_rgb
    from napari_sam.engine.video.session import VideoSession

    pred, edgetam = _official_tracker(size)
    torch.manual_seed(5)
    tiny = perturb_(build_sam2(SAM2_CONFIGS["sam2.1_hiera_tiny"].replace(image_size=size)), seed=5).eval()
    models = {"edgetam_ours": edgetam, "sam2.1_tiny_ours": tiny}
    frames = moving_blobs(n_frames, 512, 512)
    x = [preprocess_sam2_video(to_uint8_rgb(f, (0, 255)), size) for f in frames]
    runs = []
    for k in objects:
        clicks = _click_grid(k, 512, 512)
        steps = {}
        for name, model in models.items():
            with torch.inference_mode():
                feats = [model.encode_image(xi) for xi in x]
                session = VideoSession(model, frames, embeddings=_Precomputed(model, feats), fill_hole_area=0)
                for i, (px, py) in enumerate(clicks):
                    session.add_prompts(0, i + 1, points=[[px, py]], labels=[1])
            steps[name] = [session.propagate()]
        if pred is not None:
            steps["edgetam_official"] = _official_steps(pred, frames, x, clicks, tmp / f"frames_{k}")
        times = {name: [] for name in steps}
        with torch.inference_mode():
            for _ in range(n_frames):
                for name, gens in steps.items():
                    t0 = time.perf_counter()
                    for gen in gens:
                        next(gen)
                    times[name].append(time.perf_counter() - t0)
        med = {name: statistics.median(t[1 + warmup:]) for name, t in times.items()}  # frame 0 holds the clicks
        runs.append({"objects": k, "frames_timed": n_frames - 1 - warmup, **{f"{n}_s": v for n, v in med.items()},
                     "all": times})
        print(f"{k} object(s): " + ", ".join(f"{n} {v:.3f} s/frame" for n, v in med.items()), flush=True)
    return runs


class _Precomputed:
    """Stands in for an EmbeddingStore: every frame's features computed beforehand."""

    def __init__(self, model, feats):
        self.model, self.feats, self.contrast_limits = model, feats, (0.0, 255.0)

    def __len__(self):
        return len(self.feats)

    def get(self, t):
        return self.feats[t]


def write_markdown(record: dict, path: Path) -> None:
    emb = record["embedding_s"]
    base = emb.get("edgetam_official")
    lines = ["# EdgeTAM: ours vs the official code, and vs SAM 2.1 tiny", "",
             f"Produced by `benchmarks/bench_edgetam.py`. Machine: {record['machine']}; load average "
             f"{record['load_average_start']} -> {record['load_average_end']}."
             + (f" {record['note']}." if record.get("note") else ""), "",
             f"## Image embedding at {record['size']} px (median of {record['repeats']}, interleaved, "
             f"after {record['warmup']} warm-up)", "",
             "| encoder | time | vs official EdgeTAM |", "|---|---|---|"]
    for name, t in emb.items():
        lines.append(f"| {name} | {t:.3f} s | {t / base:.2f}x |" if base else f"| {name} | {t:.3f} s | — |")
    if record.get("tracking"):
        names = [k[:-2] for k in record["tracking"][0] if k.endswith("_s")]
        lines += ["", f"## Tracking per frame ({record['frames']} frames of 512x512 at {record['size']} px, "
                  "features precomputed, frame 0 clicked, medians)", "",
                  "| objects | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for r in record["tracking"]:
            lines.append(f"| {r['objects']} | " + " | ".join(f"{r[n + '_s']:.3f} s" for n in names) + " |")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, choices=(1, 2), default=1)
    ap.add_argument("--size", type=int, default=1024, help="model input side in px")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--frames", type=int, default=0, help="tracking benchmark over this many frames (0: none)")
    ap.add_argument("--objects", type=int, nargs="+", default=[1, 20])
    ap.add_argument("--note", default="", help="written into the results, e.g. that the machine was shared")
    ap.add_argument("--tag", default="", help="appended to the result files' name")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    record = {"size": args.size, "threads": args.threads, "repeats": args.repeats, "warmup": args.warmup,
              "frames": args.frames, "machine": machine(), "note": args.note, "load_average_start": load_average()}
    record["embedding_s"] = embedding(args.size, args.repeats, args.warmup)
    print(", ".join(f"{k} {v:.3f} s" for k, v in record["embedding_s"].items()), flush=True)
    if args.frames:
        if HAS_BUILD:
            with tempfile.TemporaryDirectory() as tmp:
                record["tracking"] = tracking(args.size, args.frames, args.objects, args.warmup, Path(tmp))
        else:
            print("models/edgetam/build.py is not there yet: no tracking figures", flush=True)
    record["load_average_end"] = load_average()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "edgetam" + (f"_{args.tag}" if args.tag else "")
    (RESULTS / f"{stem}.json").write_text(json.dumps(record, indent=1))
    write_markdown(record, RESULTS / f"{stem}.md")
    print((RESULTS / f"{stem}.md").read_text())


if __name__ == "__main__":
    main()
