"""Tiled segment everything with the bundled model: memory on 8,192², quality on 2,048².

* **Memory**: an 8,192² uint16 nuclei mosaic (``data.mosaic``, made 1,024 rows at a time and
  written to a temporary zarr, so the image never exists whole in memory) is segmented tile by
  tile into a zarr ``out=``; the RSS is sampled every 20 ms during ``generate`` (and the
  process peak ``ru_maxrss`` is given too). Tiling ``--mem-tile`` + ``--mem-halo`` (default
  992 + 32: 81 tiles; at the model's own 192 + 32 the 8,192² image has 1,849 tiles, hours on
  two CPU cores) with ``--mem-points-per-side`` (8) points a side.
* **Quality**: a 2,048² mosaic with ground truth, tiled at the model's own input (192 + 32 px
  halo: 256 px outer windows) against single-tile runs on the 256² crops of the same image:
  true objects found (IoU >= 0.5) per object, labels per area, and the objects crossing a core
  edge that are split (two labels each covering >= 20 %), split by the tiling (pieces owned by
  different tiles), with the split rate of single tiles for comparison.

    OMP_NUM_THREADS=2 python benchmarks/bench_tiled_automatic.py [--size 8192] [--points-per-side 16]

Writes ``benchmarks/results/tiled_automatic.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE)]


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler:
    def __init__(self, every=0.02):
        self.every, self.peak, self._stop = every, rss_mb(), threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb())
            time.sleep(self.every)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_mb())


def make_zarr(path, size, band=1024):
    import zarr

    from napari_sam.data.mosaic import mosaic

    z = zarr.open_array(str(path), mode="w", shape=(size, size), chunks=(1024, 1024), dtype="uint16")
    for i, y in enumerate(range(0, size, band)):
        z[y:y + band] = mosaic((min(band, size - y), size), scene=512, distinct=2, seed=100 + i).image
    return z


def memory_run(model, args):
    import zarr

    import napari_sam as ns

    with tempfile.TemporaryDirectory() as tmp:
        image = make_zarr(Path(tmp) / "image.zarr", args.size)
        out = zarr.open_array(str(Path(tmp) / "labels.zarr"), mode="w", shape=image.shape, chunks=(1024, 1024),
                              dtype="int32")
        seg = ns.AutomaticSegmenter(model, points_per_side=args.mem_points_per_side, tile_shape=args.mem_tile,
                                    halo=args.mem_halo)
        grid = seg.tiling(image.shape)
        before = rss_mb()
        t0 = time.perf_counter()
        with RssSampler() as s:
            seg.generate(image, out=out, progress=lambda d, n: print(f"\r  tile {d}/{n}", end="", flush=True))
        seconds = time.perf_counter() - t0
        print()
        n = int(max(out[y:y + 1024].max() for y in range(0, args.size, 1024)))
    return {"size": args.size, "tiling": grid.describe(), "points_per_side": args.mem_points_per_side, "tiles": len(grid), "seconds": round(seconds, 1),
            "seconds_per_tile": round(seconds / len(grid), 2), "rss_before_generate_mb": round(before),
            "rss_peak_during_generate_mb": round(s.peak),
            "process_max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "labels": n}


def quality_run(model, args):
    import napari_sam as ns
    from napari_sam.data.mosaic import mosaic
    from napari_sam.engine.auto import tiled_metrics as tm

    size = args.quality_size
    sample = mosaic((size, size), scene=512, distinct=4, seed=7)
    truth = sample.labels
    seg = ns.AutomaticSegmenter(model, points_per_side=args.points_per_side, tile_shape=192, halo=32)
    grid = seg.tiling(truth.shape)
    t0 = time.perf_counter()
    labels = seg.generate(sample.image)
    tiled_s = time.perf_counter() - t0
    inner = tm.interior_ids(truth)
    crossing = tm.crossing_ids(truth, grid) & inner
    rest = inner - crossing
    split = tm.split_ids(truth, labels, inner)
    found = tm.found(truth, labels)
    single = ns.AutomaticSegmenter(model, points_per_side=args.points_per_side)
    w = 256
    hits = total = n_labels = split_single = 0
    t0 = time.perf_counter()
    for y in range(0, size - w + 1, w):
        for x in range(0, size - w + 1, w):
            part = truth[y:y + w, x:x + w]
            pred = single.generate(sample.image[y:y + w, x:x + w])
            own = tm.interior_ids(part)
            hits += len(tm.found(part, pred) & own)
            split_single += len(tm.split_ids(part, pred, own))
            total += len(own)
            n_labels += int(pred.max())
    single_s = time.perf_counter() - t0
    covered = (size // w * w) ** 2
    tiled_found, single_found = len(found & inner) / len(inner), hits / total
    return {
        "size": size, "tiling": grid.describe(), "points_per_side": args.points_per_side,
        "tiled_seconds": round(tiled_s, 1), "single_tiles_seconds": round(single_s, 1),
        "true_objects_interior": len(inner), "found_tiled": round(tiled_found, 4),
        "found_single_tiles": round(single_found, 4), "found_ratio": round(tiled_found / single_found, 4),
        "labels_per_mpx_tiled": round(int(labels.max()) / size**2 * 1e6, 1),
        "labels_per_mpx_single_tiles": round(n_labels / covered * 1e6, 1),
        "crossing_objects": len(crossing),
        "crossing_split_rate": round(len(split & crossing) / len(crossing), 4),
        "crossing_split_by_tiling_rate": round(len(tm.seam_split_ids(truth, labels, grid, crossing)) / len(crossing), 4),
        "non_crossing_split_rate": round(len(split & rest) / max(len(rest), 1), 4),
        "single_tiles_split_rate": round(split_single / total, 4),
        "found_crossing": round(len(found & crossing) / len(crossing), 4),
        "found_non_crossing": round(len(found & rest) / max(len(rest), 1), 4),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--quality-size", type=int, default=2048)
    ap.add_argument("--points-per-side", type=int, default=16)
    ap.add_argument("--mem-tile", type=int, default=992)
    ap.add_argument("--mem-points-per-side", type=int, default=8)
    ap.add_argument("--mem-halo", type=int, default=32)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    args = ap.parse_args(argv)
    import torch

    from common import machine

    import napari_sam as ns

    model = ns.load_model("embedded")
    result = {"machine": machine(), "threads": torch.get_num_threads(),
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "model": "embedded (256 px input)"}
    if not args.skip_memory:
        result["memory"] = memory_run(model, args)
        print(json.dumps(result["memory"], indent=1))
    if not args.skip_quality:
        result["quality"] = quality_run(model, args)
        print(json.dumps(result["quality"], indent=1))
    out = HERE / "results" / "tiled_automatic.json"
    out.parent.mkdir(exist_ok=True)
    if out.exists():  # a part skipped keeps its last figures
        old = json.loads(out.read_text())
        for part in ("memory", "quality"):
            if part not in result and part in old:
                result[part] = {**old[part], "from_earlier_run": True}
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
