"""How often the monitor samples RWC on the training thread: every ``every`` steps, given, or
chosen in the first steps from the measured cost of a sample (SPEC 5, wave 3).

Chosen (``every=None``): in the first steps every ``STRIDE``-th step takes a sample (step 1,
the first, a warm-up: it computes the snapshot's norms once), or fewer when the samples timed so
far would take more than ``CALIBRATION_SHARE`` of the budget at that stride (nothing is exempt
from the budget, the calibration included: on a 10M-parameter CNN a sample took 6-28 ms against
108 ms steps, 1.5-6.5% of the first 4 s of training at every fourth step); the others timed, and
the steps in between, less the monitor's time in them, give the bare step (the one right after
a sample is left out: its memory traffic may still slow it). A sample is the median of
``CALIBRATION_SAMPLES`` timed ones spread over the calibration: three in a row at its start took
0.17 ms in one JupyterLab run and 0.62 ms in the next (the dashboard's first frames were being
sent), and every=50 or 500 was chosen for the same MLP. The bare step is the median of the quick
ones (within ``QUICK`` x the quickest), once ``CALIBRATION_STEPS`` of them were seen and the
steps fill ``CALIBRATION_SECONDS`` (after ``CALIBRATION_MAX_SECONDS`` of steps, whatever they
were, once ``MIN_SAMPLES`` samples were timed). In JupyterLab, while a dashboard drew its first
frames, nine in ten steps of the first second waited 10-40 ms for the GIL against a bare 0.5 ms:
their lower quartile chose every=5 where 50 was right, and sampling took 10% of training time.
A step that is truly longer now and then (a data loader) only makes ``every`` larger than
needed: sampling takes less than its share, never more. Processes that agree on the choice
(``agree``) sample at every ``STRIDE``-th step and decide at a step count alone, the same on
each (their sampling is a collective call). ``every`` is then the smallest of 1,
2, 5, 10, 20, 50, ... whose sampling takes at most a quarter of the budget (``LATER`` x sample /
(every x step) <= budget / 4: a sample later takes longer than in the calibration), fixed for
the run.
Every recorded value spans ``every`` steps: when ``every`` reaches past the calibration, the
last calibration sample starts the series (records at its step + k x every);
else a sample at the first multiple of ``every`` after it does, not recorded, and the records
follow at the multiples.

Before it is fixed ``every`` reads ``PROVISIONAL``, so that whatever reads it then (a panel's
axis padding, the run file's first settings) has a number. On CUDA a sample's time is also
measured on the device (events read once they have passed: no wait), and the larger counts.
"""

from __future__ import annotations

import collections
import itertools
import math
import statistics
import time
from collections.abc import Callable, Iterator

import numpy as np

STRIDE = 4                  # calibrating, every STRIDE-th step samples (from step 1) ...
CALIBRATION_SHARE = 0.5     # ... or fewer, so that they take at most this share of the budget
CALIBRATION_SAMPLES = 8     # samples timed (after the warm-up), their median the sample's time
MIN_SAMPLES = 3             # ... at least, after CALIBRATION_MAX_SECONDS of steps
CALIBRATION_STEPS = 16      # quick steps without a sample: the bare step time
QUICK = 1.5                 # x the quickest step: a quick one (a step that waited is longer)
CALIBRATION_SECONDS = 0.5   # ... and as many more as fill this long (a dashboard's first frames,
                            # drawn while training starts, slowed a burst of 16 short steps)
CALIBRATION_MAX_SECONDS = 5.0   # ... at most, quick ones or not
PROVISIONAL = 10            # what ``every`` reads until it is fixed
SAMPLING_SHARE = 0.25       # of the budget, at most, for the sampling
# A sample timed in the calibration counts this many times its time: later ones take longer, the
# worker's and the widgets' threads taking turns at the GIL. In JupyterLab on the dashboard's MLP
# they took 0.37-0.47 ms against the calibration's 0.24-0.30 ms in one run, 0.39-0.49 ms against
# 0.17 ms in another; at 1.5 x the calibration every=50 was chosen, sampling took 1.5-1.7% of
# training time where a quarter of the budget is 1.25%, and the panels' analyses, paced from
# what was left, came every 2.7-3.4 s instead of 1.4 s
LATER = 2.5
RECENT = 16                 # samples whose median time says what the sampling costs now

RUNGS = 30                  # of the ladder, as far as processes agree on it (up to 5e9)

RECORD = "record"           # a step that samples and records the RWC
SAMPLE = "sample"           # ... that samples without recording (calibration, series start)


def ladder() -> Iterator[int]:
    """1, 2, 5, 10, 20, 50, 100, ..."""
    for scale in itertools.count():
        for base in (1, 2, 5):
            yield base * 10 ** scale


def choose_every(sample: float, step: float, budget: float) -> int:
    """The smallest interval of the ladder whose sampling (``sample`` seconds a sample in the
    calibration, ``LATER`` times that later, on steps of ``step`` seconds) takes at most
    ``SAMPLING_SHARE`` of ``budget``; ``PROVISIONAL`` when the times are not usable (NaN, a step
    of no time)."""
    if not (math.isfinite(sample) and math.isfinite(step) and step > 0 and sample >= 0):
        return PROVISIONAL
    allowed = SAMPLING_SHARE * budget
    return next(e for e in ladder() if LATER * sample / (e * step) <= allowed)


def agree_largest(reduce: Callable[[np.ndarray], np.ndarray]) -> Callable[[int], int]:
    """An ``agree`` for processes whose sampling is a collective call: the largest ``every``
    any of them chose, from a sum across processes (``reduce``) of one vote per rung."""
    rungs = list(itertools.islice(ladder(), RUNGS))

    def agree(every: int) -> int:
        votes = np.zeros(len(rungs))
        votes[rungs.index(every) if every in rungs else -1] = 1
        return rungs[int(np.flatnonzero(reduce(votes))[-1])]

    return agree


class Cadence:
    """Which steps sample: ``due(step, ...)`` says, and until ``every`` is fixed it measures.

    ``agree`` (distributed training whose sampling is a collective call) maps this process's
    choice to the one every process uses: called once, at the same step on every process.
    ``on_fixed()`` is called once the choice is fixed."""

    def __init__(self, every: int | None, budget: float, *, sampling: bool = True,
                 agree: Callable[[int], int] | None = None,
                 on_fixed: Callable[[], None] | None = None, clock=time.perf_counter):
        self.chosen = every is None and sampling   # the monitor chooses (else given, or moot)
        self.every = PROVISIONAL if every is None else every
        self.fixed = not self.chosen
        self.budget = budget
        self.sample_seconds = math.nan   # calibration: the median timed sample
        self.step_seconds = math.nan     # ... and bare step (the median quick one)
        self._agree, self._on_fixed = agree, on_fixed
        self._clock = clock
        self._samples: list[tuple[float, tuple | None]] = []   # host seconds, CUDA events
        self._recent: collections.deque = collections.deque(maxlen=RECENT)   # seconds
        self._steps: list[float] = []
        self._stepped = 0.0              # their sum
        self._fastest = math.inf         # ... the quickest
        self._quick_count = 0            # ... and how many are quick
        self._last: float | None = None  # when the previous step's call began
        self._start: int | None = None   # the step whose sample starts the recorded series
        self._sampled_at = 1             # the step of the calibration's last sample
        self._next_sample = 1            # ... and of its next

    @property
    def calibrated_share(self) -> float:
        """The share of training time the sampling takes at the chosen ``every``, as calibrated
        (NaN when not chosen, or not yet)."""
        if not self.chosen or not self.fixed:
            return math.nan
        return self.sample_seconds / (self.every * self.step_seconds)

    def share(self, step_seconds: float) -> float:
        """The share of training time the sampling takes, from the median of the last samples'
        times on steps of ``step_seconds`` (the bare step measured; NaN: the calibration's);
        the median leaves out a sample that waited for a busy core or the GIL. NaN before a
        timed sample."""
        if not math.isfinite(step_seconds):
            step_seconds = self.step_seconds
        if not self._recent or not step_seconds > 0:
            return math.nan
        return statistics.median(self._recent) / (self.every * step_seconds)

    def due(self, step: int, overhead: float = 0.0, now: float | None = None) -> str | None:
        """What training step ``step`` (counted from 1) does: ``RECORD``, ``SAMPLE`` or None.
        ``overhead``: the monitor's seconds in the step that ended (calibration subtracts them
        from that step's duration), timed from ``now``, the clock when the monitor's step began
        (None: read here). Timing from another point would move any wait between the two (the
        GIL, a preempted thread) out of one step and into the next: a step timed at 0 s is the
        quickest, and no other step is then quick (calibration held to its 5 s of steps)."""
        if not self.fixed:
            self._calibrate(step, overhead, self._clock() if now is None else now)
        if not self.fixed:
            if step < self._next_sample:
                return None
            # the next one STRIDE steps on (``sampled`` may put it further)
            self._sampled_at, self._next_sample = step, step + STRIDE
            return SAMPLE
        start = self._start or 0
        if step < start or (step - start) % self.every:
            return None
        return SAMPLE if step == start else RECORD

    def next_due(self, step: int) -> int:
        """The first step after ``step`` for which ``due`` may not be None (the next step while
        the cadence still measures)."""
        if not self.fixed:
            return step + 1
        start = self._start or 0
        if step < start:
            return start
        return start + ((step - start) // self.every + 1) * self.every

    def sampled(self, step: int, seconds: float, events: tuple | None = None) -> None:
        """The sample of ``step`` took ``seconds`` on the training thread; on CUDA ``events``,
        the (start, end) events around it on the training stream."""
        if not self.fixed and step > 1:
            self._samples.append((seconds, events))
            self._next_sample = step + self._stride()
        elif self.fixed:
            self._recent.append(seconds)

    def _stride(self) -> int:
        """Steps from one calibration sample to the next: ``STRIDE``, or as many more as keep the
        samples timed so far (their median) within ``CALIBRATION_SHARE`` of the budget on the
        quick steps; ``STRIDE`` where processes agree (they must sample at the same steps)."""
        quick = self._quick()
        if self._agree is not None or not len(quick):
            return STRIDE
        share = statistics.median(s for s, _ in self._samples) / float(np.median(quick))
        allowed = CALIBRATION_SHARE * self.budget
        return max(STRIDE, math.ceil(share / allowed)) if allowed > 0 else STRIDE

    def _enough(self) -> bool:
        """Whether the samples and steps timed so far give the sample's and the bare step's
        times."""
        timed = len(self._samples)
        if self._agree is not None:        # a count of steps alone: the same on every process
            return timed >= CALIBRATION_SAMPLES
        if self._stepped >= CALIBRATION_MAX_SECONDS:
            return timed >= MIN_SAMPLES
        return (timed >= CALIBRATION_SAMPLES and self._stepped >= CALIBRATION_SECONDS
                and self._quick_count >= CALIBRATION_STEPS)

    def _add_step(self, seconds: float) -> None:
        """Time one more step, counting the quick ones as they come (all of them again only
        when a quicker one comes)."""
        self._steps.append(seconds)
        self._stepped += seconds
        if seconds < self._fastest:
            self._fastest = seconds
            self._quick_count = sum(s <= QUICK * seconds for s in self._steps)
        elif seconds <= QUICK * self._fastest:
            self._quick_count += 1

    def _quick(self) -> np.ndarray:
        steps = np.asarray(self._steps)
        return steps[steps <= QUICK * self._fastest]

    def _calibrate(self, step: int, overhead: float, now: float) -> None:
        if self._last is not None and step - 1 != self._sampled_at:
            # the step that ended, less the monitor's time in it (the one right after a sample
            # is left out: its memory traffic may still slow it)
            self._add_step(max(0.0, now - self._last - overhead))
        self._last = now
        if not self._enough():
            return
        if not all(e is None or e[1].query() for _, e in self._samples):
            if self._agree is None:
                return      # the device has not passed the samples yet: a later step decides
            for _, e in self._samples:   # every process decides now (a collective call waits)
                if e is not None:
                    e[1].synchronize()
        samples = [seconds if e is None else max(seconds, e[0].elapsed_time(e[1]) / 1e3)
                   for seconds, e in self._samples]
        self.sample_seconds = statistics.median(samples) if samples else math.nan
        self.step_seconds = float(np.median(self._quick())) if self._steps else math.nan
        self.every = choose_every(self.sample_seconds, self.step_seconds, self.budget)
        self.fixed = True
        try:
            if self._agree is not None:
                self.every = self._agree(self.every)
        finally:
            last = self._sampled_at
            reaches = last + self.every > step                  # past the calibration
            self._start = last if reaches else (step // self.every + 1) * self.every
            if self._on_fixed is not None:
                self._on_fixed()
