"""The "Lineage" section: divisions on Propagate, manual lineage edits, CTC export / import.

The lineage of a Labels layer (frames on axis 0, label value = track id) is the layer's own
``{daughter: mother}`` map (metadata :data:`~.state.PARENTS`), filled by Propagate and Track
everything when they find divisions and by the edits here; the Tracks layer draws it.

* **Mark division**: the mother is the selected label; then click the two daughters on one
  frame (Esc on the labels layer, or the button again, cancels). See
  :func:`~.lineage_edit.mark_division`.
* **Join tracks**: the selected label and a click on the other track: the later one gets the
  earlier one's id.
* **Split track**: the selected label gets a new id from the frame shown on.
* **Export CTC… / Import CTC…**: a Cell Tracking Challenge folder (:mod:`napari_sam.lineage`).

Each edit is ONE undo step on the Labels layer. The logic is Qt-free (:mod:`.lineage_edit`);
the methods here (``start_division``, ``pick``, ``split_track``, ``export_ctc``,
``import_ctc``) are what the buttons and clicks call, so scripts and tests call them too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtWidgets import QCheckBox, QFileDialog, QGroupBox, QGridLayout, QMessageBox, QPushButton, QVBoxLayout

from . import lineage_edit as le
from .state import PARENTS, WidgetState
from .tracks import add_lineage_tracks, layer_parents

PICKS = {"division": 2, "join": 1}


class LineagePanel(QGroupBox):
    def __init__(self, state: WidgetState):
        super().__init__("Lineage")
        self.state = state
        self.mode: str | None = None  # "division" / "join" while clicks are awaited
        self.anchor = 0  # the selected label the clicks are for
        self.picks: list[tuple[int, tuple]] = []  # (frame, index in the frame)
        self._bound = None
        self.divisions_check = QCheckBox("Divisions on Propagate")
        self.divisions_check.setChecked(state.divisions)
        self.divisions_check.setToolTip("A propagated object whose mask splits into two separate cells ends there; "
                                        "two daughters with new ids go on (time-lapses; never on a stack axis "
                                        "named z: a nucleus in depth does not divide)")
        self.division_button = QPushButton("Mark division")
        self.division_button.setToolTip("The selected label is the mother: then click her two daughters on one frame")
        self.join_button = QPushButton("Join tracks")
        self.join_button.setToolTip("The selected label and a click on another track: the later one gets the "
                                    "earlier one's id")
        self.split_button = QPushButton("Split track")
        self.split_button.setToolTip("From the frame shown on, the selected label gets a new id")
        self.export_button = QPushButton("Export CTC…")
        self.export_button.setToolTip("The labels and their lineage as a Cell Tracking Challenge folder "
                                      "(maskTTT.tif + res_track.txt)")
        self.import_button = QPushButton("Import CTC…")
        self.import_button.setToolTip("A Cell Tracking Challenge folder as a Labels layer and a Tracks layer")
        lay = QVBoxLayout(self)
        lay.addWidget(self.divisions_check)
        grid = QGridLayout()
        for i, b in enumerate((self.division_button, self.join_button, self.split_button,
                               self.export_button, self.import_button)):
            grid.addWidget(b, i // 3, i % 3)
        lay.addLayout(grid)
        self.divisions_check.toggled.connect(self._divisions)
        self.division_button.clicked.connect(lambda *_: self.start_division())
        self.join_button.clicked.connect(lambda *_: self.start_join())
        self.split_button.clicked.connect(lambda *_: self.split_track())
        self.export_button.clicked.connect(lambda *_: self._export_clicked())
        self.import_button.clicked.connect(lambda *_: self._import_clicked())
        state.labels_written.connect(self._collect_parents)

    # ------------------------------------------------------------------ divisions on Propagate
    def _divisions(self, on: bool) -> None:
        self.state.divisions = bool(on)
        if self.state.segmenter is not None:
            self.state.segmenter.divisions = bool(on)

    def _collect_parents(self) -> None:
        """Propagate's divisions (the engine's) join the Labels layer's lineage."""
        s, seg, labels = self.state, self.state.segmenter, self.state.labels_layer
        if seg is None or labels is None or s.geometry is None:
            return
        for key in s.geometry.stack_keys():
            s.add_parents(labels, seg.parents(key))

    # ------------------------------------------------------------------ edits
    def _labels(self):
        s = self.state
        labels = s.labels_layer
        if labels is None or s.geometry is None or s.geometry.video_axis != 0 or s.geometry.n_frames < 2:
            s.set_status("Lineage: needs a time-lapse (frames on the first axis) and its Labels layer.")
            return None
        return labels

    def _selected(self, labels) -> int:
        return int(labels.selected_label)

    def start_division(self) -> bool:
        """Wait for two clicks on the daughters of the selected label."""
        return self._start("division")

    def start_join(self) -> bool:
        """Wait for one click on the track to join to the selected label."""
        return self._start("join")

    def _start(self, mode: str) -> bool:
        if self.mode == mode:  # the button again: cancel
            self.cancel()
            return False
        self.cancel(quiet=True)
        labels = self._labels()
        if labels is None:
            return False
        self.mode, self.anchor, self.picks = mode, self._selected(labels), []
        self._bind(labels)
        what = ("click her two daughters on one frame" if mode == "division"
                else "click the track to join to it")
        self.state.set_status(f"{'Mark division' if mode == 'division' else 'Join tracks'}: label {self.anchor}; "
                              f"{what} (Esc cancels).")
        return True

    def cancel(self, quiet: bool = False) -> None:
        self._unbind()
        if self.mode is not None and not quiet:
            self.state.set_status("Lineage edit cancelled.")
        self.mode, self.picks = None, []

    def pick(self, world) -> bool:
        """A click at ``world`` (viewer coordinates) while an edit waits for one."""
        labels = self.state.labels_layer
        if self.mode is None or labels is None:
            return False
        data = np.asarray(labels.world_to_data(world), float)
        idx = tuple(int(v) for v in np.rint(data[-labels.ndim:]))
        if any(not 0 <= i < n for i, n in zip(idx, labels.data.shape)):
            self.state.set_status("Lineage: click inside the labels.")
            return True
        self.picks.append((idx[0], idx[1:]))
        if len(self.picks) < PICKS[self.mode]:
            self.state.set_status(f"Mark division: label {self.anchor}; now the second daughter on frame {idx[0]}.")
            return True
        mode, picks, anchor = self.mode, self.picks, self.anchor
        self.cancel(quiet=True)
        data, parents = labels.data, layer_parents(labels)
        try:
            if mode == "division":
                frames = {t for t, _ in picks}
                if len(frames) != 1:
                    raise ValueError(f"the daughters were clicked on frames {sorted(frames)}: click both on one frame")
                edit = le.mark_division(data, parents, anchor, picks[0][0], [p for _, p in picks],
                                        self.state.next_free_object())
            else:
                t, p = picks[0]
                edit = le.join_tracks(data, parents, anchor, int(np.asarray(data[t])[p]))
        except ValueError as exc:
            self.state.set_status(f"{'Mark division' if mode == 'division' else 'Join tracks'}: {exc}.")
            return True
        self.apply(labels, edit)
        return True

    def split_track(self) -> bool:
        """The selected label gets a new id from the frame shown on."""
        labels = self._labels()
        if labels is None:
            return False
        self.cancel(quiet=True)
        _, frame = self.state.current_key()
        try:
            edit = le.split_track(labels.data, layer_parents(labels), self._selected(labels), frame,
                                  self.state.next_free_object())
        except ValueError as exc:
            self.state.set_status(f"Split track: {exc}.")
            return False
        self.apply(labels, edit)
        return True

    def apply(self, labels, edit: le.Edit) -> None:
        """Write ``edit`` into ``labels`` as ONE undo step and record its lineage."""
        shape = labels.data.shape[1:]
        with labels.block_history():
            for t, flat, value in edit.changes:
                index = (np.full(len(flat), t, np.intp), *np.unravel_index(flat, shape))
                labels.data_setitem(index, value, refresh=False)
        labels.refresh()
        labels.metadata[PARENTS] = dict(edit.parents)
        self.state.set_status(f"{edit.message[0].upper()}{edit.message[1:]}. Ctrl+Z on the Labels layer takes it back.")
        self.state.show_tracks.emit(True)
        self.state.labels_written.emit()

    # ------------------------------------------------------------------ clicks
    def _bind(self, labels) -> None:
        def on_click(layer, event):
            if event.type == "mouse_press" and self.mode is not None:
                self.pick(event.position)
                event.handled = True
                yield

        def on_escape(layer):
            self.cancel()

        labels.mouse_drag_callbacks.insert(0, on_click)
        labels.bind_key("Escape", on_escape, overwrite=True)
        self._bound = (labels, on_click, labels.mode)
        labels.mode = "pan_zoom"  # a click picks a cell, it does not paint the mother's id
        self.state.viewer.layers.selection.active = labels

    def _unbind(self) -> None:
        if self._bound is None:
            return
        labels, cb, mode = self._bound
        self._bound = None
        if cb in labels.mouse_drag_callbacks:
            labels.mouse_drag_callbacks.remove(cb)
        labels.bind_key("Escape", None, overwrite=True)
        labels.mode = mode

    # ------------------------------------------------------------------ CTC folders
    def export_ctc(self, folder, overwrite: bool = False) -> bool:
        """The Labels layer and its lineage as a CTC folder (an existing non-empty folder:
        FileExistsError unless ``overwrite``, and then only a CTC folder is replaced)."""
        from napari_sam.lineage import write_ctc

        labels = self._labels()
        if labels is None:
            return False
        try:
            lineage = write_ctc(folder, np.asarray(labels.data), layer_parents(labels), overwrite=overwrite)
        except ValueError as exc:
            self.state.set_status(f"Export CTC: {exc}.")
            return False
        self.state.set_status(f"Exported {len(lineage)} tracks ({len(lineage.divisions())} divisions) to {folder}.")
        return True

    def import_ctc(self, folder):
        """A CTC folder as a new Labels layer (with its lineage) and a Tracks layer; returns
        the Labels layer (None: refused, the status says why)."""
        from napari_sam.lineage import read_ctc

        try:
            labels, parents = read_ctc(folder, join_gaps=True)
        except ValueError as exc:
            self.state.set_status(f"Import CTC: {exc}.")
            return None
        name = Path(folder).name
        layer = self.state.viewer.add_labels(labels.astype(np.int32), name=name, metadata={PARENTS: parents})
        add_lineage_tracks(self.state.viewer, layer, f"{name} tracks")
        self.state.set_status(f"Imported {name}: {len(np.unique(labels)) - 1} labels, "
                              f"{len(set(parents.values()))} divisions.")
        return layer

    def _export_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export CTC into folder")
        if not folder:
            return
        try:
            self.export_ctc(folder)
        except FileExistsError:
            ask = QMessageBox.question(self, "Export CTC", f"{folder} is not empty. Replace the CTC folder there?")
            if ask == QMessageBox.Yes:
                try:
                    self.export_ctc(folder, overwrite=True)
                except FileExistsError as exc:
                    self.state.set_status(f"Export CTC: {exc}.")

    def _import_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Import a CTC folder")
        if folder:
            self.import_ctc(folder)
