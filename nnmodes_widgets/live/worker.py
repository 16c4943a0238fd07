"""The monitor's background worker: heavier analyses run here, off the training thread.

One thread, one job at a time. A job offered while another runs is dropped and counted: by the
time the worker is free the model has moved on, and the next offer carries newer weights (the
latest wins). ``begin``/``end`` (a ``Pacer``'s) bracket every job, so that the slowdown it
causes is measured.

No wait on the worker outlasts its timeout, and none waits on a thread that has ended: a fault
in the start hook is reported like a job's and the worker goes on; should the thread end anyway,
the job it held is dropped and every waiter wakes. A job still running at ``close`` is
abandoned: where it runs inside ``cuttable()`` it is stopped at its next Python instruction
(``Abandoned`` raised in the thread: a torch operation under way is never cut), else it runs on
in its daemon thread, which ends when the job does. (A daemon thread still inside torch when the
interpreter exits aborts the process: that is why an abandoned job is stopped, not just left.)
"""

from __future__ import annotations

import ctypes
import sys
import threading
import time
import weakref
from collections.abc import Callable
from contextlib import contextmanager

START = "worker start"    # the name its start hook's faults are reported under
_workers: weakref.WeakSet = weakref.WeakSet()   # every worker whose thread may still run


def time_left(deadline: float | None) -> float | None:
    """Seconds until ``deadline`` (``time.monotonic``), never negative; None for no deadline."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def join_all(timeout: float | None) -> None:
    """Wait at most ``timeout`` (all together) for every worker thread of the process to end:
    at interpreter exit, where a daemon thread still inside torch would abort the process."""
    deadline = None if timeout is None else time.monotonic() + timeout
    for worker in list(_workers):
        worker.join(time_left(deadline))


class Abandoned(BaseException):
    """Raised in the worker's thread to stop a job abandoned at ``close`` or past its limit (a
    BaseException: no analysis's ``except Exception`` may swallow it)."""


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
        self._running: str | None = None     # the name of the job in hand
        self._closed = False
        self._ended = False                  # the thread has returned (or died)
        self._died = False                   # ... before it was closed
        self._thread: threading.Thread | None = None
        self._gate = threading.Lock()        # entering and leaving cuttable(), and cutting
        self._cuttable = False               # inside cuttable(), not cut yet
        self._entries = 0                    # cuttable() entered so far
        self._inside: int | None = None      # ... the one the job is inside
        self.busy_seconds = 0.0
        self.completed = 0
        self.dropped = 0
        self.last_cost: dict[str, float] = {}   # job name -> seconds its last run took
        _workers.add(self)

    @property
    def idle(self) -> bool:
        with self._cv:
            return self._job is None and self._running is None

    @property
    def running(self) -> str | None:
        """The name of the job being run (or about to be), None when there is none."""
        with self._cv:
            return self._running or (self._job[0] if self._job else None)

    def accepts(self) -> bool:
        """Whether an offer now would be taken; if not, the offer is counted as dropped (so a
        caller can skip preparing a job that would be dropped)."""
        with self._cv:
            if self._job is not None or self._running is not None:
                self.dropped += 1
                return False
            return not (self._closed or self._ended)

    def offer(self, name: str, job: Callable[[], None]) -> bool:
        """Run ``job`` in the background if the worker is free; else drop it (counted)."""
        with self._cv:
            if self._closed or self._ended:
                return False
            if self._job is not None or self._running is not None:
                self.dropped += 1
                return False
            self._job = (name, job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cv.notify_all()
            return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the accepted job (if any) has finished: True; False on timeout, or when the
        thread ended with the job undone."""
        with self._cv:
            self._cv.wait_for(self._done, timeout)
            return not self._died and self._job is None and self._running is None

    @contextmanager
    def cuttable(self, limit: float | None = None):
        """Inside, on the worker's thread, a job abandoned at ``close``, or still inside after
        ``limit`` seconds, is stopped (``Abandoned`` raised at its next Python instruction). Only
        around what may be cut anywhere: never around the recording of results."""
        with self._gate:
            self._entries += 1
            entry = self._inside = self._entries
            self._cuttable = True
        timer = None
        if limit is not None:
            timer = threading.Timer(limit, self._cut, (entry,))
            timer.daemon = True
            timer.start()
        try:
            yield
        finally:
            with self._gate:
                self._cuttable = False
                self._inside = None
            if timer is not None:
                timer.cancel()

    def _cut(self, entry: int | None = None, deadline: float | None = None) -> None:
        """Stop the job in hand if it is inside ``cuttable()`` (its ``entry``, counted; None:
        whichever): the cut is sent again, every ``RECUT`` seconds, while a weakref callback or
        a ``__del__`` swallows it (``_swallowed``), until the job has left that entry or at
        ``deadline`` (``time.monotonic``)."""
        thread = self._thread
        with self._gate:
            entry = self._inside if entry is None else entry
        while entry is not None and thread is not None and thread.is_alive():
            with self._gate:
                if self._inside != entry:
                    return
                if self._cuttable:
                    _quiet_swallowed_cuts()
                    _raise_in(thread, Abandoned)
                    self._cuttable = False      # one is enough, unless it is swallowed
            if time_left(deadline) == 0.0:
                return
            time.sleep(RECUT)                   # (a poll: the job may be inside torch)

    def _swallowed(self) -> None:
        """On the worker's thread: a cut raised in a weakref callback or a ``__del__``, where
        Python prints it and drops it (a basins trial ran on past its limit, "Exception ignored
        ... Abandoned" on stderr). While the job is still inside the ``cuttable()`` entry it was
        sent to, ``_cut`` sends it again."""
        with self._gate:
            if self._inside is not None:
                self._cuttable = True

    def close(self, timeout: float | None = None, grace: float = 0.0) -> bool:
        """Finish the job in hand within ``timeout``, then stop the thread; a job still running
        then is abandoned (stopped if cuttable), and the thread gets ``grace`` more seconds to
        end. True once it has ended; False when it still runs (it ends on its own)."""
        deadline = None if timeout is None else time.monotonic() + timeout + grace
        self.flush(timeout)
        with self._cv:
            self._closed = True
            self._cv.notify_all()
            thread = self._thread
        if thread is None:
            return True
        if thread is threading.current_thread():
            return False
        self._cut(deadline=deadline)
        return self.join(time_left(deadline))

    def join(self, timeout: float | None = None) -> bool:
        """Wait at most ``timeout`` for the thread to end: whether it has (or never started)."""
        thread = self._thread
        if thread is None:
            return True
        if thread is not threading.current_thread():
            thread.join(timeout)
        return not thread.is_alive()

    def _done(self) -> bool:
        return self._ended or (self._job is None and self._running is None)

    def _run(self) -> None:
        try:
            if self._on_start is not None:
                try:
                    self._on_start()
                except Exception as exc:    # only a head start: the jobs run without it
                    self._on_error(START, exc)
            while True:
                with self._cv:
                    self._cv.wait_for(lambda: self._job is not None or self._closed)
                    if self._job is None:
                        return
                    (name, job), self._job = self._job, None
                    self._running = name
                self._run_one(name, job)
        finally:
            with self._cv:
                if self._job is not None:      # the thread died holding it
                    self._job = None
                    self.dropped += 1
                self._running = None
                self._ended = True
                self._died = not self._closed
                self._cv.notify_all()

    def _run_one(self, name: str, job: Callable[[], None]) -> None:
        token = self._begin()
        start = time.perf_counter()
        try:
            job()
        except Exception as exc:   # an analysis fault must not kill the worker
            self._on_error(name, exc)
        except Abandoned:          # stopped at close: nobody wants its results
            pass
        finally:
            with self._gate:      # (a cut landing in cuttable()'s own exit skips its clearing)
                self._cuttable = False
                self._inside = None
            cost = time.perf_counter() - start
            self._end(token)
            with self._cv:
                self.busy_seconds += cost
                self.last_cost[name] = cost
                self.completed += 1
                self._running = None
                self._cv.notify_all()


RECUT = 0.01    # s between looks at a job being cut (a swallowed cut is sent again)


def _quiet_swallowed_cuts() -> None:
    """Put a hook before whatever ``sys.unraisablehook`` is now (once): it hands a cut that a
    callback swallowed to its worker (``Worker._swallowed``) and passes on everything else."""
    hook = sys.unraisablehook
    if getattr(hook, "swallowed_cuts", False):
        return

    def on_unraisable(args) -> None:
        if isinstance(args.exc_type, type) and issubclass(args.exc_type, Abandoned):
            current = threading.current_thread()
            for worker in list(_workers):
                if worker._thread is current:
                    worker._swallowed()
            return
        hook(args)
    on_unraisable.swallowed_cuts = True
    sys.unraisablehook = on_unraisable


def _raise_in(thread: threading.Thread, exc_type: type[BaseException]) -> None:
    """Raise ``exc_type`` in ``thread`` at its next Python instruction (CPython's
    ``PyThreadState_SetAsyncExc``); the code it is in unwinds as from any exception."""
    set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
    set_async_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)
    set_async_exc(thread.ident, exc_type)
