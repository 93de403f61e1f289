"""The Tracks layer of an image: one track per label, its centroid per frame."""

from __future__ import annotations

import numpy as np

from napari_sam.app.ids import centroid_tracks

from .state import ROLE, SOURCE


def object_colormap(labels, objects):
    """A colormap giving each track its object's label colour (tracks are ranked 0..n-1)."""
    from napari.utils.colormaps import Colormap

    cols = np.array([labels.get_color(o) for o in objects] or [[1, 1, 1, 1]], float)
    if len(cols) == 1:
        cols = np.repeat(cols, 2, axis=0)
    return Colormap(colors=cols, controls=np.linspace(0, 1, len(cols) + 1), interpolation="zero", name="napari-sam objects")


def tracks_layer(viewer, image):
    """The Tracks layer this widget made for ``image`` (None: none yet)."""
    if image is None:
        return None
    return next((lay for lay in viewer.layers if lay.metadata.get(ROLE) == "tracks" and lay.metadata.get(SOURCE) == image.name), None)


def show_tracks(viewer, image, labels, geometry, visible: bool) -> None:
    """Create / refresh / hide the Tracks layer of ``image`` from ``labels`` (video axis 0)."""
    existing = tracks_layer(viewer, image)
    if not visible or labels is None or geometry is None or geometry.video_axis != 0:
        if existing is not None:
            existing.visible = False
        return
    data = centroid_tracks(labels.data, video_axis=0)
    if not len(data):
        return
    objects = sorted({int(o) for o in data[:, 0]})
    rank = {o: i for i, o in enumerate(objects)}
    features = {"object": np.array([rank[int(o)] for o in data[:, 0]], float)}
    colors = {"object": object_colormap(labels, objects)}
    if existing is None:
        viewer.add_tracks(data, features=features, name=f"{image.name} tracks", scale=labels.scale, translate=labels.translate,
                          metadata={ROLE: "tracks", SOURCE: image.name}, tail_length=geometry.n_frames,
                          colormaps_dict=colors, color_by="object")
        return
    # napari checks color_by against the features whenever data or features change: colour
    # by track id (always there) while both are replaced, then by object again
    existing.color_by = "track_id"
    existing.data = data
    existing.features = features
    existing.colormaps_dict = colors
    existing.color_by = "object"
    existing.visible = True
