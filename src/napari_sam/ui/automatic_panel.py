"""The widget's "Automatic" section: segment everything on the shown slice, track everything
through a stack (SAM 2).

The application layer does the work (the session's ``segment_everything`` /
``track_everything``, :mod:`napari_sam.app`), in the widget's long-job lane (one
long job at a time, progress bar, Cancel). Both read the image through the widget's
:class:`~.segmenter.Segmenter`: its embedding store's features (computed once, reused by the
clicks) and contrast limits. Segment everything writes its slice when it is done (a
cancelled run leaves the Labels layer as it was); Track everything writes each frame as it
is tracked, as Propagate does, the whole run ONE undo step (:class:`~.undo_step.LiveUndoStep`:
the user may paint meanwhile and keeps it; a cancelled run keeps the finished frames), and
turns Show tracks on. Ids are shifted past every id in use (labels in the layer, prompted
objects); "Overwrite existing labels" off: only empty pixels are painted.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from napari_sam.app.automatic import auto_params, has_ais_decoder
from napari_sam.app.ids import id_limit, next_free_id, shift_ids, shift_past

from . import labels_writer as lw
from .segmenter import no_tracking
from .state import BUSY, WidgetState
from .undo_step import LiveUndoStep
from .workers import Job


AIS, GRID = "AIS (decoder)", "Point grid"
METHOD_TIP = ("AIS: the model's instance-segmentation decoder (micro-sam) finds every object in one pass, "
              "no points; Point grid: SAM's grid of clicks with the parameters below. AIS runs on the whole "
              "image only: with tiles the point grid is used")

TRACK_TIP = ("Segment everything on the first slice, track every object through the stack (SAM 2), "
             "look for new ones every K slices; ids are kept over slices; divisions the tracker finds "
             "go into the lineage (Tracks layer, Export CTC)")


class Cancelled(Exception):
    """Raised from an engine progress callback to stop a cancelled run."""


class AutomaticPanel(QGroupBox):
    """"Segment everything" and "Track everything" with the parameters a user needs.

    ``extra_params``: other :class:`~napari_sam.engine.auto.segmenter.AutomaticParams` fields
    (e.g. ``crop_n_layers``) for scripts; the controls set the rest.
    """

    _step = Signal(object, int, int)  # (job, done, total), emitted from a worker thread

    def __init__(self, state: WidgetState):
        super().__init__("Automatic")
        from napari_sam.engine.auto.tracking import TrackingParams
        from napari_sam.engine.auto.segmenter import AutomaticParams

        self.state = state
        self.extra_params: dict = {}
        self.last_ids: list[int] = []  # ids the last completed run wrote
        self.stats = {"segmented": 0, "tracked_frames": 0}
        a, t = AutomaticParams(), TrackingParams()

        self.points_spin = QSpinBox()
        self.points_spin.setRange(1, 256)
        self.points_spin.setValue(a.points_per_side)
        self.points_spin.setToolTip("Grid of points_per_side² clicks over the image. Raise it (48–64) for small, dense objects: "
                                    "an object no grid point falls on is not found. Time grows with its square")
        self.iou_spin = QDoubleSpinBox()
        self.iou_spin.setRange(0.0, 1.0)
        self.iou_spin.setSingleStep(0.05)
        self.iou_spin.setValue(a.pred_iou_thresh)
        self.iou_spin.setToolTip("Keep masks the model rates above this predicted IoU. Lower it when cells are missed, raise it when junk appears")
        self.stability_spin = QDoubleSpinBox()
        self.stability_spin.setRange(0.0, 1.0)
        self.stability_spin.setSingleStep(0.05)
        self.stability_spin.setValue(a.stability_score_thresh)
        self.stability_spin.setToolTip("Keep masks that barely change when the cut-off moves. Lower it for blurred, dim boundaries")
        self.min_area_spin = QSpinBox()
        self.min_area_spin.setRange(0, 10**8)
        self.min_area_spin.setValue(a.min_mask_region_area)
        self.min_area_spin.setSuffix(" px")
        self.min_area_spin.setToolTip("Smallest object kept (pixels); smaller specks and holes are removed")
        self.every_spin = QSpinBox()
        self.every_spin.setRange(0, 10**6)
        self.every_spin.setValue(t.every)
        self.every_spin.setToolTip("Track everything: look for new objects every K slices (0: only on the first slice)")
        self.method_combo = QComboBox()
        self.method_combo.addItems([AIS, GRID])
        self.method_combo.setToolTip(METHOD_TIP)
        self.method_label = QLabel("Method")
        self.has_decoder = False
        self.segment_button = QPushButton("Segment everything")
        self.segment_button.setToolTip("Find every object on the slice shown (the whole image if 2D) and add them to the Labels layer as new objects")
        self.track_button = QPushButton("Track everything")

        lay = QVBoxLayout(self)
        form = QFormLayout()
        form.addRow(self.method_label, self.method_combo)
        form.addRow("Points per side", self.points_spin)
        form.addRow("Predicted IoU >", self.iou_spin)
        form.addRow("Stability >=", self.stability_spin)
        form.addRow("Min object area", self.min_area_spin)
        form.addRow("New objects every", self.every_spin)
        lay.addLayout(form)
        row = QHBoxLayout()
        row.addWidget(self.segment_button)
        row.addWidget(self.track_button)
        lay.addLayout(row)

        self.segment_button.clicked.connect(lambda *_: self.segment_everything())
        self.track_button.clicked.connect(lambda *_: self.track_everything())
        self._step.connect(self._on_step)
        self.method_combo.currentTextChanged.connect(self.update_enabled)
        state.segmenter_changed.connect(self.update_enabled)
        self._show_method(False)
        self.update_enabled()

    # ------------------------------------------------------------------ parameters
    def use_defaults_of(self, model) -> None:
        """Set the controls to the defaults for ``model`` (the application layer's ``auto_params``)."""
        a = auto_params(model)
        self.points_spin.setValue(a.points_per_side)
        self.iou_spin.setValue(a.pred_iou_thresh)
        self.stability_spin.setValue(a.stability_score_thresh)
        self.min_area_spin.setValue(a.min_mask_region_area)
        self._show_method(has_ais_decoder(model))

    def _show_method(self, has_decoder: bool) -> None:
        """The AIS / point grid choice is shown only for a model with a decoder (AIS first)."""
        self.has_decoder = bool(has_decoder)
        self.method_label.setVisible(self.has_decoder)
        self.method_combo.setVisible(self.has_decoder)
        if self.has_decoder:
            self.method_combo.setCurrentText(AIS)

    def uses_ais(self) -> bool:
        """Whether Segment everything asks for AIS (a model with a decoder, AIS chosen)."""
        return self.has_decoder and self.method_combo.currentText() == AIS

    def segment_params(self):
        """What Segment everything hands the session: AisParams for AIS (micro-sam's defaults),
        else :meth:`params` (the point grid)."""
        if self.uses_ais():
            from napari_sam.engine.auto.ais import AisParams

            return AisParams()
        return self.params()

    def params(self):
        """The :class:`AutomaticParams` the controls (and ``extra_params``) say."""
        from napari_sam.engine.auto.segmenter import AutomaticParams

        return AutomaticParams(**{
            **self.extra_params,
            "points_per_side": self.points_spin.value(),
            "pred_iou_thresh": self.iou_spin.value(),
            "stability_score_thresh": self.stability_spin.value(),
            "min_mask_region_area": self.min_area_spin.value(),
        })

    def tracking_params(self):
        """The :class:`TrackingParams`: ``every`` from the control, new objects of at least
        the minimum object area."""
        from napari_sam.engine.auto.tracking import TrackingParams

        return TrackingParams(every=self.every_spin.value(), min_area=self.min_area_spin.value())

    def update_enabled(self, *_) -> None:
        """Follow the widget's engine: segment needs a model and image, track a SAM 2 stack."""
        seg = self.state.segmenter
        self.segment_button.setEnabled(seg is not None)
        grid = not self.uses_ais()
        for spin in (self.points_spin, self.iou_spin, self.stability_spin):
            spin.setEnabled(grid)
        video = seg is not None and seg.video
        self.track_button.setEnabled(video)
        self.every_spin.setEnabled(video)
        self.track_button.setToolTip(TRACK_TIP + ("" if video or seg is None else "\n(needs a SAM 2 model and an image stack)"))

    # ------------------------------------------------------------------ actions
    def segment_everything(self) -> bool:
        """Segment the slice the viewer shows; the labels are written when it is done."""
        w, seg = self.state, self.state.segmenter
        if seg is None:
            w.set_status("Load a model and choose an image first.")
            return False
        labels = w.writable_labels()
        if labels is None:
            return False
        try:
            params = self.segment_params()
        except ValueError as exc:
            w.set_status(f"Segment everything: {exc}")
            return False
        how = "AIS" if self.uses_ais() else "the point grid"
        key, frame = w.current_key()
        lead = seg.geometry.join(key, frame)

        def progress(done, total):
            if job.cancel.is_set() or seg.closed:
                raise Cancelled
            self._step.emit(job, done, total)

        def run():
            try:
                return seg.segment_everything(key, frame, params, progress=progress)
            except Cancelled:
                return None
            yield  # a generator, like every job

        def done(result, aborted):
            if aborted or result is None:
                w.set_status("Segment everything cancelled: the labels are unchanged.")
                return
            if labels not in w.viewer.layers or w.segmenter is not seg:
                return
            where = f" on slice {lead[0] if len(lead) == 1 else lead}" if lead else ""
            if self._write(labels, {lead: result}, f"Segment everything{where} with {how}"):
                self.stats["segmented"] += 1

        job = Job(run, on_done=done, total=1, exclusive=True, desc="Segmenting everything", meta={"labels": labels})
        return self._submit(job, f"Segmenting everything with {how} …")

    def track_everything(self) -> bool:
        """Track every object through the current stack (SAM 2); each frame is written as it
        is done, the whole run one undo step."""
        w, seg = self.state, self.state.segmenter
        if seg is None or not seg.video:
            w.set_status(no_tracking("Track everything"))
            return False
        labels = w.writable_labels()
        if labels is None:
            return False
        try:
            params, tparams = self.params(), self.tracking_params()
        except ValueError as exc:
            w.set_status(f"Track everything: {exc}")
            return False
        key, _ = w.current_key()
        n = seg.geometry.n_frames
        offset = self._offset(labels)
        limit = id_limit(labels.data.dtype)
        overwrite = w.overwrite
        step = LiveUndoStep(labels, w.ownership)  # the whole run: one undo step
        written: set[int] = set()  # frames written
        ids: set[int] = set()
        too_many: list[int] = []

        def check(done, total):
            if job.cancel.is_set() or seg.closed:
                raise Cancelled

        def run():
            try:
                return (yield from seg.track_everything(key, params, tparams, progress=check, stop=job.cancel.is_set))
            except Cancelled:
                return None

        def on_yield(item):
            t, lab = item
            if labels not in w.viewer.layers or w.segmenter is not seg:
                w.runner.cancel_long()
                return
            top = int(np.max(lab, initial=0))
            if offset + top > limit:
                too_many.append(offset + top)
                w.runner.cancel_long()
                return
            lead = seg.geometry.join(key, int(t))
            lw.write_labels(labels, {lead: shift_ids(lab, offset)}, overwrite=overwrite, ownership=w.ownership, live=step)
            plane = np.asarray(labels.data[lead] if lead else labels.data)
            ids.update(int(i) for i in np.unique(plane) if i > offset)
            written.add(int(t))
            self.stats["tracked_frames"] += 1
            w.runner.progress(len(written))

        def finish(message: str) -> None:
            w.steps.close(step)
            self.last_ids = sorted(ids)
            w.set_status(message)
            if labels not in w.viewer.layers or w.segmenter is not seg:
                return
            if w.current_object in ids:  # new clicks must not edit an automatic object by accident
                w.new_object()
            if written:
                w.show_tracks.emit(True)  # what the run is for: the tracks (and a redraw)
                w.labels_written.emit()

        def done(tracker, aborted):
            span = f" (labels {min(ids)}–{max(ids)})" if ids else ""
            found = getattr(tracker, "parents", None) or {}  # divisions, in the tracker's ids
            if found and labels in w.viewer.layers:
                w.add_parents(labels, {int(d) + offset: int(m) + offset for d, m in found.items()})
            if too_many:
                finish(f"Track everything stopped: ids up to {too_many[0]} do not fit the Labels layer's "
                       f"{labels.data.dtype}; use a new labels layer. Finished slices are kept.")
            elif aborted or tracker is None or len(written) != n:
                finish(f"Track everything cancelled: {len(written)} finished slices are kept{span}.")
            else:
                finish(f"Track everything over {n} slices: {len(ids)} objects{span}. Ctrl+Z on the Labels layer takes it back.")

        def failed(exc):
            w.steps.close(step)
            w.show_error(exc)

        job = Job(run, on_yield=on_yield, on_done=done, on_error=failed, total=n, exclusive=True,
                  desc="Tracking everything", meta={"labels": labels})
        if not self._submit(job, "Tracking everything …"):
            return False
        w.steps.add(step)
        return True

    # ------------------------------------------------------------------ internals
    def _submit(self, job: Job, message: str) -> bool:
        if not self.state.runner.submit_long(job):
            self.state.set_status(BUSY)
            return False
        self.state.set_status(message)
        return True

    def _on_step(self, job, done, total) -> None:
        if self.state.runner.long_job is job:
            self.state.runner.progress(done, total)

    def _first_free(self, labels) -> int:
        """Automatic ids start above every id in use (`labels` may no longer be the chosen layer)."""
        return max(self.state.next_free_object(), next_free_id(labels.data))

    def _offset(self, labels) -> int:
        return self._first_free(labels) - 1

    def _write(self, labels, slices: dict, what: str) -> bool:
        """Shift the automatic ids past every id in use now, then write (one undo step)."""
        w = self.state
        offset = self._offset(labels)
        try:
            shifted = shift_past(slices, offset + 1, labels.data.dtype)
        except ValueError as exc:
            w.set_status(f"{what}: {exc}.")
            return False
        lw.write_labels(labels, shifted, overwrite=w.overwrite, ownership=w.ownership)
        ids: set[int] = set()
        for lead in shifted:
            plane = np.asarray(labels.data[lead] if lead else labels.data)
            ids.update(int(i) for i in np.unique(plane) if i > offset)
        self.last_ids = sorted(ids)
        span = f" (labels {self.last_ids[0]}–{self.last_ids[-1]})" if ids else ""
        w.set_status(f"{what}: {len(ids)} objects{span}. Ctrl+Z on the Labels layer takes it back.")
        if w.current_object in ids:  # new clicks must not edit an automatic object by accident
            w.new_object()
        w.labels_written.emit()
        return True
