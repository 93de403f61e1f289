"""What the widget's buttons and prompt edits do: thread jobs and what happens to results.

Kept apart from the layout (:mod:`.widget`). Every engine call runs in a worker; every
write to a layer happens here on the main thread, one slice at a time (so a cancelled or
closed run never leaves a half-written slice). Writes only ever clear pixels the widget
wrote itself (``widget.ownership``); a click is one undo step, a whole propagation another
(:class:`~.undo_step.LiveUndoStep`, committed when the run ends, is cancelled, fails, or the
widget closes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import labels_writer as lw
from .segmenter import no_tracking
from .undo_step import LiveUndoStep
from .workers import Job

if TYPE_CHECKING:  # pragma: no cover
    from .widget import SamWidget


def _ranges(frames) -> str:
    """[1, 2, 3, 7] -> '1-3, 7'."""
    frames = sorted(int(f) for f in frames)
    out, start = [], None
    for i, f in enumerate(frames):
        if start is None:
            start = f
        if i + 1 == len(frames) or frames[i + 1] != f + 1:
            out.append(str(start) if start == f else f"{start}-{f}")
            start = None
    return ", ".join(out)


class SessionActions:
    """Jobs of one :class:`SamWidget`."""

    def __init__(self, widget: SamWidget):
        self.w = widget
        self.image_in_use = None  # the image layer the current segmenter reads
        self.labels_in_use = None  # the labels layer a running propagation writes
        self.last_edit: dict = {}  # stack key -> frame of the latest prompt edit since propagating
        self.absent: dict = {}  # (stack key, obj) -> frames where the object is not visible
        self.stats: dict = {"previews": 0, "propagated_frames": 0}
        self.open_steps: list[LiveUndoStep] = []  # propagations not yet made one undo step

    def reset(self) -> None:
        self.last_edit.clear()
        self.absent.clear()
        self.w.visibility.setText("")

    # ------------------------------------------------------------------ model
    def load_model(self, name: str, checkpoint: str, device: str) -> None:
        w = self.w

        def load():
            import napari_sam as ns

            yield 0
            return ns.load_model(name, checkpoint=checkpoint or None, device=device)

        def done(model, aborted):
            if model is not None and not aborted:
                w.set_model(model, name)
                w.status.setText(f"{name} loaded. Click on an object (Shift-click: background).")

        w.status.setText(f"Loading {name} …")
        if not w.runner.submit_long(Job(load, on_done=done, total=1, desc=f"Loading {name}")):
            w.status.setText("Busy: wait for the running job or cancel it.")

    # ------------------------------------------------------------------ embeddings
    def compute_embeddings(self, *_) -> bool:
        """Embed every slice of the image into the on-disk cache (resumes, reuses)."""
        w, seg = self.w, self.w.segmenter
        if seg is None:
            w.status.setText("Load a model and choose an image first.")
            return False
        total = int(np.prod([seg.geometry.shape[a] for a in seg.geometry.key_axes] or [1])) * seg.geometry.n_frames

        def on_yield(step):
            done, tot = step
            w.runner.progress(done, tot)

        def done(_, aborted):
            embedded, where = seg.embedded()
            w.embed_info.setText(
                ("Cancelled: " if aborted else "")
                + f"{embedded} / {total} slices embedded" + (f", cached in {where}" if where else "")
            )

        ok = w.runner.submit_long(Job(seg.precompute_iter, on_yield=on_yield, on_done=done, total=total, desc="Embedding"))
        if not ok:
            w.status.setText("Busy: wait for the running job or cancel it.")
        return ok

    # ------------------------------------------------------------------ previews
    def preview(self, key, prompt) -> None:
        """Recompute one object's mask on one slice (``prompt`` None: it lost its prompts)."""
        w, seg = self.w, self.w.segmenter
        stack, frame, obj = key
        self.last_edit[stack] = frame
        if prompt is None:
            lab = w.writable_labels()
            if lab is not None:
                lw.clear_object(lab, seg.geometry.join(stack, frame), obj, ownership=w.ownership)

            def forget():
                seg.forget(stack, frame, obj)
                return None
                yield  # a generator, like every job

            w.runner.submit_quick(key, Job(forget))
            return
        sig = prompt.signature()

        def run():
            return seg.predict(stack, frame, obj, prompt)
            yield

        def done(result, aborted):
            current = w.prompts.get(key)
            if aborted or result is None or seg.closed or current is None or current.signature() != sig:
                return  # superseded: a newer request (or none) decides this slice
            lab = w.writable_labels()
            if lab is None:
                return
            mask, score = result
            lead = seg.geometry.join(stack, frame)
            held = lw.write_masks(lab, lead, {obj: mask}, overwrite=w.overwrite_check.isChecked(), ownership=w.ownership)
            visible = held.get(obj, 0) > 0 and (score is None or score > 0)
            if seg.geometry.lead:
                self._note_visibility(stack, frame, obj, visible)
            self.stats["previews"] += 1
            where = "" if not lead else f" on slice {lead[0] if len(lead) == 1 else lead}"
            absent = "" if visible else (" (the model says it is absent)" if score is not None and score <= 0 else "")
            w.status.setText(f"Object {obj}: {held.get(obj, 0)} pixels{where}{absent}")
            if w.tracks_check.isChecked():
                self.update_tracks()

        w.runner.submit_quick(key, Job(run, on_done=done))

    # ------------------------------------------------------------------ propagation
    def propagate(self, direction: str | None = None) -> bool:
        """Track every object of the current stack through its frames (SAM 2)."""
        w, seg = self.w, self.w.segmenter
        if seg is None or not seg.video:
            w.status.setText(no_tracking("Propagation"))
            return False
        direction = direction or w.direction_combo.currentText()
        stack, _ = w.current_key()
        prompts = {(f, o): p for (s, f, o), p in w.prompts.items() if s == stack}
        if not prompts:
            w.status.setText("Add a click or a box on some slice first.")
            return False
        labels = w.writable_labels()
        if labels is None:
            return False
        start = self.last_edit.pop(stack, None)
        total = seg.propagate_length(stack, direction, start)
        self.labels_in_use = labels
        overwrite = w.overwrite_check.isChecked()
        step = LiveUndoStep(labels, w.ownership)  # the whole run: one undo step

        def run():
            yield from seg.propagate_iter(stack, direction, start)

        def on_yield(item):
            frame, masks, scores = item
            if labels is None or labels not in w.viewer.layers or w.segmenter is not seg:
                w.runner.cancel_long()
                return
            held = lw.write_masks(labels, seg.geometry.join(stack, frame), masks, overwrite=overwrite,
                                  ownership=w.ownership, live=step)
            for obj in masks:
                s = scores.get(obj)
                self._note_visibility(stack, frame, obj, held.get(obj, 0) > 0 and (s is None or s > 0), show=False)
            self.stats["propagated_frames"] += 1
            w.runner.progress(self.stats["propagated_frames"] - base)

        def done(_, aborted):
            self.labels_in_use = None
            self.close_step(step)
            self._show_visibility()
            w.status.setText(("Propagation cancelled: finished slices are kept." if aborted else "Propagation done.")
                             + " Add prompts on any slice to correct, then propagate again.")
            if w.tracks_check.isChecked():
                self.update_tracks()

        def failed(exc):
            self.labels_in_use = None
            self.close_step(step)
            w._show_error(exc)

        base = self.stats["propagated_frames"]
        job = Job(run, on_yield=on_yield, on_done=done, on_error=failed, exclusive=True, total=total,
                  desc=f"Propagating {direction}")
        if not w.runner.submit_long(job):
            self.last_edit[stack] = start if start is not None else self.last_edit.get(stack)
            w.status.setText("Busy: wait for the running job or cancel it.")
            return False
        self.open_steps.append(step)
        w.status.setText(f"Propagating {direction} from slice {start if start is not None else 'of the first prompt'} …")
        return True

    def close_step(self, step: LiveUndoStep, wait: bool = True) -> None:
        """Make a run's writes one undo step. While the user holds a brush stroke on the
        layer (napari stages it), wait for the stroke to end, so the two stay apart."""
        if wait and step.stroke_in_progress():
            from qtpy.QtCore import QTimer

            QTimer.singleShot(50, lambda: self.close_step(step))
            return
        if step in self.open_steps:
            self.open_steps.remove(step)
        step.commit()

    def close_all_steps(self) -> None:
        """The widget closes: every open run becomes its undo step now."""
        for step in list(self.open_steps):
            self.close_step(step, wait=False)

    # ------------------------------------------------------------------ visibility, tracks
    def _note_visibility(self, stack, frame, obj, visible: bool, show: bool = True) -> None:
        frames = self.absent.setdefault((stack, int(obj)), set())
        (frames.discard if visible else frames.add)(int(frame))
        if show:
            self._show_visibility()

    def invisible_frames(self, obj: int, stack=()) -> list[int]:
        """Slices where the last result says object ``obj`` is not visible."""
        return sorted(self.absent.get((tuple(stack), int(obj)), ()))

    def _show_visibility(self) -> None:
        lines = [f"object {obj}: not visible on slices {_ranges(fr)}" for (s, obj), fr in sorted(self.absent.items()) if fr]
        self.w.visibility.setText("\n".join(lines) if lines else "")

    def update_tracks(self) -> None:
        """Create / refresh / hide the Tracks layer: one track per label of the Labels layer
        (clicked objects and Track everything's alike), its centroid per frame."""
        w = self.w
        from .widget import ROLE, SOURCE

        lab, image, geo = w.labels_layer, w.image_layer, w.geometry
        existing = next((lay for lay in w.viewer.layers if lay.metadata.get(ROLE) == "tracks" and image is not None and lay.metadata.get(SOURCE) == image.name), None)
        if not w.tracks_check.isChecked() or lab is None or geo is None or geo.video_axis != 0:
            if existing is not None:
                existing.visible = False
            return
        data = lw.centroid_tracks(lab.data, video_axis=0)
        if not len(data):
            return
        colors = self._object_colormap(lab, sorted({int(o) for o in data[:, 0]}))
        rank = {o: i for i, o in enumerate(sorted({int(o) for o in data[:, 0]}))}
        features = {"object": np.array([rank[int(o)] for o in data[:, 0]], float)}
        if existing is None:
            w.viewer.add_tracks(data, features=features, name=f"{image.name} tracks", scale=lab.scale, translate=lab.translate,
                                metadata={ROLE: "tracks", SOURCE: image.name}, tail_length=geo.n_frames,
                                colormaps_dict={"object": colors}, color_by="object")
        else:
            existing.data = data
            existing.features = features
            existing.colormaps_dict = {"object": colors}
            existing.color_by = "object"
            existing.visible = True

    @staticmethod
    def _object_colormap(labels, objects):
        """A colormap giving each track its object's label colour (tracks are ranked 0..n-1)."""
        from napari.utils.colormaps import Colormap

        cols = np.array([labels.get_color(o) for o in objects] or [[1, 1, 1, 1]], float)
        if len(cols) == 1:
            cols = np.repeat(cols, 2, axis=0)
        return Colormap(colors=cols, controls=np.linspace(0, 1, len(cols) + 1), interpolation="zero", name="napari-sam objects")
