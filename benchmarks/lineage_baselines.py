"""The trackers compared in ``lineage_accuracy.py``, all fed the same per-frame
segment-everything masks of the bundled model (:func:`segment_all`, cached on disk).

* :func:`ours`: ``AutoTracker`` with the lineage rules (divisions, gap closing, leaving);
  its detector returns the cached masks of the frames it re-detects on.
* :func:`ours_without_lineage`: the same with ``divisions=False, max_gap=0, leaving=False``
  (the tracker before issue #17).
* :func:`laptrack_splitting`: laptrack (a classic LAP tracker, ``pip install laptrack``;
  benchmark-only) linking the centroids of every frame's masks, with gap closing and splitting.

Each returns ``(labels (T, H, W), parents {daughter: mother}, seconds)``: the seconds include
the segment-everything time of the frames the tracker used (measured once per frame).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

MIN_AREA = 25


def segment_all(model, image: np.ndarray, cache: Path | None = None, key: str = "") -> tuple[np.ndarray, float]:
    """Segment-everything labels of every frame ``(T, H, W)`` and the seconds per frame it
    took (read back from ``cache/key.npy`` + ``.json`` when there)."""
    from napari_sam.engine.auto.segmenter import AutomaticSegmenter
    from napari_sam.engine.image.preprocess import estimate_contrast_limits

    if cache is not None and (cache / f"{key}.npy").exists():
        return np.load(cache / f"{key}.npy"), json.loads((cache / f"{key}.json").read_text())["s_per_frame"]
    seg = AutomaticSegmenter(model)
    limits = estimate_contrast_limits(image)
    t0 = time.perf_counter()
    det = np.stack([seg.generate(f, contrast_limits=limits) for f in image]).astype(np.int32)
    per_frame = (time.perf_counter() - t0) / len(image)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        np.save(cache / f"{key}.npy", det)
        (cache / f"{key}.json").write_text(json.dumps({"s_per_frame": per_frame}))
    return det, per_frame


def _autotracker(model, image, det, det_s, **changes):
    from napari_sam.engine.auto.tracking import AutoTracker, TrackingParams

    calls = []

    def detect(t, frame):
        calls.append(t)
        return det[t]

    tracker = AutoTracker(model, TrackingParams(**changes), detect=detect)
    pred = np.zeros(image.shape[:3], np.int32)
    t0 = time.perf_counter()
    for t, lab in tracker.run(image):
        pred[t] = lab
    seconds = time.perf_counter() - t0 + len(calls) * det_s
    return pred, dict(tracker.parents), seconds


def ours(model, image, det, det_s, **changes):
    return _autotracker(model, image, det, det_s, **changes)


def ours_without_lineage(model, image, det, det_s, **changes):
    changes = {**changes, "divisions": False, "max_gap": 0, "leaving": False}
    return _autotracker(model, image, det, det_s, **changes)


def laptrack_splitting(model, image, det, det_s, cutoff: float = 15.0, gap_frames: int = 2,
                       split_cutoff: float = 20.0, **_):
    """laptrack on the masks' centroids (masks under 25 px dropped): frame-to-frame links
    within ``cutoff`` px, gap closing over ``gap_frames`` frames, splitting within
    ``split_cutoff`` px; each track segment becomes one label, laptrack's splits the parents."""
    import pandas as pd
    from laptrack import LapTrack

    from napari_sam.lineage.regions import region_stats

    t0 = time.perf_counter()
    rows = []
    for t, frame in enumerate(det):
        for k, (y, x), a in zip(*region_stats(frame)):
            if a >= MIN_AREA:
                rows.append((t, int(k), float(y), float(x)))
    df = pd.DataFrame(rows, columns=["frame", "label", "y", "x"])
    lt = LapTrack(metric="sqeuclidean", cutoff=cutoff**2, gap_closing_metric="sqeuclidean",
                  gap_closing_cutoff=cutoff**2, gap_closing_max_frame_count=gap_frames,
                  splitting_metric="sqeuclidean", splitting_cutoff=split_cutoff**2)
    track_df, split_df, _ = lt.predict_dataframe(df, coordinate_cols=["y", "x"], frame_col="frame",
                                                 only_coordinate_cols=False)
    pred = np.zeros(det.shape, np.int32)
    for t, lab, tid in zip(track_df["frame"], track_df["label"], track_df["track_id"]):
        pred[int(t)][det[int(t)] == int(lab)] = int(tid) + 1
    parents = {int(c) + 1: int(p) + 1 for p, c in zip(split_df["parent_track_id"], split_df["child_track_id"])}
    seconds = time.perf_counter() - t0 + len(det) * det_s
    return pred, parents, seconds


TRACKERS = {
    "AutoTracker with lineage": ours,
    "AutoTracker without lineage (before #17)": ours_without_lineage,
    "laptrack with splitting": laptrack_splitting,
}
