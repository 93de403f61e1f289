"""The "Layers" section: which image, video axis, Labels, clicks and boxes layers.

Owns its combos; keeps :class:`~.state.WidgetState`'s layer fields in step with them and
says what changed through its signals. Finds the layers it made for an image before
(layer metadata) and makes the missing ones.
"""

from __future__ import annotations

import numpy as np
from napari.layers import Image, Labels, Points, Shapes
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QFormLayout, QGroupBox

from . import prompts as pr
from .geometry import StackGeometry
from .layer_combo import LayerCombo
from .state import ROLE, SOURCE, WidgetState


class LayersPanel(QGroupBox):
    image_changed = Signal(object)
    axis_changed = Signal(int)
    labels_changed = Signal(object)
    prompt_layers_changed = Signal()

    def __init__(self, state: WidgetState):
        super().__init__("Layers")
        self.state = state
        v = state.viewer
        self.image_combo = LayerCombo(v, Image)
        self.image_combo.setToolTip("The image to segment (2D, RGB, 3D stack, time-lapse or 4D)")
        self.axis_combo = QComboBox()
        self.axis_combo.setToolTip("Which axis the video runs along (4D and more: e.g. t of (t, z, y, x))")
        self.labels_combo = LayerCombo(v, Labels, new_text="(new labels layer)")
        self.labels_combo.setToolTip("Where masks are written; each object's id is its label")
        self.points_combo = LayerCombo(v, Points, new_text="(new points layer)")
        self.points_combo.setToolTip("Clicks: positive (green) and negative (red, Shift-click or T)")
        self.shapes_combo = LayerCombo(v, Shapes, new_text="(new shapes layer)")
        self.shapes_combo.setToolTip("Rectangles in this Shapes layer are box prompts")
        form = QFormLayout(self)
        form.addRow("Image", self.image_combo)
        form.addRow("Video axis", self.axis_combo)
        form.addRow("Labels", self.labels_combo)
        form.addRow("Clicks", self.points_combo)
        form.addRow("Boxes", self.shapes_combo)
        image = self.image_combo.layer()
        self._fill_axes(image)
        if image is not None:
            self._adopt(image)
        self._read()
        self.image_combo.layer_changed.connect(self._image)
        self.axis_combo.currentIndexChanged.connect(lambda *_: self.axis_changed.emit(self.axis()))
        self.labels_combo.layer_changed.connect(self._labels)
        self.points_combo.layer_changed.connect(self._prompt_layers)
        self.shapes_combo.layer_changed.connect(self._prompt_layers)
        ev = v.layers.events
        for emitter in (ev.inserted, ev.removed, ev.moved):
            for combo in self.combos():
                emitter.connect(combo.refresh)

    def combos(self):
        return (self.image_combo, self.labels_combo, self.points_combo, self.shapes_combo)

    def disconnect_viewer(self) -> None:
        ev = self.state.viewer.layers.events
        for emitter in (ev.inserted, ev.removed, ev.moved):
            for combo in self.combos():
                emitter.disconnect(combo.refresh)

    def axis(self) -> int:
        return max(self.axis_combo.currentIndex(), 0)

    # ------------------------------------------------------------------ combos -> state
    def _read(self) -> None:
        s = self.state
        s.image_layer = self.image_combo.layer()
        s.labels_layer = self.labels_combo.layer()
        s.points_layer = self.points_combo.layer()
        s.shapes_layer = self.shapes_combo.layer()

    def _image(self, image) -> None:
        self._read()
        self._fill_axes(image)
        if image is not None:
            self._adopt(image)
        self._read()
        self.image_changed.emit(image)

    def _labels(self, layer) -> None:
        self._read()
        self.labels_changed.emit(layer)

    def _prompt_layers(self, *_) -> None:
        self._read()
        self.prompt_layers_changed.emit()

    def _fill_axes(self, image) -> None:
        self.axis_combo.blockSignals(True)
        self.axis_combo.clear()
        if image is not None and image.ndim > 2:
            names = list(getattr(self.state.viewer.dims, "axis_labels", []))[-image.ndim :]
            shape = StackGeometry.of(image).shape
            for a in range(image.ndim - 2):
                self.axis_combo.addItem(f"axis {a} ({names[a] if a < len(names) else a}) x {shape[a]}")
        else:
            self.axis_combo.addItem("none (2D image)")
        self.axis_combo.setEnabled(image is not None and image.ndim > 3)
        self.axis_combo.blockSignals(False)

    # ------------------------------------------------------------------ finding / making layers
    def _find(self, role: str, image):
        for lay in self.state.viewer.layers:
            if lay.metadata.get(ROLE) == role and lay.metadata.get(SOURCE) == image.name:
                return lay
        return None

    def _adopt(self, image) -> None:
        """Pick this image's prompt and labels layers (made by this widget before), if any."""
        for role, combo in (("labels", self.labels_combo), ("clicks", self.points_combo), ("boxes", self.shapes_combo)):
            found = self._find(role, image)
            if found is not None:
                combo.set_layer(found)
            elif combo.layer() is not None and combo.layer().metadata.get(SOURCE) not in (None, image.name):
                combo.setCurrentIndex(0)

    def ensure_layers(self) -> None:
        """Create the clicks, boxes and labels layers the combos ask to be made."""
        image, viewer = self.state.image_layer, self.state.viewer
        if image is None:
            return
        meta = lambda role: {ROLE: role, SOURCE: image.name}  # noqa: E731
        if self.labels_combo.layer() is None:
            shape = StackGeometry.of(image).shape[: image.ndim]
            lab = viewer.add_labels(np.zeros(shape, np.int32), name=f"{image.name} SAM labels", scale=image.scale,
                                    translate=image.translate, metadata=meta("labels"))
            self.labels_combo.set_layer(lab)
        if self.shapes_combo.layer() is None:
            shp = pr.new_shapes_layer(viewer, image)
            shp.metadata.update(meta("boxes"))
            self.shapes_combo.set_layer(shp)
        if self.points_combo.layer() is None:
            pts = pr.new_points_layer(viewer, image)
            pts.metadata.update(meta("clicks"))
            self.points_combo.set_layer(pts)
            pts.mode = "add"
            viewer.layers.selection.active = pts
        self._read()
