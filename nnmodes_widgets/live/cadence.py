"""How often the monitor samples RWC on the training thread: every ``every`` steps, given, or
chosen in the first steps from the measured cost of a sample (SPEC 5, wave 3).

Chosen (``every=None``): the first ``CALIBRATION_SAMPLES`` steps each take a sample, the first
of them a warm-up (it computes the snapshot's norms once), the others timed; the next
``CALIBRATION_STEPS`` steps take none, and their durations less the monitor's time in them are
the bare step. ``every`` is then the smallest of 1, 2, 5, 10, 20, 50, ... whose sampling takes
at most a quarter of the budget (sample / (every x step) <= budget / 4), fixed for the run. The
series starts with a sample at the first multiple of ``every`` after that, not recorded (its RWC
would span the steps since the calibration): every recorded value spans ``every`` steps.

Before it is fixed ``every`` reads ``PROVISIONAL``, so that whatever reads it then (a panel's
axis padding, the run file's first settings) has a number.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from collections.abc import Callable, Iterator

CALIBRATION_SAMPLES = 4     # samples in the first steps: a warm-up, then timed
CALIBRATION_STEPS = 8       # steps after them with no sample: the bare step time
PROVISIONAL = 10            # what ``every`` reads until it is fixed
SAMPLING_SHARE = 0.25       # of the budget, at most, for the sampling

RECORD = "record"           # a step that samples and records the RWC
SAMPLE = "sample"           # ... that samples without recording (calibration, series start)


def ladder() -> Iterator[int]:
    """1, 2, 5, 10, 20, 50, 100, ..."""
    for scale in itertools.count():
        for base in (1, 2, 5):
            yield base * 10 ** scale


def choose_every(sample: float, step: float, budget: float) -> int:
    """The smallest interval of the ladder whose sampling (``sample`` seconds a sample, on steps
    of ``step`` seconds) takes at most ``SAMPLING_SHARE`` of ``budget``; ``PROVISIONAL`` when the
    times are not usable (NaN, a step of no time)."""
    if not (math.isfinite(sample) and math.isfinite(step) and step > 0 and sample >= 0):
        return PROVISIONAL
    allowed = SAMPLING_SHARE * budget
    return next(e for e in ladder() if sample / (e * step) <= allowed)


class Cadence:
    """Which steps sample: ``due(step, ...)`` says, and until ``every`` is fixed it measures.

    ``agree`` (distributed training whose sampling is a collective call) maps this process's
    choice to the one every process uses: called once, at the same step on every process."""

    def __init__(self, every: int | None, budget: float, *, sampling: bool = True,
                 agree: Callable[[int], int] | None = None, clock=time.perf_counter):
        self.chosen = every is None and sampling   # the monitor chooses (else given, or moot)
        self.every = PROVISIONAL if every is None else every
        self.fixed = not self.chosen
        self.budget = budget
        self.sample_seconds = math.nan   # calibration: the median timed sample
        self.step_seconds = math.nan     # ... and bare step
        self._agree = agree
        self._clock = clock
        self._samples: list[float] = []
        self._steps: list[float] = []
        self._last: float | None = None  # when the previous step's call began
        self._start: int | None = None   # the step whose sample starts the recorded series

    @property
    def share(self) -> float:
        """The share of training time the sampling takes at the chosen ``every``, as calibrated
        (NaN when not chosen, or not yet)."""
        if not self.chosen or not self.fixed:
            return math.nan
        return self.sample_seconds / (self.every * self.step_seconds)

    def due(self, step: int, overhead: float = 0.0) -> str | None:
        """What training step ``step`` (counted from 1) does: ``RECORD``, ``SAMPLE`` or None.
        ``overhead``: the monitor's seconds in the step that ended (calibration subtracts them
        from that step's duration)."""
        if not self.fixed:
            self._calibrate(step, overhead)
        if not self.fixed:
            return SAMPLE if step <= CALIBRATION_SAMPLES else None
        if step % self.every:
            return None
        if self._start is None or step > self._start:
            return RECORD
        return SAMPLE if step == self._start else None

    def sampled(self, step: int, seconds: float) -> None:
        """The sample of ``step`` took ``seconds`` on the training thread."""
        if not self.fixed and 1 < step <= CALIBRATION_SAMPLES:
            self._samples.append(seconds)

    def _calibrate(self, step: int, overhead: float) -> None:
        now = self._clock()
        if self._last is not None and step > CALIBRATION_SAMPLES + 1:
            # the step that ended, which sampled nothing (the first one after the samples is
            # left out: their memory traffic may still slow it)
            self._steps.append(max(0.0, now - self._last - overhead))
        self._last = now
        if step < CALIBRATION_SAMPLES + CALIBRATION_STEPS + 1:
            return
        self.sample_seconds = statistics.median(self._samples) if self._samples else math.nan
        self.step_seconds = statistics.median(self._steps) if self._steps else math.nan
        every = choose_every(self.sample_seconds, self.step_seconds, self.budget)
        self.every = every if self._agree is None else self._agree(every)
        self._start = (step // self.every + 1) * self.every
        self.fixed = True
