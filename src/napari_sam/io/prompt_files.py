"""Prompt files (CSV, napari Points export, JSON) -> prompts per frame and object, checked
against the image they are for."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from .errors import InputError


def read_prompts(path, frame_shape, n_frames: int) -> dict[int, dict[int, dict]]:
    """``{frame: {object id: {"points": [(x, y)], "labels": [1|0], "box": (x0, y0, x1, y1) | None}}}``.

    CSV: a header with ``x, y`` (clicks; optional ``label`` 1/0, default 1) and/or
    ``x0, y0, x1, y1`` (a box); optional ``id`` (default: one object per row) and ``frame``
    (default 0). A napari Points layer export (``axis-0, axis-1[, axis-2]``: (frame,) y, x)
    gives one object per point. JSON: a list of ``{"id", "frame", "points", "labels", "box"}``.
    Everything is checked against the image: frame range and points / boxes inside.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{path}: prompt file not found")
    try:
        entries = _json_prompts(p) if p.suffix.lower() == ".json" else _csv_prompts(p)
    except InputError:
        raise
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(f"{path}: cannot read prompts ({err})") from None
    if not entries:
        raise InputError(f"{path}: no prompts in the file")
    h, w = frame_shape
    out: dict[int, dict[int, dict]] = {}
    for e in entries:
        t, oid = int(e.get("frame", 0)), int(e["id"])
        if not 0 <= t < n_frames:
            raise InputError(f"{path}: prompt file does not match the image: frame {t} but the image has {n_frames} frame(s)")
        obj = out.setdefault(t, {}).setdefault(oid, {"points": [], "labels": [], "box": None})
        for (x, y), lab in zip(e.get("points", []), e.get("labels", [])):
            if not (-0.5 <= x <= w - 0.5 and -0.5 <= y <= h - 0.5):
                raise InputError(f"{path}: prompt file does not match the image: point (x={x:g}, y={y:g}) "
                                 f"outside the {w}x{h} (width x height) frame")
            obj["points"].append((float(x), float(y)))
            obj["labels"].append(int(lab))
        if e.get("box") is not None:
            x0, y0, x1, y1 = (float(v) for v in e["box"])
            if x1 < x0 or y1 < y0 or x1 < 0 or y1 < 0 or x0 > w - 1 or y0 > h - 1:
                raise InputError(f"{path}: prompt file does not match the image: box {[x0, y0, x1, y1]} in a {w}x{h} frame")
            obj["box"] = (x0, y0, x1, y1)
    return out


def _json_prompts(p: Path) -> list[dict]:
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{p}: not valid JSON ({err.__class__.__name__})") from None
    if isinstance(data, dict):
        data = data.get("objects", [])
    if not isinstance(data, list):
        raise InputError(f'{p}: JSON prompts must be a list of objects (or {{"objects": [...]}}), '
                         f"got {type(data).__name__}")
    out = []
    for i, e in enumerate(data, 1):
        if not isinstance(e, dict):
            raise InputError(f"{p}: entry {i} is {json.dumps(e)[:40]}, not an object with id, frame, points, labels, box")
        oid, frame = e.get("id", i), e.get("frame", 0)
        where = f"{p}: object {oid!r} (entry {i})"
        for name, v in (("id", oid), ("frame", frame)):
            if not (_is_number(v) and float(v).is_integer() and v >= (1 if name == "id" else 0)):
                raise InputError(f"{where}: {name} must be a whole number{' >= 1' if name == 'id' else ''}, got {v!r}")
        pts = e.get("points") or []
        if not (isinstance(pts, list) and all(isinstance(q, list) and len(q) == 2 and all(map(_is_number, q)) for q in pts)):
            raise InputError(f"{where}: points must be a list of [x, y] pairs, got {json.dumps(pts)[:40]}")
        labels = e.get("labels") or [1] * len(pts)
        if not (isinstance(labels, list) and len(labels) == len(pts) and all(v in (0, 1) and not isinstance(v, float)
                                                                               for v in labels)):
            raise InputError(f"{where}: labels must be a list of 1 (foreground) / 0 (background), one per point "
                             f"({len(pts)} points), got {json.dumps(labels)[:40]}")
        box = e.get("box")
        if box is not None and not (isinstance(box, list) and len(box) == 4 and all(map(_is_number, box))):
            raise InputError(f"{where}: box must be [x0, y0, x1, y1], got {json.dumps(box)[:40]}")
        out.append({"id": int(oid), "frame": int(frame), "points": pts, "labels": labels, "box": box})
    return out


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _csv_prompts(p: Path) -> list[dict]:
    with open(p, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return []
    cols = {c.strip().lower() for c in rows[0]}
    rows = [{k.strip().lower(): (v or "").strip() for k, v in r.items() if k} for r in rows]
    axis_cols = sorted(c for c in cols if c.startswith("axis-"))
    out = []
    if axis_cols:  # napari points export: (frame,) y, x; one object per point
        for i, r in enumerate(rows):
            vals = [float(r[c]) for c in axis_cols]
            frame = round(vals[-3]) if len(vals) >= 3 else 0
            out.append({"id": i + 1, "frame": frame, "points": [(vals[-1], vals[-2])], "labels": [1]})
        return out
    has_pt, has_box = {"x", "y"} <= cols, {"x0", "y0", "x1", "y1"} <= cols
    if not (has_pt or has_box):
        raise InputError(f"{p}: CSV needs columns x,y (clicks) and/or x0,y0,x1,y1 (boxes); found {sorted(cols)}")
    for i, r in enumerate(rows):
        e = {"id": int(r["id"]) if r.get("id") else i + 1, "frame": int(float(r["frame"])) if r.get("frame") else 0,
             "points": [], "labels": []}
        if has_pt and r.get("x") and r.get("y"):
            e["points"] = [(float(r["x"]), float(r["y"]))]
            e["labels"] = [int(float(r["label"])) if r.get("label") else 1]
        if has_box and r.get("x0"):
            e["box"] = [float(r[k]) for k in ("x0", "y0", "x1", "y1")]
        out.append(e)
    return out
