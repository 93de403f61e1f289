"""Segment everything tile by tile (bundled model, 256 px input) on generated nuclei mosaics.

Quality is measured against the same model run on single tiles: the tiled labels of a 384²
mosaic (2 x 2 tiles of 192 px, halo 32: each outer window about one model input) must find
>= 0.95x as many of the true nuclei per area as single-tile runs on the tiles' own windows, and
split no nucleus crossing a core edge (two labels each covering >= 20 % of it) that the model
does not split in its own tile's window alone; labels change across core edges no more often
than across lines between them (no seam).
The rest checks the contract: no tiling / one tile equal today's labels exactly, bad tilings
refused, progress per tile, ``out=`` written (zarr), features per tile, the whole image's
contrast limits read in bands.
"""

from __future__ import annotations

import numpy as np
import pytest

import napari_sam as ns
from napari_sam.data.mosaic import mosaic
from napari_sam.engine.auto import tiled
from napari_sam.engine.auto import tiled_metrics as tm
from napari_sam.engine.auto.records import MaskRecord
from napari_sam.engine.auto.stitch import TileStitcher
from napari_sam.engine.image.preprocess import robust_limits, to_uint8_rgb
from napari_sam.engine.image.tiling import TileGrid

zarr = pytest.importorskip("zarr")
PPS = 12  # 144 grid points a tile: three decoder batches


@pytest.fixture(scope="module")
def model():
    return ns.load_model("embedded")


@pytest.fixture(scope="module")
def sample():
    return mosaic((384, 384), scene=256, distinct=3, seed=1)  # scene edges off the core edges


@pytest.fixture(scope="module")
def tiled_run(model, sample, tmp_path_factory):
    """One tiled run, zarr in and zarr out (chunks not aligned with the tiles)."""
    root = tmp_path_factory.mktemp("tiled")
    image = zarr.open_array(str(root / "image.zarr"), mode="w", shape=sample.image.shape, chunks=(100, 100),
                            dtype=sample.image.dtype)
    image[:] = sample.image
    out = zarr.open_array(str(root / "labels.zarr"), mode="w", shape=sample.image.shape, chunks=(70, 90),
                          dtype="int32", fill_value=7)  # old contents: replaced
    seg = ns.AutomaticSegmenter(model, points_per_side=PPS, tile_shape=(192, 192), halo=(32, 32))
    calls = []
    got = seg.generate(image, out=out, progress=lambda d, n: calls.append((d, n)))
    return seg, got, calls


def test_tiled_finds_as_many_objects_as_single_tiles_and_cuts_none(model, sample, tiled_run):
    seg, out, calls = tiled_run
    labels = out[:]
    grid = seg.tiling(sample.image.shape)
    assert len(grid) == 4 and calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    ids = np.unique(labels[labels > 0])
    assert labels.dtype == np.int32 and ids.tolist() == list(range(1, len(ids) + 1))
    truth = sample.labels
    inner = tm.interior_ids(truth)
    tiled_rate = len(tm.found(truth, labels) & inner) / len(inner)
    # the same model on each tile's outer window alone (objects the window does not cut), with
    # the contrast limits the tiles get (the whole image's): the same pixels as in the tiled run
    limits = tiled.image_contrast_limits(sample.image)
    single = ns.AutomaticSegmenter(model, points_per_side=PPS)
    crossing = tm.crossing_ids(truth, grid) & inner
    hits = total = 0
    split_alone = set()  # crossing objects split by the model in their own tile's window alone
    for tile in grid:
        ys, xs = tile.outer_slices
        part = truth[ys, xs]
        own = tm.interior_ids(part)
        pred = single.generate(sample.image[ys, xs], contrast_limits=limits)
        hits += len(tm.found(part, pred) & own)
        total += len(own)
        mine = {i for i in crossing & own if tile.contains(*np.argwhere(truth == i).mean(0))}
        split_alone |= tm.split_ids(part, pred, mine)
    single_rate = hits / total
    print(f"found: tiled {tiled_rate:.3f} single tiles {single_rate:.3f}; labels {len(ids)}")
    assert tiled_rate >= 0.95 * single_rate
    split = tm.split_ids(truth, labels, crossing)
    print(f"crossing {len(crossing)}: split {len(split)} (alone {len(split_alone)}), "
          f"pieces in two cores {len(tm.seam_split_ids(truth, labels, grid, crossing))}")
    assert len(crossing) >= 10
    assert len(split - split_alone) <= 0.01 * len(crossing)  # the tiling splits none the tile alone did not
    # no seam: labels change across the core edges no more often than across lines between them
    edges = tm.seam_steps(labels, rows=[192], cols=[192])
    control = tm.seam_steps(labels, rows=[96, 288], cols=[96, 288]) / 2
    assert edges <= 1.5 * control + 4, (edges, control)


def test_an_interrupted_run_keeps_the_tiles_done(model, sample, tiled_run):
    """Cancel from progress after two tiles: what is in ``out`` is what the full run painted."""
    seg, full, _ = tiled_run
    out = np.full(sample.image.shape, -1, np.int32)

    def stop(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        seg.generate(sample.image, out=out, progress=stop)
    done = out > 0
    assert done[:192, :192].mean() > 0.1 and not done[224:, :].any()  # nothing below the first row's windows
    assert np.array_equal(out[done], full[:][done])
    assert (out >= 0).all()  # the old contents went: every core lies under the first two windows


def test_no_tiling_and_one_tile_equal_the_whole_image(model):
    """With the same ``join_touching`` one tile gives the whole image's labels; by default it
    is on when tiled (one tile too) and off when not (the whole image's labels unchanged)."""
    image = mosaic((200, 176), scene=200, distinct=1, seed=4).image
    whole = ns.AutomaticSegmenter(model, points_per_side=8).generate(image)
    assert whole.max() >= 3
    assert np.array_equal(ns.AutomaticSegmenter(model, points_per_side=8, join_touching=False).generate(image), whole)
    joined = ns.AutomaticSegmenter(model, points_per_side=8, join_touching=True).generate(image)
    assert joined.max() < whole.max()  # this image has a split nucleus
    for tile, halo in [(None, None), ("auto", None), ((512, 512), (64, 64))]:
        for join in (False, True):
            seg = ns.AutomaticSegmenter(model, points_per_side=8, tile_shape=tile, halo=halo, join_touching=join)
            assert np.array_equal(seg.generate(image), joined if join else whole), (tile, join)
    one_tile = ns.AutomaticSegmenter(model, points_per_side=8, tile_shape=(512, 512), halo=(64, 64))
    assert np.array_equal(one_tile.generate(image), joined)
    assert ns.AutomaticSegmenter(model, tile_shape=(512, 512)).tiling(image.shape) is not None  # the loop ran
    out = np.zeros(image.shape, np.uint16)
    assert ns.AutomaticSegmenter(model, points_per_side=8).generate(image, out=out) is out
    assert np.array_equal(out, whole)


@pytest.mark.parametrize("kwargs,words", [({"tile_shape": 16}, "at least 32"), ({"tile_shape": 64, "halo": 40}, "half"),
                                          ({"tile_shape": "big"}, "'auto'"), ({"halo": 16}, "without tile_shape"),
                                          ({"tile_shape": (64, 64), "halo": -2}, "negative")])
def test_bad_tilings_are_refused_by_the_segmenter(model, kwargs, words):
    with pytest.raises(ValueError, match=words):
        ns.AutomaticSegmenter(model, **kwargs)


def test_bad_calls_are_refused_with_the_value_named(model):
    seg = ns.AutomaticSegmenter(model, points_per_side=4, tile_shape=64, halo=16)
    image = np.zeros((100, 120), np.uint16)
    with pytest.raises(ValueError, match="tile_features"):
        seg.generate(image, features={"x": np.zeros(1)})
    with pytest.raises(ValueError, match=r"\(100, 121\)"):
        seg.generate(image, out=np.zeros((100, 121), np.int32))
    with pytest.raises(ValueError, match="integers"):
        seg.generate(image, out=np.zeros((100, 120), np.float32))
    with pytest.raises(ValueError, match=r"\(5, 100, 120\)"):
        seg.generate(np.zeros((5, 100, 120), np.uint16))


def test_small_tiles_zarr_and_numpy_and_features_per_tile_agree(model):
    """4 tiles of 64 px (halo 16) on a 128² image: zarr in / out equals numpy; features made
    elsewhere per tile (here: the same encoder) give the same labels, asked once per tile."""
    sample = mosaic((128, 128), scene=128, distinct=1, seed=2, diameter=(10, 16))
    seg = ns.AutomaticSegmenter(model, points_per_side=6, tile_shape=64, halo=16)
    grid = seg.tiling(sample.image.shape)
    assert len(grid) == 4
    ref = seg.generate(sample.image)
    assert ref.max() >= 5
    z_in = zarr.zeros(sample.image.shape, chunks=(50, 50), dtype=sample.image.dtype)
    z_in[:] = sample.image
    z_out = zarr.zeros(sample.image.shape, chunks=(64, 64), dtype="uint32")
    assert seg.generate(z_in, out=z_out) is z_out
    assert np.array_equal(z_out[:], ref)
    limits = tiled.image_contrast_limits(sample.image)
    asked = []

    def features(i):
        asked.append(i)
        ys, xs = grid[i].outer_slices
        return seg.transform.encode(to_uint8_rgb(sample.image[ys, xs], limits))

    assert np.array_equal(seg.generate(sample.image, tile_features=features), ref)
    assert asked == list(range(4))


@pytest.mark.parametrize("shape,dtype", [((1300, 900), np.uint16), ((700, 800, 4), np.float32), ((50, 60, 1), np.int16)])
def test_whole_image_contrast_limits_equal_the_one_image_rule(shape, dtype, monkeypatch):
    rng = np.random.default_rng(0)
    image = (rng.gamma(2.0, 300.0, size=shape)).astype(dtype)
    if dtype == np.float32:
        image[5, :40] = np.nan
    monkeypatch.setattr(tiled, "_BAND_PIXELS", 100_000)  # many bands
    squeezed = image[..., :3] if image.ndim == 3 and shape[-1] == 4 else image
    expected = robust_limits(squeezed[..., 0] if squeezed.ndim == 3 and squeezed.shape[-1] == 1 else squeezed)
    assert tiled.image_contrast_limits(image) == expected
    assert tiled.image_contrast_limits(np.zeros(shape, np.uint8)) == (0.0, 255.0)


def _record(mask: np.ndarray, quality: float) -> MaskRecord:
    """A record of ``mask`` (a tile's outer window) as the generator makes them."""
    ys, xs = np.nonzero(mask)
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())
    return MaskRecord((x0, y0, x1, y1), mask[y0:y1 + 1, x0:x1 + 1].copy(), quality, 1.0,
                      (float(xs.mean()), float(ys.mean())), (0, 0, mask.shape[1], mask.shape[0]))


@pytest.mark.parametrize("centre_x,cut_x,whole_in", [(68, 66, 0), (60, 62, 1)])
def test_a_nucleus_seen_whole_by_one_tile_and_in_two_pieces_by_the_other_is_one_label(centre_x, cut_x, whole_in):
    """Two tiles of 64 px (halo 24) side by side, a disk of radius 10 across the core edge at
    x = 64. One tile's window holds the whole disk as one mask, the other's the disk in two
    pieces (cut at ``cut_x``), whose centroids lie in different cores. Either order (the whole
    view from the earlier tile, centred in the later tile's core, or the other way round):
    one label, the whole disk."""
    grid = TileGrid((64, 128), 64, (0, 24))
    yy, xx = np.mgrid[:64, :128]
    disk = (yy - 32) ** 2 + (xx - centre_x) ** 2 <= 100
    left, right = disk & (xx < cut_x), disk & (xx >= cut_x)
    assert grid.tile_at(32, np.nonzero(left)[1].mean()).index == 0
    assert grid.tile_at(32, np.nonzero(right)[1].mean()).index == 1
    stitcher = TileStitcher(grid, (64, 128))
    out = np.zeros((64, 128), np.int32)
    for tile in grid:
        ys, xs = tile.outer_slices
        views = [disk] if tile.index == whole_in else [left, right]
        stitcher.add(tile, [_record(v[ys, xs], 0.9 - 0.01 * i) for i, v in enumerate(views)], out)
    assert out.max() == 1 and np.array_equal(out > 0, disk)


@pytest.mark.parametrize("rows", [64, 38])
def test_pieces_painted_by_the_owner_join_when_a_later_tile_sees_the_nucleus_whole(rows):
    """A seam split: a disk (radius 10) across the core edge at x = 64, centred in tile 0's
    core. Tile 0 (painted first) sees it in two pieces (top / bottom), both centred in its own
    core; tile 1 sees it whole (centroid in tile 0's core, so tile 1 does not own it), or its
    rows above ``rows`` only (38: 67 % of the bottom piece, under ``cover`` but over ``join``).
    That view joins the two pieces: one label. A second nucleus inside tile 0 keeps its own
    label, and the ids stay 1..n (the id freed by the join is filled)."""
    grid = TileGrid((64, 128), 64, (0, 24))
    yy, xx = np.mgrid[:64, :128]
    disk = (yy - 32) ** 2 + (xx - 58) ** 2 <= 100
    top, bottom = disk & (yy < 32), disk & (yy >= 32)
    other = (yy - 30) ** 2 + (xx - 18) ** 2 <= 64
    stitcher = TileStitcher(grid, (64, 128))
    out = np.zeros((64, 128), np.int32)
    for tile in grid:
        ys, xs = tile.outer_slices
        views = [(top, 0.9), (bottom, 0.89), (other, 0.5)] if tile.index == 0 else [(disk & (yy < rows), 0.9)]
        stitcher.add(tile, [_record(v[ys, xs], q) for v, q in views if v[ys, xs].any()], out)
    assert sorted(np.unique(out[out > 0]).tolist()) == [1, 2]
    assert len(np.unique(out[disk])) == 1 and np.array_equal(out == out[32, 58], disk)
    assert np.array_equal(out == out[30, 18], other)
