"""The widget's "Automatic" section: segment everything on the shown slice, track everything
through a stack (SAM 2).

The engine does the work (:class:`~napari_sam.engine.automatic.AutomaticSegmenter`,
:class:`~napari_sam.engine.auto_tracking.AutoTracker`), in the widget's long-job lane (one
long job at a time, progress bar, Cancel). Both read the image through the widget's
:class:`~.segmenter.Segmenter`: its embedding store's features (computed once, reused by the
clicks) and contrast limits. Nothing is written until a run is complete: a cancelled run
leaves the Labels layer as it was. Results go through :func:`.labels_writer.write_labels`
as ONE undo step, with ids shifted past every id in use (labels in the layer, prompted
objects), and respect "Overwrite existing labels": off, only empty pixels are painted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from . import labels_writer as lw
from .segmenter import no_tracking
from .workers import Job

if TYPE_CHECKING:  # pragma: no cover
    from .widget import SamWidget


TRACK_TIP = ("Segment everything on the first slice, track every object through the stack (SAM 2), "
             "look for new ones every K slices; ids are kept over slices")


class Cancelled(Exception):
    """Raised from an engine progress callback to stop a cancelled run."""


def shift_ids(labels: np.ndarray, offset: int) -> np.ndarray:
    """Automatic ids 1..n -> offset+1..offset+n (0 stays background), as int64."""
    labels = np.asarray(labels, dtype=np.int64)
    return np.where(labels > 0, labels + int(offset), 0)


class AutomaticPanel(QGroupBox):
    """"Segment everything" and "Track everything" with the parameters a user needs.

    ``extra_params``: other :class:`~napari_sam.engine.automatic.AutomaticParams` fields
    (e.g. ``crop_n_layers``) for scripts; the controls set the rest.
    """

    _step = Signal(object, int, int)  # (job, done, total), emitted from a worker thread

    def __init__(self, widget: SamWidget):
        super().__init__("Automatic")
        from napari_sam.engine.auto_tracking import TrackingParams
        from napari_sam.engine.automatic import AutomaticParams

        self.w = widget
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
        self.segment_button = QPushButton("Segment everything")
        self.segment_button.setToolTip("Find every object on the slice shown (the whole image if 2D) and add them to the Labels layer as new objects")
        self.track_button = QPushButton("Track everything")

        lay = QVBoxLayout(self)
        form = QFormLayout()
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
        self.update_enabled()

    # ------------------------------------------------------------------ parameters
    def use_defaults_of(self, model) -> None:
        """Set the controls to the defaults for ``model`` (``AutomaticParams.for_model``)."""
        from napari_sam.engine.automatic import AutomaticParams

        a = AutomaticParams.for_model(model)
        self.points_spin.setValue(a.points_per_side)
        self.iou_spin.setValue(a.pred_iou_thresh)
        self.stability_spin.setValue(a.stability_score_thresh)
        self.min_area_spin.setValue(a.min_mask_region_area)

    def params(self):
        """The :class:`AutomaticParams` the controls (and ``extra_params``) say."""
        from napari_sam.engine.automatic import AutomaticParams

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
        from napari_sam.engine.auto_tracking import TrackingParams

        return TrackingParams(every=self.every_spin.value(), min_area=self.min_area_spin.value())

    def update_enabled(self) -> None:
        """Follow the widget's engine: segment needs a model and image, track a SAM 2 stack."""
        seg = getattr(self.w, "segmenter", None)
        self.segment_button.setEnabled(seg is not None)
        video = seg is not None and seg.video
        self.track_button.setEnabled(video)
        self.every_spin.setEnabled(video)
        self.track_button.setToolTip(TRACK_TIP + ("" if video or seg is None else "\n(needs a SAM 2 model and an image stack)"))

    # ------------------------------------------------------------------ actions
    def segment_everything(self) -> bool:
        """Segment the slice the viewer shows; the labels are written when it is done."""
        w, seg = self.w, self.w.segmenter
        if seg is None:
            w.status.setText("Load a model and choose an image first.")
            return False
        labels = w.writable_labels()
        if labels is None:
            return False
        try:
            params = self.params()
        except ValueError as exc:
            w.status.setText(f"Segment everything: {exc}")
            return False
        key, frame = w.current_key()
        lead = seg.geometry.join(key, frame)

        def progress(done, total):
            if job.cancel.is_set() or seg.closed:
                raise Cancelled
            self._step.emit(job, done, total)

        def run():
            from napari_sam.engine.automatic import AutomaticSegmenter

            try:
                with seg.lock:
                    if seg.closed:
                        return None
                    store = seg.store(key)
                    feats = store.get(frame)
                    image = store.frames[frame]
                    return AutomaticSegmenter(seg.model, params).generate(
                        image, contrast_limits=store.contrast_limits, features=feats, progress=progress)
            except Cancelled:
                return None
            yield  # a generator, like every job

        def done(result, aborted):
            w.actions.labels_in_use = None
            if aborted or result is None:
                w.status.setText("Segment everything cancelled: the labels are unchanged.")
                return
            if labels not in w.viewer.layers or w.segmenter is not seg:
                return
            where = f" on slice {lead[0] if len(lead) == 1 else lead}" if lead else ""
            if self._write(labels, {lead: result}, f"Segment everything{where}"):
                self.stats["segmented"] += 1

        job = Job(run, on_done=done, total=1, exclusive=True, desc="Segmenting everything")
        return self._submit(job, labels, "Segmenting everything …")

    def track_everything(self) -> bool:
        """Track every object through the current stack (SAM 2), written when complete."""
        w, seg = self.w, self.w.segmenter
        if seg is None or not seg.video:
            w.status.setText(no_tracking("Track everything"))
            return False
        labels = w.writable_labels()
        if labels is None:
            return False
        try:
            params, tparams = self.params(), self.tracking_params()
        except ValueError as exc:
            w.status.setText(f"Track everything: {exc}")
            return False
        key, _ = w.current_key()
        n = seg.geometry.n_frames
        results: dict[int, np.ndarray] = {}

        def check(done, total):
            if job.cancel.is_set() or seg.closed:
                raise Cancelled

        def run():
            from napari_sam.engine.auto_tracking import AutoTracker
            from napari_sam.engine.automatic import AutomaticSegmenter

            with seg.lock:
                store = seg.store(key)
                limits = store.contrast_limits
                auto = AutomaticSegmenter(seg.model, params)

                def detect(t, frame):  # the tracker's own detector, made cancellable
                    return auto.generate(frame, contrast_limits=limits, features=store.get(t), progress=check)

                tracker = AutoTracker(seg.model, tparams, detect=detect, segmenter=auto)
                steps = tracker.run(seg.frames[key], embeddings=store, contrast_limits=limits)
            try:
                while not (seg.closed or job.cancel.is_set()):
                    with seg.lock:
                        item = next(steps, None)
                    if item is None:
                        return tracker
                    yield item
            except Cancelled:
                return None
            finally:
                with seg.lock:
                    steps.close()
            return None

        def on_yield(item):
            t, lab = item
            if labels not in w.viewer.layers or w.segmenter is not seg:
                w.runner.cancel_long()
                return
            results[int(t)] = lab
            self.stats["tracked_frames"] += 1
            w.runner.progress(len(results))

        def done(tracker, aborted):
            w.actions.labels_in_use = None
            if aborted or tracker is None or len(results) != n:
                w.status.setText("Track everything cancelled: the labels are unchanged.")
                return
            if labels not in w.viewer.layers or w.segmenter is not seg:
                return
            slices = {seg.geometry.join(key, t): lab for t, lab in sorted(results.items())}
            if self._write(labels, slices, f"Track everything over {n} slices") and w.tracks_check.isChecked():
                w.actions.update_tracks()

        job = Job(run, on_yield=on_yield, on_done=done, total=n, exclusive=True, desc="Tracking everything")
        return self._submit(job, labels, "Tracking everything …")

    # ------------------------------------------------------------------ internals
    def _submit(self, job: Job, labels, message: str) -> bool:
        w = self.w
        if not w.runner.submit_long(job):
            w.status.setText("Busy: wait for the running job or cancel it.")
            return False
        w.actions.labels_in_use = labels
        w.status.setText(message)
        return True

    def _on_step(self, job, done, total) -> None:
        if self.w.runner.long_job is job:
            self.w.runner.progress(done, total)

    def _write(self, labels, slices: dict, what: str) -> bool:
        """Shift the automatic ids past every id in use now, then write (one undo step)."""
        w = self.w
        offset = max(w.next_free_object(), lw.next_free_id(labels)) - 1  # `labels` may no longer be the chosen layer
        top = max((int(np.max(lab, initial=0)) for lab in slices.values()), default=0)
        limit = np.iinfo(labels.data.dtype).max if np.issubdtype(labels.data.dtype, np.integer) else 2**31 - 1
        if offset + top > limit:
            w.status.setText(f"{what}: ids up to {offset + top} do not fit the Labels layer's {labels.data.dtype}; use a new labels layer.")
            return False
        shifted = {lead: shift_ids(lab, offset) for lead, lab in slices.items()}
        lw.write_labels(labels, shifted, overwrite=w.overwrite_check.isChecked(), ownership=w.ownership)
        ids: set[int] = set()
        for lead in shifted:
            plane = np.asarray(labels.data[lead] if lead else labels.data)
            ids.update(int(i) for i in np.unique(plane) if i > offset)
        self.last_ids = sorted(ids)
        span = f" (labels {self.last_ids[0]}–{self.last_ids[-1]})" if ids else ""
        w.status.setText(f"{what}: {len(ids)} objects{span}. Ctrl+Z on the Labels layer takes it back.")
        if w.current_object in ids:  # new clicks must not edit an automatic object by accident
            w.new_object()
        return True
