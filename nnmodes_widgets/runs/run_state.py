"""What the threads of a live run share, behind one lock: the step, faults, notices, non-finite
layers.

Thread ownership: the training thread advances the step and samples RWC; the worker thread runs
the background analyses; each panel's delivery thread reads, and reports its own faults. The
history has its own lock (``History``). Everything else that more than one of them writes or
reads lives here; readers get copies, taken under the lock, so a list never changes while it is
iterated. The module needs neither torch nor widgets: a stored run holds the same state.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

__all__ = ["MonitorError", "RunState", "MAX_KEPT"]

MAX_KEPT = 1000     # newest errors and notices kept; ``error_count`` counts them all


@dataclass(frozen=True)
class MonitorError:
    """One analysis failure (or, among notices, one condition that is not a fault): where,
    when and what."""

    step: int
    analysis: str
    layer: str | None
    message: str
    traceback: str = field(default="", repr=False)

    def __str__(self) -> str:
        where = f"{self.analysis}" + (f" [{self.layer}]" if self.layer else "")
        return f"step {self.step}: {where}: {self.message}"


class RunState:
    """The step counter, errors, notices and first non-finite step per layer of one run."""

    def __init__(self):
        self._lock = threading.Lock()
        self._step = 0
        self._errors: deque[MonitorError] = deque(maxlen=MAX_KEPT)
        self._notices: deque[MonitorError] = deque(maxlen=MAX_KEPT)
        self._error_count = 0
        self._nonfinite: dict[str, int] = {}

    # -- writers (any thread) ----------------------------------------------------------------------

    def advance(self) -> int:
        """Count one training step; the new step."""
        with self._lock:
            self._step += 1
            return self._step

    def add_error(self, error: MonitorError) -> None:
        with self._lock:
            self._error_count += 1
            self._errors.append(error)

    def add_notice(self, analysis: str, layer: str | None, message: str) -> MonitorError:
        """Keep a notice at the current step; the notice kept."""
        with self._lock:
            notice = MonitorError(self._step, analysis, layer, message)
            self._notices.append(notice)
            return notice

    def mark_nonfinite(self, layer: str, step: int) -> None:
        """``layer``'s weights were seen NaN or inf at ``step`` (the first such step is kept)."""
        with self._lock:
            self._nonfinite.setdefault(layer, step)

    # -- readers (any thread): copies, as of now -----------------------------------------------------

    @property
    def step(self) -> int:
        return self._step      # one int: read without the lock

    @property
    def errors(self) -> list[MonitorError]:
        with self._lock:
            return list(self._errors)

    @property
    def notices(self) -> list[MonitorError]:
        with self._lock:
            return list(self._notices)

    @property
    def error_count(self) -> int:
        return self._error_count

    @property
    def nonfinite(self) -> dict[str, int]:
        with self._lock:
            return dict(self._nonfinite)

    def faults(self) -> tuple[int, int, str | None, list[str]]:
        """``(step, error_count, last error, non-finite layers)`` read together."""
        with self._lock:
            last = str(self._errors[-1]) if self._errors else None
            return self._step, self._error_count, last, sorted(self._nonfinite)
