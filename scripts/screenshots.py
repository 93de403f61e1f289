"""Screenshots for docs/user_guide.md, taken from a real napari viewer.

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/screenshots.py [--model NAME] [--only 2d,automatic]

Every scene uses the bundled "embedded" model (or ``--model``). The stack scenes need a
model that tracks; for a model that does not, a small UNTRAINED SAM 2 (random weights, no
download) takes them, whose pictures show the widget and where results go, not segmentation
quality. Writes docs/images/*.png.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images"


def get_model(name: str | None, checkpoint: str | None):
    import napari_sam as ns

    name = name or "embedded"
    return ns.load_model(name, checkpoint=checkpoint, device="cpu"), name


def untrained_sam2():
    import torch

    from napari_sam.models.sam2 import build_sam2, reduced_config

    torch.manual_seed(0)
    model = build_sam2(reduced_config(image_size=256)).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    model.name = "untrained test model"
    return model


def settle(app, widget=None, seconds=0.3, timeout=300):
    """Run the event loop until the widget's workers are done, then a little longer."""
    t0 = time.time()
    while widget is not None and (widget.runner.busy or widget._sync_pending) and time.time() - t0 < timeout:
        app.processEvents()
        time.sleep(0.01)
    t1 = time.time()
    while time.time() - t1 < seconds:
        app.processEvents()
        time.sleep(0.01)


def new_viewer(napari):
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 950)
    return viewer


def shot(viewer, app, name: str) -> Path:
    settle(app)
    path = OUT / name
    viewer.screenshot(str(path), canvas_only=False)
    print("wrote", path.relative_to(ROOT))
    return path


def _objects(viewer, n):
    """(centre (row, col), bounding box) of the ``n`` largest ground-truth objects."""
    from scipy import ndimage

    truth = next(lay for lay in viewer.layers if lay.metadata.get("ground_truth")).data
    ids, counts = np.unique(truth[truth > 0], return_counts=True)
    out = []
    for k in ids[np.argsort(-counts)][:n]:
        rows, cols = np.nonzero(truth == k)
        cy, cx = ndimage.center_of_mass(truth == k)
        out.append(((cy, cx), (rows.min() - 3, cols.min() - 3, rows.max() + 3, cols.max() + 3)))
    return out


def scene_2d(napari, app, model):
    viewer = new_viewer(napari)
    viewer.open_sample("napari-sam", "nuclei_2d")
    _, w = viewer.window.add_plugin_dock_widget("napari-sam", "Segment Anything")
    w.set_model(model)
    a, b, c, d = _objects(viewer, 4)
    pts = w.points_layer
    pts.add(list(a[0]))  # a click on one nucleus ...
    w.set_positive(False)
    pts.add(list(b[0]))  # ... and a negative click on another
    w.set_positive(True)
    settle(app, w)
    w.new_object()
    y0, x0, y1, x1 = c[1]
    w.shapes_layer.add_rectangles(np.array([[y0, x0], [y1, x1]]))  # a box around a third
    settle(app, w)
    w.new_object()
    pts.add(list(d[0]))
    settle(app, w)
    viewer.layers.selection.active = pts
    shot(viewer, app, "widget_2d.png")
    viewer.close()


def scene_automatic(napari, app, model):
    viewer = new_viewer(napari)
    viewer.open_sample("napari-sam", "nuclei_2d")
    _, w = viewer.window.add_plugin_dock_widget("napari-sam", "Segment Anything")
    w.set_model(model)
    w.automatic.segment_everything()
    settle(app, w)
    shot(viewer, app, "widget_automatic.png")
    viewer.close()


def _largest_objects(labels, n):
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    return [int(k) for k in ids[np.argsort(counts)[::-1][:n]]]


def _centre(mask):
    """(row, col) of the mask pixel farthest inside it."""
    from scipy import ndimage

    d = ndimage.distance_transform_edt(mask)
    return [int(v) for v in np.unravel_index(np.argmax(d), d.shape)]


def scene_stack(napari, app, model):
    viewer = new_viewer(napari)
    viewer.open_sample("napari-sam", "nuclei_3d")
    _, w = viewer.window.add_plugin_dock_widget("napari-sam", "Segment Anything")
    w.set_model(model)
    viewer.dims.set_current_step(0, 14)
    truth = next(lay for lay in viewer.layers if lay.name.endswith("ground truth")).data
    for i, k in enumerate(_largest_objects(truth[14], 2)):  # the centres of two nuclei on slice 14
        if i:
            w.new_object()
        w.points_layer.add([14, *_centre(truth[14] == k)])
    settle(app, w)
    w.video.direction_combo.setCurrentText("both")
    w.video.propagate()
    settle(app, w)
    viewer.dims.set_current_step(0, 18)
    shot(viewer, app, "widget_stack.png")
    viewer.close()


def scene_timelapse(napari, app, model):
    viewer = new_viewer(napari)
    viewer.open_sample("napari-sam", "timelapse")
    _, w = viewer.window.add_plugin_dock_widget("napari-sam", "Segment Anything")
    w.set_model(model)
    viewer.dims.set_current_step(0, 0)
    w.automatic.track_everything()  # every cell, no clicks
    settle(app, w)
    w.video.tracks_check.setChecked(True)
    viewer.dims.set_current_step(0, 20)
    shot(viewer, app, "widget_timelapse_tracks.png")
    viewer.close()


def scene_samples(napari, app):
    """The synthetic sample data with ground-truth outlines (no model), side by side."""
    from PIL import Image

    tiles = []
    for key, step in (("nuclei_2d", None), ("cells_2d", None), ("nuclei_3d", 16), ("timelapse", 12)):
        viewer = napari.Viewer(show=True)
        viewer.window.resize(700, 700)
        viewer.open_sample("napari-sam", key)
        for layer in viewer.layers:
            if layer.metadata.get("ground_truth"):
                layer.visible, layer.contour, layer.opacity = True, 1, 0.9
        if step is not None:
            viewer.dims.set_current_step(0, step)
        viewer.reset_view()
        settle(app)
        tiles.append(viewer.screenshot(canvas_only=True, flash=False))
        viewer.close()
    side = min(min(t.shape[:2]) for t in tiles)
    crops = []
    for t in tiles:
        h, w = t.shape[:2]
        crops.append(t[(h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side, :3])
    gap = np.full((side, 8, 3), 255, np.uint8)
    row = np.concatenate([c if i == 0 else np.concatenate([gap, c], 1) for i, c in enumerate(crops)], 1)
    path = OUT / "sample_data.png"
    Image.fromarray(row).save(path)
    print("wrote", path.relative_to(ROOT))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="registry name, e.g. sam2.1_hiera_tiny (weights must be cached or downloadable)")
    parser.add_argument("--checkpoint", help="checkpoint file for --model")
    parser.add_argument("--only", help="comma-separated scenes: samples,2d,automatic,stack,timelapse")
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else {"samples", "2d", "automatic", "stack", "timelapse"}
    import napari
    from qtpy.QtWidgets import QApplication

    OUT.mkdir(parents=True, exist_ok=True)
    model, label = get_model(args.model, args.checkpoint)
    video_model = model if getattr(model, "can_track", True) else untrained_sam2()
    print("model:", label, "| stacks:", video_model.name)
    app = QApplication.instance() or napari.qt.get_qapp()
    scenes = {"samples": lambda: scene_samples(napari, app), "2d": lambda: scene_2d(napari, app, model),
              "automatic": lambda: scene_automatic(napari, app, model),
              "stack": lambda: scene_stack(napari, app, video_model),
              "timelapse": lambda: scene_timelapse(napari, app, video_model)}
    for name, run in scenes.items():
        if name in only:
            run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
