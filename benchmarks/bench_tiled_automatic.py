"""Tiled segment everything with the bundled model: memory on 8,192², quality on 2,048².

* **Memory**: an 8,192² uint16 nuclei mosaic (``data.mosaic``, nuclei 15-30 px, made 1,024 rows
  at a time and written to a temporary zarr, so the image never exists whole in memory) is
  segmented tile by tile into a zarr ``out=``; the RSS is sampled every 20 ms during
  ``generate`` (and the process peak ``ru_maxrss`` is given too). Tiling ``--mem-tile``
  (default ``auto``: the model's own input, 192 + 32 px halo, 1,849 tiles) with
  ``--mem-points-per-side`` (16) points a side, as in the quality run, so the nuclei are found.
  ``--mem-max-tiles N`` stops after N tiles through the Cancel path (an exception from
  ``progress``): the time per tile and its extrapolation to all tiles are reported with the
  RSS peak of the tiles run.
* **Quality**: a 2,048² mosaic with ground truth, tiled at the model's own input (192 + 32 px
  halo: 256 px outer windows) against single-tile runs on the 256² crops of the same image:
  true objects found (IoU >= 0.5) per object, labels per area, and the objects crossing a core
  edge that are split (two labels each covering >= 20 %), with the split rate of single tiles
  and of objects crossing no core edge for comparison. *Split by the tiling*: a crossing
  object split in the tiled labels although a tile window holding it whole found it
  (IoU >= 0.5) and did not split it (the others: the model split or missed it in every view).
  *Joined*: true objects sharing one label with another (>= 50 % of each: false joins). The
  tiled run takes back the bites labels hold of their neighbours and joins touching labels that
  are one object (``join_touching``, on when tiled: ``seam.BiteJudge``, ``merge.UnionJudge``);
  ``--no-join`` stitches without either (json part ``quality_without_join``). ``--cache DIR`` keeps
  every window's records and features, so a second run (e.g. ``--no-join``) re-stitches the same
  masks; the grid's seconds per tile are then the first run's.

    OMP_NUM_THREADS=1 python benchmarks/bench_tiled_automatic.py [--size 8192] [--mem-max-tiles 200]
    OMP_NUM_THREADS=1 python benchmarks/bench_tiled_automatic.py --skip-memory [--cache DIR] [--no-join]

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
        tile = args.mem_tile if args.mem_tile == "auto" else int(args.mem_tile)
        seg = ns.AutomaticSegmenter(model, points_per_side=args.mem_points_per_side, tile_shape=tile,
                                    halo=args.mem_halo)
        grid = seg.tiling(image.shape)
        limit = args.mem_max_tiles or len(grid)
        done = [0]

        def progress(d, n):
            done[0] = d
            print(f"\r  tile {d}/{n}", end="", flush=True)
            if d >= limit:
                raise KeyboardInterrupt  # the Cancel path: the tiles done stay in out

        before = rss_mb()
        t0 = time.perf_counter()
        with RssSampler() as s:
            try:
                seg.generate(image, out=out, progress=progress)
            except KeyboardInterrupt:
                pass
        seconds = time.perf_counter() - t0
        print()
        n = int(max(out[y:y + 1024].max() for y in range(0, args.size, 1024)))
    per_tile = seconds / done[0]
    return {"size": args.size, "tiling": grid.describe(), "points_per_side": args.mem_points_per_side,
            "tiles": len(grid), "tiles_run": done[0], "seconds": round(seconds, 1),
            "seconds_per_tile": round(per_tile, 2), "extrapolated_seconds_all_tiles": round(per_tile * len(grid)),
            "rss_before_generate_mb": round(before),
            "rss_peak_during_generate_mb": round(s.peak),
            "process_max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "labels": n,
            "labels_per_mpx_of_cores_run": round(n / (done[0] * grid.tile_shape[0] * grid.tile_shape[1]) * 1e6, 1)}


def save_records(path, records, seconds) -> None:
    """One tile's records (and the seconds they took) as plain arrays (no pickle)."""
    flat = [r.patch.ravel() for r in records]
    np.savez(path, boxes=np.array([r.box for r in records], np.int64).reshape(-1, 4),
             shapes=np.array([r.patch.shape for r in records], np.int64).reshape(-1, 2),
             patches=np.concatenate(flat) if flat else np.zeros(0, bool),
             scores=np.array([(r.predicted_iou, r.stability_score) for r in records], np.float64).reshape(-1, 2),
             points=np.array([r.point for r in records], np.float64).reshape(-1, 2),
             crops=np.array([r.crop_box for r in records], np.int64).reshape(-1, 4), seconds=np.float64(seconds))


def load_records(path):
    from napari_sam.engine.auto.records import MaskRecord

    z = np.load(path)
    out, at = [], 0
    for box, shape, sc, pt, crop in zip(z["boxes"], z["shapes"], z["scores"], z["points"], z["crops"]):
        n = int(shape[0] * shape[1])
        out.append(MaskRecord(tuple(int(v) for v in box), z["patches"][at:at + n].reshape(shape).copy(), float(sc[0]),
                              float(sc[1]), (float(pt[0]), float(pt[1])), tuple(int(v) for v in crop)))
        at += n
    return out, float(z["seconds"])


def tiled_with_views(seg, image, grid, cache=None, join=True):
    """What ``seg.generate(image)`` does tiled (each window encoded once, records per tile
    window with the whole image's contrast limits, :class:`TileStitcher` with the
    :class:`BiteJudge` and :class:`UnionJudge` on the window's features unless ``join`` is False), also giving each
    window's own labels and the seconds: segmenting the windows (the grid), stitching (with
    the judge). ``cache``: a folder keeping every window's records and features: a second run
    re-stitches them (the grid's seconds are then the first run's)."""
    import torch

    from napari_sam.engine.auto import tiled
    from napari_sam.engine.auto.merge import UnionJudge
    from napari_sam.engine.auto.records import records_to_labels
    from napari_sam.engine.auto.seam import BiteJudge
    from napari_sam.engine.auto.stitch import TileStitcher
    from napari_sam.engine.image.preprocess import to_uint8_rgb

    limits = tiled.image_contrast_limits(image)
    p = seg.params
    out = np.zeros(image.shape[:2], np.int32)
    judge = UnionJudge(seg.model, seg.transform) if join else None
    bites = BiteJudge(seg.model, seg.transform) if join else None
    stitcher = TileStitcher(grid, out.shape, p.min_mask_region_area, judge=judge, bites=bites)
    views, grid_s, stitch_s = [], 0.0, 0.0
    for tile in grid:
        ys, xs = tile.outer_slices
        rec_path = None if cache is None else Path(cache) / f"tile{tile.index}.npz"
        feat_path = None if cache is None else Path(cache) / f"tile{tile.index}.pt"
        if rec_path is not None and rec_path.exists() and feat_path.exists():
            records, seconds = load_records(rec_path)
            feats = torch.load(feat_path, weights_only=True)
        else:
            t0 = time.perf_counter()
            rgb = to_uint8_rgb(image[ys, xs], limits)
            feats = seg.transform.encode(rgb)
            records = seg.generate_records(rgb, features=feats)
            seconds = time.perf_counter() - t0
            if rec_path is not None:
                rec_path.parent.mkdir(parents=True, exist_ok=True)
                save_records(rec_path, records, seconds)
                torch.save({k: v.cpu() for k, v in feats.items()}, feat_path)
        grid_s += seconds
        t0 = time.perf_counter()
        stitcher.add(tile, records, out, features=feats)
        stitch_s += time.perf_counter() - t0
        views.append(records_to_labels(records, tile.outer_shape, p.min_mask_region_area))
    return out, views, grid_s, stitch_s


def quality_run(model, args):
    import napari_sam as ns
    from napari_sam.data.mosaic import mosaic
    from napari_sam.engine.auto import tiled_metrics as tm

    size = args.quality_size
    sample = mosaic((size, size), scene=512, distinct=4, seed=7)
    truth = sample.labels
    seg = ns.AutomaticSegmenter(model, points_per_side=args.points_per_side, tile_shape=192, halo=32)
    grid = seg.tiling(truth.shape)
    labels, views, grid_s, stitch_s = tiled_with_views(seg, sample.image, grid, args.cache, not args.no_join)
    inner = tm.interior_ids(truth)
    crossing = tm.crossing_ids(truth, grid) & inner
    rest = inner - crossing
    split = tm.split_ids(truth, labels, inner)
    found = tm.found(truth, labels)
    joined = tm.joined_ids(truth, labels, inner)
    single = ns.AutomaticSegmenter(model, points_per_side=args.points_per_side)
    w = 256
    hits = total = n_labels = split_single = joined_single = 0
    t0 = time.perf_counter()
    for y in range(0, size - w + 1, w):
        for x in range(0, size - w + 1, w):
            part = truth[y:y + w, x:x + w]
            pred = single.generate(sample.image[y:y + w, x:x + w])
            own = tm.interior_ids(part)
            hits += len(tm.found(part, pred) & own)
            split_single += len(tm.split_ids(part, pred, own))
            joined_single += len(tm.joined_ids(part, pred, own))
            total += len(own)
            n_labels += int(pred.max())
    single_s = time.perf_counter() - t0
    # a crossing object split by the tiling: split in the tiled labels although a tile window
    # holding it whole found it (IoU >= 0.5) unsplit (the rest: every view of it split or missed)
    good = set()
    for tile, pred in zip(grid, views):
        ys, xs = tile.outer_slices
        part = truth[ys, xs]
        own = tm.interior_ids(part) & crossing
        good |= (tm.found(part, pred) & own) - tm.split_ids(part, pred, own)
    split_by_tiling = split & crossing & good
    covered = (size // w * w) ** 2
    tiled_found, single_found = len(found & inner) / len(inner), hits / total
    return {
        "size": size, "tiling": grid.describe(), "points_per_side": args.points_per_side,
        "join_touching": not args.no_join, "records_cached": args.cache is not None,
        "tiled_seconds": round(grid_s + stitch_s, 1), "grid_seconds_per_tile": round(grid_s / len(grid), 2),
        "stitch_seconds_per_tile": round(stitch_s / len(grid), 3), "single_tiles_seconds": round(single_s, 1),
        "true_objects_interior": len(inner), "found_tiled": round(tiled_found, 4),
        "found_single_tiles": round(single_found, 4), "found_ratio": round(tiled_found / single_found, 4),
        "labels_per_mpx_tiled": round(int(labels.max()) / size**2 * 1e6, 1),
        "labels_per_mpx_single_tiles": round(n_labels / covered * 1e6, 1),
        "crossing_objects": len(crossing),
        "crossing_split_rate": round(len(split & crossing) / len(crossing), 4),
        "crossing_split_pieces_in_two_cores_rate":
            round(len(tm.seam_split_ids(truth, labels, grid, crossing)) / len(crossing), 4),
        "crossing_seen_whole_by_a_window_rate": round(len(good) / len(crossing), 4),
        "crossing_split_by_tiling": len(split_by_tiling),
        "crossing_split_by_tiling_rate": round(len(split_by_tiling) / len(crossing), 4),
        "non_crossing_split_rate": round(len(split & rest) / max(len(rest), 1), 4),
        "single_tiles_split_rate": round(split_single / total, 4),
        "joined_rate": round(len(joined) / len(inner), 4),
        "joined_crossing_rate": round(len(joined & crossing) / len(crossing), 4),
        "single_tiles_joined_rate": round(joined_single / total, 4),
        "found_crossing": round(len(found & crossing) / len(crossing), 4),
        "found_non_crossing": round(len(found & rest) / max(len(rest), 1), 4),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--quality-size", type=int, default=2048)
    ap.add_argument("--points-per-side", type=int, default=16)
    ap.add_argument("--mem-tile", default="auto", help="'auto' or a core size in pixels")
    ap.add_argument("--mem-points-per-side", type=int, default=16)
    ap.add_argument("--mem-halo", type=int, default=None)
    ap.add_argument("--mem-max-tiles", type=int, default=0, help="stop (Cancel) after this many tiles; 0: all")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--no-join", action="store_true", help="quality without join_touching (the step off)")
    ap.add_argument("--cache", default=None, help="folder keeping the quality run's per-tile records and features; "
                    "a second run re-stitches them")
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
    part = "quality_without_join" if args.no_join else "quality"
    if not args.skip_quality:
        result[part] = quality_run(model, args)
        print(json.dumps(result[part], indent=1))
    out = HERE / "results" / "tiled_automatic.json"
    out.parent.mkdir(exist_ok=True)
    if out.exists():  # a part skipped keeps its last figures
        old = json.loads(out.read_text())
        for key in ("memory", "quality", "quality_without_join"):
            if key not in result and key in old:
                result[key] = {**old[key], "from_earlier_run": True}
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
