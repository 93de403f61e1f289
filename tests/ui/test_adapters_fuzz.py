"""Property-based tests of the layer adapters (ui/prompts.py, ui/geometry.py): clicks of a
Points layer and rectangles of a Shapes layer, with any scale / translate / number of
dimensions of their own, become pixel prompts of an image layer with its own scale /
translate. Prompts inside the image land on the right pixel and slice; those outside are
dropped (or clipped within half a pixel); nothing raises, and what comes out is accepted by
the engine's prompt checks. No viewer is needed: napari layers are built directly."""

from __future__ import annotations

from dataclasses import dataclass

import napari
import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from napari_sam.engine.image.prompts import check_box, check_points
from napari_sam.ui.geometry import StackGeometry
from napari_sam.ui.prompts import collect

FAST = settings(max_examples=80, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
scales = st.one_of(st.floats(0.05, 20.0), st.floats(-20.0, -0.05))  # napari allows flips
translates = st.floats(-500.0, 500.0)


@dataclass
class Scene:
    image: object
    geo: StackGeometry
    img_scale: np.ndarray
    img_translate: np.ndarray
    extra: int  # prompt layer axes minus image axes (<0: fewer, filled from `fill`)
    fill_lead: tuple  # the image lead index the fill position points at
    fill: np.ndarray  # world position (image axes) for the axes a prompt layer lacks

    def to_world(self, lead, yx) -> np.ndarray:
        return np.concatenate([lead, yx]) * self.img_scale + self.img_translate


@st.composite
def scenes(draw):
    lead_sizes = draw(st.lists(st.integers(1, 4), min_size=0, max_size=2))
    h, w = draw(st.integers(1, 30)), draw(st.integers(1, 30))
    ndim = len(lead_sizes) + 2
    sc = np.array(draw(st.lists(scales, min_size=ndim, max_size=ndim)))
    tr = np.array(draw(st.lists(translates, min_size=ndim, max_size=ndim)))
    image = napari.layers.Image(np.zeros((*lead_sizes, h, w), np.uint8), scale=sc, translate=tr)
    geo = StackGeometry.of(image, 0 if lead_sizes else None)
    extra = draw(st.integers(-len(lead_sizes), 1))
    fill_lead = tuple(draw(st.integers(0, s - 1)) for s in lead_sizes)
    fill = np.concatenate([fill_lead, [0.0, 0.0]]) * sc + tr
    return Scene(image, geo, sc, tr, extra, fill_lead, fill)


def _lead(draw, scene, inside_only=False):
    """A lead index: in range or, sometimes, one slice out of it."""
    out = []
    for size in scene.geo.shape[: scene.geo.lead]:
        i = draw(st.integers(0, size - 1) if inside_only else st.integers(-1, size))
        out.append(i)
    return np.array(out, int)


def _prompt_layer(draw, scene):
    """A prompt layer's own transform: (to_data(world points) -> its data coords, layer kwargs)."""
    nd = scene.geo.ndim + scene.extra
    sc = np.array(draw(st.lists(scales, min_size=nd, max_size=nd)))
    tr = np.array(draw(st.lists(translates, min_size=nd, max_size=nd)))
    extra_world = draw(translates)

    def to_data(world_pts):
        world = np.asarray(world_pts, float).reshape(-1, scene.geo.ndim)
        if scene.extra > 0:  # an axis the image lacks: any world value
            world = np.concatenate([np.full((len(world), scene.extra), extra_world), world], axis=1)
        elif scene.extra < 0:  # fewer axes: napari aligns the trailing ones
            world = world[:, -nd:]
        return (world - tr) / sc

    return to_data, dict(scale=sc, translate=tr, ndim=nd)


def _expected_slice(scene, lead):
    if scene.extra < 0:  # the missing leading axes come from the fill position
        lead = np.concatenate([np.array(scene.fill_lead[: -scene.extra], int), lead[-scene.extra :]])
    if np.any(lead < 0) or np.any(lead >= np.array(scene.geo.shape[: scene.geo.lead], int)):
        return None
    return scene.geo.split(lead)


def _far_from(v, edges, eps=1e-6):
    return all(abs(v - e) > eps for e in edges)


@FAST
@given(data=st.data(), scene=scenes())
def test_clicks_land_on_their_pixel_and_slice(data, scene):
    draw = data.draw
    h, w = scene.geo.frame_hw
    n = draw(st.integers(0, 8))
    leads, yxs, objs, pos = [], [], [], []
    for _ in range(n):
        y, x = draw(st.floats(-3.0, h + 2.0)), draw(st.floats(-3.0, w + 2.0))
        assume(_far_from(y, (-0.5, h - 0.5)) and _far_from(x, (-0.5, w - 0.5)))
        leads.append(_lead(draw, scene))
        yxs.append((y, x))
        objs.append(draw(st.integers(0, 3)))
        pos.append(draw(st.booleans()))
    world = np.array([scene.to_world(ld, yx) for ld, yx in zip(leads, yxs)]).reshape(n, scene.geo.ndim)
    to_data, kw = _prompt_layer(draw, scene)
    coords = to_data(world)
    feats = {"object": np.array(objs, int), "positive": np.array(pos, bool)}
    points = napari.layers.Points(coords, features=feats, **kw)
    got = collect(points, None, scene.image, scene.geo, fill=scene.fill)

    want: dict = {}
    for ld, (y, x), obj, p in zip(leads, yxs, objs, pos):
        where = _expected_slice(scene, ld)
        inside = -0.5 < y < h - 0.5 and -0.5 < x < w - 0.5
        if where is None or not inside or obj <= 0:
            continue
        want.setdefault((*where, obj), []).append((min(max(x, 0), w - 1), min(max(y, 0), h - 1), int(p)))
    assert sorted(got) == sorted(want)
    for key, clicks in want.items():
        pr = got[key]
        np.testing.assert_allclose(pr.points, np.array(clicks)[:, :2], atol=1e-6)
        np.testing.assert_array_equal(pr.labels, np.array(clicks)[:, 2])
        assert pr.box is None
        check_points(pr.points, pr.labels, (h, w))  # the engine takes every adapted click


@FAST
@given(data=st.data(), scene=scenes())
def test_boxes_are_clipped_to_the_image_or_dropped(data, scene):
    draw = data.draw
    h, w = scene.geo.frame_hw
    n = draw(st.integers(1, 4))
    to_data, kw = _prompt_layer(draw, scene)
    data_verts, rects, leads, objs = [], [], [], []
    for _ in range(n):
        y0, y1 = sorted((draw(st.floats(-5.0, h + 4.0)), draw(st.floats(-5.0, h + 4.0))))
        x0, x1 = sorted((draw(st.floats(-5.0, w + 4.0)), draw(st.floats(-5.0, w + 4.0))))
        ld = _lead(draw, scene)
        corners = [(y0, x0), (y0, x1), (y1, x1), (y1, x0)]
        # napari keeps vertices as float32: the reference is what those vertices say
        verts = to_data([scene.to_world(ld, c) for c in corners]).astype(np.float32)
        yx = (verts * kw["scale"] + kw["translate"])[:, -2:]
        yx = (yx - scene.img_translate[-2:]) / scene.img_scale[-2:]
        (y0, x0), (y1, x1) = yx.min(0), yx.max(0)
        assume(_far_from(y1 - y0, (1.0,)) and _far_from(x1 - x0, (1.0,)))
        assume(all(_far_from(v, (-0.5, h - 0.5)) for v in (y0, y1)))
        assume(all(_far_from(v, (-0.5, w - 0.5)) for v in (x0, x1)))
        cy0, cy1 = np.clip([y0, y1], 0, h - 1)
        cx0, cx1 = np.clip([x0, x1], 0, w - 1)
        assume(_far_from(cy1 - cy0, (1.0,)) and _far_from(cx1 - cx0, (1.0,)))
        data_verts.append(verts)
        rects.append((y0, x0, y1, x1))
        leads.append(ld)
        objs.append(draw(st.integers(0, 3)))
    feats = {"object": np.array(objs, int)}
    shapes = napari.layers.Shapes(data_verts, shape_type="rectangle", features=feats, **kw)
    got = collect(None, shapes, scene.image, scene.geo, fill=scene.fill)

    want: dict = {}
    for (y0, x0, y1, x1), ld, obj in zip(rects, leads, objs):
        where = _expected_slice(scene, ld)
        drawn = y1 - y0 >= 1 and x1 - x0 >= 1  # smaller: a stray click, not a box
        overlaps = y1 > -0.5 and y0 < h - 0.5 and x1 > -0.5 and x0 < w - 0.5
        clip = np.clip([x0, y0, x1, y1], 0, [w - 1, h - 1, w - 1, h - 1])
        # at least 1 px on the image, or all of it on an image 1 px high / wide
        on_image = clip[2] - clip[0] >= min(1, w - 1) and clip[3] - clip[1] >= min(1, h - 1)
        if where is None or obj <= 0 or not (drawn and overlaps and on_image):
            continue
        want[(*where, obj)] = clip  # the last box of an object on a slice wins
    assert sorted(got) == sorted(want)
    for key, box in want.items():
        np.testing.assert_allclose(got[key].box, box, atol=1e-6)
        assert got[key].points is None
        np.testing.assert_allclose(check_box(got[key].box, (h, w)), box, atol=1e-6)


def test_box_on_a_one_pixel_high_strip_is_kept():
    """Found by hypothesis: on an image 1 px high (or wide) every box was dropped, since the
    clipped box is 0 px high; the engine takes such a box. A box 1 px high on a 2 px high
    image is 1 px high after clipping: kept as before; a stray click-drag still is not."""
    image = napari.layers.Image(np.zeros((1, 50), np.uint8))
    geo = StackGeometry.of(image, None)
    shapes = napari.layers.Shapes([np.array([[-2.0, 10.0], [-2.0, 20.0], [3.0, 20.0], [3.0, 10.0]])],
                                  shape_type="rectangle", features={"object": [1]})
    got = collect(None, shapes, image, geo)
    assert list(got) == [((), 0, 1)]
    np.testing.assert_allclose(got[((), 0, 1)].box, [10.0, 0.0, 20.0, 0.0])
    stray = napari.layers.Shapes([np.array([[0.0, 10.0], [0.0, 10.5], [0.5, 10.5], [0.5, 10.0]])],
                                 shape_type="rectangle", features={"object": [1]})
    assert collect(None, stray, image, geo) == {}
    tall = napari.layers.Image(np.zeros((2, 50), np.uint8))
    got = collect(None, shapes, tall, StackGeometry.of(tall, None))
    np.testing.assert_allclose(got[((), 0, 1)].box, [10.0, 0.0, 20.0, 1.0])


# ------------------------------------------------ the engine's half: prompt checks (numpy)

coords = st.floats(-50.0, 80.0)


@FAST
@given(hw=st.tuples(st.integers(1, 40), st.integers(1, 40)), box=st.tuples(coords, coords, coords, coords))
def test_engine_box_is_clipped_inside_and_ordered_or_refused(hw, box):
    h, w = hw
    try:
        out = check_box(box, hw)
    except ValueError as err:
        x0, y0, x1, y1 = box
        outside = x1 < -0.5 or y1 < -0.5 or x0 > w - 0.5 or y0 > h - 0.5
        assert x1 < x0 or y1 < y0 or outside, err
        return
    x0, y0, x1, y1 = out
    assert 0 <= x0 <= x1 <= w - 1 and 0 <= y0 <= y1 <= h - 1, out


@FAST
@given(hw=st.tuples(st.integers(1, 40), st.integers(1, 40)),
       pts=st.lists(st.tuples(st.floats(allow_nan=True, allow_infinity=True), coords), max_size=5),
       labels=st.lists(st.integers(-1, 2), max_size=5))
def test_engine_points_inside_or_a_clear_error(hw, pts, labels):
    h, w = hw
    try:
        p, lab = check_points(np.array(pts, float).reshape(-1, 2), labels, hw)
    except ValueError as err:
        assert str(err)
        return
    if p is None:
        assert len(pts) == len(labels) == 0
        return
    assert len(p) == len(lab) == len(pts) and set(lab.tolist()) <= {0, 1}
    assert (p[:, 0] >= -0.5).all() and (p[:, 0] <= w - 0.5).all()
    assert (p[:, 1] >= -0.5).all() and (p[:, 1] <= h - 0.5).all()


def test_engine_box_within_half_a_pixel_of_an_edge_stays_ordered():
    """Found by hypothesis: a box reaching just into the half-pixel margin was clipped one end
    only: x0 -> 0 but x1 stayed -0.2, an inverted box for the model."""
    np.testing.assert_allclose(check_box([-0.4, 2.0, -0.2, 5.0], (10, 10)), [0.0, 2.0, 0.0, 5.0])
    np.testing.assert_allclose(check_box([9.3, 2.0, 9.4, 5.0], (10, 10)), [9.0, 2.0, 9.0, 5.0])
