"""The monitor's background worker: heavier analyses run here, off the training thread.

One thread, one job at a time. A job offered while another runs is dropped and counted: by the
time the worker is free the model has moved on, and the next offer carries newer weights (the
latest wins). ``begin``/``end`` (a ``Pacer``'s) bracket every job, so that the slowdown it
causes is measured.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Worker:
    def __init__(self, *, on_error: Callable[[str, Exception], None],
                 on_start: Callable[[], None] | None = None,
                 begin: Callable[[], object] = lambda: None,
                 end: Callable[[object], None] = lambda token: None,
                 name: str = "nnmodes-worker"):
        self._on_error = on_error
        self._on_start = on_start
        self._begin, self._end = begin, end
        self._name = name
        self._cv = threading.Condition()
        self._job: tuple[str, Callable[[], None]] | None = None
        self._running = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self.busy_seconds = 0.0
        self.completed = 0
        self.dropped = 0
        self.last_cost: dict[str, float] = {}   # job name -> seconds its last run took

    @property
    def idle(self) -> bool:
        with self._cv:
            return self._job is None and not self._running

    def accepts(self) -> bool:
        """Whether an offer now would be taken; if not, the offer is counted as dropped (so a
        caller can skip preparing a job that would be dropped)."""
        with self._cv:
            if self._job is not None or self._running:
                self.dropped += 1
                return False
            return not self._closed

    def offer(self, name: str, job: Callable[[], None]) -> bool:
        """Run ``job`` in the background if the worker is free; else drop it (counted)."""
        with self._cv:
            if self._closed:
                return False
            if self._job is not None or self._running:
                self.dropped += 1
                return False
            self._job = (name, job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cv.notify_all()
            return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the accepted job (if any) has finished; False on timeout."""
        with self._cv:
            return self._cv.wait_for(lambda: self._job is None and not self._running, timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Finish the job in hand, then stop the thread."""
        finished = self.flush(timeout)
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        return finished

    def _run(self) -> None:
        if self._on_start is not None:
            self._on_start()
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._job is not None or self._closed)
                if self._job is None:
                    return
                (name, job), self._job = self._job, None
                self._running = True
            token = self._begin()
            start = time.perf_counter()
            try:
                job()
            except Exception as exc:   # an analysis fault must not kill the worker
                self._on_error(name, exc)
            finally:
                cost = time.perf_counter() - start
                self._end(token)
                with self._cv:
                    self.busy_seconds += cost
                    self.last_cost[name] = cost
                    self.completed += 1
                    self._running = False
                    self._cv.notify_all()
