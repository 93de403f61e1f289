"""EmbeddingStore with tiles: one chunk per frame and tile, resumable tile by tile, the tiling
in its record (a store made with other tiles is refused), tiles read lazily by ImagePredictor."""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest
import zarr
from test_embedding_store import TinyEncoder, _spawn, assert_same, count_encodes, reference

import napari_sam as ns
from napari_sam.data.mosaic import mosaic
from napari_sam.engine.image.preprocess import to_uint8_rgb
from napari_sam.engine.store.embedding_store import EmbeddingStore
from napari_sam.training.evaluate import iou
from napari_sam.training.prompts import centre_point

TILE, HALO = (48, 48), (8, 8)  # for the tiny encoder (input 32 px)


def _frames(t=2, h=130, w=100, seed=0):
    return np.random.default_rng(seed).integers(0, 4000, (t, h, w)).astype(np.uint16)


def test_one_chunk_per_frame_and_tile_each_tiles_window_encoded(tmp_path):
    frames, model = _frames(), TinyEncoder()
    store = EmbeddingStore(tmp_path / "s", model, frames, tile_shape=TILE, halo=HALO)
    grid = store.grid
    assert (grid.rows, grid.cols) == (3, 3) and len(store) == 2
    assert store.missing() == [0, 1] and len(store.missing_tiles()) == 18
    seen = []
    assert store.precompute(lambda d, t: seen.append((d, t))) == 18  # every tile of every frame
    assert seen[0] == (0, 18) and seen[-1] == (18, 18) and len(seen) == 19  # progress per tile
    chunks = sorted(p.name for p in (tmp_path / "s" / "features" / "image_embed").iterdir() if p.name.startswith("c"))
    assert len(chunks) == 18
    limits = store.contrast_limits
    reopened = EmbeddingStore(tmp_path / "s", TinyEncoder(), frames, tile_shape=TILE, halo=HALO)
    assert reopened.is_complete() and reopened.missing_tiles() == []
    for t in range(2):
        rgb = to_uint8_rgb(frames[t], limits)  # the whole frame's mapping, then the window
        for tile in grid:
            want = reference(model, rgb[tile.outer_slices], None)
            assert_same(reopened.get(t, tile=tile.index), want)
    whole = reopened.get(1)
    assert isinstance(whole, list) and len(whole) == 9
    assert_same(whole[4], reopened.get(1, tile=4))
    assert reopened.model.calls == 0  # all read back, nothing encoded again
    assert "9 tiles (3 x 3)" in repr(reopened)


def test_a_store_made_with_other_tiles_is_refused(tmp_path):
    frames = _frames()
    EmbeddingStore(tmp_path / "s", TinyEncoder(), frames, tile_shape=TILE, halo=HALO).get(0, tile=0)
    with pytest.raises(ValueError, match=r"tiling: the store was made with tiles of \(48, 48\) px with halo "
                                         r"\(8, 8\) px, asked for tiles of \(64, 64\) px"):
        EmbeddingStore(tmp_path / "s", TinyEncoder(), frames, tile_shape=(64, 64), halo=HALO)
    with pytest.raises(ValueError, match=r"asked for no tiles \(whole frames\)"):
        EmbeddingStore(tmp_path / "s", TinyEncoder(), frames)
    EmbeddingStore(tmp_path / "u", TinyEncoder(), frames).get(0)
    with pytest.raises(ValueError, match=r"made with no tiles \(whole frames\), asked for tiles of"):
        EmbeddingStore(tmp_path / "u", TinyEncoder(), frames, tile_shape=TILE, halo=HALO)
    again = EmbeddingStore(tmp_path / "s", TinyEncoder(), frames, tile_shape=TILE, halo=HALO)
    assert again.has(0, tile=0) and not again.has(0)  # nothing was lost by the refusals


def test_untiled_store_is_as_before_and_tile_arguments_are_checked(tmp_path):
    frames = _frames()
    store = EmbeddingStore(tmp_path / "u", TinyEncoder(), frames)
    assert store.grid is None and "tiling" not in zarr.open_group(tmp_path / "u").attrs["napari_sam_embeddings"]
    assert_same(store.get(1), reference(TinyEncoder(), frames[1], store.contrast_limits))
    with pytest.raises(ValueError, match="not tiled"):
        store.get(0, tile=0)
    tiled = EmbeddingStore(None, TinyEncoder(), frames, tile_shape=TILE, halo=HALO)
    with pytest.raises(IndexError, match="tile 9 out of range for 9 tiles"):
        tiled.get(0, tile=9)
    with pytest.raises(ValueError, match="at least 32"):
        EmbeddingStore(None, TinyEncoder(), frames, tile_shape=(16, 16))
    with pytest.raises(ValueError, match="half"):
        EmbeddingStore(None, TinyEncoder(), frames, tile_shape=TILE, halo=(30, 8))


def test_a_tile_half_written_by_a_crash_is_encoded_again_and_no_other(tmp_path):
    frames, model = _frames(), TinyEncoder()
    store = EmbeddingStore(tmp_path / "s", model, frames, tile_shape=TILE, halo=HALO)
    orig = store._checksum

    class CrashAfterFeatures:
        def __getitem__(self, k):
            return orig[k]

        def __setitem__(self, k, v):
            if k == 11:  # frame 1, tile 2: its features are written, its checksum is not
                raise KeyboardInterrupt("killed between features and checksum")
            orig[k] = v

    store._checksum = CrashAfterFeatures()
    with pytest.raises(KeyboardInterrupt):
        store.precompute()
    fresh = TinyEncoder()
    resumed = EmbeddingStore(tmp_path / "s", fresh, frames, tile_shape=TILE, halo=HALO)
    assert resumed.missing() == [1] and resumed.missing_tiles() == [(1, i) for i in range(2, 9)]
    assert resumed.has(1, tile=1) and not resumed.has(1, tile=2)
    assert resumed.precompute() == 7 and fresh.calls == 7
    rgb = to_uint8_rgb(frames[1], resumed.contrast_limits)
    assert_same(resumed.get(1, tile=2), reference(model, rgb[resumed.grid[2].outer_slices], None))


def test_resume_after_killing_a_real_process_tile_by_tile(tmp_path):
    path = tmp_path / "s.zarr"
    proc = _spawn(tmp_path, "writer", f"""
        frames = np.random.default_rng(0).integers(0, 4000, (2, 130, 100)).astype(np.uint16)
        EmbeddingStore({str(path)!r}, TinyEncoder(delay=0.25), frames, tile_shape=(48, 48), halo=(8, 8)).precompute()
        """)
    deadline = time.monotonic() + 120

    def n_done():
        try:
            return int(np.count_nonzero(zarr.open_array(path / "checksum", mode="r")[:]))
        except Exception:  # not made yet
            return 0

    while n_done() < 3:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = n_done()
    assert 3 <= done < 18
    model = TinyEncoder()
    store = EmbeddingStore(path, model, _frames(), tile_shape=TILE, halo=HALO)
    assert store.missing_tiles() == [divmod(s, 9) for s in range(done, 18)]
    assert store.precompute() == 18 - done and model.calls == 18 - done  # the killed one's tiles kept


@pytest.fixture(scope="module")
def embedded():
    return ns.load_model("embedded", device="cpu")


def test_a_predictor_on_a_tiled_store_reads_only_the_tiles_its_prompts_need(embedded):
    sample = mosaic((512, 512), scene=256, distinct=1, seed=5)
    store = EmbeddingStore(None, embedded, sample.image, tile_shape=(192, 192), halo=(32, 32))
    assert len(store.grid) == 9 and store.missing_tiles() == [(0, i) for i in range(9)]
    pred = ns.ImagePredictor(embedded)
    calls = count_encodes(embedded)
    try:
        pred.set_frame(store, 0)
        assert calls == [] and pred.grid is store.grid  # nothing encoded yet
        k = int(sample.labels[300, 300]) or int(np.unique(sample.labels[280:320, 280:320])[-1])
        gt = sample.labels == k
        res = pred.predict(points=centre_point(gt)[None], labels=[1])
        assert len(calls) == 1 and len(store.missing_tiles()) == 8  # one tile, now in the store
        assert res.masks.shape == (3, 512, 512)
        mem = ns.ImagePredictor(embedded, tile_shape=(192, 192), halo=(32, 32))
        mem.set_image(sample.image, contrast_limits=store.contrast_limits)
        ref = mem.predict(points=centre_point(gt)[None], labels=[1])
        assert ref.window == res.window and iou(res.best, ref.best) > 0.95
        assert iou(res.best, gt) > 0.6
    finally:
        del embedded.encode_image
    stored = [i for i in range(9) if store.has(0, tile=i)]
    assert len(stored) == 1 and store.grid[stored[0]].outer == res.window  # the tile it answered in
