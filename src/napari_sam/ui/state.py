"""What the widget's panels share: one :class:`WidgetState`, with signals.

The panels never reach into each other or into the widget: each owns its controls, reads
and changes the shared state here, and listens to its signals. The widget composes the
panels and keeps the state in step with the viewer (layers chosen, engine built).
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QObject, Signal

from napari_sam.app.ids import next_free_id

from .undo_step import OpenSteps

ROLE = "napari-sam-role"  # layer metadata: "clicks" | "boxes" | "labels" | "tracks"
SOURCE = "napari-sam-image"  # layer metadata: the image layer's name
PARENTS = "napari-sam-parents"  # Labels layer metadata: the lineage, {daughter id: mother id}
BUSY = "Busy: wait for the running job or cancel it."


def ranges(frames) -> str:
    """[1, 2, 3, 7] -> '1-3, 7'."""
    frames = sorted(int(f) for f in frames)
    out, start = [], None
    for i, f in enumerate(frames):
        if start is None:
            start = f
        if i + 1 == len(frames) or frames[i + 1] != f + 1:
            out.append(str(start) if start == f else f"{start}-{f}")
            start = None
    return ", ".join(out)


class WidgetState(QObject):
    """The model, the engine (:class:`~.segmenter.Segmenter`), the chosen layers, the current
    object and polarity, the prompts as last read, and the status line.

    ``runner`` (a :class:`~.workers.JobRunner`) and ``ownership`` (which label pixels the
    widget wrote) are the widget's, shared here. A long job that writes labels names its
    layer in ``job.meta["labels"]`` (see :attr:`labels_in_use`).
    """

    status_changed = Signal(str)
    segmenter_changed = Signal(object)  # a new engine (or None): panels enable / disable
    object_changed = Signal(int)
    polarity_changed = Signal(bool)  # True: clicks are foreground
    labels_written = Signal()  # masks went into the Labels layer (tracks follow)
    visibility_changed = Signal(str)  # "object k: not visible on slices ..." lines
    show_tracks = Signal(bool)  # ask for the Tracks layer on / off
    model_wanted = Signal(object)  # no model yet: load the default one, then call this back
    tiling_changed = Signal()  # tile_shape / halo changed: the engine starts afresh with them

    def __init__(self, viewer, runner, ownership):
        super().__init__()
        self.viewer = viewer
        self.runner = runner
        self.ownership = ownership
        self.model = None
        self.segmenter = None
        self.geometry = None
        self.image_layer = self.labels_layer = self.points_layer = self.shapes_layer = None
        self.prompts: dict = {}  # PromptKey -> Prompt, as last read from the layers
        self.current_object = 1
        self.positive = True
        self.overwrite = False
        self.divisions = True  # Propagate ends a track whose mask splits and starts two daughters
        self.last_error: Exception | None = None
        self.last_edit: dict = {}  # stack key -> frame of the latest prompt edit since propagating
        self.absent: dict = {}  # (stack key, obj) -> frames where the object is not visible
        self.status_text = ""
        self.steps = OpenSteps()  # live undo steps of runs not yet committed
        #: the tiling of the engine (micro-sam's tile_shape / halo, image pixels): None (whole
        #: image), "auto" (from the image and the model) or (h, w); halo None or (h, w)
        self.tile_shape = None
        self.halo = None

    # ------------------------------------------------------------------ tiles
    def set_tiling(self, tile_shape=None, halo=None) -> None:
        """Use this tiling (the widget rebuilds the engine: that image's embeddings start afresh)."""
        if (tile_shape, halo) != (self.tile_shape, self.halo):
            self.tile_shape, self.halo = tile_shape, halo
            self.tiling_changed.emit()

    # ------------------------------------------------------------------ status
    def set_status(self, text: str) -> None:
        self.status_text = text
        self.status_changed.emit(text)

    def show_error(self, exc: Exception) -> None:
        self.last_error = exc
        self.set_status(f"Error: {exc}")
        from napari.utils.notifications import show_error

        show_error(f"Segment Anything: {exc}")

    # ------------------------------------------------------------------ in use
    @property
    def labels_in_use(self):
        """The Labels layer the running long job writes (None: none does)."""
        job = self.runner.long_job
        return None if job is None else job.meta.get("labels")

    @property
    def image_in_use(self):
        """The image layer the engine reads."""
        return None if self.segmenter is None else self.segmenter.image_layer

    # ------------------------------------------------------------------ objects
    def set_object(self, obj: int) -> None:
        obj = int(obj)
        if obj >= 1 and obj != self.current_object:
            self.current_object = obj
            self.object_changed.emit(obj)

    def set_positive(self, positive: bool) -> None:
        self.positive = bool(positive)
        self.polarity_changed.emit(self.positive)

    def next_free_object(self) -> int:
        """The next free object id: beyond every label and every prompted object."""
        used = [k[2] for k in self.prompts]
        for layer in (self.points_layer, self.shapes_layer):
            if layer is not None and "object" in layer.features:
                used += layer.features["object"].to_numpy(int).tolist()
        return next_free_id(None if self.labels_layer is None else self.labels_layer.data, used)

    def new_object(self, *_) -> int:
        obj = self.next_free_object()
        self.set_object(obj)
        return obj

    # ------------------------------------------------------------------ slices
    def current_key(self) -> tuple:
        """(stack key, frame) of the slice the viewer shows."""
        img, geo = self.image_layer, self.geometry
        if img is None or geo is None or geo.lead == 0:
            return (), 0
        data = np.asarray(img.world_to_data(self.viewer.dims.point), float)[-img.ndim :]
        idx = np.clip(np.rint(data[: geo.lead]).astype(int), 0, np.asarray(geo.shape[: geo.lead]) - 1)
        return geo.split(idx)

    def writable_labels(self):
        """The Labels layer if masks fit it (same shape as the image), else None (and why)."""
        lab, geo = self.labels_layer, self.geometry
        if lab is None or geo is None:
            return None
        want = geo.shape[: geo.ndim]
        if tuple(lab.data.shape) != tuple(want):
            self.set_status(f"Labels layer {lab.name!r} has shape {tuple(lab.data.shape)}, the image {tuple(want)}: choose another or a new one.")
            return None
        return lab

    # ------------------------------------------------------------------ visibility
    def note_visibility(self, stack, frame, obj, visible: bool, show: bool = True) -> None:
        frames = self.absent.setdefault((stack, int(obj)), set())
        (frames.discard if visible else frames.add)(int(frame))
        if show:
            self.show_visibility()

    def invisible_frames(self, obj: int, stack=()) -> list[int]:
        """Slices where the last result says object ``obj`` is not visible."""
        return sorted(self.absent.get((tuple(stack), int(obj)), ()))

    def show_visibility(self) -> None:
        lines = [f"object {obj}: not visible on slices {ranges(fr)}" for (s, obj), fr in sorted(self.absent.items()) if fr]
        self.visibility_changed.emit("\n".join(lines))

    def add_parents(self, labels, parents) -> None:
        """Record ``{daughter: mother}`` links in a Labels layer's lineage (its metadata)."""
        if parents:
            labels.metadata[PARENTS] = {**(labels.metadata.get(PARENTS) or {}),
                                        **{int(d): int(m) for d, m in parents.items()}}

    def reset_session(self) -> None:
        """A new engine: no edits, no visibility notes."""
        self.last_edit.clear()
        self.absent.clear()
        self.visibility_changed.emit("")
