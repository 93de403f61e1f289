"""The "Stack / video" section: Propagate (SAM 2), direction, Show tracks, visibility notes.

Owns its controls. A propagation runs in the long lane and writes each frame as it comes
(one slice at a time, on the main thread), all of it ONE undo step
(:class:`~.undo_step.LiveUndoStep`, committed when the run ends, is cancelled, fails, or the
widget closes). Show tracks follows every write to the labels (``labels_written``) and turns
on when asked (``show_tracks``: after Track everything).
"""

from __future__ import annotations

from qtpy.QtWidgets import QCheckBox, QComboBox, QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from . import labels_writer as lw
from .segmenter import no_tracking
from .state import BUSY, WidgetState
from .tracks import show_tracks
from .undo_step import LiveUndoStep
from .workers import Job

NEEDS_SAM2 = ("Propagation through stacks needs a SAM 2 model that tracks: an official SAM 2 / 2.1 model "
              "or the bundled embedded one")


class VideoPanel(QGroupBox):
    def __init__(self, state: WidgetState):
        super().__init__("Stack / video")
        self.state = state
        self.stats: dict = {"propagated_frames": 0}
        self.direction_combo = QComboBox()
        self.direction_combo.addItems(["forward", "backward", "both"])
        self.direction_combo.setToolTip("Track from the prompted (or last corrected) slice towards higher, lower, or both ends")
        self.propagate_button = QPushButton("Propagate")
        self.propagate_button.setToolTip("Track every object through the stack (SAM 2). Add prompts on any slice to correct, then propagate again")
        self.tracks_check = QCheckBox("Show tracks")
        self.tracks_check.setToolTip("A Tracks layer with each object's centroid per frame")
        self.visibility = QLabel("")
        self.visibility.setWordWrap(True)
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(self.direction_combo)
        row.addWidget(self.propagate_button)
        lay.addLayout(row)
        lay.addWidget(self.tracks_check)
        lay.addWidget(self.visibility)
        self.propagate_button.clicked.connect(lambda *_: self.propagate())
        self.tracks_check.toggled.connect(lambda *_: self.update_tracks())
        state.labels_written.connect(self._labels_written)
        state.visibility_changed.connect(self.visibility.setText)
        state.show_tracks.connect(self._show_tracks)
        state.segmenter_changed.connect(self._engine)
        self._engine(state.segmenter)

    def _engine(self, seg) -> None:
        geo = self.state.geometry
        stack = geo is not None and geo.n_frames > 1
        video = stack and self.state.model is not None and self.state.model.family == "sam2"
        self.setEnabled(video)
        self.setToolTip("" if video or not stack else NEEDS_SAM2)
        self.tracks_check.setEnabled(video and geo.video_axis == 0)

    # ------------------------------------------------------------------ tracks
    def _labels_written(self) -> None:
        if self.tracks_check.isChecked():
            self.update_tracks()

    def _show_tracks(self, on: bool) -> None:
        if self.tracks_check.isChecked() != bool(on):
            self.tracks_check.setChecked(bool(on))  # draws them (toggled)
        else:
            self.update_tracks()

    def update_tracks(self) -> None:
        """Create / refresh / hide the Tracks layer: one track per label of the Labels layer
        (clicked objects and Track everything's alike), its centroid per frame."""
        s = self.state
        show_tracks(s.viewer, s.image_layer, s.labels_layer, s.geometry, self.tracks_check.isChecked())

    # ------------------------------------------------------------------ propagation
    def propagate(self, direction: str | None = None) -> bool:
        """Track every object of the current stack through its frames (SAM 2)."""
        state, seg = self.state, self.state.segmenter
        if seg is None or not seg.video:
            state.set_status(no_tracking("Propagation"))
            return False
        direction = direction or self.direction_combo.currentText()
        stack, _ = state.current_key()
        prompts = {(f, o): p for (s, f, o), p in state.prompts.items() if s == stack}
        if not prompts:
            state.set_status("Add a click or a box on some slice first.")
            return False
        labels = state.writable_labels()
        if labels is None:
            return False
        start = state.last_edit.pop(stack, None)
        total = seg.propagate_length(stack, direction, start)
        overwrite = state.overwrite
        step = LiveUndoStep(labels, state.ownership)  # the whole run: one undo step
        runner = state.runner

        def run():
            yield from seg.propagate_iter(stack, direction, start)

        def on_yield(item):
            frame, masks, scores = item
            if labels not in state.viewer.layers or state.segmenter is not seg:
                runner.cancel_long()
                return
            held = lw.write_masks(labels, seg.geometry.join(stack, frame), masks, overwrite=overwrite,
                                  ownership=state.ownership, live=step)
            for obj in masks:
                sc = scores.get(obj)
                state.note_visibility(stack, frame, obj, held.get(obj, 0) > 0 and (sc is None or sc > 0), show=False)
            self.stats["propagated_frames"] += 1
            runner.progress(self.stats["propagated_frames"] - base)

        def done(_, aborted):
            state.steps.close(step)
            state.show_visibility()
            state.set_status(("Propagation cancelled: finished slices are kept." if aborted else "Propagation done.")
                             + " Add prompts on any slice to correct, then propagate again.")
            state.labels_written.emit()

        def failed(exc):
            state.steps.close(step)
            state.show_error(exc)

        base = self.stats["propagated_frames"]
        job = Job(run, on_yield=on_yield, on_done=done, on_error=failed, exclusive=True, total=total,
                  desc=f"Propagating {direction}", meta={"labels": labels})
        if not runner.submit_long(job):
            state.last_edit[stack] = start if start is not None else state.last_edit.get(stack)
            state.set_status(BUSY)
            return False
        state.steps.add(step)
        state.set_status(f"Propagating {direction} from slice {start if start is not None else 'of the first prompt'} …")
        return True
