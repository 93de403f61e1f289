"""``--tile H W --halo H W`` (and ``--tile auto``) on the command line: tiled stores, clicks and
segment everything at the image's own pixel size, bad values refused before any work.

The bundled model (input 256 px) on a generated 512² nuclei mosaic (nuclei 15-30 px), tiles of
192 px with a 32-px halo: 3 x 3 tiles whose outer windows are the model's input (no shrinking).
Commands run in-process (``cli.main``: the same code as the entry point, faster)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from napari_sam import cli
from napari_sam.data.mosaic import mosaic

SIZE, SCENE, TILE, HALO = 512, 256, (192, 192), (32, 32)
TILES = ["--tile", "192", "192", "--halo", "32", "32"]
MODEL = ["--model", "embedded", "--device", "cpu", "--quiet"]
N_EACH = 6  # clicked objects straddling a core edge, and inside a tile


@pytest.fixture(scope="module")
def model():
    import napari_sam as ns

    return ns.load_model("embedded", device="cpu")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_tiling")
    sample = mosaic((SIZE, SIZE), scene=SCENE, distinct=2, seed=3)
    tifffile.imwrite(d / "big.tif", sample.image)
    return {"dir": d, "image": sample.image, "truth": sample.labels, "path": d / "big.tif"}


def _encodes(model):
    """A list that grows by one per image-encoder call (any loaded copy of the model)."""
    encoder, calls = type(model.image_encoder), []
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda m, a, o: calls.append(1) if type(m) is encoder else None)
    return calls, hook


def _clicked_objects(truth):
    """(straddling, interior) whole objects of >= 60 px (not cut by a scene edge or the border)."""
    from scipy import ndimage

    straddle, inside = [], []
    for k, sl in enumerate(ndimage.find_objects(truth), start=1):
        if sl is None or (truth[sl] == k).sum() < 60:
            continue
        spans = ((sl[0].start, sl[0].stop), (sl[1].start, sl[1].stop))
        if any(lo // SCENE != (hi - 1) // SCENE or lo % SCENE == 0 or hi % SCENE == 0 for lo, hi in spans):
            continue
        crosses = any(lo // TILE[0] != (hi - 1) // TILE[0] for lo, hi in spans)
        (straddle if crosses else inside).append(k)
    return straddle[:N_EACH], inside[:N_EACH]


def _iou(a, b) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_embed_writes_a_tiled_store_reused_and_other_tilings_refused(data, model, capsys):
    from napari_sam.app.store_location import StoreLocator
    from napari_sam.engine.store.embedding_store import EmbeddingStore

    store = data["dir"] / "big.embeddings.zarr"
    calls, hook = _encodes(model)
    try:
        assert cli.main(["embed", str(data["path"]), "-o", str(store), *TILES, *MODEL]) == 0
        assert len(calls) == 9  # one encode per tile (3 x 3), none of the whole image
        opened = EmbeddingStore(store, model, data["image"], tile_shape=TILE, halo=HALO)
        assert opened.grid.describe() == "9 tiles (3 x 3) of 192 x 192 px, halo 32 x 32 px"
        assert opened.is_complete() and opened.missing_tiles() == []
        calls.clear()
        # tile 4 (the middle) holds the features of its own 256² window, at the image's pixels
        fresh = EmbeddingStore(None, model, data["image"], contrast_limits=opened.contrast_limits,
                               tile_shape=TILE, halo=HALO).get(0, tile=4)
        stored = opened.get(0, tile=4)
        assert len(calls) == 1  # the fresh one only: the stored tile is read
        for k in fresh:
            torch.testing.assert_close(stored[k], fresh[k])

        calls.clear()  # a second run finds everything done: no encode
        assert cli.main(["embed", str(data["path"]), "-o", str(store), *TILES, *MODEL]) == 0
        assert calls == []
    finally:
        hook.remove()

    for other in (["--tile", "128", "--halo", "16"], []):  # other tiles, or none: refused, nothing changed
        capsys.readouterr()
        assert cli.main(["embed", str(data["path"]), "-o", str(store), *other, *MODEL]) == 2
        err = capsys.readouterr().err
        assert "made for something else" in err and "tiles of (192, 192) px with halo (32, 32) px" in err, err
    assert EmbeddingStore(store, model, data["image"], tile_shape=TILE, halo=HALO).is_complete()

    # the shared cache: the folder names the tiling, the widget's rule finds the same one
    assert cli.main(["embed", str(data["path"]), "--embeddings-cache", "--tile", "auto", *MODEL]) == 0
    where = capsys.readouterr().out.strip().split(": ", 1)[1]
    assert where == str(StoreLocator(model).path(data["image"], "auto"))
    assert where.endswith("-tile192x192-halo32x32.zarr")  # auto for a 256-px model: 192 + 32


def test_segment_clicks_tiled_full_size_and_better_than_whole(data, model):
    from napari_sam.training.prompts import centre_point

    straddle, inside = _clicked_objects(data["truth"])
    assert len(straddle) == N_EACH and len(inside) == N_EACH
    rows = ["id,x,y,label"]
    for k in straddle + inside:
        x, y = centre_point(data["truth"] == k)
        rows.append(f"{k},{x},{y},1")
    prompts = data["dir"] / "clicks.csv"
    prompts.write_text("\n".join(rows) + "\n")

    figures = {}
    for name, extra in (("tiled", TILES), ("whole", [])):
        out = data["dir"] / f"clicks_{name}.tif"
        assert cli.main(["segment", str(data["path"]), "-o", str(out), "--prompts", str(prompts), *extra, *MODEL]) == 0
        labels = tifffile.imread(out)
        assert labels.shape == (SIZE, SIZE)
        figures[name] = {k: _iou(labels == k, data["truth"] == k) for k in straddle + inside}
    tiled = figures["tiled"]
    assert np.mean([tiled[k] for k in straddle]) > 0.8  # objects across a tile border, whole
    assert np.mean([tiled[k] for k in inside]) > 0.8
    # the whole image shrunk to 256 px loses these small nuclei: tiles are clearly better
    assert np.mean(list(tiled.values())) > np.mean(list(figures["whole"].values())) + 0.1


def test_segment_auto_tiled_reads_the_cached_tiled_store(data, model):
    from napari_sam.app.automatic import make_segmenter
    from napari_sam.app.store_location import StoreLocator
    from napari_sam.engine.store.embedding_store import EmbeddingStore

    auto = ["--auto", "--points-per-side", "8"]
    assert cli.main(["embed", str(data["path"]), "--embeddings-cache", *TILES, *MODEL]) == 0
    out = data["dir"] / "auto.tif"
    calls, hook = _encodes(model)
    try:
        assert cli.main(["segment", str(data["path"]), "-o", str(out), "--embeddings-cache", *TILES, *auto,
                         *MODEL]) == 0
        assert calls == []  # every tile's features came from the store embed made
    finally:
        hook.remove()
    labels = tifffile.imread(out)
    assert labels.shape == (SIZE, SIZE)
    # the same as the engine's tiled segment everything on the store's features
    store = EmbeddingStore(StoreLocator(model).path(data["image"], TILE, HALO), model, data["image"],
                           tile_shape=TILE, halo=HALO)
    seg = make_segmenter(model, tile_shape=TILE, halo=HALO, points_per_side=8)
    want = seg.generate(data["image"], contrast_limits=store.contrast_limits,
                        tile_features=lambda i: store.get(0, tile=i))
    assert np.array_equal(labels, want)
    # it finds the nuclei (true objects matched with IoU > 0.5); the whole image shrunk to the
    # model's 256 px finds almost none of them (measured: 112 of 196 tiled, 3 whole)
    whole = data["dir"] / "auto_whole.tif"
    assert cli.main(["segment", str(data["path"]), "-o", str(whole), *auto, *MODEL]) == 0
    n_true = len(np.unique(data["truth"])) - 1
    tiled_found, whole_found = _matched(labels, data["truth"]), _matched(tifffile.imread(whole), data["truth"])
    assert tiled_found > 0.45 * n_true and tiled_found > 5 * max(whole_found, 1)


def _matched(labels, truth) -> int:
    """True objects whose most overlapping label covers them with IoU > 0.5."""
    n = 0
    for k in np.unique(truth[truth > 0]):
        best = np.bincount(labels[truth == k]).argmax()
        n += bool(best > 0 and _iou(labels == best, truth == k) > 0.5)
    return n


@pytest.mark.parametrize("flags,message", [
    (["--tile", "16"], "tiles must be at least 32 px"),
    (["--tile", "192", "--halo", "100", "100"], "halo (100, 100) is more than half of tile_shape (192, 192)"),
    (["--halo", "32"], "needs --tile"),
    (["--tile", "big"], "give H W"),
    (["--tile", "64", "64", "64"], "give H W"),
])
@pytest.mark.parametrize("command", ["embed", "segment", "track"])
def test_bad_tiling_exits_2_with_the_message_before_any_work(data, capsys, flags, message, command):
    out = data["dir"] / f"bad_{command}.out"
    args = {"embed": ["-o", str(out)], "segment": ["-o", str(out), "--auto"],
            "track": ["-o", str(out), "--tracks", str(data["dir"] / "bad.csv")]}[command]
    # a model that does not exist: the tiling is refused first (before any model is looked for)
    assert cli.main([command, str(data["path"]), *args, *flags, "--model", "no-such-model", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("napari-sam: error:"), err
    assert not out.exists() and not (data["dir"] / "bad.csv").exists()


def test_track_tiled_keeps_ids_and_objects_across_the_tile_border(tmp_path, capsys):
    """Two frames of 192 x 384 px (1 x 2 tiles, the core edge at x = 192), the second shifted by
    2 px: labels at the full size, ids kept, an object across the border one label (not split
    there). The tracker takes tiles since engine/auto/tracking.py grew them; before, --tile was
    refused with a "not yet" message (the other branch)."""
    from napari_sam.app.automatic import tracker_takes_tiles

    sample = mosaic((192, 384), scene=384, distinct=1, seed=5, density=0.15)
    frames = np.stack([sample.image, np.roll(sample.image, 2, axis=1)])
    tifffile.imwrite(tmp_path / "stack.tif", frames, imagej=True, metadata={"axes": "TYX"})
    out, tracks = tmp_path / "tracked.tif", tmp_path / "tracks.csv"
    args = ["track", str(tmp_path / "stack.tif"), "-o", str(out), "--tracks", str(tracks), "--tile", "192",
            "--halo", "32", "--points-per-side", "8", *MODEL]
    if not tracker_takes_tiles():
        assert cli.main(args) == 2
        assert "does not take tiles yet" in capsys.readouterr().err and not out.exists()
        return
    assert cli.main(args) == 0
    labels = tifffile.imread(out)
    assert labels.shape == (2, 192, 384)
    first, second = (set(np.unique(f[f > 0]).tolist()) for f in labels)
    assert len(first) >= 10 and len(first & second) >= 0.8 * len(first)  # tracked on, ids kept
    truth = sample.labels
    across = [k for k in np.unique(truth[:, 190:194]) if k and (truth[:, :192] == k).sum() >= 30
              and (truth[:, 192:] == k).sum() >= 30]  # well on both sides of the core edge
    assert across
    for k in across:  # not cut at the core edge: one label covers it, on both sides
        hit = labels[0][truth == k]
        best = np.bincount(hit).argmax()
        mine = labels[0] == best
        assert best > 0 and (hit == best).mean() > 0.8, k
        assert mine[:, :192].any() and mine[:, 192:].any(), k
    assert tracks.read_text().splitlines()[0].startswith("frame,id")
