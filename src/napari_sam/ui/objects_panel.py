"""The "Objects" section: the current object id, New object, click polarity, Overwrite.

Owns its controls and mirrors :class:`~.state.WidgetState` (current object, polarity,
overwrite): a control changes the state, a state change (a picked label, the T key, an
automatic run taking the current id) shows in the control.
"""

from __future__ import annotations

from qtpy.QtWidgets import QCheckBox, QGroupBox, QHBoxLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout

from .state import WidgetState


class ObjectsPanel(QGroupBox):
    def __init__(self, state: WidgetState):
        super().__init__("Objects")
        self.state = state
        self.object_spin = QSpinBox()
        self.object_spin.setRange(1, 2**31 - 1)
        self.object_spin.setValue(state.current_object)
        self.object_spin.setToolTip("The object new clicks and boxes belong to (its label id). Picking a label in the Labels layer selects it")
        self.new_button = QPushButton("New object [N]")
        self.new_button.setToolTip("Start the next free object id (shortcut: N)")
        self.polarity_button = QPushButton()
        self.polarity_button.setCheckable(True)
        self.polarity_button.setToolTip("Clicks add foreground (green) or background (red) points. Toggle: T; Shift-click adds the other kind")
        self.overwrite_check = QCheckBox("Overwrite existing labels")
        self.overwrite_check.setToolTip("Off: masks only fill empty pixels (and the object's own). On: masks paint over other labels")
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(QLabel("Object"))
        row.addWidget(self.object_spin)
        row.addWidget(self.new_button)
        lay.addLayout(row)
        lay.addWidget(self.polarity_button)
        lay.addWidget(self.overwrite_check)

        self.object_spin.valueChanged.connect(state.set_object)
        self.new_button.clicked.connect(state.new_object)
        self.polarity_button.toggled.connect(lambda neg: state.set_positive(not neg))
        self.overwrite_check.toggled.connect(self._overwrite)
        state.object_changed.connect(self._show_object)
        state.polarity_changed.connect(self._show_polarity)
        self._show_polarity(state.positive)

    def _overwrite(self, on: bool) -> None:
        self.state.overwrite = bool(on)

    def _show_object(self, obj: int) -> None:
        if self.object_spin.value() != obj:
            self.object_spin.setValue(obj)

    def _show_polarity(self, positive: bool) -> None:
        self.polarity_button.blockSignals(True)
        self.polarity_button.setChecked(not positive)
        self.polarity_button.blockSignals(False)
        self.polarity_button.setText("Clicks: foreground (green) [T]" if positive else "Clicks: background (red) [T]")
