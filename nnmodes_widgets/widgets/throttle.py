"""Rate-limited, coalescing delivery of widget updates.

The training loop only *requests* an update (a flag set, microseconds); a daemon thread builds and
sends at most ``max_rate`` updates per second, always from the newest data, so a fast loop never
waits for a widget and a slow widget never sees a backlog. An update that is costly to build
spaces the next ones out so that building takes at most ``max_share`` of wall time, yet at least
one update a second goes out (a rare costly one, such as the trend's periodic clustering, must
not freeze a plot): the builder thread holds the GIL for much of its work, and a small model's
training loop is Python-bound (on the quickstart MLP, ten trend updates a second slowed training
by about 10%). Sending comm messages from a thread is safe: ipykernel routes them through its
IOPub thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


_MAX_GAP = 1.0   # seconds: the longest a costly update delays the next (max_rate aside)


class Throttle:
    def __init__(self, push: Callable[[], None], *, on_error: Callable[[Exception], None],
                 max_rate: float = 10.0, max_share: float = 0.01,
                 begin: Callable[[], object] = lambda: None,
                 end: Callable[[object], None] = lambda token: None):
        if not max_rate > 0:
            raise ValueError(f"max_rate must be positive, got {max_rate!r}")
        if not 0 < max_share <= 1:
            raise ValueError(f"max_share must be a fraction in (0, 1], got {max_share!r}")
        self.interval = 1.0 / max_rate
        self.max_share = max_share
        self._gap = self.interval      # before the next update: interval, or longer if costly
        self._push = push
        self._on_error = on_error
        self._begin, self._end = begin, end    # bracket each update (the monitor's pacer)
        self._wanted = threading.Event()
        self._push_lock = threading.Lock()   # one push at a time, thread or caller
        self._start_lock = threading.Lock()  # one delivery thread, whichever thread asks first
        self._last = float("-inf")
        self._closed = False
        self._thread: threading.Thread | None = None
        self.pushes = 0

    def request(self) -> None:
        """Ask for an update as soon as the rate allows; cheap enough to call on every step."""
        if self._closed or self._wanted.is_set():   # already asked: a flag read, no lock
            return
        self._wanted.set()
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    thread = threading.Thread(target=self._run, name="nnmodes-throttle", daemon=True)
                    thread.start()
                    self._thread = thread

    def offer(self) -> None:
        """Push at once on the calling thread if the rate allows, else as soon as it does
        (coalesced with whatever is offered meanwhile)."""
        if time.monotonic() - self._last >= self._gap:
            self.push_now()
        else:
            self.request()

    def push_now(self) -> None:
        """Update immediately on the calling thread (first render, final state, tests)."""
        self._wanted.clear()
        self._deliver()

    def close(self) -> None:
        self._closed = True
        self._wanted.set()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            if self._closed:
                return
            delay = self._last + self._gap - time.monotonic()
            if delay > 0:
                time.sleep(delay)   # requests arriving meanwhile merge into this one update
            self._wanted.clear()
            self._deliver()

    def _deliver(self) -> None:
        with self._push_lock:
            self._last = time.monotonic()
            token = self._begin()
            try:
                self._push()
                self.pushes += 1
            except Exception as exc:  # a broken update must not kill the thread
                self._on_error(exc)
            finally:
                self._end(token)
            cost = time.monotonic() - self._last
            self._gap = max(self.interval, min(cost / self.max_share, _MAX_GAP))
