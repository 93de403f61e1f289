"""Lineage accuracy with the field's own metric library (traccuracy): CTC TRA and DET, and
division F1, on generated time-lapses with divisions (``napari_sam.data.synthetic.timelapse``).

:func:`score` is the one place the metrics come from: both sides are written as CTC folders
(:func:`napari_sam.lineage.write_ctc`, so a gap becomes a parent link as CTC requires),
loaded and scored by traccuracy: ``CTCMatcher`` + ``CTCMetrics`` give TRA and DET as the CTC
defines them; a one-to-one ``IOUMatcher`` (IoU >= 0.5) + ``DivisionMetrics`` give division F1
(that metric needs one-to-one matches). No metric is computed here by hand. :func:`tile` puts
several sequences side by side in one, so the pooled figures are traccuracy's too (matching
is per object and frame: tiles that do not touch score as the sum of their errors).

SKELETON: the trackers compared are registered in :data:`TRACKERS`; today only the current
``AutoTracker`` (no divisions). The wiring of issue #17 adds "AutoTracker with divisions" (the
lineage rules on) and a classic tracker (laptrack with splitting, fed the same per-frame
segment-everything masks). Seeds 1001-1003 are for this table only: never tune on them.

    python benchmarks/lineage_accuracy.py [--seeds 1001 1002 1003] [--frames 30] [--every 10]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from napari_sam.lineage import write_ctc

SEEDS = (1001, 1002, 1003)


def score(gt_labels, gt_parents: Mapping[int, int] | None, pred_labels,
          pred_parents: Mapping[int, int] | None, frame_buffer: int = 0) -> dict[str, float]:
    """traccuracy's ``TRA``, ``DET`` and ``division_f1`` (with the division counts) of a
    prediction against the ground truth: labels (T, H, W) + ``{daughter: mother}`` each.
    ``frame_buffer``: frames a division may be off by and still count (traccuracy's)."""
    from traccuracy import run_metrics
    from traccuracy.loaders import load_ctc_data
    from traccuracy.matchers import CTCMatcher, IOUMatcher
    from traccuracy.metrics import CTCMetrics, DivisionMetrics

    if np.shape(gt_labels) != np.shape(pred_labels):
        raise ValueError(f"ground truth {np.shape(gt_labels)} and prediction {np.shape(pred_labels)} differ in shape")
    with tempfile.TemporaryDirectory() as tmp:
        write_ctc(Path(tmp) / "gt", gt_labels, gt_parents)
        write_ctc(Path(tmp) / "pred", pred_labels, pred_parents)
        gt = load_ctc_data(str(Path(tmp) / "gt"), name="gt")
        pred = load_ctc_data(str(Path(tmp) / "pred"), name="pred")
    (ctc,), _ = run_metrics(gt, pred, CTCMatcher(), [CTCMetrics()])
    (div,), _ = run_metrics(gt, pred, IOUMatcher(iou_threshold=0.5, one_to_one=True),
                            [DivisionMetrics(max_frame_buffer=frame_buffer)])
    ctc, div = ctc["results"], div["results"][f"Frame Buffer {frame_buffer}"]
    f1 = float(div["Division F1"])
    if np.isnan(f1) and div["Total GT Divisions"] > 0:
        f1 = 0.0  # traccuracy: nan when nothing was predicted (0/0 precision); recall 0 -> F1 0
    return {
        "TRA": float(ctc["TRA"]),
        "DET": float(ctc["DET"]),
        "division_f1": f1,
        "divisions_true": int(div["Total GT Divisions"]),
        "divisions_found": int(div["Total Predicted Divisions"]),
        "divisions_right": int(div["True Positive Divisions"]),
    }


def tile(cases: Sequence[tuple[np.ndarray, Mapping[int, int]]], gap: int = 2) -> tuple[np.ndarray, dict[int, int]]:
    """Several ``(labels (T, H, W), parents)`` of the same T and H side by side along x
    (``gap`` empty columns between them), ids shifted so that they stay distinct."""
    parts, parents, offset = [], {}, 0
    for labels, par in cases:
        labels = np.asarray(labels, np.int64)
        parts.append(np.where(labels > 0, labels + offset, 0))
        parts.append(np.zeros(labels.shape[:2] + (gap,), np.int64))
        parents.update({int(d) + offset: int(m) + offset for d, m in (par or {}).items() if m})
        offset += int(labels.max(initial=0))
    return np.concatenate(parts[:-1], axis=2), parents


# ------------------------------------------------------------------------------------ trackers
Tracker = Callable[[object, np.ndarray], tuple[np.ndarray, dict[int, int]]]


def autotracker_today(model, image: np.ndarray, every: int = 10) -> tuple[np.ndarray, dict[int, int]]:
    """The current AutoTracker (segment everything + SAM 2 tracking), whatever divisions it finds."""
    from napari_sam.engine.auto.tracking import AutoTracker, TrackingParams

    tracker = AutoTracker(model, TrackingParams(every=every))
    pred = np.zeros(image.shape[:3], np.int32)
    for t, lab in tracker.run(image):
        pred[t] = lab
    return pred, dict(getattr(tracker, "parents", {}))


TRACKERS: dict[str, Tracker] = {"AutoTracker (today)": autotracker_today}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "lineage_accuracy.md"))
    args = ap.parse_args()
    import napari_sam as ns
    from napari_sam.data import synthetic

    model = ns.load_model("embedded", device="auto")
    samples = {s: synthetic.timelapse(n_frames=args.frames, seed=s) for s in args.seeds}
    lines = ["| tracker | seed | TRA | DET | division F1 | divisions true / found / right | s/frame |",
             "|---|---|---|---|---|---|---|"]
    for name, run in TRACKERS.items():
        run(model, next(iter(samples.values())).image[:2], every=args.every)  # warm-up, untimed
        outs = []
        for seed, smp in samples.items():
            t0 = time.perf_counter()
            pred, parents = run(model, smp.image, every=args.every)
            per_frame = (time.perf_counter() - t0) / len(smp.image)
            outs.append((pred, parents))
            r = score(smp.labels, smp.lineage, pred, parents)
            lines.append(f"| {name} | {seed} | {r['TRA']:.3f} | {r['DET']:.3f} | {r['division_f1']:.3f} | "
                         f"{r['divisions_true']} / {r['divisions_found']} / {r['divisions_right']} | {per_frame:.2f} |")
        gt = tile([(s.labels, s.lineage) for s in samples.values()])
        r = score(*gt, *tile(outs))
        lines.append(f"| {name} | pooled | {r['TRA']:.3f} | {r['DET']:.3f} | {r['division_f1']:.3f} | "
                     f"{r['divisions_true']} / {r['divisions_found']} / {r['divisions_right']} | |")
    text = "# Lineage accuracy (traccuracy: CTC TRA, DET, division F1)\n\n" + "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
