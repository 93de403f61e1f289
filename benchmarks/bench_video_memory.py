"""Flat memory: propagate 5 objects through a 1,000-frame 512x512 stack, watch the RSS.

The stack is a zarr array on disk (one chunk a frame), read lazily; no EmbeddingStore (each
frame is encoded when reached). The model is the reduced SAM 2.1 config of the test-suite
(same architecture and flags as the official models; Hiera width 32 with 5 blocks, 2
memory-attention layers, 256 px model input) with random weights. RSS is read with psutil
in this process after every frame; the peak is the largest of those readings (and the
kernel's ``ru_maxrss`` high-water mark of the whole process, model building included).

    python benchmarks/bench_video_memory.py [--frames 1000] [--objects 5] [--size 256]

Targets: peak RSS < 2 GB and RSS at the last frame <= 1.2 x RSS at frame 100.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch
import zarr

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]

from conftest import perturb_  # noqa: E402

from napari_sam.engine.video.session import VideoSession  # noqa: E402
from napari_sam.models.sam2 import build_sam2, reduced_config  # noqa: E402

RESULTS = Path(__file__).parent / "results"
MB = 2**20


def synthetic_frame(t: int, h: int, w: int, objects: int, rng) -> np.ndarray:
    """Bright disks drifting on a noisy background (uint8)."""
    yy, xx = np.ogrid[0:h, 0:w]
    img = rng.normal(30, 8, (h, w))
    for i in range(objects):
        cy = h * (0.2 + 0.6 * i / max(1, objects - 1)) + 10 * np.sin(t / 25 + i)
        cx = w * (0.5 + 0.3 * np.sin(t / 60 + 2 * i))
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= (0.06 * h) ** 2] = 180 + 10 * i
    return np.clip(img, 0, 255).astype(np.uint8)


def disk_usage(folder: str) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--objects", type=int, default=5)
    ap.add_argument("--side", type=int, default=512, help="frame height and width")
    ap.add_argument("--size", type=int, default=256, help="model input size")
    args = ap.parse_args()
    proc = psutil.Process()
    n, side, k = args.frames, args.side, args.objects

    with tempfile.TemporaryDirectory() as tmp:
        stack = zarr.create_array(store=os.path.join(tmp, "stack.zarr"), shape=(n, side, side),
                                  chunks=(1, side, side), dtype="uint8")
        rng = np.random.default_rng(0)
        for t in range(n):
            stack[t] = synthetic_frame(t, side, side, k, rng)
        stack = zarr.open_array(os.path.join(tmp, "stack.zarr"), mode="r")

        torch.manual_seed(0)
        cfg = reduced_config("2.1", image_size=args.size)
        model = perturb_(build_sam2(cfg), seed=0, scale=0.06).eval()
        session = VideoSession(model, stack, contrast_limits=(0, 255), memory_dir=tmp)
        for i in range(k):
            cy = side * (0.2 + 0.6 * i / max(1, k - 1)) + 10 * np.sin(i)
            cx = side * (0.5 + 0.3 * np.sin(2 * i))
            session.add_prompts(0, i + 1, points=[[cx, cy]], labels=[1])
        rss_start = proc.memory_info().rss
        rss, times = [], []
        t0 = time.perf_counter()
        for t, ids, logits in session.propagate():
            rss.append(proc.memory_info().rss)
            times.append(time.perf_counter() - t0)
            if (t + 1) % 100 == 0:
                print(f"frame {t + 1}: RSS {rss[-1] / MB:.0f} MiB, {times[-1]:.0f} s", flush=True)
        spill = disk_usage(session._store.directory)
        session.close()

    at = {m: rss[min(m, n) - 1] for m in (100, n)}
    peak_kernel = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    record = {
        "frames": n, "objects": k, "frame_shape": [side, side], "model": f"reduced SAM 2.1, {args.size} px input",
        "rss_before_propagation_mib": rss_start / MB, "rss_at_100_mib": at[100] / MB, f"rss_at_{n}_mib": at[n] / MB,
        "ratio_last_to_100": at[n] / at[100], "peak_rss_sampled_mib": max(rss) / MB,
        "peak_rss_kernel_mib": peak_kernel / MB, "spill_on_disk_mib": spill / MB,
        "seconds_per_frame": times[-1] / n, "rss_every_100_mib": [rss[i] / MB for i in range(99, n, 100)],
    }
    ok = record["peak_rss_kernel_mib"] < 2000 and record["ratio_last_to_100"] <= 1.2
    record["targets_met"] = ok
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "video_memory.json").write_text(json.dumps(record, indent=1))
    lines = [
        "# Flat memory: VideoSession propagation through a long stack", "",
        f"{n} frames of {side}x{side} uint8 (zarr on disk, read lazily), {k} objects clicked on frame 0, "
        f"propagated forward to the end; model: {record['model']} (random weights), CPU. "
        "Produced by `benchmarks/bench_video_memory.py`.", "",
        "| measure | value |", "|---|---|",
        f"| RSS before propagating | {record['rss_before_propagation_mib']:.0f} MiB |",
        f"| RSS at frame 100 | {record['rss_at_100_mib']:.0f} MiB |",
        f"| RSS at frame {n} | {record[f'rss_at_{n}_mib']:.0f} MiB |",
        f"| RSS at frame {n} / RSS at frame 100 | {record['ratio_last_to_100']:.3f} (target <= 1.2) |",
        f"| peak RSS (sampled every frame) | {record['peak_rss_sampled_mib']:.0f} MiB |",
        f"| peak RSS (kernel high-water mark, whole process) | {record['peak_rss_kernel_mib']:.0f} MiB (target < 2 GB) |",
        f"| memories spilled to disk | {record['spill_on_disk_mib']:.0f} MiB |",
        f"| time per frame (encoder + {k} objects) | {record['seconds_per_frame']:.3f} s |", "",
        "RSS every 100 frames (MiB): " + ", ".join(f"{v:.0f}" for v in record["rss_every_100_mib"]), "",
    ]
    (RESULTS / "video_memory.md").write_text("\n".join(lines))
    print("\n".join(lines))
    print("targets met" if ok else "TARGETS MISSED")


if __name__ == "__main__":
    main()
