"""One rule for where embedding stores live: a store the widget made for a layer is the one the
command line finds for the file (``--embeddings-cache``), and nothing is encoded twice."""

from __future__ import annotations

import tifffile
import torch
from app_fixtures import small  # noqa: F401

from napari_sam import cli
from napari_sam.app.store_location import StoreLocator, embeddings_root, model_key, store_path

AUTO = ["--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0",
        "--min-mask-region-area", "4", "--max-mask-fraction", "1"]


def _count_encodes(model):
    encoder, calls = type(model.image_encoder), []
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda m, a, o: calls.append(a[0].shape[0]) if type(m) is encoder else None)
    return calls, hook


def test_the_rule(small, tmp_path):
    model, frames = small["model"], small["movie"].image
    key = model_key(model)
    assert key == f"{model.name}-{key.rsplit('-', 1)[1]}" and len(key.rsplit("-", 1)[1]) == 16
    path = store_path(tmp_path, key, frames)
    assert path.parent == tmp_path / key and path.suffix == ".zarr"
    assert store_path(tmp_path, key, frames.copy()) == path  # same data: same folder
    other = frames.copy()
    other[0, 0, 0] += 1  # a sampled pixel changes: another folder
    assert store_path(tmp_path, key, other) != path
    assert StoreLocator(model).path(frames) == store_path(embeddings_root(), key, frames)


def test_a_store_the_widget_made_is_found_by_the_command_line(small, tmp_path, capsys):
    """The widget's path: a napari Image layer of the file, split into frames by the widget's
    geometry, a StackSession embedding every frame. The command line then reads the file
    itself (lazily, through dask) with another loaded copy of the model."""
    from napari.layers import Image

    from napari_sam.app.session import StackSession
    from napari_sam.ui.geometry import StackGeometry

    movie = small["dir"] / "movie.tif"
    layer = Image(tifffile.imread(movie))
    geo = StackGeometry.of(layer)
    session = StackSession(small["model"], {k: geo.frames(layer, k) for k in geo.stack_keys()})
    for _ in session.precompute_iter():
        pass
    made = session.store(()).path
    assert made.parent.parent == embeddings_root() and session.store(()).is_complete()
    session.close()

    calls, hook = _count_encodes(small["model"])
    try:
        assert cli.main(["embed", str(movie), "--embeddings-cache", *small["cli_model"]]) == 0
        assert capsys.readouterr().out.strip() == f"{movie}: {made}"
        out = tmp_path / "labels.tif"
        assert cli.main(["segment", str(movie), "-o", str(out), "--auto", "--embeddings-cache", *AUTO,
                         *small["cli_model"]]) == 0
        assert cli.main(["track", str(movie), "-o", str(tmp_path / "t.tif"), "--tracks", str(tmp_path / "t.csv"),
                         "--embeddings-cache", "--every", "2", *AUTO, *small["cli_model"]]) == 0
    finally:
        hook.remove()
    assert calls == []  # every frame came from the widget's store
    labels = tifffile.imread(out)
    assert labels.shape == small["movie"].image.shape and labels.max() >= 1
    assert sorted(p.name for p in made.parent.iterdir()) == [made.name]  # no second store



def test_the_tiling_is_part_of_the_key(small, tmp_path):
    """Same data, model and tiling: the same folder (``"auto"`` and the sizes it resolves to
    alike); another tiling, or none: another folder, so no store is refused or mixed up."""
    model, frames = small["model"], small["movie"].image
    loc = StoreLocator(model, root=tmp_path)
    plain = loc.path(frames)
    tiled = loc.path(frames, tile_shape=(32, 32), halo=(8, 8))
    assert tiled != plain and tiled.parent == plain.parent
    assert tiled.name == plain.name.replace(".zarr", "-tile32x32-halo8x8.zarr")
    assert loc.path(frames, tile_shape=(32, 32), halo=(8, 8)) == tiled
    assert loc.path(frames, tile_shape=(48, 48), halo=(8, 8)) not in (tiled, plain)
    h, w = frames.shape[1:3]
    if max(h, w) > model.image_size:
        auto = loc.grid(frames, "auto")
        assert loc.path(frames, "auto") == loc.path(frames, auto.tile_shape, auto.halo)
    else:
        assert loc.path(frames, "auto") == plain  # fits the model input: no tiles
    store = loc.open(frames, tile_shape=(32, 32), halo=(8, 8))
    assert store.path == tiled and store.grid.tile_shape == (32, 32) and store.grid.halo == (8, 8)
    assert loc.open(frames).grid is None
