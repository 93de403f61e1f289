"""napari sample data (File > Open Sample > Segment Anything): synthetic, no download.

Each function returns napari LayerData tuples: the image, and its instance ground truth as
a hidden Labels layer (for comparison; the plugin writes its own Labels layer).
"""

from __future__ import annotations

from . import synthetic


#: The synthetic data behind each napari sample (the demo and the benchmarks use the same).
SAMPLES = {
    "nuclei_2d": lambda: synthetic.nuclei_2d(seed=1),
    "cells_2d": lambda: synthetic.cells_2d(seed=2),
    "nuclei_3d": lambda: synthetic.nuclei_3d(seed=3),
    "timelapse": lambda: synthetic.timelapse(seed=4),
}


def sample(key: str) -> synthetic.Sample:
    """The :class:`~napari_sam.data.synthetic.Sample` (image and ground truth) of sample ``key``."""
    return SAMPLES[key]()


def _layers(data: synthetic.Sample, axis_labels, **image_kwargs) -> list[tuple]:
    name = data.name
    meta = {"ground_truth": True}
    if data.lineage:
        meta["lineage"] = data.lineage
        meta["tracks"] = data.tracks
    image = (data.image, {"name": name, "scale": data.scale, "axis_labels": axis_labels, **image_kwargs}, "image")
    truth = (
        data.labels,
        {"name": f"{name} ground truth", "scale": data.scale, "axis_labels": axis_labels, "visible": False, "opacity": 0.5, "metadata": meta},
        "labels",
    )
    return [image, truth]


def nuclei_2d() -> list[tuple]:
    """Fluorescent nuclei, 256 x 256, uint16."""
    return _layers(sample("nuclei_2d"), ("y", "x"), colormap="gray")


def cells_2d() -> list[tuple]:
    """Whole cells, two channels (nuclei, cytoplasm) as two image layers; cell labels."""
    (image, kwargs, _), truth = _layers(sample("cells_2d"), ("y", "x"))
    kwargs.update(channel_axis=0, name=["cells 2D nuclei", "cells 2D cytoplasm"], colormap=["magenta", "green"], blending="additive")
    return [(image, kwargs, "image"), truth]


def nuclei_3d() -> list[tuple]:
    """A 3D stack of nuclei (z, y, x) with voxels twice as deep as wide."""
    return _layers(sample("nuclei_3d"), ("z", "y", "x"), colormap="gray")


def timelapse() -> list[tuple]:
    """30 frames of moving, dividing nuclei (t, y, x), with photobleaching."""
    return _layers(sample("timelapse"), ("t", "y", "x"), colormap="gray")
