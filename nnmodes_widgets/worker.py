"""The monitor's background worker: heavier analyses run here, off the training thread.

One thread, one job at a time. A job offered while another runs is dropped and counted: by the
time the worker is free the model has moved on, and the next offer carries newer weights (the
latest wins). ``busy_seconds`` is what the monitor's budget is charged with.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable


class Worker:
    def __init__(self, *, on_error: Callable[[str, Exception], None],
                 on_start: Callable[[], None] | None = None, name: str = "nnmodes-worker"):
        self._on_error = on_error
        self._on_start = on_start
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
        self._runs: collections.deque = collections.deque(maxlen=512)   # (start, end) perf_counter
        self._started: float | None = None      # start of the job running now

    def busy_between(self, t0: float, t1: float) -> float:
        """Seconds the worker spent on jobs within [t0, t1] (``time.perf_counter`` times), the
        job running now included; runs older than the last 512 are not counted."""
        with self._cv:
            runs = list(self._runs)
            if self._started is not None:
                runs.append((self._started, time.perf_counter()))
        return sum(max(0.0, min(end, t1) - max(start, t0)) for start, end in runs)

    @property
    def idle(self) -> bool:
        with self._cv:
            return self._job is None and not self._running

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
                start = self._started = time.perf_counter()
            try:
                job()
            except Exception as exc:   # an analysis fault must not kill the worker
                self._on_error(name, exc)
            finally:
                end = time.perf_counter()
                cost = end - start
                with self._cv:
                    self._runs.append((start, end))
                    self._started = None
                    self.busy_seconds += cost
                    self.last_cost[name] = cost
                    self.completed += 1
                    self._running = False
                    self._cv.notify_all()
