"""Points and Shapes layers -> SAM prompts, per object and per 2D slice.

Clicks live in a Points layer with two features, ``object`` (the object id, which is also the
label value it gets) and ``positive`` (foreground / background click; the face colour shows
which). Boxes are the rectangles of a Shapes layer with an ``object`` feature. Coordinates go
through world space into the image layer's pixel grid, so layers with another scale or
translate than the image still prompt the right pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import StackGeometry, layer_to_layer

POSITIVE_COLOR = "#39ff14"
NEGATIVE_COLOR = "#ff2d2d"

#: Keyboard shortcuts (also shown in tooltips and docs/user_guide.md).
KEY_NEW_OBJECT = "n"
KEY_TOGGLE_POLARITY = "t"
NEGATIVE_MODIFIER = "Shift"


@dataclass(frozen=True)
class Prompt:
    """One object's prompts on one 2D slice, in image pixels: ``points`` (N, 2) as (x, y),
    ``labels`` (N,) 1 = foreground / 0 = background, ``box`` (x0, y0, x1, y1) or None."""

    points: np.ndarray | None
    labels: np.ndarray | None
    box: np.ndarray | None

    def signature(self) -> tuple:
        pts = None if self.points is None else tuple(np.round(self.points, 3).ravel().tolist())
        lab = None if self.labels is None else tuple(self.labels.tolist())
        box = None if self.box is None else tuple(np.round(self.box, 3).tolist())
        return pts, lab, box

    @property
    def n_points(self) -> int:
        return 0 if self.points is None else len(self.points)


#: (stack key, frame, object id)
PromptKey = tuple[tuple[int, ...], int, int]


def _slice_of(geo: StackGeometry, lead: np.ndarray) -> tuple[tuple[int, ...], int] | None:
    idx = np.rint(lead).astype(int)
    if np.any(idx < 0) or np.any(idx >= np.asarray(geo.shape[: geo.lead], int)):
        return None
    return geo.split(idx)


def _in_plane(geo: StackGeometry, yx: np.ndarray, tol: float = 0.5) -> np.ndarray | None:
    """Clip (y, x) onto the image; None when farther than ``tol`` pixels outside."""
    h, w = geo.frame_hw
    lo, hi = np.array([-tol, -tol]), np.array([h - 1 + tol, w - 1 + tol])
    if np.any(yx < lo) or np.any(yx > hi):
        return None
    return np.clip(yx, 0, [h - 1, w - 1])


def _box_on_image(geo: StackGeometry, lo_yx: np.ndarray, hi_yx: np.ndarray) -> np.ndarray | None:
    """A drawn rectangle (pixel corners, y, x) clipped to the image as (x0, y0, x1, y1); None
    when it is a stray click-drag (under 1 px drawn) or keeps under 1 px on the image (0 px
    allowed along a side the image is only 1 px long)."""
    h, w = geo.frame_hw
    size = np.array([h - 1, w - 1], float)
    if np.any(hi_yx - lo_yx < 1) or np.any(hi_yx <= -0.5) or np.any(lo_yx >= size + 0.5):
        return None
    (y0, x0), (y1, x1) = np.clip(lo_yx, 0, size), np.clip(hi_yx, 0, size)
    if np.any(np.array([y1 - y0, x1 - x0]) < np.minimum(1.0, size)):
        return None
    return np.array([x0, y0, x1, y1], float)


def collect(points_layer, shapes_layer, image_layer, geo: StackGeometry, fill=None) -> dict[PromptKey, Prompt]:
    """Every object's prompt on every slice, read from the layers (either may be None)."""
    clicks: dict[PromptKey, list] = {}
    boxes: dict[PromptKey, np.ndarray] = {}
    lead = geo.lead
    if points_layer is not None and len(points_layer.data):
        feats = points_layer.features
        coords = layer_to_layer(points_layer, image_layer, points_layer.data, fill)
        objs = feats["object"].to_numpy(int) if "object" in feats else np.ones(len(coords), int)
        pos = feats["positive"].to_numpy(bool) if "positive" in feats else np.ones(len(coords), bool)
        for c, obj, p in zip(coords, objs, pos):
            where = _slice_of(geo, c[:lead])
            yx = _in_plane(geo, c[lead:])
            if where is None or yx is None or obj <= 0:
                continue
            clicks.setdefault((*where, int(obj)), []).append((yx[1], yx[0], 1 if p else 0))
    if shapes_layer is not None and len(shapes_layer.data):
        feats = shapes_layer.features
        objs = feats["object"].to_numpy(int) if "object" in feats else np.ones(len(shapes_layer.data), int)
        for verts, kind, obj in zip(shapes_layer.data, shapes_layer.shape_type, objs):
            if kind != "rectangle" or obj <= 0:
                continue
            c = layer_to_layer(shapes_layer, image_layer, verts, fill)
            where = _slice_of(geo, c[0, :lead])
            if where is None:
                continue
            box = _box_on_image(geo, c[:, lead:].min(0), c[:, lead:].max(0))
            if box is not None:
                boxes[(*where, int(obj))] = box  # the last box wins
    out: dict[PromptKey, Prompt] = {}
    for key in set(clicks) | set(boxes):
        pts = np.array([c[:2] for c in clicks[key]], float) if key in clicks else None
        lab = np.array([c[2] for c in clicks[key]], int) if key in clicks else None
        out[key] = Prompt(pts, lab, boxes.get(key))
    return out


def changed_keys(old: dict[PromptKey, Prompt], new: dict[PromptKey, Prompt]) -> list[PromptKey]:
    """Keys whose prompt was added, edited or removed (sorted)."""
    keys = set(old) | set(new)
    diff = [
        k for k in keys
        if (k in old) != (k in new) or (k in old and old[k].signature() != new[k].signature())
    ]
    return sorted(diff)


# ---------------------------------------------------------------------------- layer set-up


def point_size(image_layer) -> float:
    """A click marker about 1/50 of the image side, in the image's data units, at most 12 px:
    on a large image a bigger marker would hide the cells it is clicked on."""
    h, w = StackGeometry.of(image_layer, None if image_layer.ndim == 2 else 0).frame_hw
    return float(min(12.0, max(3.0, max(h, w) / 50.0)))


def new_points_layer(viewer, image_layer, name=None):
    """A Points layer aligned with ``image_layer`` for positive/negative clicks."""
    layer = viewer.add_points(
        np.empty((0, image_layer.ndim)),
        ndim=image_layer.ndim,
        name=name or f"{image_layer.name} clicks",
        scale=image_layer.scale,
        translate=image_layer.translate,
        features={"object": np.empty(0, int), "positive": np.empty(0, bool)},
        face_color="positive",
        face_color_cycle={True: POSITIVE_COLOR, False: NEGATIVE_COLOR},
        border_width=0.2,
        size=point_size(image_layer),
        out_of_slice_display=False,
    )
    layer.feature_defaults = {"object": 1, "positive": True}
    return layer


def new_shapes_layer(viewer, image_layer, name=None):
    """A Shapes layer aligned with ``image_layer``; its rectangles are box prompts."""
    layer = viewer.add_shapes(
        None,
        ndim=image_layer.ndim,
        name=name or f"{image_layer.name} boxes",
        scale=image_layer.scale,
        translate=image_layer.translate,
        features={"object": np.empty(0, int)},
        face_color=[0, 0, 0, 0],
        edge_width=max(1.0, point_size(image_layer) / 4),
    )
    layer.feature_defaults = {"object": 1}
    return layer


def ensure_features(layer, columns: dict) -> None:
    """Add missing feature columns (a user-picked layer may lack them)."""
    feats = layer.features
    missing = {k: v for k, v in columns.items() if k not in feats}
    if missing:
        for k, v in missing.items():
            feats[k] = np.full(len(feats), v)
        layer.features = feats
        defaults = dict(layer.feature_defaults.iloc[0]) if len(layer.feature_defaults.columns) else {}
        defaults.update(missing)
        layer.feature_defaults = defaults


def set_current(points_layer, shapes_layer, obj: int, positive: bool, color) -> None:
    """Make new clicks/boxes belong to ``obj`` with the given polarity; ``color`` (RGBA) is the
    object's label colour (used for borders and box edges)."""
    if points_layer is not None:
        points_layer.feature_defaults = {"object": int(obj), "positive": bool(positive)}
        points_layer.current_border_color = color
    if shapes_layer is not None:
        shapes_layer.feature_defaults = {"object": int(obj)}
        shapes_layer.current_edge_color = color


def recolor(points_layer, shapes_layer, color_of) -> None:
    """Borders / edges in each prompt's object colour (``color_of(obj) -> RGBA``)."""
    if points_layer is not None and len(points_layer.data) and "object" in points_layer.features:
        objs = points_layer.features["object"].to_numpy(int)
        points_layer.border_color = np.array([color_of(o) for o in objs])
    if shapes_layer is not None and len(shapes_layer.data) and "object" in shapes_layer.features:
        objs = shapes_layer.features["object"].to_numpy(int)
        shapes_layer.edge_color = np.array([color_of(o) for o in objs])
