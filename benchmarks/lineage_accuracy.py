"""Lineage accuracy with the field's own metric library (traccuracy): CTC TRA and DET, and
division F1, on generated time-lapses with divisions (``napari_sam.data.synthetic.timelapse``).

:func:`score` is the one place the metrics come from: both sides are written as CTC folders
(:func:`napari_sam.lineage.write_ctc`, so a gap becomes a parent link as CTC requires),
loaded and scored by traccuracy: ``CTCMatcher`` + ``CTCMetrics`` give TRA and DET as the CTC
defines them; a one-to-one ``IOUMatcher`` (IoU >= 0.5) + ``DivisionMetrics`` give division F1
(that metric needs one-to-one matches). No metric is computed here by hand. :func:`tile` puts
several sequences side by side in one, so the pooled figures are traccuracy's too (matching
is per object and frame: tiles that do not touch score as the sum of their errors).

The trackers compared (``lineage_baselines.TRACKERS``): AutoTracker with the lineage rules,
AutoTracker without them (before issue #17), and laptrack with splitting, all fed the same
per-frame segment-everything masks of the bundled model. Seeds 1001-1003 are for this table
only: never tune on them (tune on others, e.g. 7-9).

    OMP_NUM_THREADS=1 python benchmarks/lineage_accuracy.py [--seeds 1001 1002 1003] [--frames 30]
        [--cache DIR] [--set every=5 ...] [--out benchmarks/results/lineage_accuracy]
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from napari_sam.lineage import write_ctc

SEEDS = (1001, 1002, 1003)
LATE = 2  # also reported: division F1 with traccuracy's frame buffer of 2 (a division found <= 2 frames off)


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
                            [DivisionMetrics(max_frame_buffer=max(frame_buffer, LATE))])
    ctc, late, div = ctc["results"], div["results"][f"Frame Buffer {LATE}"], div["results"][f"Frame Buffer {frame_buffer}"]

    def f1_of(d):
        f1 = float(d["Division F1"])
        # traccuracy: nan when nothing was predicted (0/0 precision); recall 0 -> F1 0
        return 0.0 if np.isnan(f1) and d["Total GT Divisions"] > 0 else f1

    f1 = f1_of(div)
    return {
        "TRA": float(ctc["TRA"]),
        "DET": float(ctc["DET"]),
        "division_f1": f1,
        "divisions_true": int(div["Total GT Divisions"]),
        "divisions_found": int(div["Total Predicted Divisions"]),
        "divisions_right": int(div["True Positive Divisions"]),
        f"division_f1_buffer{LATE}": f1_of(late),
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


# ------------------------------------------------------------------------------------ run
def run_table(model, seeds: Sequence[int], frames: int, trackers: Mapping[str, Callable], cache: Path | None,
              changes: Mapping[str, object] | None = None) -> dict:
    """Every tracker on every seed's time-lapse (the same segment-everything masks for all):
    ``{tracker: {seed or "pooled": scores + s_per_frame}}``."""
    from napari_sam.data import synthetic

    segment_all = _baselines().segment_all

    samples = {s: synthetic.timelapse(n_frames=frames, seed=s) for s in seeds}
    dets = {s: segment_all(model, smp.image, cache, f"seed{s}_t{frames}") for s, smp in samples.items()}
    table: dict[str, dict] = {}
    for name, run in trackers.items():
        table[name], outs = {}, []
        total_s = 0.0
        for seed, smp in samples.items():
            saved = None if cache is None else cache / f"pred_{_slug(name)}_seed{seed}_t{frames}_{_slug(str(changes))}.npz"
            if saved is not None and saved.exists():  # a run of the same tracker, data and changes
                z = np.load(saved)
                pred, parents, seconds = z["pred"], dict(z["parents"].tolist()), float(z["seconds"])
            else:
                pred, parents, seconds = run(model, smp.image, *dets[seed], **dict(changes or {}))
                if saved is not None:
                    np.savez(saved, pred=pred, parents=np.array(sorted(parents.items()), np.int64).reshape(-1, 2),
                             seconds=seconds)
            outs.append((pred, parents))
            total_s += seconds
            table[name][str(seed)] = {**score(smp.labels, smp.lineage, pred, parents),
                                      "s_per_frame": seconds / len(smp.image)}
        gt = tile([(s.labels, s.lineage) for s in samples.values()])
        table[name]["pooled"] = {**score(*gt, *tile(outs)), "s_per_frame": total_s / (frames * len(samples))}
    return table


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)[:60]


def markdown(table: Mapping[str, Mapping[str, Mapping]]) -> str:
    lines = [f"| tracker | seed | TRA | DET | division F1 | divisions true / found / right | F1, buffer {LATE} | s/frame |",
             "|---|---|---|---|---|---|---|---|"]
    for name, per_seed in table.items():
        for seed, r in per_seed.items():
            lines.append(f"| {name} | {seed} | {r['TRA']:.3f} | {r['DET']:.3f} | {r['division_f1']:.3f} | "
                         f"{r['divisions_true']} / {r['divisions_found']} / {r['divisions_right']} | "
                         f"{r[f'division_f1_buffer{LATE}']:.3f} | {r['s_per_frame']:.2f} |")
    return "\n".join(lines) + "\n"


def _value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"True": True, "False": False, "None": None}.get(text, text)


def _baselines():
    import importlib
    import sys

    if str(Path(__file__).parent) not in sys.path:
        sys.path.insert(0, str(Path(__file__).parent))
    return importlib.import_module("lineage_baselines")


def main() -> None:
    import json

    TRACKERS = _baselines().TRACKERS

    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--trackers", nargs="+", default=list(TRACKERS), help="names in lineage_baselines.TRACKERS")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="TrackingParams changes for our trackers (e.g. every=5)")
    ap.add_argument("--cache", default=None, help="folder for the per-frame segment-everything masks")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "lineage_accuracy"))
    args = ap.parse_args()
    import napari_sam as ns

    changes = {k: _value(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    model = ns.load_model("embedded", device="auto")
    trackers = {name: TRACKERS[name] for name in args.trackers}
    table = run_table(model, args.seeds, args.frames, trackers, Path(args.cache) if args.cache else None, changes)
    text = ("# Lineage accuracy (traccuracy: CTC TRA, DET, division F1)\n\n"
            f"Generated time-lapses ({args.frames} frames of 256 x 256, seeds {', '.join(map(str, args.seeds))}), "
            f"embedded model, changes {changes or 'none'}.\n\n" + markdown(table))
    if args.out:
        Path(args.out).with_suffix(".md").write_text(text)
        Path(args.out).with_suffix(".json").write_text(json.dumps(
            {"seeds": args.seeds, "frames": args.frames, "changes": changes, "table": table}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
