"""Loading a model in the widget's long-job lane, by request or on first use.

*Load model* loads the chosen one. With no model loaded, the first click (or *Compute
embeddings*) asks for one through :attr:`~.state.WidgetState.model_wanted`: the default
model (:func:`napari_sam.registry.default_model`) is loaded, the status line says so, and
the request is carried out once it is in. Loading a model also turns on the allocator
tuning (:func:`napari_sam.engine.malloc_tuning.tune_malloc`): the widget is an application
and opts in; ``NAPARI_SAM_MALLOC_TUNING=0`` turns it off.
"""

from __future__ import annotations

from qtpy.QtCore import QObject, Signal

from .state import BUSY, WidgetState
from .workers import Job


class ModelLoader(QObject):
    """Emits ``loaded(model, name)`` on the main thread when a load is done."""

    loaded = Signal(object, str)

    def __init__(self, state: WidgetState):
        super().__init__()
        self.state = state
        self._waiting: list = []  # what to run once the default model is in
        state.model_wanted.connect(self.load_default)

    def load(self, name: str, checkpoint: str = "", device: str = "auto", then=None) -> bool:
        state = self.state

        def load():
            import napari_sam as ns

            yield 0
            return ns.load_model(name, checkpoint=checkpoint or None, device=device)

        def done(model, aborted):
            waiting, self._waiting = self._waiting, []
            if model is None or aborted:
                return
            self.loaded.emit(model, name)
            state.set_status(f"{name} loaded. Click on an object (Shift-click: background).")
            for call in waiting:
                call()

        from napari_sam.engine.malloc_tuning import tune_malloc

        tune_malloc()  # once per process (the main thread, before any engine work)
        if not state.runner.submit_long(Job(load, on_done=done, total=1, desc=f"Loading {name}")):
            state.set_status(BUSY)
            return False
        if then is not None:
            self._waiting.append(then)
        return True

    def load_default(self, then=None) -> None:
        """No model yet: load the default one, then call ``then``."""
        from napari_sam.registry import default_model

        if self._waiting:  # a load for an earlier request is running: join it
            if then is not None:
                self._waiting.append(then)
            return
        name = default_model()
        if self.load(name, then=then):
            self.state.set_status(f"Loading the default model, {name}, as no model is loaded yet …")

    def load_chosen(self, name: str, checkpoint: str, device: str) -> None:
        if self.load(name, checkpoint, device):
            self.state.set_status(f"Loading {name} …")
