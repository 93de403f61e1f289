"""The Tracks layer of an image: one track per label (label value = track id), its centroid
per frame, and the lineage: napari's ``graph`` ``{daughter: [mother]}`` from the links the
Labels layer keeps in its metadata (:data:`~.state.PARENTS`; only those that hold for the
labels as they are now, see :func:`~.lineage_edit.valid_parents`)."""

from __future__ import annotations

import numpy as np

from napari_sam.app.ids import centroid_tracks

from .lineage_edit import valid_parents
from .state import PARENTS, ROLE, SOURCE


def object_colormap(labels, objects):
    """A colormap giving each track its object's label colour (tracks are ranked 0..n-1)."""
    from napari.utils.colormaps import Colormap

    cols = np.array([labels.get_color(o) for o in objects] or [[1, 1, 1, 1]], float)
    if len(cols) == 1:
        cols = np.repeat(cols, 2, axis=0)
    return Colormap(colors=cols, controls=np.linspace(0, 1, len(cols) + 1), interpolation="zero", name="napari-sam objects")


def layer_parents(labels) -> dict[int, int]:
    """The ``{daughter: mother}`` links of a Labels layer that hold for its labels now."""
    parents = labels.metadata.get(PARENTS) or {}
    return valid_parents(labels.data, parents) if parents else {}


def lineage_tracks(labels):
    """``(data [id, t, *centroid], features, colormaps, graph)`` of a Labels layer whose axis 0
    is time (None if it holds no label)."""
    data = centroid_tracks(labels.data, video_axis=0)
    if not len(data):
        return None
    objects = sorted({int(o) for o in data[:, 0]})
    rank = {o: i for i, o in enumerate(objects)}
    features = {"object": np.array([rank[int(o)] for o in data[:, 0]], float)}
    colors = {"object": object_colormap(labels, objects)}
    graph = {d: [m] for d, m in layer_parents(labels).items()}
    return data, features, colors, graph


def add_lineage_tracks(viewer, labels, name: str, metadata=None, n_frames: int | None = None):
    """A new Tracks layer showing ``labels``' tracks and lineage (None if no label)."""
    made = lineage_tracks(labels)
    if made is None:
        return None
    data, features, colors, graph = made
    return viewer.add_tracks(data, features=features, graph=graph, name=name, scale=labels.scale,
                             translate=labels.translate, metadata=metadata or {},
                             tail_length=n_frames or len(labels.data), colormaps_dict=colors, color_by="object")


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
    if existing is None:
        add_lineage_tracks(viewer, labels, f"{image.name} tracks", {ROLE: "tracks", SOURCE: image.name}, geometry.n_frames)
        return
    made = lineage_tracks(labels)
    if made is None:
        return
    data, features, colors, graph = made
    # napari checks color_by against the features whenever data or features change: colour
    # by track id (always there) while both are replaced, then by object again; the data
    # setter clears the graph, so the graph goes last
    existing.color_by = "track_id"
    existing.data = data
    existing.features = features
    existing.colormaps_dict = colors
    existing.color_by = "object"
    existing.graph = graph
    existing.visible = True
