"""AIS tile by tile (engine/auto/ais_tiled.py) vs micro-sam 1.8.14's TiledInstanceSegmentationWithDecoder.

Golden: tests/golden/ais_tiled_reference.npz (tests/golden/make_ais_tiled_golden.py): the tiny
SAM 1 of make_ais_golden with its seeded weights and decoder, tile_shape (96, 96), halo
(16, 16) on a (230, 210) image (3 x 3 tiles). Decoder maps are compared tile by tile (max
relative error <= 1e-4), labels after relabelling (>= 99.9 % of pixels agree)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from conftest import max_rel_err
from golden.make_ais_golden import decoder_state, synthetic_maps, tiny_sam1
from golden.make_ais_tiled_golden import GOLDEN, HALO, TILE, microsam_tiled, tile_grid, tiled_image
from test_ais import agreement

from napari_sam.engine.auto.ais import AisSegmenter, ais_labels
from napari_sam.engine.auto.ais_tiled import StitchedMaps, generate_ais_tiled
from napari_sam.engine.image.tiling import TileGrid

HAVE_MICROSAM = all(importlib.util.find_spec(m) is not None for m in ("micro_sam", "torch_em"))
needs_microsam = pytest.mark.skipif(not HAVE_MICROSAM, reason="micro-sam / torch_em not installed; "
                                    "the golden tests cover CI")
TOL = 1e-4


@pytest.fixture(scope="module")
def model():
    m = tiny_sam1()
    m.ais_decoder_state = decoder_state(False)
    return m


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(GOLDEN))


@pytest.fixture(scope="module")
def ours(model):
    """One tiled run of ours on tiled_image(): labels, progress calls, each tile's (3, h, w)
    maps on its outer window (recorded as generate makes them) and the stitched maps."""
    seg = AisSegmenter(model, tile_shape=TILE, halo=HALO)
    per_tile, calls = [], []
    window_maps = seg._window_maps

    def recording(rgb, feats, hw):
        per_tile.append(window_maps(rgb, feats, hw))
        return per_tile[-1]

    seg._window_maps = recording
    labels = seg.generate(tiled_image(), progress=lambda d, t: calls.append((d, t)))
    stitched = StitchedMaps(tile_grid())
    for tile, maps in zip(tile_grid(), per_tile):
        stitched.add(tile, maps)
    return {"labels": labels, "calls": calls, "tiles": per_tile, "maps": stitched.maps}


def test_tiled_ais_equals_microsam_golden(ours, golden):
    image = tiled_image()
    np.testing.assert_array_equal(image, golden["image"])  # the input is rebuilt
    assert tuple(golden["tile_shape"]) == TILE and tuple(golden["halo"]) == HALO
    assert len(ours["tiles"]) == 9
    for tile in tile_grid():  # each core holds one tile's decoder output
        ys, xs = tile.core_slices
        assert max_rel_err(ours["maps"][:, ys, xs], golden["maps"][:, ys, xs]) <= TOL, tile
    labels, ref = ours["labels"], golden["labels_whole"]
    assert labels.dtype == np.int32 and labels.shape == image.shape and ref.max() >= 10
    assert agreement(labels, ref) >= 0.999
    # micro-sam's command line labels the stitched maps block-wise (elf, blocks of tile_shape with
    # the halo), which splits a few objects: ours differ from that no more than micro-sam's own
    # one-image labels do (measured: 98.93 % agreement either way)
    blockwise = golden["labels_blockwise"]
    assert abs(agreement(labels, blockwise) - agreement(ref, blockwise)) <= 0.001
    assert sorted(np.unique(labels)) == list(range(labels.max() + 1))


@needs_microsam
def test_tiled_ais_equals_microsam_live(ours):
    """micro-sam embeds the tiles itself; every tile's whole decoder output is compared, then
    the stitched maps and both of micro-sam's labellings."""
    ref_maps, whole, blockwise, ref_tiles = microsam_tiled(tiled_image())
    assert len(ours["tiles"]) == len(ref_tiles) == 9
    for mine, ref in zip(ours["tiles"], ref_tiles):
        assert max_rel_err(mine, ref) <= TOL
    assert max_rel_err(ours["maps"], ref_maps) <= TOL
    assert agreement(ours["labels"], whole) >= 0.999
    assert abs(agreement(ours["labels"], blockwise) - agreement(whole, blockwise)) <= 0.001


def _from_whole(whole):
    """A stand-in decoder reading each window's maps out of whole-image maps (tile index as its
    'features'), to test the stitching alone."""
    def predict(rgb, feats, hw):
        t = feats["tile"]
        return whole[:, t.outer_slices[0], t.outer_slices[1]]
    return predict


def test_stitched_labels_have_no_seams():
    """Windows cut from one image's maps, stitched core by core, give exactly the one-image
    labels, objects across core edges included."""
    whole = synthetic_maps(3, shape=(192, 160), n=40).astype(np.float32)
    grid = TileGrid((192, 160), (48, 48), (12, 12))
    labels = generate_ais_tiled(_from_whole(whole), lambda m: ais_labels(*m), np.zeros((192, 160), np.uint8),
                                grid, tile_features=lambda i: {"tile": grid[i]})
    want = ais_labels(*whole)
    np.testing.assert_array_equal(labels, want)
    crossing = [i for i in range(1, want.max() + 1)
                if len({grid.tile_at(y, x).index for y, x in np.argwhere(want == i)}) > 1]
    assert len(crossing) >= 10  # many objects lie on core edges: one label each


def test_progress_per_tile_and_cancel_keeps_what_is_done(model, ours):
    image = tiled_image()
    seg = AisSegmenter(model, tile_shape=TILE, halo=HALO)
    full = ours["labels"]
    assert ours["calls"] == [(i, 9) for i in range(1, 10)]  # per tile, the last once labelled

    class Cancelled(Exception):
        pass

    def cancel(done, total):
        if done == 4:
            raise Cancelled

    out = np.full(image.shape, 9999, np.int32)
    with pytest.raises(Cancelled):
        seg.generate(image, progress=cancel, out=out)
    grid = tile_grid()
    for tile in grid:
        core = out[tile.core_slices]
        if tile.index < 4:
            assert (core != 9999).all()
        else:
            assert (core == 9999).all()  # not reached: untouched
    done_rows = out[:96]  # the first tile row, far from the cancelled frontier (row 192, tile 4)
    assert done_rows.max() >= 3
    assert agreement(done_rows, full[:96]) >= 0.99


def test_stored_tile_features_and_auto(model, ours, tmp_path):
    """Features from a tiled EmbeddingStore give the labels of encoding here (a uint8 image's
    limits are (0, 255) either way); "auto" on an image larger than the 128 px input picks
    this very tiling (window 128, halo 16); on one that fits it, the whole image is segmented
    as untiled."""
    from napari_sam.engine.store.embedding_store import EmbeddingStore

    image = tiled_image()
    seg = AisSegmenter(model, tile_shape=TILE, halo=HALO)
    store = EmbeddingStore(tmp_path / "e.zarr", model, image[None], contrast_limits=(0, 255), tile_shape=TILE,
                           halo=HALO)
    got = seg.generate(image, contrast_limits=(0, 255), tile_features=lambda i: store.get(0, tile=i))
    np.testing.assert_array_equal(got, ours["labels"])
    auto = AisSegmenter(model, tile_shape="auto")
    assert auto.tiling(image.shape).describe() == tile_grid().describe()
    small = image[:120, :100]
    assert auto.tiling(small.shape) is None
    np.testing.assert_array_equal(auto.generate(small), AisSegmenter(model).generate(small))


def test_tiled_ais_bad_input(model):
    with pytest.raises(ValueError, match="halo"):
        AisSegmenter(model, halo=(8, 8))
    with pytest.raises(ValueError, match="too small"):
        AisSegmenter(model, tile_shape=(16, 16))
    seg = AisSegmenter(model, tile_shape=TILE, halo=HALO)
    image = tiled_image()
    with pytest.raises(ValueError, match="tile_features"):
        seg.generate(image, features={"image_embed": np.zeros((256, 8, 8), np.float32)})
    with pytest.raises(ValueError, match=r"out has shape \(10, 10\)"):
        seg.generate(image, out=np.zeros((10, 10), np.int32))
    with pytest.raises(ValueError, match="integers"):
        seg.generate(image, out=np.zeros(image.shape, np.float32))
