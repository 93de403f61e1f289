"""The "Tiles" section: how a large image is cut for the model (off / auto / a size), how many
tiles the current image has, and optionally the tile grid drawn as a Shapes layer.

Owns its controls and changes only the shared :class:`~.state.WidgetState`'s tiling
(``tile_shape`` / ``halo``, micro-sam's meaning: a tile is its core plus the halo on each
side, in image pixels); the widget rebuilds the engine when it changes (that image's
embeddings start afresh: stores of another tiling are other folders, nothing is deleted).
The spin boxes cannot hold a bad tiling: a tile is at least 32 px, the halo at most half the
tile.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QCheckBox, QComboBox, QFormLayout, QGroupBox, QLabel, QSpinBox

from .state import ROLE, SOURCE, WidgetState

MODES = ("off", "auto", "size")
TIPS = {
    "off": "The whole image is shrunk to the model's input (fine for images about that size)",
    "auto": "Tiles of the model's input size: the image is seen at its own pixel size (not tiled when it fits one)",
    "size": "Tiles of the size below: a core of that many pixels plus the halo on each side",
}
TILES_LAYER = "tiles"


class TilingPanel(QGroupBox):
    def __init__(self, state: WidgetState):
        super().__init__("Tiles (large images)")
        self.state = state
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(MODES)
        for i, mode in enumerate(MODES):
            self.mode_combo.setItemData(i, TIPS[mode], 3)  # Qt.ToolTipRole
        self.mode_combo.setToolTip("How a large image is cut for the model: off (whole image), auto, or a size")
        self.tile_spin = QSpinBox()
        self.tile_spin.setRange(32, 16384)
        self.tile_spin.setSingleStep(16)
        self.tile_spin.setSuffix(" px")
        self.tile_spin.setToolTip("Tile core (height = width), in image pixels; at least 32")
        self.halo_spin = QSpinBox()
        self.halo_spin.setSingleStep(8)
        self.halo_spin.setSuffix(" px")
        self.halo_spin.setToolTip("Overlap added on each side of every tile, at most half the tile; "
                                  "at least one object diameter keeps every object whole in some tile")
        self.show_check = QCheckBox("Show tiles")
        self.show_check.setToolTip(f"Draw the tile cores as rectangles in a Shapes layer named {TILES_LAYER!r}")
        self.info = QLabel("")
        self.info.setWordWrap(True)
        self._edited = False  # the user set the sizes (else they follow the model's auto tiling)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(400)  # typing a size: apply once it settles
        self._timer.timeout.connect(self._apply)
        self._set_sizes(768, 128)
        form = QFormLayout(self)
        form.addRow("Tiles", self.mode_combo)
        form.addRow("Tile", self.tile_spin)
        form.addRow("Halo", self.halo_spin)
        form.addRow(self.show_check)
        form.addRow(self.info)
        self.mode_combo.currentIndexChanged.connect(lambda *_: self._apply())
        self.tile_spin.valueChanged.connect(self._tile_edited)
        self.halo_spin.valueChanged.connect(self._halo_edited)
        self.show_check.toggled.connect(lambda *_: self.draw_tiles())
        state.segmenter_changed.connect(self._engine)
        self._engine(state.segmenter)

    # ------------------------------------------------------------------ public
    def mode(self) -> str:
        return MODES[max(self.mode_combo.currentIndex(), 0)]

    def set_tiling(self, mode: str, tile: int | None = None, halo: int | None = None) -> None:
        """Choose ``mode`` ("off" / "auto" / "size"), with ``tile`` / ``halo`` px for "size"; applied now."""
        if mode not in MODES:
            raise ValueError(f"tiles mode must be one of {MODES}, got {mode!r}")
        if tile is not None or halo is not None:
            self._edited = True
            self._set_sizes(self.tile_spin.value() if tile is None else int(tile),
                            self.halo_spin.value() if halo is None else int(halo))
        self.mode_combo.blockSignals(True)
        self.mode_combo.setCurrentIndex(MODES.index(mode))
        self.mode_combo.blockSignals(False)
        self._apply()

    def tiling(self) -> tuple:
        """``(tile_shape, halo)`` as the controls say."""
        mode = self.mode()
        if mode == "off":
            return None, None
        if mode == "auto":
            return "auto", None
        t, h = self.tile_spin.value(), self.halo_spin.value()
        return (t, t), (h, h)

    def describe(self) -> str:
        """What the current image gets: "16 tiles (4 x 4) of 192 x 192 px, halo 32 x 32 px" or "whole image"."""
        seg, geo = self.state.segmenter, self.state.geometry
        if geo is None:
            return "no image"
        tile, halo = self.tiling()
        if seg is not None:
            return seg.tiling_text(seg.geometry.stack_keys()[0])
        if tile is None:
            return "whole image"
        if tile == "auto":
            return "auto: chosen from the model once one is loaded"
        from napari_sam.engine.image.tiling import TileGrid

        return TileGrid(geo.frame_hw, tile, halo).describe()

    # ------------------------------------------------------------------ internals
    def _set_sizes(self, tile: int, halo: int) -> None:
        for spin in (self.tile_spin, self.halo_spin):
            spin.blockSignals(True)
        self.tile_spin.setValue(int(tile))
        self.halo_spin.setRange(0, self.tile_spin.value() // 2)
        self.halo_spin.setValue(int(halo))
        for spin in (self.tile_spin, self.halo_spin):
            spin.blockSignals(False)

    def _tile_edited(self, value: int) -> None:
        self._edited = True
        self.halo_spin.setMaximum(int(value) // 2)  # a halo over half the tile cannot be chosen
        self._later()

    def _halo_edited(self, _value: int) -> None:
        self._edited = True
        self._later()

    def _later(self) -> None:
        if self.mode() == "size":
            self._timer.start()

    def _engine(self, seg) -> None:
        model = self.state.model
        if model is not None and not self._edited:  # the sizes start as the model's auto tiling
            size = int(model.image_size)
            halo = size // 8
            self._set_sizes(size - 2 * halo, halo)
        self._show()

    def _apply(self) -> None:
        self._timer.stop()
        self.state.set_tiling(*self.tiling())  # the widget rebuilds the engine (-> _engine)
        self._show()
        self.state.set_status(f"Tiles: {self.describe()}")

    def _show(self) -> None:
        sizes = self.mode() == "size"
        self.tile_spin.setEnabled(sizes)
        self.halo_spin.setEnabled(sizes)
        text = self.describe()
        self.info.setText(f"This image: {text}")
        self.draw_tiles()

    def draw_tiles(self) -> None:
        """The tiles layer of the current image: its tile cores (removed when off or untiled)."""
        state, viewer = self.state, self.state.viewer
        image = state.image_layer
        layer = next((lay for lay in viewer.layers if lay.metadata.get(ROLE) == TILES_LAYER), None)
        seg = state.segmenter
        grid = None if seg is None or image is None else seg.grid(seg.geometry.stack_keys()[0])
        if not self.show_check.isChecked() or grid is None:
            if layer is not None:
                viewer.layers.remove(layer)
            return
        rects = [np.array([[y0, x0], [y1, x1]], float) - 0.5 for y0, y1, x0, x1 in (t.core for t in grid)]
        meta = {ROLE: TILES_LAYER, SOURCE: image.name, "grid": grid.describe()}
        if layer is not None and all(layer.metadata.get(k) == meta[k] for k in ("grid", SOURCE)):
            return  # drawn already
        active, mode = viewer.layers.selection.active, getattr(viewer.layers.selection.active, "mode", None)
        if layer is not None:
            viewer.layers.remove(layer)
        viewer.add_shapes(rects, shape_type="rectangle", name=TILES_LAYER, edge_color="#ffd23f",
                          face_color="transparent", edge_width=max(1.0, min(grid.image_shape) / 1000),
                          opacity=0.8, metadata=meta, scale=image.scale[-2:], translate=image.translate[-2:])
        if active is not None and active in viewer.layers:  # clicks keep going where they went
            viewer.layers.selection.active = active
            if mode is not None:
                active.mode = mode
