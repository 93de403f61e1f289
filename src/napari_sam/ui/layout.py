"""The widget's layout: every control, its tooltip (with keyboard shortcuts) and wiring."""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari.layers import Image, Labels, Points, Shapes
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from .automatic_panel import AutomaticPanel
from .layer_combo import LayerCombo
from .model_panel import ModelPanel

if TYPE_CHECKING:  # pragma: no cover
    from .widget import SamWidget


def build_layout(w: SamWidget) -> None:
    """Create the controls as attributes of ``w`` and connect them to its methods."""
    v = w.viewer
    root = QVBoxLayout(w)
    w.model_panel = ModelPanel()
    w.model_panel.load_requested.connect(w.actions.load_model)
    box = QGroupBox("Model")
    QVBoxLayout(box).addWidget(w.model_panel)
    root.addWidget(box)

    w.image_combo = LayerCombo(v, Image)
    w.image_combo.setToolTip("The image to segment (2D, RGB, 3D stack, time-lapse or 4D)")
    w.axis_combo = QComboBox()
    w.axis_combo.setToolTip("Which axis the video runs along (4D and more: e.g. t of (t, z, y, x))")
    w.labels_combo = LayerCombo(v, Labels, new_text="(new labels layer)")
    w.labels_combo.setToolTip("Where masks are written; each object's id is its label")
    w.points_combo = LayerCombo(v, Points, new_text="(new points layer)")
    w.points_combo.setToolTip("Clicks: positive (green) and negative (red, Shift-click or T)")
    w.shapes_combo = LayerCombo(v, Shapes, new_text="(new shapes layer)")
    w.shapes_combo.setToolTip("Rectangles in this Shapes layer are box prompts")
    box = QGroupBox("Layers")
    form = QFormLayout(box)
    form.addRow("Image", w.image_combo)
    form.addRow("Video axis", w.axis_combo)
    form.addRow("Labels", w.labels_combo)
    form.addRow("Clicks", w.points_combo)
    form.addRow("Boxes", w.shapes_combo)
    root.addWidget(box)

    w.embed_button = QPushButton("Compute embeddings")
    w.embed_button.setToolTip("Embed every slice of the image now (kept on disk, reused next time). Optional: clicking embeds the current slice on demand")
    w.cancel_button = QPushButton("Cancel")
    w.cancel_button.setToolTip("Stop the running computation; what is done is kept")
    w.cancel_button.setEnabled(False)
    w.progress = QProgressBar()
    w.progress.setVisible(False)
    w.embed_info = QLabel("")
    w.embed_info.setWordWrap(True)
    box = QGroupBox("Embeddings")
    lay = QVBoxLayout(box)
    row = QHBoxLayout()
    row.addWidget(w.embed_button)
    row.addWidget(w.cancel_button)
    lay.addLayout(row)
    lay.addWidget(w.progress)
    lay.addWidget(w.embed_info)
    root.addWidget(box)

    w.object_spin = QSpinBox()
    w.object_spin.setRange(1, 2**31 - 1)
    w.object_spin.setToolTip("The object new clicks and boxes belong to (its label id). Picking a label in the Labels layer selects it")
    w.new_button = QPushButton("New object [N]")
    w.new_button.setToolTip("Start the next free object id (shortcut: N)")
    w.polarity_button = QPushButton()
    w.polarity_button.setCheckable(True)
    w.polarity_button.setToolTip("Clicks add foreground (green) or background (red) points. Toggle: T; Shift-click adds the other kind")
    w.overwrite_check = QCheckBox("Overwrite existing labels")
    w.overwrite_check.setToolTip("Off: masks only fill empty pixels (and the object's own). On: masks paint over other labels")
    box = QGroupBox("Objects")
    lay = QVBoxLayout(box)
    row = QHBoxLayout()
    row.addWidget(QLabel("Object"))
    row.addWidget(w.object_spin)
    row.addWidget(w.new_button)
    lay.addLayout(row)
    lay.addWidget(w.polarity_button)
    lay.addWidget(w.overwrite_check)
    root.addWidget(box)

    w.direction_combo = QComboBox()
    w.direction_combo.addItems(["forward", "backward", "both"])
    w.direction_combo.setToolTip("Track from the prompted (or last corrected) slice towards higher, lower, or both ends")
    w.propagate_button = QPushButton("Propagate")
    w.propagate_button.setToolTip("Track every object through the stack (SAM 2). Add prompts on any slice to correct, then propagate again")
    w.tracks_check = QCheckBox("Show tracks")
    w.tracks_check.setToolTip("A Tracks layer with each object's centroid per frame")
    w.visibility = QLabel("")
    w.visibility.setWordWrap(True)
    w.video_box = QGroupBox("Stack / video")
    lay = QVBoxLayout(w.video_box)
    row = QHBoxLayout()
    row.addWidget(w.direction_combo)
    row.addWidget(w.propagate_button)
    lay.addLayout(row)
    lay.addWidget(w.tracks_check)
    lay.addWidget(w.visibility)
    root.addWidget(w.video_box)

    w.automatic = AutomaticPanel(w)  # "Segment everything" / "Track everything"
    root.addWidget(w.automatic)

    w.status = QLabel("Load a model, then click on an object.")
    w.status.setWordWrap(True)
    root.addWidget(w.status)
    root.addStretch(1)

    w.image_combo.layer_changed.connect(w._image_changed)
    w.axis_combo.currentIndexChanged.connect(lambda *_: w._rebuild_segmenter())
    w.labels_combo.layer_changed.connect(w._labels_changed)
    w.points_combo.layer_changed.connect(lambda *_: w._bind_layers())
    w.shapes_combo.layer_changed.connect(lambda *_: w._bind_layers())
    w.embed_button.clicked.connect(w.actions.compute_embeddings)
    w.cancel_button.clicked.connect(w.runner.cancel_long)
    w.object_spin.valueChanged.connect(w.set_object)
    w.new_button.clicked.connect(w.new_object)
    w.polarity_button.toggled.connect(lambda neg: w.set_positive(not neg))
    w.propagate_button.clicked.connect(lambda: w.actions.propagate())
    w.tracks_check.toggled.connect(lambda *_: w.actions.update_tracks())
    w.set_positive(True)
