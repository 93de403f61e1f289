"""The widget's "Tiles" section in a real viewer, with the bundled model (input 256 px) on a
generated 1024² nuclei mosaic (nuclei 15-30 px): tiles of 192 px with a 32-px halo (36 tiles,
outer windows of the model's input size). A click on a nucleus across a tile border gives a
full-size mask matching the truth; Compute embeddings counts tiles and Cancel keeps the tiles
done; off / auto / size change what the status says and start the engine afresh."""

from __future__ import annotations

import numpy as np
import pytest
from sam_ui_fixtures import requires_display, sam, tiny_sam2, wait_idle  # noqa: F401 (fixtures)

import napari_sam as ns
from napari_sam.data.mosaic import mosaic

pytestmark = [pytest.mark.gui, requires_display]

SIZE, SCENE, TILE, HALO = 1024, 256, 192, 32
GRID = "36 tiles (6 x 6) of 192 x 192 px, halo 32 x 32 px"


@pytest.fixture(scope="module")
def embedded():
    return ns.load_model("embedded", device="cpu")


@pytest.fixture(scope="module")
def sample():
    return mosaic((SIZE, SIZE), scene=SCENE, distinct=2, seed=3)


def straddling(truth, edge=TILE):
    """A whole nucleus (not cut by a scene edge) of >= 150 px across the core edge x = ``edge``,
    at least a third of it on each side: its id."""
    from scipy import ndimage

    for k, sl in enumerate(ndimage.find_objects(truth), start=1):
        if sl is None:
            continue
        (y0, y1), (x0, x1) = (sl[0].start, sl[0].stop), (sl[1].start, sl[1].stop)
        spans = ((y0, y1), (x0, x1))
        if any(lo // SCENE != (hi - 1) // SCENE or lo % SCENE == 0 or hi % SCENE == 0 for lo, hi in spans):
            continue
        m = truth == k
        if m.sum() >= 150 and x0 < edge <= x1 and min(m[:, :edge].sum(), m[:, edge:].sum()) >= m.sum() / 3 \
                and not (y0 < edge <= y1):
            return k
    raise AssertionError("no nucleus across the tile border")


def test_tiles_status_click_across_a_border_cancel_and_off(sam, qtbot, embedded, sample):
    viewer, open_widget = sam
    viewer.add_image(sample.image, name="mosaic")
    w = open_widget(embedded)
    tiles = w.tiles
    assert tiles.mode() == "off" and tiles.info.text() == "This image: whole image"
    assert (tiles.tile_spin.value(), tiles.halo_spin.value()) == (TILE, HALO)  # the model's auto sizes

    tiles.set_tiling("size", TILE, HALO)
    assert tiles.info.text() == f"This image: {GRID}" and w.status.text() == f"Tiles: {GRID}"
    seg = w.segmenter
    assert seg.grid().describe() == GRID and seg.store().grid.describe() == GRID
    assert seg.store().path.name.endswith("-tile192x192-halo32x32.zarr")
    # the halo cannot be set beyond half the tile
    tiles.tile_spin.setValue(64)
    assert tiles.halo_spin.maximum() == 32
    tiles.set_tiling("size", TILE, HALO)
    assert w.segmenter is seg  # the same tiling again: nothing restarted

    # a click in the middle of a nucleus that straddles the core edge x = 192
    k = straddling(sample.labels)
    ys, xs = np.nonzero(sample.labels == k)
    w.points_layer.add([float(np.median(ys)), float(np.median(xs))])
    wait_idle(qtbot, w)
    mask = w.labels_layer.data == 1
    assert w.labels_layer.data.shape == (SIZE, SIZE)
    truth = sample.labels == k
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.7, iou
    assert mask[:, :TILE].any() and mask[:, TILE:].any()  # whole on both sides of the border
    assert seg.embedded_tiles()[0] <= 2  # only the tiles the click needed were embedded

    # Compute embeddings: the bar counts tiles; Cancel keeps what is done
    assert tiles.show_check.isChecked() is False
    assert w.embeddings.compute()
    qtbot.waitUntil(lambda: not w.embeddings.progress.isHidden() and w.embeddings.progress.maximum() == 36
                    and w.embeddings.progress.value() >= 4, timeout=120_000)
    w.embeddings.cancel_button.click()
    wait_idle(qtbot, w)
    done = seg.embedded_tiles()[0]
    assert 4 <= done < 36
    assert w.embeddings.embed_info.text().startswith(f"Cancelled: {done} / 36 tiles embedded")
    assert len(seg.store().missing_tiles()) == 36 - done  # kept on disk: resumable

    # Show tiles: the grid as rectangles; the clicks layer stays the active one
    tiles.show_check.setChecked(True)
    layer = viewer.layers["tiles"]
    assert len(layer.data) == 36 and viewer.layers.selection.active is w.points_layer
    corners = layer.data[7]  # tile 7: row 1, column 1, core [192, 384) both ways (pixel edges)
    assert np.allclose(corners.min(0), [191.5, 191.5]) and np.allclose(corners.max(0), [383.5, 383.5])

    # off: the whole image again, a new engine (the tiled store stays on disk for later)
    path = seg.store().path
    tiles.set_tiling("off")
    assert tiles.info.text() == "This image: whole image" and w.status.text() == "Tiles: whole image"
    assert w.segmenter is not seg and w.segmenter.grid() is None and "tiles" not in viewer.layers
    assert path.is_dir()
    # auto for the bundled model is the same grid (192 + 32): the same store is found again
    tiles.set_tiling("auto")
    assert tiles.info.text() == f"This image: {GRID}"
    assert w.segmenter.store().path == path and len(w.segmenter.store().missing_tiles()) == 36 - done
