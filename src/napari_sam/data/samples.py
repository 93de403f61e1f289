"""napari sample data (File > Open Sample > Segment Anything): synthetic, no download.

Each function returns napari LayerData tuples: the image, and its instance ground truth as
a hidden Labels layer (for comparison; the plugin writes its own Labels layer).
"""

from __future__ import annotations

from . import synthetic


def _layers(sample: synthetic.Sample, axis_labels, **image_kwargs) -> list[tuple]:
    name = sample.name
    meta = {"ground_truth": True}
    if sample.lineage:
        meta["lineage"] = sample.lineage
        meta["tracks"] = sample.tracks
    image = (sample.image, {"name": name, "scale": sample.scale, "axis_labels": axis_labels, **image_kwargs}, "image")
    truth = (
        sample.labels,
        {"name": f"{name} ground truth", "scale": sample.scale, "axis_labels": axis_labels, "visible": False, "opacity": 0.5, "metadata": meta},
        "labels",
    )
    return [image, truth]


def nuclei_2d() -> list[tuple]:
    """Fluorescent nuclei, 256 x 256, uint16."""
    return _layers(synthetic.nuclei_2d(seed=1), ("y", "x"), colormap="gray")


def cells_2d() -> list[tuple]:
    """Whole cells, two channels (nuclei, cytoplasm) as two image layers; cell labels."""
    sample = synthetic.cells_2d(seed=2)
    (image, kwargs, _), truth = _layers(sample, ("y", "x"))
    kwargs.update(channel_axis=0, name=["cells 2D nuclei", "cells 2D cytoplasm"], colormap=["magenta", "green"], blending="additive")
    return [(image, kwargs, "image"), truth]


def nuclei_3d() -> list[tuple]:
    """A 3D stack of nuclei (z, y, x) with voxels twice as deep as wide."""
    return _layers(synthetic.nuclei_3d(seed=3), ("z", "y", "x"), colormap="gray")


def timelapse() -> list[tuple]:
    """30 frames of moving, dividing nuclei (t, y, x), with photobleaching."""
    return _layers(synthetic.timelapse(seed=4), ("t", "y", "x"), colormap="gray")
