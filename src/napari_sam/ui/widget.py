"""The "Segment Anything" dock widget: layout and wiring only.

Engine work runs in :mod:`.workers` threads through a :class:`.segmenter.Segmenter`;
prompts are read by :mod:`.prompts`; masks are written by :mod:`.labels_writer`.
"""

from __future__ import annotations

import weakref

import numpy as np
from qtpy.QtCore import QEvent, QTimer
from qtpy.QtWidgets import QWidget

from . import labels_writer as lw
from . import prompts as pr
from .geometry import StackGeometry
from .labels_ownership import Ownership
from .layout import build_layout
from .segmenter import Segmenter
from .session_actions import SessionActions
from .workers import JobRunner

ROLE = "napari-sam-role"  # layer metadata: "clicks" | "boxes" | "labels" | "tracks"
SOURCE = "napari-sam-image"  # layer metadata: the image layer's name


def _weak(method):
    """A callback that holds its object weakly (napari layers outlive the widget)."""
    ref = weakref.WeakMethod(method)

    def call(*args, **kwargs):
        m = ref()
        return None if m is None else m(*args, **kwargs)

    return call


class SamWidget(QWidget):
    """Click / box prompts -> masks in a Labels layer; propagate through stacks."""

    def __init__(self, napari_viewer):
        super().__init__()
        # napari hands plugins a PublicOnlyProxy that wraps every object it returns anew, so
        # identity checks (is this *the* labels layer?) need the viewer itself. Only public
        # API is used through it.
        self.viewer = getattr(napari_viewer, "__wrapped__", napari_viewer)
        self.model = None
        self.segmenter: Segmenter | None = None
        self.geometry: StackGeometry | None = None
        self.current_object = 1
        self.positive_mode = True
        self.last_error: Exception | None = None
        self.prompts: dict = {}  # PromptKey -> Prompt, as last read from the layers
        self.ownership = Ownership()  # which label pixels this widget wrote (it clears no other)
        self.runner = JobRunner(on_error=_weak(self._show_error), on_progress=_weak(self._show_progress))
        self.actions = SessionActions(self)
        self._bound: list = []  # (layer, kind, callback) to undo on rebind / shutdown
        self._sync_pending = False
        self._closed = False
        self._build()
        self._connect_viewer()
        me = weakref.ref(self)
        self.destroyed.connect(lambda *_: me() is not None and me()._release_engine())
        self._image_changed(self.image_combo.layer())

    # ================================================================== layout
    def _build(self) -> None:
        build_layout(self)

    def _connect_viewer(self) -> None:
        ev = self.viewer.layers.events
        for combo in (self.image_combo, self.labels_combo, self.points_combo, self.shapes_combo):
            ev.inserted.connect(combo.refresh)
            ev.removed.connect(combo.refresh)
            ev.moved.connect(combo.refresh)
        ev.removed.connect(self._layer_removed)

    # ================================================================== public API
    @property
    def image_layer(self):
        return self.image_combo.layer()

    @property
    def labels_layer(self):
        return self.labels_combo.layer()

    @property
    def points_layer(self):
        return self.points_combo.layer()

    @property
    def shapes_layer(self):
        return self.shapes_combo.layer()

    def writable_labels(self):
        """The Labels layer if masks fit it (same shape as the image), else None (and why)."""
        lab, geo = self.labels_layer, self.geometry
        if lab is None or geo is None:
            return None
        want = geo.shape[: geo.ndim]
        if tuple(lab.data.shape) != tuple(want):
            self.status.setText(f"Labels layer {lab.name!r} has shape {tuple(lab.data.shape)}, the image {tuple(want)}: choose another or a new one.")
            return None
        return lab

    def set_model(self, model, name: str | None = None) -> None:
        """Use an already-built model (tests, scripts); replaces the engine state."""
        self.model = model
        label = name or getattr(model, "name", None) or model.family
        try:
            device = next(model.parameters()).device
        except StopIteration:  # pragma: no cover
            device = "?"
        self.model_panel.loaded.setText(f"loaded: {label} ({model.family}) on {device}")
        self.automatic.use_defaults_of(model)
        self._rebuild_segmenter()

    def set_object(self, obj: int) -> None:
        """Make ``obj`` the current object (new prompts belong to it)."""
        obj = int(obj)
        if obj < 1:
            return
        self.current_object = obj
        if self.object_spin.value() != obj:
            self.object_spin.setValue(obj)
        labels = self.labels_layer
        if labels is not None and labels.selected_label != obj:
            labels.selected_label = obj
        self._apply_defaults()

    def next_free_object(self) -> int:
        """The next free object id: beyond every label and every prompted object."""
        used = [k[2] for k in self.prompts]
        for layer in (self.points_layer, self.shapes_layer):
            if layer is not None and "object" in layer.features:
                used += layer.features["object"].to_numpy(int).tolist()
        return lw.next_free_id(self.labels_layer, used)

    def new_object(self, *_) -> int:
        """Select the next free object id (beyond every label and every prompted object)."""
        obj = self.next_free_object()
        self.set_object(obj)
        return obj

    def set_positive(self, positive: bool) -> None:
        self.positive_mode = bool(positive)
        self.polarity_button.blockSignals(True)
        self.polarity_button.setChecked(not self.positive_mode)
        self.polarity_button.blockSignals(False)
        self.polarity_button.setText("Clicks: foreground (green) [T]" if self.positive_mode else "Clicks: background (red) [T]")
        self._apply_defaults()

    def toggle_polarity(self, *_) -> None:
        self.set_positive(not self.positive_mode)

    def current_key(self) -> tuple:
        """(stack key, frame) of the slice the viewer shows."""
        img, geo = self.image_layer, self.geometry
        if img is None or geo is None or geo.lead == 0:
            return (), 0
        data = np.asarray(img.world_to_data(self.viewer.dims.point), float)[-img.ndim :]
        idx = np.clip(np.rint(data[: geo.lead]).astype(int), 0, np.asarray(geo.shape[: geo.lead]) - 1)
        return geo.split(idx)

    # ================================================================== layers
    def _image_changed(self, image) -> None:
        self.axis_combo.blockSignals(True)
        self.axis_combo.clear()
        if image is not None and image.ndim > 2:
            names = list(getattr(self.viewer.dims, "axis_labels", []))[-image.ndim :]
            shape = StackGeometry.of(image).shape
            for a in range(image.ndim - 2):
                self.axis_combo.addItem(f"axis {a} ({names[a] if a < len(names) else a}) x {shape[a]}")
        else:
            self.axis_combo.addItem("none (2D image)")
        self.axis_combo.setEnabled(image is not None and image.ndim > 3)
        self.axis_combo.blockSignals(False)
        if image is not None:
            self._adopt_layers(image)
        self._rebuild_segmenter()

    def _find(self, role: str, image):
        for lay in self.viewer.layers:
            if lay.metadata.get(ROLE) == role and lay.metadata.get(SOURCE) == image.name:
                return lay
        return None

    def _adopt_layers(self, image) -> None:
        """Pick this image's prompt and labels layers (made by this widget before), if any."""
        for role, combo in (("labels", self.labels_combo), ("clicks", self.points_combo), ("boxes", self.shapes_combo)):
            found = self._find(role, image)
            if found is not None:
                combo.set_layer(found)
            elif combo.layer() is not None and combo.layer().metadata.get(SOURCE) not in (None, image.name):
                combo.setCurrentIndex(0)

    def ensure_layers(self) -> None:
        """Create the clicks, boxes and labels layers the combos ask to be made."""
        image = self.image_layer
        if image is None:
            return
        meta = lambda role: {ROLE: role, SOURCE: image.name}  # noqa: E731
        if self.labels_layer is None:
            shape = StackGeometry.of(image).shape[: image.ndim]
            lab = self.viewer.add_labels(np.zeros(shape, np.int32), name=f"{image.name} SAM labels", scale=image.scale, translate=image.translate, metadata=meta("labels"))
            self.labels_combo.set_layer(lab)
        if self.shapes_layer is None:
            shp = pr.new_shapes_layer(self.viewer, image)
            shp.metadata.update(meta("boxes"))
            self.shapes_combo.set_layer(shp)
        if self.points_layer is None:
            pts = pr.new_points_layer(self.viewer, image)
            pts.metadata.update(meta("clicks"))
            self.points_combo.set_layer(pts)
            pts.mode = "add"
            self.viewer.layers.selection.active = pts
        self._bind_layers()

    def _unbind(self) -> None:
        for layer, kind, target in self._bound:
            try:
                if kind == "event":
                    target[0].disconnect(target[1])
                elif kind == "key":
                    layer.bind_key(target, None)
                elif kind == "mouse" and target in layer.mouse_drag_callbacks:
                    layer.mouse_drag_callbacks.remove(target)
            except (KeyError, ValueError, TypeError, RuntimeError):
                pass
        self._bound.clear()

    def _bind_layers(self) -> None:
        """Listen to the prompt layers; keyboard shortcuts on every involved layer."""
        self._unbind()
        pts, shp, lab = self.points_layer, self.shapes_layer, self.labels_layer
        sync = _weak(self._schedule_sync)
        for layer in (pts, shp):
            if layer is not None:
                layer.events.data.connect(sync)
                self._bound.append((layer, "event", (layer.events.data, sync)))
        if pts is not None:
            pr.ensure_features(pts, {"object": self.current_object, "positive": True})
            toggle = _weak(self.toggle_polarity)
            pts.bind_key(pr.KEY_TOGGLE_POLARITY, lambda layer: toggle(), overwrite=True)
            self._bound.append((pts, "key", pr.KEY_TOGGLE_POLARITY))
            click = _weak(self._modifier_click)
            pts.mouse_drag_callbacks.insert(0, click)
            self._bound.append((pts, "mouse", click))
        if shp is not None:
            pr.ensure_features(shp, {"object": self.current_object})
        if lab is not None:
            picked = _weak(self._label_picked)
            lab.events.selected_label.connect(picked)
            self._bound.append((lab, "event", (lab.events.selected_label, picked)))
        new = _weak(self.new_object)
        for layer in (pts, shp, lab, self.image_layer):
            if layer is not None:
                layer.bind_key(pr.KEY_NEW_OBJECT, lambda layer: new(), overwrite=True)
                self._bound.append((layer, "key", pr.KEY_NEW_OBJECT))
        self._apply_defaults()
        self.prompts = self._collect()  # what is in the layers now counts as applied

    def _modifier_click(self, layer, event):
        """Shift-click adds a point of the other polarity (the default add runs after us)."""
        if event.type == "mouse_press" and layer.mode == "add":
            negate = pr.NEGATIVE_MODIFIER in event.modifiers
            layer.feature_defaults = {"object": self.current_object, "positive": self.positive_mode != negate}

    def _labels_changed(self, layer=None) -> None:
        """Another Labels layer: the next object starts above every id in it (and every
        prompted object), so no click ever continues a label drawn by hand."""
        self._bind_layers()
        lab = self.labels_layer
        if lab is not None and np.size(lab.data) and int(np.max(lab.data)) >= self.current_object:
            self.set_object(self.next_free_object())

    def _label_picked(self, event=None) -> None:
        lab = self.labels_layer
        if lab is not None and lab.selected_label > 0 and lab.selected_label != self.current_object:
            self.set_object(lab.selected_label)

    def _color(self, obj: int):
        lab = self.labels_layer
        return np.asarray(lab.get_color(int(obj)) if lab is not None else (1, 1, 0, 1), float)

    def _apply_defaults(self) -> None:
        pr.set_current(self.points_layer, self.shapes_layer, self.current_object, self.positive_mode, self._color(self.current_object))

    def _layer_removed(self, event) -> None:
        layer = event.value
        if layer is self.actions.image_in_use or layer is self.actions.labels_in_use:
            self.runner.cancel_long()
            self.runner.drop_quick()
        if layer is self.actions.image_in_use and self.segmenter is not None:
            self.segmenter.close()
            self.segmenter = None
            self.actions.image_in_use = None

    # ================================================================== engine
    def _rebuild_segmenter(self) -> None:
        """A fresh engine state for the current image / model / video axis."""
        self.runner.cancel_long()
        self.runner.drop_quick()
        if self.segmenter is not None:
            self.segmenter.close()
            self.segmenter = None
        image = self.image_layer
        self.geometry = None
        if image is not None:
            axis = max(self.axis_combo.currentIndex(), 0)
            self.geometry = StackGeometry.of(image, axis)
            if self.model is not None:
                self.segmenter = Segmenter(self.model, image, self.geometry)
                self.actions.image_in_use = image
                self.ensure_layers()
        stack = self.geometry is not None and self.geometry.n_frames > 1
        video = stack and self.model is not None and self.model.family == "sam2"
        self.video_box.setEnabled(video)
        self.video_box.setToolTip("" if video or not stack else "Propagation through stacks needs a SAM 2 model that tracks: an official SAM 2 / 2.1 model or the bundled embedded one")
        self.tracks_check.setEnabled(video and self.geometry.video_axis == 0)
        self.embed_button.setEnabled(self.segmenter is not None)
        self.automatic.update_enabled()
        self.prompts = self._collect()
        self.actions.reset()

    def _collect(self) -> dict:
        if self.image_layer is None or self.geometry is None:
            return {}
        return pr.collect(self.points_layer, self.shapes_layer, self.image_layer, self.geometry, fill=self.viewer.dims.point)

    def _schedule_sync(self, event=None) -> None:
        action = str(getattr(event, "action", "changed"))
        if action.lower().endswith(("adding", "changing", "removing")):
            return
        if action.lower().endswith("added"):
            # napari copies a new point's features into the defaults after this event:
            # restore the current object / polarity (undoes a Shift-click's) afterwards
            QTimer.singleShot(0, _weak(self._apply_defaults))
            pr.recolor(self.points_layer, self.shapes_layer, self._color)
        if not self._sync_pending:
            self._sync_pending = True
            QTimer.singleShot(0, self._sync)

    def _sync(self) -> None:
        """Read the prompts; every (slice, object) whose prompt changed gets a new mask."""
        self._sync_pending = False
        if self._closed:
            return
        new = self._collect()
        changed = pr.changed_keys(self.prompts, new)
        self.prompts = new
        if changed and self.segmenter is None:
            self.status.setText("Load a model first (Model > Load model).")
            return
        for key in changed:
            self.actions.preview(key, new.get(key))

    # ================================================================== feedback
    def _show_error(self, exc: Exception) -> None:
        self.last_error = exc
        self.status.setText(f"Error: {exc}")
        from napari.utils.notifications import show_error

        show_error(f"Segment Anything: {exc}")

    def _show_progress(self, done, total, desc) -> None:
        if self._closed:
            return
        running = done is not None
        self.progress.setVisible(running)
        self.cancel_button.setEnabled(running)
        if running:
            self.progress.setMaximum(max(int(total or 1), 1))
            self.progress.setValue(int(done))
            self.progress.setFormat(f"{desc}: %v / %m")

    # ================================================================== lifetime
    def _release_engine(self) -> None:
        """Stop the workers and free the engine (no Qt calls: safe after the widget died)."""
        self._closed = True
        self.runner.shutdown()
        self.actions.close_all_steps()  # a run cut short is still one undo step
        self.ownership.close()
        if self.segmenter is not None:
            self.segmenter.close()
            self.segmenter = None

    def shutdown(self) -> None:
        """Stop workers and let go of layers (widget closed or viewer closing)."""
        if self._closed:
            return
        self._release_engine()
        self._unbind()
        ev = self.viewer.layers.events
        for combo in (self.image_combo, self.labels_combo, self.points_combo, self.shapes_combo):
            for emitter in (ev.inserted, ev.removed, ev.moved):
                emitter.disconnect(combo.refresh)
        ev.removed.disconnect(self._layer_removed)

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)

    def event(self, event) -> bool:
        # napari's remove_dock_widget detaches the widget with setParent(None)
        if event.type() == QEvent.ParentChange and self.parent() is None and not self._closed and self.isWindow():
            self.shutdown()
        return super().event(event)
