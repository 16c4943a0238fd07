"""How much slower training runs because of the monitor, measured; and the pace it allows.

The budget bounds the slowdown of training (SPEC 5, wave 2), not the monitor's own CPU seconds:
on a machine with few cores a background thread stalls the training threads by more than its
own time (an intra-op parallel region waits for its slowest thread, and a descheduled thread
costs a scheduler time slice; a Python-bound loop waits for the GIL). So the slowdown is
measured from the training steps themselves:

- every step's duration (one ``Monitor.step`` to the next) and the monitor's time inside it;
- every stretch of background work (the worker's analyses, the widgets' updates);
- *quiet* steps, which no background work overlapped and no sampling ran in, give the bare
  step time b (each step's own from the quiet steps around it: the bare step drifts, and a
  run's first steps are slow with or without the monitor); the slowdown is the steps' time over
  their bare time, less 1, over the recent window;
- the contention c, the training seconds lost per second of background work: the extra time
  (d - b) of the steps background work overlapped over the background time inside them (the
  CPU time its thread spent there, as its clock times it: ``begin``), one
  for the worker's analyses and one for the widgets' updates (whose frames the browser then
  draws on the same cores: a widget second cost a small ResNet's training 3-6 s in JupyterLab,
  a worker second 0.8-1.9); in the steps both overlapped the worker is charged at its own and
  the widgets the rest. On two cores it was measured above 1, which is why the prior is
  the number of intra-op threads until enough overlap has been seen.

The worker's runs may then cost training what the rest of the measured slowdown leaves of the
budget (``Pacer.rate``: training seconds per second of wall time; nothing when the rest takes
it all). A run costs training c x its seconds on the worker's clock, plus the seconds it takes
on the training thread itself (the refresh of the model's copy: ``step(..., for_jobs=)``). The
worker spends credits that accrue at parts of that rate from the monitor's start (``credit``,
``spend``; one account per kind of run, whose rates add up to it): no minute of training, the
first included, pays for more than the budget allows, give or take one run.

A step much longer than the typical one (a pause between cells, an evaluation loop) is a break,
not a training step: left out. The window is the last ``SPAN`` seconds or the last
``MIN_WINDOW_STEPS`` steps, whichever reach further back, at most ``WINDOW_SECONDS``, up to the
last step (while training pauses, the reading stays that of its last seconds); the ring
keeps the last ``WINDOW_STEPS`` steps one by one, and those that leave it within SPAN count by
their sums (``_sums``), taken as they leave, when every stretch of work that overlapped them
has been seen.
"""

from __future__ import annotations

import collections
import itertools
import math
import threading
import time

import numpy as np

WINDOW_STEPS = 1 << 13      # steps kept one by one for the estimate (about 8 s of a 1 ms step:
                            # an estimate over 32k steps took 15 ms of the worker's credit every 2 s)
WINDOW_SECONDS = 60.0       # ... and at most this far back
# ... and no further back than the last SPAN seconds or this many steps, whichever reach further:
# a 10 ms step's window was the whole minute, and the first round's cost (0.3 s of the worker,
# a reading of 39% at 3 s, as every first run pays its warm-up) held the reading over the aim
# for a minute: an architectures-notebook ResNet's panels stood still for 30 s in JupyterLab
MIN_WINDOW_STEPS = 1 << 10
# An estimate covers at least this long: older steps than the ring holds count by their sums,
# taken once as they leave it. Over the ring alone, 2.3 s of a small MLP's 0.27 ms steps, the
# slowdown read 3.5-5.1% from one estimate to the next at a steady pace, and each reading over
# the aim left the worker nothing (panels 3.5 s apart in a CI run, reading 5.5% at its end)
SPAN = 10.0
# The reading the status line shows is over the last MINUTE of training (SPEC 5: the budget is
# kept over any minute); the pace follows the shorter window above. Over 10 s the quickstart's
# status line in JupyterLab read over its 5% budget in 16-23% of its readings while the minute
# ran at 4.0-4.5%: a point either way from one reading to the next
MINUTE = 60.0
BUSY_KEPT = 1 << 12         # stretches of background work kept
BREAK = 20.0                # a step over this many typical steps is a break
QUIET = 0.01                # a step with less of it overlapped is quiet
PRIOR_WEIGHT = 5.0          # the prior contention counts as this many overlapped steps
# The widgets' prior contention (``Monitor``'s pacer): a frame takes the kernel a millisecond of
# CPU and the browser tens of them, on the same cores where it runs beside the kernel (in
# JupyterLab on two cores a CPU second of frames cost training 11-16 s). Priced at the worker's
# prior (2), an architectures ResNet's trend and status line went out every second for the first
# 4 s of its 7 s run, priced at a sixth of what they cost; where the browser has cores of its
# own, the steps measure the contention down within a few frames
WIDGET_PRIOR = 10.0
MIN_QUIET = 20              # quiet steps needed before the slowdown is measured
LOCAL_QUIET = 64            # quiet steps around a step give its bare time (``_local_bare``)
REFRESH = 0.5               # s an estimate is reused (stats() is read ten times a second)
# The pace aims under the budget: a slowdown measured over seconds of steps is off by a point or
# so either way, and a pace aimed at the budget itself went over it in about half of the
# side-by-side runs (bench/live.py: 1.053 against 1.05, the monitor reading 1.049). At 0.9 the
# quickstart's status line in JupyterLab read 4.5% on average, and over 5% in 23% of its
# readings after the first 12 s; at 0.8, 4.0% and 16% (4 runs of each, interleaved)
AIM = 0.8


class Pacer:
    """Step durations and background work in; measured slowdown and the worker's pace out.

    Thread-safe: the training thread adds steps, the worker and the widgets' threads add
    background work and read estimates.
    """

    def __init__(self, budget: float, prior_contention: float, widget_prior: float | None = None):
        self.budget = budget
        # each kind's contention until its steps have measured it (the widgets' default: the
        # worker's)
        self.priors = {"worker_": float(prior_contention),
                       "widget_": float(prior_contention if widget_prior is None else widget_prior)}
        self._lock = threading.Lock()
        # ring buffer of steps: start, duration, the monitor's time inside, sampled (0/1), the
        # part of that time spent for the worker's runs; a NumPy array so that an estimate
        # reads it without converting 32k tuples
        self._steps = np.zeros((WINDOW_STEPS, 5))
        # ring buffer of the stretches of background work: start, end, kind, seconds on their
        # clock; an estimate reads the few that reach into its window (an array of all of them
        # built from tuples took a third of an estimate, which the worker renews every 2 s)
        self._busy = np.zeros((BUSY_KEPT, 4))
        self._busy_count = 0
        self._tokens = itertools.count()
        # stretches under way: id -> start, its clock then, the clock, kind
        self._running: dict[int, tuple] = {}
        self._last_start: float | None = None
        self._estimate: dict = _from_sums(np.zeros(len(_SUMS)), self.priors)
        self._estimated_at = -math.inf
        self._counted = 0              # steps in the ring so far
        # steps not yet in the ring: appending a tuple costs the training thread a tenth of a
        # NumPy row write, and a deque's append needs no lock; the readers move them in
        self._fresh: collections.deque = collections.deque(maxlen=WINDOW_STEPS)
        self._estimated_count = 0      # ... when the estimate was made
        # the sums of the steps that left the ring (``_sums``), with the end of the newest: the
        # window's older part, where the ring spans less than SPAN
        self._retired: collections.deque = collections.deque()
        # account -> [training seconds its runs may still cost, when last credited]
        self._accounts: dict[str, list] = {}

    # -- in ------------------------------------------------------------------------------------

    def step(self, start: float, overhead: float = 0.0, sampled: bool = False,
             for_jobs: float = 0.0) -> None:
        """A training step ended at ``start`` (``time.perf_counter``), where the next begins;
        the monitor spent ``overhead`` seconds inside the step that ends here, sampling (or
        preparing a run) in it when ``sampled``, ``for_jobs`` of them for the worker's runs."""
        if self._last_start is not None:
            self._fresh.append((self._last_start, start - self._last_start, overhead, sampled,
                                for_jobs))
        self._last_start = start

    def _absorb(self) -> None:
        """Move the fresh steps into the ring (under the lock; the training thread may append
        meanwhile: what it appends after the count waits for the next reader)."""
        fresh = self._fresh
        taken = [fresh.popleft() for _ in range(len(fresh))]
        if not taken:
            return
        held = min(self._counted, WINDOW_STEPS)     # in the ring: those overwritten leave it
        self._retire(held, min(held, held + len(taken) - WINDOW_STEPS))
        rows = (self._counted + np.arange(len(taken))) % WINDOW_STEPS
        self._steps[rows] = np.array(taken, dtype=np.float64)
        self._counted += len(taken)

    def _retire(self, held: int, count: int) -> None:
        """The ``count`` oldest of the ``held`` steps in the ring are about to be overwritten:
        their sums join the window's older part (the ring's median step sets what is a break, as
        in an estimate; the held steps are its first rows, in whatever order)."""
        if count <= 0:
            return
        leaving = self._steps[(self._counted - held + np.arange(count)) % WINDOW_STEPS]
        now = time.perf_counter()
        end = float((leaving[:, 0] + leaving[:, 1]).max())
        self._retired.append((end, _sums(leaving, self._busy_since(leaving[:, 0].min(), now),
                                         np.median(self._steps[:held, 1]))))
        # kept as long as a window that ends at the newest step may reach (after a pause the
        # first estimate retires steps long after they ran)
        newest = now if self._last_start is None else self._last_start
        while self._retired and self._retired[0][0] < newest - max(SPAN, MINUTE):
            self._retired.popleft()

    def _busy_since(self, oldest: float, now: float) -> np.ndarray:
        """The stretches of background work that end after ``oldest``, those under way up to now
        (their thread's CPU time unknown here: all of it). Under the lock."""
        kept = self._busy[:min(self._busy_count, BUSY_KEPT)]
        return np.concatenate([kept[kept[:, 1] > oldest],
                               np.array([(start, now, code, now - start) for start, _, _, code
                                         in self._running.values()]).reshape(-1, 4)])

    def steps_per_second(self, steps: int = 200) -> float:
        """Over the last ``steps`` steps (NaN before two)."""
        with self._lock:
            self._absorb()
            n = min(steps, self._counted, WINDOW_STEPS)
            rows = (self._counted - 1 - np.arange(n)) % WINDOW_STEPS
            total = self._steps[rows, 1].sum()
        return n / total if n >= 2 and total > 0 else math.nan

    def begin(self, kind: str, clock=None) -> int:
        """Background work (``kind``: "worker", the analyses' runs; "widgets", the widgets'
        updates; "run", the run file's commits) starts now, on this thread, which calls
        ``end`` with the token returned; its cost is timed by ``clock`` (default: the thread's
        CPU time: time spent waiting, for the GIL or for a core, costs training nothing).
        Counted up to now while it runs: a 10 s analysis must not make its steps look quiet
        until it ends."""
        clock = clock or time.thread_time
        with self._lock:
            token = next(self._tokens)
            self._running[token] = (time.perf_counter(), clock(), clock, _KINDS[kind])
        return token

    def end(self, token: int) -> None:
        end = time.perf_counter()
        with self._lock:
            start, begun, clock, code = self._running.pop(token)
            self._keep(start, end, code, clock() - begun)

    def record(self, start: float, end: float, kind: str, cpu: float | None = None) -> None:
        """Background work of ``kind`` ran from ``start`` to ``end`` (perf_counter seconds),
        taking ``cpu`` seconds of its thread's CPU time (default: all of it)."""
        with self._lock:
            self._keep(start, end, _KINDS[kind], end - start if cpu is None else cpu)

    def _keep(self, start: float, end: float, code: int, cpu: float) -> None:
        self._busy[self._busy_count % BUSY_KEPT] = start, end, code, cpu
        self._busy_count += 1

    # -- out -----------------------------------------------------------------------------------

    def latest(self) -> tuple[dict, float]:
        """The last ``estimate`` made and its age in seconds (inf before the first), computing
        nothing: for the training thread (an estimate over a full window takes milliseconds)."""
        with self._lock:
            return self._estimate, time.perf_counter() - self._estimated_at

    def estimate(self) -> dict:
        """``slowdown`` (monitored / bare step time - 1 over the window, NaN until measured; what
        the pace follows), ``minute_slowdown`` (the same over the last ``MINUTE``: what the
        status shows), ``bare`` (s per
        quiet step), ``contention`` (c, of the worker's runs), ``widget_contention`` (of the
        widgets' updates), ``worker_share`` and ``widget_share`` (their CPU seconds, or their
        clock's, over the wall time),
        ``own_share`` (the monitor's time inside the steps over their total), ``job_share``
        (the part of it spent for the worker's runs), ``steps`` (in the window)."""
        now = time.perf_counter()
        with self._lock:
            self._absorb()
            # recent enough, and not many steps since (the first steps change it most)
            new_steps = self._counted - self._estimated_count
            if now - self._estimated_at < REFRESH and new_steps <= max(4, self._counted // 8):
                return self._estimate
            self._estimated_count = self._counted
            n = min(self._counted, WINDOW_STEPS)
            steps = self._steps[(self._counted - n + np.arange(n)) % WINDOW_STEPS]  # in order
            busy = self._busy_since(steps[:, 0].min(initial=now), now)
            # the window ends where the last step did: while training pauses (a cell that
            # evaluates, exports, or the end of the loop) it is the last seconds of training,
            # not a shrinking tail of them (a quickstart's status line went from 4.9% to 6.4%
            # in the 4 s between its last step and the detach)
            end = now if self._last_start is None else min(now, self._last_start)
            # the older part: steps that left the ring within SPAN (none where the ring spans
            # it), and within the MINUTE
            retired, minute = (sum((sums for ended, sums in self._retired if ended >= end - span),
                                   np.zeros(len(_SUMS))) for span in (SPAN, MINUTE))
        estimate = _estimate(steps, busy, end, self.priors, retired, minute)
        with self._lock:
            self._estimate, self._estimated_at = estimate, now
        return estimate

    def rate(self, e: dict | None = None) -> float:
        """Training seconds per second of wall time the worker's runs may cost now: what the rest
        of the measured slowdown leaves of the budget (aimed at ``AIM`` of it), nothing when the
        rest takes it all; inf with a budget of 1 (all of the wall time: no pace). From the
        estimate ``e`` (default: ``estimate()``).

        The rest is the measured slowdown less the runs' part of it (c x the worker's share of
        wall time, plus the training thread's time for them), at slowdown S a slowdown of
        (c W + J) (1 + S); until the slowdown is measured, the monitor's own time in the steps
        and c x the widgets' share."""
        if self.budget >= 1:
            return math.inf
        e = self.estimate() if e is None else e
        c, slowdown = e["contention"], e["slowdown"]
        runs = c * e["worker_share"] + e["job_share"]
        if math.isfinite(slowdown):
            others = slowdown - runs * (1 + slowdown)
        else:
            own = e["own_share"] if math.isfinite(e["own_share"]) else 0.0
            others = own - e["job_share"] + e["widget_contention"] * e["widget_share"]
        # no floor (SPEC 5): a quarter of the budget at least kept a small ResNet's slowdown in
        # JupyterLab at 6.5% of its 5% while its frames took three quarters of the aim
        aim = AIM * self.budget
        return max(0.0, aim - others) / (1 + aim)

    def cost(self, worker_seconds: float, own_seconds: float = 0.0,
             e: dict | None = None) -> float:
        """What a run costs training, in seconds: c x its seconds on the worker, plus its
        seconds on the training thread (c from ``e``, default ``estimate()``)."""
        e = self.estimate() if e is None else e
        return e["contention"] * worker_seconds + own_seconds

    def credit(self, cap: float, rate: float, account: str = "runs") -> float:
        """The credit of ``account`` now, in training seconds: zero at its first call, then
        accruing at ``rate`` (its part of ``rate()``; at most to ``cap``), less what ``spend``
        took from it. The scheduler keeps one account per kind of run, so that a costly kind
        saving up for its run never holds up the others."""
        now = time.perf_counter()
        with self._lock:
            held = self._accounts.setdefault(account, [0.0, None])
            if math.isinf(rate):
                held[0] = cap
            elif held[1] is not None:
                held[0] = min(cap, held[0] + rate * (now - held[1]))
            held[1] = now
            return held[0]

    def held(self, account: str) -> float:
        """``account``'s credit as of its last ``credit`` or ``spend`` (nothing accrued since;
        0 before either)."""
        with self._lock:
            return self._accounts.get(account, (0.0,))[0]

    def spend(self, seconds: float, account: str = "runs") -> None:
        """A run cost training ``seconds`` (``cost``): taken off ``account``'s credit (which may
        go below zero: its next run waits until it has accrued back)."""
        with self._lock:
            # a spend before the account's first credit starts its clock: the credit accrues
            # from then (else the debt stood until a first look, with nothing accrued to it)
            self._accounts.setdefault(account, [0.0, time.perf_counter()])[0] -= seconds


def every_within(every: int, own_share: float, budget: float) -> int | None:
    """The multiple of ``every`` that brings the monitor's own time in the training steps (RWC,
    every ``every`` steps) down to half the budget, leaving the rest to the analyses; None when
    it is there already or not measured yet. The budget cannot pace this part: it is the
    work of each sample, on the training thread, which ``every`` sets."""
    if not math.isfinite(own_share) or own_share <= budget / 2:
        return None
    return every * math.ceil(own_share / (budget / 2))    # a multiple of every: 20, not 19


# The kinds of background work: the worker's analyses, the widgets' updates, and the run file's
# commits, which count in the quiet steps and the slowdown but in neither share (a headless run
# builds no frames: its widget share is 0)
_KINDS = {"widgets": 0, "worker": 1, "run": 2}

_NO_ESTIMATE = {"slowdown": math.nan, "minute_slowdown": math.nan, "bare": math.nan,
                "contention": math.nan,
                "widget_contention": math.nan,
                "worker_share": 0.0, "widget_share": 0.0, "own_share": math.nan, "job_share": 0.0,
                "steps": 0}


# What an estimate adds up over its steps (``_sums``): the steps, their seconds, the monitor's
# seconds in them and its part for the runs, the worker's and the widgets' CPU seconds inside
# them; the quiet steps and their seconds; the steps' bare seconds (``_local_bare``) and the
# steps with none (their chunk had too few quiet steps: the window's mean counts for them); for
# each kind's contention (the worker's, the widgets'), the steps it alone overlapped, their
# seconds, their bare seconds and those with none, and its CPU seconds inside them; and the same
# for the steps both overlapped ("both_"), with each kind's CPU seconds inside them
_SUMS = ("steps", "wall", "own", "jobs", "worker", "widgets", "quiet", "quiet_wall", "expected",
         "unreferenced",
         "worker_steps", "worker_wall", "worker_expected", "worker_unreferenced", "worker_in",
         "widget_steps", "widget_wall", "widget_expected", "widget_unreferenced", "widget_in",
         "both_steps", "both_wall", "both_expected", "both_unreferenced", "both_worker_in",
         "both_widget_in")


def _estimate(steps: np.ndarray, busy: np.ndarray, end: float, priors: dict,
              retired: np.ndarray, retired_minute: np.ndarray) -> dict:
    """The estimate over ``steps`` (rows of the ring, in order) within the window that ends at
    ``end``, plus the ``retired`` sums of older ones; and its "minute_slowdown", over the
    ``MINUTE`` that ends there (with ``retired_minute``, the sums of those that left the ring
    within it)."""
    since = end - SPAN
    if len(steps):
        since = min(since, steps[-min(len(steps), MIN_WINDOW_STEPS), 0])
    window = steps[:, 0] >= max(since, end - WINDOW_SECONDS)
    typical = np.median(steps[window, 1]) if window.any() else math.nan
    sums = _sums(steps[window], busy, typical)
    out = _from_sums(sums + retired, priors)
    # (the sums add up over steps apart: the minute's are the window's and those before it)
    before = _sums(steps[~window & (steps[:, 0] >= end - MINUTE)], busy, typical)
    out["minute_slowdown"] = _from_sums(sums + before + retired_minute, priors)["slowdown"]
    return out


def _sums(steps: np.ndarray, busy: np.ndarray, typical: float) -> np.ndarray:
    """``_SUMS`` over ``steps`` (in order) against the stretches of ``busy`` work; a step over
    ``BREAK`` x ``typical`` seconds is a break, left out."""
    steps = steps[steps[:, 1] <= BREAK * typical]
    out = np.zeros(len(_SUMS))
    if not len(steps):
        return out
    start, duration, overhead, sampled, for_jobs = steps.T
    end = start + duration
    any_busy = _overlap(busy, start, end)
    runs = busy[busy[:, 2] == _KINDS["worker"]]
    worker = _overlap(runs, start, end)
    worker_cpu = _cpu(runs, start, end)
    # the widgets' updates, by their CPU time as the worker's runs: what the delivery prices an
    # update by (``widgets.delivery``). Fitted per second of wall time, their contention priced
    # a CPU second at a fifth of its cost where updates waited for the GIL: a digits ResNet's
    # frames in JupyterLab took 3% of training against the 1% the delivery allows them, and the
    # worker was left nothing for 10 s
    updates = busy[busy[:, 2] == _KINDS["widgets"]]
    widgets = _overlap(updates, start, end)
    widgets_cpu = _cpu(updates, start, end)
    quiet = (any_busy < QUIET * duration) & (sampled == 0)
    local = _local_bare(duration, quiet)
    # the steps one kind alone overlapped, and those both did (for their contentions), not sampled
    ran, drawn = (sampled == 0) & (worker >= QUIET * duration), widgets >= QUIET * duration
    alone, shown_alone, both = ran & ~drawn, (sampled == 0) & drawn & ~ran, ran & drawn
    groups = ((alone, (worker_cpu,)), (shown_alone, (widgets_cpu,)),
              (both, (worker_cpu, widgets_cpu)))
    out[:] = (len(start), duration.sum(), overhead.sum(), for_jobs.sum(), worker_cpu.sum(),
              widgets_cpu.sum(), quiet.sum(), duration[quiet].sum(),
              np.nansum(local), np.isnan(local).sum(),
              *(value for steps, cpus in groups for value in (
                  steps.sum(), duration[steps].sum(), np.nansum(local[steps]),
                  np.isnan(local[steps]).sum(), *(cpu[steps].sum() for cpu in cpus))))
    return out


def _from_sums(sums: np.ndarray, priors: dict) -> dict:
    """The estimate from ``_sums``, each kind's contention pulled towards its ``priors`` entry
    ("worker_", "widget_")."""
    s = dict(zip(_SUMS, sums))
    out = dict(_NO_ESTIMATE, contention=priors["worker_"], widget_contention=priors["widget_"])
    if s["steps"] < 1 or s["wall"] <= 0:
        return out
    wall = s["wall"]
    out.update(steps=int(s["steps"]), own_share=float(s["own"] / wall),
               job_share=float(s["jobs"] / wall), worker_share=float(s["worker"] / wall),
               widget_share=float(s["widgets"] / wall))
    if s["quiet"] < MIN_QUIET:
        return out
    bare = float(s["quiet_wall"] / s["quiet"])

    def expected(kind: str) -> float:     # the steps' bare seconds
        return s[kind + "expected"] + s[kind + "unreferenced"] * bare

    # The steps both kinds overlapped: the worker's runs are charged there what the steps they
    # overlapped alone say their seconds cost (a run slows training by taking cores, alike in
    # every step), the widgets the rest. A panel's frame drawn from a run goes out as the run
    # ends, and the browser draws it in the steps the run overlapped; left out of both fits,
    # the dearest frames were nobody's: an architectures GPT's spectra, neurons and basins frames
    # (3 ms of the kernel's CPU) stalled the step after each of its first two rounds by 165 ms in
    # JupyterLab, where its status lines, alone, priced a frame's CPU second at 13
    worker = _contention(s["worker_steps"], s["worker_wall"], expected("worker_"), s["worker_in"],
                         bare, priors["worker_"])
    extra = s["both_wall"] - expected("both_")
    charged = {"worker_": min(max(extra, 0.0), worker * s["both_worker_in"])}
    charged["widget_"] = extra - charged["worker_"]
    contention = {kind: _contention(
        s[kind + "steps"] + s["both_steps"], s[kind + "wall"] - expected(kind) + charged[kind],
        0.0, s[kind + "in"] + s["both_" + kind + "in"], bare, priors[kind]) for kind in charged}
    out.update(bare=bare, slowdown=float(wall / expected("") - 1),
               contention=contention["worker_"], widget_contention=contention["widget_"])
    return out


def _local_bare(duration: np.ndarray, quiet: np.ndarray) -> np.ndarray:
    """Each step's bare time: the mean of the ``LOCAL_QUIET`` quiet steps nearest it in order
    (NaN where there is none). The bare step drifts, and the first steps of a run are slow
    whatever the monitor does (allocations, kernels chosen on their first call): measured
    against the whole window's mean, the slow first steps that sampled (the calibration samples
    every fourth) or met a frame were the monitor's, and an architectures GPT's first second
    read as 3.8% of its 12 s run. NaN everywhere where fewer than ``MIN_QUIET`` steps are
    quiet: a few quiet steps (at the tail of a worker's run, among the steps that left the ring
    at one read) would set the bare time of all."""
    times = duration[quiet]
    if len(times) < MIN_QUIET:
        return np.full(len(duration), np.nan)
    sums = np.concatenate(([0.0], np.cumsum(times)))
    # the quiet steps before each step, and so the run of LOCAL_QUIET around it
    before = np.cumsum(quiet) - quiet
    lo = np.clip(before - LOCAL_QUIET // 2, 0, max(0, len(times) - LOCAL_QUIET))
    hi = np.minimum(lo + LOCAL_QUIET, len(times))
    return (sums[hi] - sums[lo]) / (hi - lo)


def _contention(steps: float, seconds: float, expected: float, inside: float, bare: float,
                prior: float) -> float:
    """Training seconds lost per second of one kind of background work, from the ``steps`` it
    overlapped and the other kind did not (``seconds`` long, ``expected`` of them bare,
    ``inside`` of them its own): their extra time over its time inside them, pulled towards
    ``prior`` as if ``PRIOR_WEIGHT`` more such steps had shown it (each with at most a bare
    step, ``bare`` s, of that work). Fitted per kind: a widget frame also costs the browser's
    drawing and the server's relay, on the same cores, which the kernel cannot time (a status
    line's update took Chromium 17 ms on two cores, the kernel 1 ms), and one contention for
    both charged the worker for the frames.

    The prior weighs as steps, not as a fixed time of background work: a frame takes the kernel
    a fraction of a step (an architectures GPT's took 1-2 ms of CPU in 13 ms steps and cost them
    40-55 ms each in JupyterLab). Weighed as 5 bare steps' worth of CPU time, the prior of 2
    outweighed the 12 that its 41 steps showed over the whole 10 s run: its frames were priced
    at a fifth of their cost and took 7.7% of training."""
    if steps < 1 or inside <= 0:
        return float(prior)
    weight = PRIOR_WEIGHT * min(bare, inside / steps)
    return float(max(0.0, (seconds - expected + prior * weight) / (inside + weight)))


def _overlap(busy: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Seconds of each step [start, end) covered by the union of the busy stretches; the steps
    in time order, none overlapping the next (as training makes them)."""
    if not len(busy):
        return np.zeros(len(start))
    order = np.argsort(busy[:, 0])
    lo, hi = busy[order, 0], np.maximum.accumulate(busy[order, 1])
    # merge overlapping stretches (threads run side by side): a new run starts where lo > the
    # furthest end so far
    new = np.concatenate(([True], lo[1:] > hi[:-1]))
    run = np.cumsum(new) - 1
    run_lo = lo[new]
    run_hi = np.zeros(run[-1] + 1)
    np.maximum.at(run_hi, run, hi)
    return _spread(run_lo, run_hi, np.ones(len(run_lo)), start, end)


def _cpu(busy: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """CPU seconds of the busy stretches inside each step (each stretch's CPU time spread evenly
    over its wall time; stretches side by side add up)."""
    lo, hi, cpu = busy[:, 0], busy[:, 1], busy[:, 3]
    density = np.divide(cpu, hi - lo, out=np.zeros(len(lo)), where=hi > lo).clip(0, 1)
    return _spread(lo, hi, density, start, end)


def _spread(lo, hi, weight, start, end) -> np.ndarray:
    """Sum over the stretches [lo, hi) of their overlap with each step times their ``weight``;
    the steps in time order, none overlapping the next."""
    # each stretch's steps (each overlaps it), from the first that ends after it begins to the
    # last that begins before it ends: a few hundred pairs, where every step against every
    # stretch took a third of an estimate
    first = np.searchsorted(end, lo, side="right")
    # (-1 where an empty stretch meets an empty step: a clock that did not tick between them)
    count = np.maximum(np.searchsorted(start, hi, side="left") - first, 0)
    of = np.repeat(np.arange(len(lo)), count)
    step = np.arange(count.sum()) + np.repeat(first - (np.cumsum(count) - count), count)
    seconds = np.minimum(end[step], hi[of]) - np.maximum(start[step], lo[of])
    return np.bincount(step, weights=seconds * weight[of], minlength=len(start))
