"""A prompt edit -> that object's new mask on that slice, in the quick lane.

Every engine call runs in a worker; the write happens on the main thread, one undo step
per mask, and only if the prompt is still the one asked about (a newer edit supersedes).
"""

from __future__ import annotations

from . import labels_writer as lw
from .state import WidgetState
from .workers import Job


class Previews:
    def __init__(self, state: WidgetState):
        self.state = state
        self.stats: dict = {"previews": 0}

    def preview(self, key, prompt) -> None:
        """Recompute one object's mask on one slice (``prompt`` None: it lost its prompts)."""
        state, seg = self.state, self.state.segmenter
        stack, frame, obj = key
        state.last_edit[stack] = frame
        if prompt is None:
            lab = state.writable_labels()
            if lab is not None:
                lw.clear_object(lab, seg.geometry.join(stack, frame), obj, ownership=state.ownership)

            def forget():
                seg.forget(stack, frame, obj)
                return None
                yield  # a generator, like every job

            state.runner.submit_quick(key, Job(forget))
            return
        sig = prompt.signature()

        def run():
            return seg.predict(stack, frame, obj, prompt)
            yield

        def done(result, aborted):
            current = state.prompts.get(key)
            if aborted or result is None or seg.closed or current is None or current.signature() != sig:
                return  # superseded: a newer request (or none) decides this slice
            lab = state.writable_labels()
            if lab is None:
                return
            mask, score = result
            lead = seg.geometry.join(stack, frame)
            held = lw.write_masks(lab, lead, {obj: mask}, overwrite=state.overwrite, ownership=state.ownership)
            visible = held.get(obj, 0) > 0 and (score is None or score > 0)
            if seg.geometry.lead:
                state.note_visibility(stack, frame, obj, visible)
            self.stats["previews"] += 1
            where = "" if not lead else f" on slice {lead[0] if len(lead) == 1 else lead}"
            absent = "" if visible else (" (the model says it is absent)" if score is not None and score <= 0 else "")
            state.set_status(f"Object {obj}: {held.get(obj, 0)} pixels{where}{absent}")
            state.labels_written.emit()

        state.runner.submit_quick(key, Job(run, on_done=done))
