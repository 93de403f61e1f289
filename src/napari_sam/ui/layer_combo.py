"""A combo box listing the viewer's layers of one type, kept in sync with the layer list."""

from __future__ import annotations

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox


class LayerCombo(QComboBox):
    """Layers of ``layer_type`` in ``viewer``; an optional first entry ``new_text`` stands
    for "create one when needed" and reads as ``None``. ``layer_changed`` fires with the
    chosen layer (or None)."""

    layer_changed = Signal(object)

    def __init__(self, viewer, layer_type, new_text: str | None = None, parent=None):
        super().__init__(parent)
        self._viewer = viewer
        self._type = layer_type
        self._new_text = new_text
        self._layers: list = []
        self._updating = False
        self.currentIndexChanged.connect(self._emit)
        self.refresh()

    def layer(self):
        i = self.currentIndex()
        offset = 1 if self._new_text else 0
        if i < offset or i - offset >= len(self._layers):
            return None
        layer = self._layers[i - offset]
        return layer if layer in self._viewer.layers else None

    def set_layer(self, layer) -> None:
        self.refresh()
        offset = 1 if self._new_text else 0
        for i, lay in enumerate(self._layers):
            if lay is layer:
                self.setCurrentIndex(i + offset)
                return
        if self._new_text:
            self.setCurrentIndex(0)

    def refresh(self, *_) -> None:
        """Re-list the layers, keeping the current choice when it still exists."""
        current = self.layer() if self._layers else None
        layers = [lay for lay in self._viewer.layers if isinstance(lay, self._type)]
        self._updating = True
        try:
            self.clear()
            if self._new_text:
                self.addItem(self._new_text)
            self._layers = layers
            self.addItems([lay.name for lay in layers])
            offset = 1 if self._new_text else 0
            if current is not None and current in layers:
                self.setCurrentIndex(layers.index(current) + offset)
            elif not self._new_text and layers:
                self.setCurrentIndex(len(layers) - 1)
            else:
                self.setCurrentIndex(0 if self._new_text else -1)
        finally:
            self._updating = False
        if self.layer() is not current:
            self._emit()

    def _emit(self, *_):
        if not self._updating:
            self.layer_changed.emit(self.layer())
