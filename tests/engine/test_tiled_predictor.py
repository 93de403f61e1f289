"""ImagePredictor with tiles: a large image seen at its own resolution, prompts anywhere.

The bundled model (input 256 px) on a generated 768² nuclei mosaic (nuclei 15-30 px), tiles
of 192 px with a 32-px halo (outer windows of 256 px: the model's input, no shrinking). Each
object's reference figure is the untiled predictor on the object's own single-tile crop (a
256² window centred on it, mapped with the same contrast limits)."""

from __future__ import annotations

import numpy as np
import pytest

import napari_sam as ns
from napari_sam.data.mosaic import mosaic
from napari_sam.engine.image.preprocess import robust_limits, to_uint8_rgb
from napari_sam.engine.image.tiled import MAX_WINDOWS
from napari_sam.engine.image.windows import margin
from napari_sam.training.evaluate import iou
from napari_sam.training.prompts import bounding_box, centre_point

SIZE, SCENE, TILE, HALO, OUTER = 768, 256, (192, 192), (32, 32), 256
N_EACH = 16  # straddling and interior objects measured (each needs its own crop embedded)


@pytest.fixture(scope="module")
def model():
    return ns.load_model("embedded", device="cpu")


@pytest.fixture(scope="module")
def sample():
    return mosaic((SIZE, SIZE), scene=SCENE, distinct=2, seed=3)


@pytest.fixture(scope="module")
def tiled(model, sample):
    pred = ns.ImagePredictor(model, tile_shape=TILE, halo=HALO)
    seen = []
    pred.set_image(sample.image, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(i + 1, 16) for i in range(16)]  # progress per tile
    return pred


def _objects(labels):
    """(straddling, interior) object ids: whole objects (not cut by the image or a scene edge)
    of at least 40 px; straddling ones cross a core edge of the tile grid."""
    from scipy import ndimage

    straddle, inside = [], []
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        (y0, y1), (x0, x1) = (sl[0].start, sl[0].stop), (sl[1].start, sl[1].stop)
        if (labels[sl] == k).sum() < 40:
            continue
        if any(lo // SCENE != (hi - 1) // SCENE or lo % SCENE == 0 or hi % SCENE == 0
               for lo, hi in ((y0, y1), (x0, x1))):
            continue  # cut by a scene edge (or the image border): not a whole object
        crosses = any(lo // TILE[0] != (hi - 1) // TILE[0] for lo, hi in ((y0, y1), (x0, x1)))
        (straddle if crosses else inside).append(k)
    return straddle, inside


def _crop_window(gt):
    ys, xs = np.nonzero(gt)
    cy, cx = (ys.min() + ys.max()) // 2, (xs.min() + xs.max()) // 2
    y0 = int(min(max(cy - OUTER // 2, 0), SIZE - OUTER))
    x0 = int(min(max(cx - OUTER // 2, 0), SIZE - OUTER))
    return y0, x0


@pytest.fixture(scope="module")
def figures(model, sample, tiled):
    """Per object: (straddles, tiled click, tiled box, crop click, crop box) IoUs."""
    straddle, inside = _objects(sample.labels)
    assert len(straddle) >= N_EACH and len(inside) >= N_EACH
    rng = np.random.default_rng(0)
    picks = [(True, k) for k in rng.choice(straddle, N_EACH, replace=False)]
    picks += [(False, k) for k in rng.choice(inside, N_EACH, replace=False)]
    limits = robust_limits(sample.image)
    crop_pred = ns.ImagePredictor(model)
    rows = []
    for crosses, k in picks:
        gt = sample.labels == k
        click, box = centre_point(gt), bounding_box(gt)
        res = tiled.predict(points=click[None], labels=[1])
        assert res.masks.shape == (3, SIZE, SIZE)
        t_click = iou(res.best, gt)
        t_box = iou(tiled.predict(box=box, multimask=False).masks[0], gt)
        y0, x0 = _crop_window(gt)
        crop = (slice(y0, y0 + OUTER), slice(x0, x0 + OUTER))
        crop_pred.set_image(sample.image[crop], contrast_limits=limits)
        shift = np.array([x0, y0], float)
        c_click = iou(crop_pred.predict(points=(click - shift)[None], labels=[1]).best, gt[crop])
        c_box = iou(crop_pred.predict(box=box - np.tile(shift, 2), multimask=False).masks[0], gt[crop])
        rows.append((crosses, t_click, t_box, c_click, c_box))
    return np.array(rows, dtype=float)


def test_clicks_and_boxes_with_tiles_match_each_objects_own_crop(figures):
    tiled_click, tiled_box, crop_click, crop_box = figures[:, 1:].mean(axis=0)
    assert crop_click > 0.6 and crop_box > 0.6, figures.mean(axis=0)  # the model does segment them
    assert tiled_click >= 0.98 * crop_click, (tiled_click, crop_click)
    assert tiled_box >= 0.98 * crop_box, (tiled_box, crop_box)


def test_objects_straddling_a_tile_border_segment_as_well_as_interior_ones(figures):
    across, inside = figures[figures[:, 0] == 1], figures[figures[:, 0] == 0]
    for col, what in ((1, "click"), (2, "box")):
        assert across[:, col].mean() >= 0.95 * inside[:, col].mean(), (what, across[:, col].mean(),
                                                                        inside[:, col].mean())


def test_masks_are_at_the_full_size_and_pasted_into_place(tiled, sample):
    straddle, _ = _objects(sample.labels)
    gt = sample.labels == straddle[0]
    res = tiled.predict(points=centre_point(gt)[None], labels=[1])
    y0, y1, x0, x1 = res.window
    assert res.masks.shape == (3, SIZE, SIZE) and res.logits.shape == (3, 64, 64)
    outside = res.masks.copy()
    outside[:, y0:y1, x0:x1] = False
    assert not outside.any()  # nothing outside the window the prompt was answered in
    assert iou(res.best, gt) > 0.6
    ys, xs = np.nonzero(gt)  # the window holds the whole object, with room around it
    assert y0 <= ys.min() - 8 or y0 == 0
    assert x0 <= xs.min() - 8 or x0 == 0
    assert y1 >= ys.max() + 8 or y1 == SIZE
    assert x1 >= xs.max() + 8 or x1 == SIZE


def test_prompts_of_one_object_in_two_tiles_give_one_mask(tiled, sample):
    straddle, _ = _objects(sample.labels)
    grid = tiled.grid
    for k in straddle:
        gt = sample.labels == k
        ys, xs = np.nonzero(gt)
        # one click on each side of the core edge it crosses, in two different tiles' cores
        tiles = np.array([grid.tile_at(y, x).index for y, x in zip(ys, xs)])
        if len(np.unique(tiles)) < 2:
            continue
        a, b = np.flatnonzero(tiles == tiles[0])[0], np.flatnonzero(tiles != tiles[0])[0]
        pts = np.array([[xs[a], ys[a]], [xs[b], ys[b]]], float)
        res = tiled.predict(points=pts, labels=[1, 1], multimask=False)
        assert res.masks.shape == (1, SIZE, SIZE)
        assert res.masks[0][ys[a], xs[a]] and res.masks[0][ys[b], xs[b]]  # both halves, one mask
        assert iou(res.masks[0], gt) > 0.6
        break
    else:
        pytest.fail("no straddling object found")


def test_prompts_far_apart_get_a_window_centred_on_them_kept_in_a_bounded_cache(model, sample):
    pred = ns.ImagePredictor(model, tile_shape=TILE, halo=HALO)
    pred.set_image(sample.image)
    tiles = {t.outer for t in pred.grid}
    windows = []
    for i in range(MAX_WINDOWS + 3):
        # a box across a core edge, larger than the halos can hold: no tile holds it with room;
        # the boxes 100 px apart, so no earlier window holds the next one either
        cy, cx = 192 * (1 + i % 3), 100 + 100 * (i // 3)
        d = 40 + i
        res = pred.predict(box=[cx - d, cy - d, cx + d, cy + d], multimask=False)
        y0, y1, x0, x1 = res.window
        assert res.window not in tiles and (y1 - y0, x1 - x0) == (OUTER, OUTER)
        assert y0 <= cy - d - 16 and y1 >= cy + d + 16 and x0 <= cx - d - 16 and x1 >= cx + d + 16
        windows.append(res.window)
    assert len(set(windows)) == len(windows)
    assert len(pred._tiled._windows) == MAX_WINDOWS  # bounded LRU
    # a prompt the latest window holds with room is answered there, not in a new one
    again = pred.predict(box=[cx - d + 4, cy - d + 4, cx + d - 4, cy + d - 4], multimask=False)
    assert again.window == windows[-1] and len(pred._tiled._windows) == MAX_WINDOWS


def test_logits_fed_back_decode_in_their_own_window(tiled, sample):
    straddle, _ = _objects(sample.labels)
    gt = sample.labels == straddle[1]
    click = centre_point(gt)[None]
    first = tiled.predict(points=click, labels=[1])
    best = int(np.argmax(first.scores))
    again = tiled.predict(points=click, labels=[1], mask_logits=first.logits[best], multimask=False)
    assert again.window == first.window and iou(again.masks[0], gt) > 0.6
    only = tiled.predict(mask_logits=first.logits[best], multimask=False)
    assert only.window == first.window
    with pytest.raises(ValueError, match="recent prediction"):
        tiled.predict(points=click, labels=[1], mask_logits=np.zeros((64, 64), np.float32))
    y0, y1, x0, x1 = first.window
    far = [[(x1 + 40) % SIZE, (y1 + 40) % SIZE]]
    with pytest.raises(ValueError, match="outside the window"):
        tiled.predict(points=far, labels=[1], mask_logits=first.logits[best])


def test_every_tile_is_mapped_with_the_whole_images_contrast(model, sample, tiled):
    """No tile-to-tile contrast seam: each tile's features are those of its window cut from
    the whole image mapped to 8 bit at once."""
    whole = to_uint8_rgb(sample.image)
    ref = ns.ImagePredictor(model)
    for i in (0, 5, 15):
        ref.set_image(whole[tiled.grid[i].outer_slices])
        got, want = tiled.embedding(tile=i), ref.embedding()
        assert all(np.array_equal(got[k], want[k]) for k in want)
    with pytest.raises(ValueError, match="tile=i"):
        tiled.embedding()


def test_no_tiling_is_todays_predictor(model, sample):
    image = sample.image[:300, :280]
    click, box = np.array([[100.0, 120.0]]), np.array([60, 70, 140, 150.0])
    plain, none, big = ns.ImagePredictor(model), ns.ImagePredictor(model, None, None), \
        ns.ImagePredictor(model, tile_shape=(512, 512), halo=(64, 64))
    outs = []
    for p in (plain, none, big):
        p.set_image(image)
        outs.append((p.predict(points=click, labels=[1]), p.predict(box=box, multimask=False)))
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            assert np.array_equal(a.masks, b.masks) and np.array_equal(a.logits, b.logits)
            assert np.array_equal(a.scores, b.scores) and b.window is None
    assert plain.grid is None and none.grid is None and len(big.grid) == 1  # one tile: the image


def test_auto_tiling_sees_the_image_at_its_own_resolution(model, sample):
    pred = ns.ImagePredictor(model, tile_shape="auto")
    pred.set_image(sample.image[:200, :200])
    assert pred.grid is None  # fits the model input: embedded whole
    pred.set_image(sample.image[:512, :512])
    assert pred.grid.tile_shape == (192, 192) and pred.grid.halo == (32, 32) and len(pred.grid) == 9
    assert pred.grid.describe() == "9 tiles (3 x 3) of 192 x 192 px, halo 32 x 32 px"


@pytest.mark.parametrize("tile,halo,words", [((16, 64), None, "at least 32"), (64, (33, 8), "half"),
                                             (None, (8, 8), "without tile_shape"), ("big", None, "'auto'"),
                                             ((64.5, 64), None, "whole")])
def test_bad_tilings_are_refused_when_the_predictor_is_made(model, tile, halo, words):
    with pytest.raises(ValueError, match=words):
        ns.ImagePredictor(model, tile_shape=tile, halo=halo)


def test_a_click_on_a_cached_tiled_image_encodes_nothing_and_decodes_in_one_tile(tiled, sample):
    """What keeps a click on a large cached image fast: every click, anywhere (a grid of 16 x
    16 clicks, on core edges and corners too), is answered in one tile's window already
    embedded; nothing is encoded and no on-demand window is made."""
    image_tiles = tiled._tiled
    encoded = []
    original = image_tiles.encode_window
    image_tiles.encode_window = lambda window: encoded.append(window) or original(window)
    try:
        before = dict(image_tiles._windows)
        outers = {t.outer for t in tiled.grid}
        coords = np.linspace(0, SIZE - 1, 16)
        for y in coords:
            for x in coords:
                res = tiled.predict(points=[[x, y]], labels=[1], multimask=False)
                assert res.window in outers  # a tile, not a window made on demand
                # with at least half the halo of room on every inner side
                assert margin((y, y, x, x), res.window, (SIZE, SIZE)) >= HALO[0] // 2
    finally:
        image_tiles.encode_window = original
    assert encoded == [] and dict(image_tiles._windows) == before
