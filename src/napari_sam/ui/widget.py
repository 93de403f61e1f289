"""The "Segment Anything" dock widget: the panels, composed, and the viewer kept in step.

Each panel owns its controls (:mod:`.model_panel`, :mod:`.layers_panel`,
:mod:`.tiling_panel`, :mod:`.embeddings_panel`, :mod:`.objects_panel`, :mod:`.video_panel`,
:mod:`.automatic_panel`) and talks to the others only through the shared
:class:`~.state.WidgetState` and its signals. The widget builds the engine
(:class:`~.segmenter.Segmenter`) for the chosen image / model / video axis, listens to the
prompt layers (edits -> :class:`~.previews.Previews`), and owns the lifetime (workers,
undo steps of running jobs). The panels sit in a scroll area: the dock fits a small screen,
with the status line always in view.
"""

from __future__ import annotations

import weakref

import numpy as np
from qtpy.QtCore import QEvent, Qt, QTimer
from qtpy.QtWidgets import QGroupBox, QLabel, QScrollArea, QVBoxLayout, QWidget

from . import prompts as pr
from .automatic_panel import AutomaticPanel
from .embeddings_panel import EmbeddingsPanel
from .geometry import StackGeometry
from .labels_ownership import Ownership
from .layers_panel import LayersPanel
from .lineage_panel import LineagePanel
from .model_loading import ModelLoader
from .model_panel import ModelPanel
from .objects_panel import ObjectsPanel
from .previews import Previews
from .segmenter import Segmenter
from .state import ROLE, SOURCE, WidgetState  # noqa: F401  (ROLE / SOURCE: layer metadata keys)
from .tiling_panel import TilingPanel
from .video_panel import VideoPanel
from .workers import JobRunner


def _weak(method):
    """A callback that holds its object weakly (napari layers outlive the widget)."""
    ref = weakref.WeakMethod(method)

    def call(*args, **kwargs):
        m = ref()
        return None if m is None else m(*args, **kwargs)

    return call


def _camera(viewer):
    return viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera


class SamWidget(QWidget):
    """Click / box prompts -> masks in a Labels layer; propagate through stacks."""

    def __init__(self, napari_viewer):
        super().__init__()
        # napari hands plugins a PublicOnlyProxy that wraps every object it returns anew, so
        # identity checks (is this *the* labels layer?) need the viewer itself. Only public
        # API is used through it.
        self.viewer = getattr(napari_viewer, "__wrapped__", napari_viewer)
        self._bound: list = []  # (layer, kind, callback) to undo on rebind / shutdown
        self._sync_pending = False
        self._closed = False
        self._view_fitted = False
        cam = _camera(self.viewer)
        self._camera_at_start = (tuple(cam.center), float(cam.zoom))
        self.ownership = Ownership()  # which label pixels this widget wrote (it clears no other)
        self.runner = JobRunner(on_error=_weak(self._show_error), on_progress=_weak(self._show_progress))
        self.state = WidgetState(self.viewer, self.runner, self.ownership)
        self.previews = Previews(self.state)
        self.loader = ModelLoader(self.state)
        self.model_panel = ModelPanel()
        self.layers = LayersPanel(self.state)
        self.tiles = TilingPanel(self.state)  # off / auto / a size: how a large image is cut
        self.embeddings = EmbeddingsPanel(self.state)
        self.objects = ObjectsPanel(self.state)
        self.lineage = LineagePanel(self.state)  # before the video panel: its tracks draw the lineage found
        self.video = VideoPanel(self.state)
        self.automatic = AutomaticPanel(self.state)  # "Segment everything" / "Track everything"
        self.status = QLabel("Click on an object (the default model loads on the first click), or load a model first.")
        self.status.setWordWrap(True)
        self._build()
        self._connect()
        me = weakref.ref(self)
        self.destroyed.connect(lambda *_: me() is not None and me()._release_engine())
        self._image_changed(self.state.image_layer)

    # ================================================================== layout
    def _build(self) -> None:
        inner = QWidget()
        lay = QVBoxLayout(inner)
        box = QGroupBox("Model")
        QVBoxLayout(box).addWidget(self.model_panel)
        for panel in (box, self.layers, self.tiles, self.embeddings, self.objects, self.video, self.automatic, self.lineage):
            lay.addWidget(panel)
        lay.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setFrameShape(QScrollArea.NoFrame)
        scroll.setWidget(inner)
        scroll.setMinimumWidth(inner.sizeHint().width() + scroll.verticalScrollBar().sizeHint().width())
        root = QVBoxLayout(self)
        root.setContentsMargins(0, 0, 0, 0)
        root.addWidget(scroll, 1)
        root.addWidget(self.status)

    def _connect(self) -> None:
        s = self.state
        self.model_panel.load_requested.connect(self.loader.load_chosen)
        self.loader.loaded.connect(self.set_model)
        self.layers.image_changed.connect(self._image_changed)
        self.layers.axis_changed.connect(lambda *_: self._rebuild_segmenter())
        self.layers.labels_changed.connect(self._labels_changed)
        self.layers.prompt_layers_changed.connect(self._bind_layers)
        s.status_changed.connect(self.status.setText)
        s.tiling_changed.connect(lambda *_: self._rebuild_segmenter())  # that image's embeddings afresh
        s.object_changed.connect(self._object_changed)
        s.polarity_changed.connect(lambda *_: self._apply_defaults())
        self.viewer.layers.events.removed.connect(self._layer_removed)

    # ================================================================== public API
    model = property(lambda self: self.state.model)
    segmenter = property(lambda self: self.state.segmenter)
    geometry = property(lambda self: self.state.geometry)
    image_layer = property(lambda self: self.state.image_layer)
    labels_layer = property(lambda self: self.state.labels_layer)
    points_layer = property(lambda self: self.state.points_layer)
    shapes_layer = property(lambda self: self.state.shapes_layer)
    current_object = property(lambda self: self.state.current_object)
    positive_mode = property(lambda self: self.state.positive)
    prompts = property(lambda self: self.state.prompts)
    last_error = property(lambda self: self.state.last_error)

    def writable_labels(self):
        """The Labels layer if masks fit it (same shape as the image), else None (and why)."""
        return self.state.writable_labels()

    def current_key(self) -> tuple:
        """(stack key, frame) of the slice the viewer shows."""
        return self.state.current_key()

    def next_free_object(self) -> int:
        """The next free object id: beyond every label and every prompted object."""
        return self.state.next_free_object()

    def set_model(self, model, name: str | None = None) -> None:
        """Use an already-built model (tests, scripts); replaces the engine state."""
        self.state.model = model
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
        if int(obj) < 1:
            return
        self.state.set_object(obj)
        self._object_changed(self.state.current_object)

    def new_object(self, *_) -> int:
        """Select the next free object id (beyond every label and every prompted object)."""
        return self.state.new_object()

    def set_positive(self, positive: bool) -> None:
        self.state.set_positive(positive)

    def toggle_polarity(self, *_) -> None:
        self.set_positive(not self.state.positive)

    def ensure_layers(self) -> None:
        """Create the clicks, boxes and labels layers the combos ask to be made."""
        self.layers.ensure_layers()
        self._bind_layers()

    # ================================================================== layers
    def _image_changed(self, image) -> None:
        self._rebuild_segmenter()

    def _object_changed(self, obj: int) -> None:
        labels = self.labels_layer
        if labels is not None and labels.selected_label != obj:
            labels.selected_label = obj
        self._apply_defaults()

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
        self.state.prompts = self._collect()  # what is in the layers now counts as applied

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
        layer, s = event.value, self.state
        if layer is s.image_in_use or layer is s.labels_in_use:
            self.runner.cancel_long()
            self.runner.drop_quick()
        if layer is s.image_in_use and s.segmenter is not None:
            s.segmenter.close()
            s.segmenter = None
            s.segmenter_changed.emit(None)

    # ================================================================== engine
    def _rebuild_segmenter(self) -> None:
        """A fresh engine state for the current image / model / video axis."""
        s = self.state
        self.runner.cancel_long()
        self.runner.drop_quick()
        if s.segmenter is not None:
            s.segmenter.close()
            s.segmenter = None
        image = s.image_layer
        s.geometry = None
        if image is not None:
            s.geometry = StackGeometry.of(image, self.layers.axis())
            if s.model is not None:
                s.segmenter = Segmenter(s.model, image, s.geometry)
                s.segmenter.set_tiling(s.tile_shape, s.halo)
                # cells divide in time, not in depth: a z-stack's object never branches
                s.segmenter.divisions = s.divisions and not depth_axis(image, self.layers.axis())
                s.segmenter.first_free_id = _weak(s.next_free_object)  # daughters' ids: new to the layer
            self.ensure_layers()  # something to click in, model or not (the first click loads one)
        s.prompts = self._collect()
        s.reset_session()
        s.segmenter_changed.emit(s.segmenter)

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
        s = self.state
        new = self._collect()
        changed = pr.changed_keys(s.prompts, new)
        s.prompts = new
        if changed and s.segmenter is None:
            if s.model is None and s.image_layer is not None:
                s.model_wanted.emit(lambda: self._preview_after_load(changed))
            else:
                s.set_status("Load a model first (Model > Load model).")
            return
        for key in changed:
            self.previews.preview(key, new.get(key))

    def _preview_after_load(self, keys) -> None:
        """The default model is in (loaded for these edits): handle them now."""
        if self._closed or self.state.segmenter is None:
            return
        prompts = self.state.prompts
        for key in keys:
            if key in prompts:
                self.previews.preview(key, prompts[key])

    # ================================================================== feedback
    def _show_error(self, exc: Exception) -> None:
        self.state.show_error(exc)

    def _show_progress(self, done, total, desc) -> None:
        if not self._closed:
            self.embeddings.show_progress(done, total, desc)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._view_fitted:
            self._view_fitted = True
            # napari set the camera before the dock narrowed the canvas: once the window is
            # laid out, fit the view again (unless the user has moved it meanwhile)
            QTimer.singleShot(0, _weak(self._fit_view))

    def _fit_view(self) -> None:
        cam = _camera(self.viewer)
        if not self._closed and (tuple(cam.center), float(cam.zoom)) == self._camera_at_start:
            self.viewer.reset_view()

    # ================================================================== lifetime
    def _release_engine(self) -> None:
        """Stop the workers and free the engine (no Qt calls: safe after the widget died)."""
        self._closed = True
        self.runner.shutdown()
        self.state.steps.close_all()  # a run cut short is still one undo step
        self.ownership.close()
        if self.state.segmenter is not None:
            self.state.segmenter.close()
            self.state.segmenter = None

    def shutdown(self) -> None:
        """Stop workers and let go of layers (widget closed or viewer closing)."""
        if self._closed:
            return
        self._release_engine()
        self._unbind()
        self.lineage.cancel(quiet=True)
        self.layers.disconnect_viewer()
        self.viewer.layers.events.removed.disconnect(self._layer_removed)

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)

    def event(self, event) -> bool:
        # napari's remove_dock_widget detaches the widget with setParent(None)
        if event.type() == QEvent.ParentChange and self.parent() is None and not self._closed and self.isWindow():
            self.shutdown()
        return super().event(event)


DEPTH_AXIS_NAMES = {"z", "depth", "slice", "slices", "plane", "planes"}


def depth_axis(image, axis: int) -> bool:
    """Whether the stack axis ``axis`` of ``image`` is named as depth (``z``, ...), where a
    mask that falls in two is two parts of one object, not a division."""
    labels = list(getattr(image, "axis_labels", None) or [])
    return 0 <= axis < len(labels) and str(labels[axis]).strip().lower() in DEPTH_AXIS_NAMES

