"""Engine work off the main thread: napari ``thread_worker`` generators in two lanes.

* the *long* lane runs one long job at a time (embeddings, propagation, model loading) with
  a progress bar (``napari.utils.progress``), cancellable between steps;
* the *quick* lane runs click previews one at a time; a newer request for the same
  (slice, object) replaces one still waiting. Previews wait while an ``exclusive`` long job
  (a propagation, which owns the video session) runs, and slip between the frames of a
  non-exclusive one (embeddings).

Results come back on the main thread through the ``on_yield`` / ``on_done`` callbacks; after
:meth:`JobRunner.shutdown` nothing is called back any more.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from napari.qt.threading import create_worker


@dataclass
class Job:
    """A generator function and what to do with what it yields / returns (main thread)."""

    fn: Callable  # () -> generator
    on_yield: Callable | None = None
    on_done: Callable | None = None  # on_done(result, aborted: bool)
    on_error: Callable | None = None
    exclusive: bool = False
    total: int | None = None  # progress bar length; None: no progress bar
    desc: str = ""
    meta: dict = field(default_factory=dict)
    #: set when the job is cancelled (or the runner shut down): engine calls that run long
    #: between two yields (e.g. a progress callback) check it to stop early
    cancel: threading.Event = field(default_factory=threading.Event)


class JobRunner:
    """Runs :class:`Job` s in napari thread workers (see module docstring)."""

    def __init__(self, on_error: Callable[[Exception], None] | None = None, on_progress=None):
        self._on_error = on_error
        self._on_progress = on_progress  # (done, total, desc) or (None, None, "") when idle
        self.long_worker = None
        self.long_job: Job | None = None
        self.quick_worker = None
        self._quick_queue: OrderedDict = OrderedDict()
        self._pbar = None
        self._long_waiting = False
        self.closed = False

    # ------------------------------------------------------------------ state
    @property
    def busy(self) -> bool:
        return self.long_job is not None or self.quick_worker is not None or bool(self._quick_queue)

    @property
    def long_busy(self) -> bool:
        return self.long_job is not None

    # ------------------------------------------------------------------ submit
    def submit_quick(self, key, job: Job) -> None:
        """Queue a preview; replaces a waiting one with the same ``key``."""
        if self.closed:
            return
        self._quick_queue.pop(key, None)
        self._quick_queue[key] = job
        self._pump()

    def submit_long(self, job: Job) -> bool:
        """Run a long job (an exclusive one once the waiting previews are done); False when
        a long job is already running."""
        if self.closed or self.long_job is not None:
            return False
        self.long_job = job
        if job.total is not None:
            self._open_progress(job.total, job.desc)
        if job.exclusive and (self.quick_worker is not None or self._quick_queue):
            self._long_waiting = True  # the previews feed the session it will use
        else:
            self.long_worker = self._start(job, lane="long")
        return True

    def cancel_long(self) -> None:
        """Ask the running long job to stop at its next step (what is done stays)."""
        if self.long_job is not None:
            self.long_job.cancel.set()
        if self.long_worker is not None:
            self.long_worker.quit()
        elif self._long_waiting and self.long_job is not None:
            job, self.long_job, self._long_waiting = self.long_job, None, False
            self._close_progress()
            if job.on_done is not None and not self.closed:
                job.on_done(None, True)

    def drop_quick(self) -> None:
        self._quick_queue.clear()

    def shutdown(self) -> None:
        """Stop everything; no callbacks afterwards. Does not block."""
        self.closed = True
        self._quick_queue.clear()
        self._long_waiting = False
        if self.long_job is not None:
            self.long_job.cancel.set()
        for w in (self.long_worker, self.quick_worker):
            if w is not None:
                w.quit()
        self._close_progress()

    # ------------------------------------------------------------------ internals
    def _pump(self) -> None:
        if self.closed or self.quick_worker is not None:
            return
        if self._long_waiting:
            if not self._quick_queue:
                self._long_waiting = False
                self.long_worker = self._start(self.long_job, lane="long")
                return
        elif self.long_job is not None and self.long_job.exclusive:
            return  # previews resume when the exclusive job ends
        if self._quick_queue:
            _, job = self._quick_queue.popitem(last=False)
            self.quick_worker = self._start(job, lane="quick")

    def _start(self, job: Job, lane: str):
        worker = create_worker(job.fn, _start_thread=False, _ignore_errors=True)
        state = {"result": None}

        def yielded(value):
            if self.closed:
                return
            if job.on_yield is not None:
                job.on_yield(value)

        def returned(value):
            state["result"] = value

        def errored(exc):
            state["error"] = exc
            if self.closed:
                return
            handler = job.on_error or self._on_error
            if handler is not None:
                handler(exc)

        def finished():
            aborted = bool(getattr(worker, "abort_requested", False))
            if lane == "long":
                self.long_worker, self.long_job = None, None
                self._close_progress()
            else:
                self.quick_worker = None
            if not self.closed and job.on_done is not None and "error" not in state:
                job.on_done(state["result"], aborted)
            self._pump()

        worker.yielded.connect(yielded)
        worker.returned.connect(returned)
        worker.errored.connect(errored)
        worker.finished.connect(finished)
        worker.start()
        return worker

    def _open_progress(self, total: int, desc: str) -> None:
        from napari.utils import progress

        self._close_progress()
        self._pbar = progress(total=max(int(total), 1), desc=desc)
        if self._on_progress is not None:
            self._on_progress(0, total, desc)

    def progress(self, done: int, total: int | None = None) -> None:
        """Report progress of the long job (main thread)."""
        if self._pbar is not None:
            if total is not None and total != self._pbar.total:
                self._pbar.total = max(int(total), 1)
            self._pbar.n = int(done)
            self._pbar.refresh()
        if self._on_progress is not None and self.long_job is not None:
            self._on_progress(done, total if total is not None else self.long_job.total, self.long_job.desc)

    def _close_progress(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        if self._on_progress is not None and not self.closed:
            self._on_progress(None, None, "")
