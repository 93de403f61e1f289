"""Automatic tracking accuracy on the generated time-lapse sample (no clicks at all).

``AutoTracker`` with the bundled embedded model segments everything on frame 0, tracks every
object with the VideoSession and segments again every K frames for newcomers. Scored against
the sample's ground truth (``napari_sam.data.samples.sample("timelapse")``, the napari sample):

* id persistence (``auto_tracking.id_persistence``): per true object, the share of the frames
  it is present on where it is found (IoU >= 0.5) under the one id it is found with most
  often; averaged over objects — "each object keeps its id";
* detection: the share of (object, frame) pairs found at all (IoU >= 0.5), and their mean IoU.

    python benchmarks/track_accuracy.py [--every 10] [--out benchmarks/results/track_accuracy.md]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import napari_sam as ns
from napari_sam.data import samples
from napari_sam.engine.auto.tracking import AutoTracker, TrackingParams, id_persistence, overlap_table


def detection(truth: np.ndarray, pred: np.ndarray, min_iou: float = 0.5) -> tuple[float, float]:
    """(share of true (object, frame) pairs matched with IoU >= min_iou, their mean IoU)."""
    found, ious = 0, []
    total = 0
    for t in range(len(truth)):
        table, ag, ap = overlap_table(truth[t], pred[t])
        for g in np.flatnonzero(ag[1:]) + 1:
            total += 1
            inter = table[g, 1:]
            iou = inter / np.maximum(ag[g] + ap[1:] - inter, 1)
            if iou.size and iou.max() >= min_iou:
                found += 1
                ious.append(float(iou.max()))
    return found / max(total, 1), float(np.mean(ious)) if ious else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "track_accuracy.md"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sample = samples.sample("timelapse")
    model = ns.load_model("embedded", device="cpu")
    tracker = AutoTracker(model, TrackingParams(every=args.every))
    t0 = time.perf_counter()
    pred = np.zeros(sample.labels.shape, np.int32)
    for t, lab in tracker.run(sample.image):
        pred[t] = lab
    secs = time.perf_counter() - t0
    keep = id_persistence(sample.labels, pred)
    found, miou = detection(sample.labels, pred)
    n_true = len(np.unique(sample.labels[sample.labels > 0]))
    n_pred = len(np.unique(pred[pred > 0]))
    text = (
        "# Automatic tracking accuracy (embedded model, generated time-lapse sample)\n\n"
        f"`benchmarks/track_accuracy.py --every {args.every}`: `AutoTracker` on "
        f"the time-lapse sample ({sample.image.shape[0]} frames of {sample.image.shape[1]}x"
        f"{sample.image.shape[2]}, {n_true} true objects incl. daughters of divisions), no clicks; "
        f"{secs:.0f} s on CPU ({args.threads} threads).\n\n"
        "| measure | value |\n|---|---|\n"
        f"| id persistence: share of frames each object keeps its id (mean over objects) | {keep:.3f} |\n"
        f"| (object, frame) pairs found (IoU >= 0.5) | {found:.3f} |\n"
        f"| mean IoU of the found pairs | {miou:.3f} |\n"
        f"| ids created | {n_pred} |\n"
    )
    if not getattr(model, "can_track", True):
        text += ("\nThis model does not track (`weights.EMBEDDED_TRACKS` is False, docs/embedded_model.md): its "
                 "propagated masks are the same all-cells mask for every object, so these figures measure its "
                 "memory path, not the tracker. Official SAM 2 weights, which track, cannot be downloaded on "
                 "the machines this was run on.\n")
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
