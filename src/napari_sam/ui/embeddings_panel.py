"""The "Embeddings" section: Compute embeddings, Cancel, the progress bar of every long job.

Owns its controls. The progress bar and Cancel follow the widget's long-job lane (the
runner reports progress here); *Compute embeddings* embeds every slice into the on-disk
store (resumable, reused next time) and, with no model loaded, loads the default one first.
On a tiled image (the "Tiles" section) it embeds tile by tile: the progress bar counts tiles
and Cancel keeps the tiles done.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout

from .state import BUSY, WidgetState
from .workers import Job


class EmbeddingsPanel(QGroupBox):
    def __init__(self, state: WidgetState):
        super().__init__("Embeddings")
        self.state = state
        self.embed_button = QPushButton("Compute embeddings")
        self.embed_button.setToolTip("Embed every slice of the image now (kept on disk, reused next time). Optional: clicking embeds the current slice on demand")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running computation; what is done is kept")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.embed_info = QLabel("")
        self.embed_info.setWordWrap(True)
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(self.embed_button)
        row.addWidget(self.cancel_button)
        lay.addLayout(row)
        lay.addWidget(self.progress)
        lay.addWidget(self.embed_info)
        self.embed_button.clicked.connect(lambda *_: self.compute())
        self.cancel_button.clicked.connect(lambda *_: state.runner.cancel_long())
        state.segmenter_changed.connect(self._engine)
        self._engine(state.segmenter)

    def _engine(self, seg) -> None:
        # without a model the button loads the default one; without an image it cannot work
        self.embed_button.setEnabled(seg is not None or (self.state.model is None and self.state.image_layer is not None))

    def show_progress(self, done, total, desc) -> None:
        running = done is not None
        self.progress.setVisible(running)
        self.cancel_button.setEnabled(running)
        if running:
            self.progress.setMaximum(max(int(total or 1), 1))
            self.progress.setValue(int(done))
            self.progress.setFormat(f"{desc}: %v / %m")

    def compute(self) -> bool:
        """Embed every slice of the image into the on-disk cache (resumes, reuses)."""
        state, seg = self.state, self.state.segmenter
        if seg is None and state.model is None and state.image_layer is not None:
            state.model_wanted.emit(self.compute)
            return True
        if seg is None:
            state.set_status("Load a model and choose an image first.")
            return False
        runner = state.runner
        slices = int(np.prod([seg.geometry.shape[a] for a in seg.geometry.key_axes] or [1])) * seg.geometry.n_frames
        tiled = seg.grid(seg.geometry.stack_keys()[0]) is not None
        total = slices * seg.tiles_per_frame(seg.geometry.stack_keys()[0])

        def on_yield(step):
            done, tot = step
            runner.progress(done, tot)

        def done(_, aborted):
            embedded, where = seg.embedded()
            if tiled:
                embedded = seg.embedded_tiles()[0]
            self.embed_info.setText(("Cancelled: " if aborted else "")
                                    + f"{embedded} / {total} {'tiles' if tiled else 'slices'} embedded"
                                    + (f", cached in {where}" if where else ""))

        desc = "Embedding tiles" if tiled else "Embedding"
        ok = runner.submit_long(Job(seg.precompute_iter, on_yield=on_yield, on_done=done, total=total, desc=desc))
        if not ok:
            state.set_status(BUSY)
        return ok
