"""Heavier analyses for the monitor: run on a copy of the model, in the background, in budget.

Offered at every training step (a glance at one number until a run may start): paced, so that
how often the panels refresh does not depend on how often RWC is sampled; unpaced (a budget of
1), each analysis runs once after each RWC sample, at the first step the worker is free, so that
``every`` says how often. Whose turn it is: the
analysis that has waited longest, in rounds of those the panels refresh from, the others
(clusters, basins, phases, findings) every ten rounds. Nothing is exempt from the budget (SPEC
5, wave 3): a run starts only when its account's credit (``pacing.Pacer.credit``, accruing at
its part of the rate the measured slowdown leaves) covers its estimated cost, and what it really
cost is taken off when it ends: c x its worker seconds (on the worker's clock: its CPU time, or
on CUDA its wall time) plus the refresh of the copy, which runs
on the training thread. The panels' analyses share one account, each of the others (which only add
to a panel or sum up) has its own, so that a costly run saving up holds no other run. A panel's
run overdue for its refresh target may borrow from its account's next accrual, one target's
worth at most (``DUE``): while the account has that slack, a run that cost more than usual does
not delay the round. The
libraries the analyses import are imported when the monitor is made, before training, so that
no step pays for them.

Live sizes. Each analysis whose runner scales its work (the registry's ``sized``; sharpness,
phases and findings do not, and always run whole) runs at a size, a fraction (1, 1/2, ...
``MIN_SIZE``) of its full live work (units, samples, directions, leading values: each runner
says what; ``Job.size``), so that one round of every analysis fits the refresh target
(``refresh_target``: 2.5 s for a small model, 10 s for a 10M-parameter one) within the budget:
it starts at the smallest (``FIRST_SIZE``) and is doubled while twice its last run's cost fits
its share of a round (``GROWTH`` times at most), halved as often as a run that did not fit it
needs (down to ``MIN_SIZE``). A runner's notes (what it reduced) are kept once its size has
settled, and from the final round. With a budget of 1 (no pace) every run is at full size.

The model is copied once; each run refreshes the copy's tensors in place (a memcpy on the
weights' device, on the training thread) and analyses the copy, so training goes on changing
the original meanwhile. On CUDA nothing here waits for the device: the refresh is queued on the
training stream and marked with an event; the run waits for that event on the worker's own
stream and marks its end with another, which the next refresh waits for (on the device).

What each analysis needs, records and costs is in the registry (``runs.analyses``), what it
computes in its runner (``jobs``, ``dynamics_jobs``); this module schedules them.

Faults. An analysis that raises ``UnsupportedModel`` (the model is outside what it can compute)
is switched off for the model, with a notice. Any other exception is a fault (a bug, a transient
out-of-memory): reported in ``monitor.errors`` at the step analysed, and the analysis is retried,
skipping 1, 2, 4, ... (at most ``MAX_BACKOFF``) of its turns after consecutive faults.
"""

from __future__ import annotations

import copy
import importlib
import math
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager

import torch
from torch import nn

from ..analysis.errors import NonFiniteValues, UnsupportedModel
from ..runs.analyses import BACKGROUND, REGISTRY
from ..runs.analyses import analysis as entry
from .jobs import NOTES, STEP, Job
from .worker import Abandoned, Worker, time_left

MAX_BACKOFF = 32             # turns skipped at most after consecutive faults of one analysis
# The credit's accounts: one for the panels' analyses (a spectrum, a radiograph, ...), which go
# round in turn, and one for each of the others, which only add to a panel or sum up (clusters,
# basins, phases, findings, sharpness). While both kinds have one ready the others' accounts
# accrue this share of the rate between them, the panels' the rest. (With one account a costly
# run saving up, clusters' 0.15 s of scikit-learn on a small MLP, held every panel until its
# credit came: panels stood still for 4-5 s; with one account for the others, a basins trial's
# debt held the clusters and findings for 20-40 s.)
PANELS = "panels"
OTHERS_SHARE = 0.25
# ... and this share while a panel's run is overdue (``DUE``): a panel's refresh is the promise
# (SPEC 5), the others only add to a panel or sum up. (At a quarter, on a small MLP in
# JupyterLab on a slow host, a round of the panels at their smallest size cost more than three
# quarters of the rate paid for in the refresh target: every 2.5 s on average, at most 4.4-8.7 s.)
OTHERS_BEHIND = 0.1
# A costly analysis (the registry's ``costly``: many passes a run) is on by default only where
# it fits the budget: where its account's credit for a run comes at least once in this many
# seconds. It is tried first: switched off when a trial is stopped at what that allows (a 10M
# CNN's sharpness took 8.7 s a run); each later run is checked by what it took. (Estimates made
# before a first run from the other analyses' costs were tens of times too high on a small MLP,
# whose passes cost mostly their overhead, and switched basins off there.)
OPTIONAL_MAX_PERIOD = 30.0
# A trial waits for its credit as any run does (nothing is exempt from the budget, SPEC 5): it
# may take what its account holds, the first time what any other analysis's run takes, then
# TRIAL_GROWTH times more after each trial stopped short of the whole allowance, until it ends
# or is stopped there. (A trial that took the whole allowance at once, 0.2 s of basins on a
# digits ResNet 2 s into training, held the measured slowdown at 10-16% for the next 10 s in
# JupyterLab, its panels still; a 10M CNN's first 10 s ran 1.13x slower, the basins' and
# sharpness's trials in them.) A trial stopped short costs what it took, a third of the last
# one's at most in all.
TRIAL_GROWTH = 4.0
FIRST_TRIAL = 0.02           # s at least for a first trial (before any other run is known)
# Paced, an analysis runs at most once in this many seconds: a cheap one (weight alignment takes
# a millisecond) would otherwise fill the history with samples no panel can show apart
MIN_INTERVAL = 1.0
# The smallest live size: at 1/64 a ResNet-18's round still took 0.63 s on the worker, its
# panels moved every 20-30 s against 10 (below it the maps take their units in turns, the
# radiographs and spectra fewer layers a run) ...
MIN_SIZE = 1 / 256
# ... and the first, from which a size grows (a first round at 1/64 took a ResNet-18's worker
# 0.6 s, the panels' credit for 20 s after it: its radiograph came 15 s after its spectrum);
# at most this many doublings a run, so that a cost growing faster than the size is seen
# before it overshoots far
FIRST_SIZE = MIN_SIZE
GROWTH = 2
# Turns go round by weight: 1 for the analysis a panel refreshes from (the first of its panel
# in the registry: a spectrum, a radiograph, ...), this much for those that add to a panel or
# sum up the others (clusters, basins, phases, findings, sharpness), which so run every ten
# rounds (at a quarter, clusters and sharpness, 30 ms each on a small MLP, took half of the
# worker's time, and its panels moved every 2.5-4 s)
SLOW_WEIGHT = 0.1
# A panel's analysis that has waited this share of the refresh target since its last start may
# run before its account's credit covers it, borrowing against the account's next accrual: at
# most one target's worth, so that its debt stays above -rate x target (a round costs what it
# cost, give or take one round). Without it a run that cost more than usual delayed the whole
# round: on a small MLP in JupyterLab runs took 2-14 ms of wall time (1-3.5 ms alone: the
# training thread held the GIL), the rounds came every 1.3 s, the longest gaps 2.2-7.6 s
DUE = 0.6
RECHECK = 0.05               # s between looks while nothing can start (paced)
MAX_WAIT = 1.0               # s at most before the credit is looked at again (its rate changes)
STALE = 2.0                  # s after which the worker re-estimates the pace for the next look
# A copy refreshed less than this share of the refresh target ago serves the next run as it is
# (at the step it holds): the analyses of a round share one refresh
RECOPY = 0.25
# Refresh targets (SPEC 5): a round of every panel within 2.5 s on a small model, 10 s on a
# 10M-parameter one; in between, geometrically with the parameter count.
SMALL, LARGE = (1e6, 2.5), (1e7, 10.0)
# The live sizes are chosen for a round in this share of the target: the target bounds the
# longest gap between a panel's frames, and the gaps spread to about twice their mean (rounds
# sized to the whole target came every 1.5 s, the longest gaps 3.3-4.5 s: a run's seconds on
# the worker vary with the training thread's hold on the GIL)
ROUND_AIM = 0.5

# The background analyses, in the order they are offered (the registry's, ``runs.analyses``).
# A runner takes a ``Job`` and returns {analysis: {layer: array}}, each recorded in the history
# under its analysis at the step offered, or at results[STEP]; under NOTES, {layer or module:
# message} for what the model's structure leaves out or approximates, or what its live size
# left out, kept once each in monitor.notices.
HEAVY = BACKGROUND

_PACKAGE = __package__.rpartition(".")[0]      # the registry names functions under it
PACE = "pace"                # the worker's job that renews the pace's estimate


def resolve(ref: str) -> Callable:
    """The function a registry entry names (``"live.jobs:spectrum"``), looked up at each call:
    always the module's current one."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(f"{_PACKAGE}.{module}"), name)


def refresh_target(parameters: int) -> float:
    """Seconds within which a round of every analysis should refresh its panel."""
    (p0, t0), (p1, t1) = SMALL, LARGE
    if parameters <= p0:
        return t0
    if parameters >= p1:
        return t1
    return t0 * (t1 / t0) ** (math.log(parameters / p0) / math.log(p1 / p0))


class HeavyAnalyses:
    """The background analyses ``names`` of ``monitor``; those in ``optional`` (the default
    analyses, not asked for by name) that the registry calls costly run only where the budget
    allows them (``OPTIONAL_MAX_PERIOD``)."""

    def __init__(self, monitor, names, optional=()):
        self.monitor = monitor
        self.names = list(names)
        self.optional = {name for name in optional if entry(name).costly}
        device = next((p.device for p in monitor.model.parameters() if p.is_cuda), None)
        self._stream = None if device is None else torch.cuda.Stream(device)
        # What a run costs is timed by the worker thread's CPU clock: waiting for the GIL or a
        # core costs training nothing (on a small MLP in JupyterLab a run waited 30 ms for 3 ms
        # of work, and its wall time held the panels 5-7 s); on CUDA by the wall clock, as the
        # device's work is what competes with training there, and no CPU clock sees it.
        self.clock = time.thread_time if self._stream is None else time.perf_counter
        # One intra-op thread for the worker (a per-thread setting): a second thread team
        # spinning beside the training loop's made both several times slower on few cores.
        self.worker = Worker(on_error=lambda name, exc: monitor.report(name, exc),
                             on_start=lambda: torch.set_num_threads(1),
                             begin=lambda: monitor.pacer.begin("worker", self.clock),
                             end=monitor.pacer.end)
        self.target = refresh_target(sum(p.numel() for p in monitor.model.parameters()))
        self.deferred = 0          # looks at which a run was due but the credit did not cover it
        self._tried: set[str] = set()    # optional costly analyses whose trial ended
        self._allowance: dict[str, float] = {}   # ... the worker s of the next trial, once one
                                                 # was stopped short
        self._started: dict[str, float] = {}  # name -> perf_counter time of its last start
        self._faults: dict[str, int] = {}   # name -> consecutive faults (reset by a run that works)
        self._skips: dict[str, int] = {}    # name -> its turns still to skip (backoff)
        self._noted: set[tuple] = set()   # notes already in monitor.notices
        self._analysed: dict[str, int] = {}   # name -> the step of its newest run
        self._sample_step: int | None = None  # unpaced: the newest RWC sample's step
        self._sizes: dict[str, float] = {}    # name -> its live size (paced)
        self._last: dict[str, tuple[float, float]] = {}   # name -> (size, its s on the clock)
        self._copy_seconds = 0.0   # the copy's last refresh, on the training thread
        self._panels_ready = 0       # the panels' analyses ready at the last look
        self._panels_behind = False  # ... one of them overdue then (``_due_in``)
        self._others_ready: dict[str, float] = {}   # the others ready then -> next run's s
        self._abandoned = False    # closed with a run still going: its results are not wanted
        self.not_before = 0.0      # perf_counter time before which offers are not looked at (the
                                   # monitor skips the call until then)
        self._copy: nn.Module | None = None
        self._pairs: tuple[list, list] | None = None   # (copy's tensors, model's tensors)
        self._copied: tuple[float, int, object] | None = None   # when, the step, CUDA event
        self._released = None      # CUDA: the event after the last run on the worker's stream
        self._import_ahead()

    @property
    def paced(self) -> bool:
        return self.monitor.budget < 1

    def _import_ahead(self) -> None:
        """The libraries the analyses import, imported now, before training (1.3 s of importing
        scikit-learn in the background slowed the first seconds of training by more than the
        budget allows a minute)."""
        needs = {}
        for name in self.names:
            for module in entry(name).imports:
                needs.setdefault(module, name)
        for module, name in needs.items():
            try:
                importlib.import_module(module)
            except ImportError as exc:     # the analysis itself will report it
                self.monitor.report_notice("schedule", None, f"not imported ahead: {exc}")
            except Exception as exc:       # (importing at interpreter exit): not the monitor's end
                self.monitor.report(name, exc)

    def _rate(self, account: str, rate: float) -> float:
        """``account``'s part of ``rate`` (``Pacer.rate``): ``OTHERS_SHARE`` to the others ready
        and still saving up for their next run while the panels have one ready too
        (``OTHERS_BEHIND`` while one of the panels' is overdue; else all of it to the kind that
        has), shared in proportion to their last runs' seconds: each comes
        round once in the same time, as in a round of turns, and a costly one's debt delays only
        itself."""
        others = self._others_ready
        share = (0.0 if not others else 1.0 if not self._panels_ready
                 else OTHERS_BEHIND if self._panels_behind else OTHERS_SHARE)
        if account == PANELS:
            return rate * (1 - share)
        return rate * share * others.get(account, 0.0) / (sum(others.values()) or 1.0)

    def _seconds(self, name: str) -> float:
        """The worker seconds ``name``'s next run will take: a trial's, what it may take
        (``_trial_limit``); its last run's, scaled to its size; before its first, the median of
        the last runs of every analysis that is not costly (0 before any run). So first runs wait
        for credit as the others do: with nothing asked of them, each account's first run went
        at once, and a ResNet's first 18 s took 6% of training for the worker alone."""
        limit = self._trial_limit(name)
        if limit is not None:
            return limit
        if name in self._last:
            size, took = self._last[name]
            return took * self._size(name) / size
        return self._first_seconds()

    def _first_seconds(self) -> float:
        """An analysis's first run, guessed: the median of the last runs of every analysis that
        is not costly, scaled to their sizes (0 before any run)."""
        known = [took * self._size(n) / size for n, (size, took) in self._last.items()
                 if not entry(n).costly]
        return statistics.median(known) if known else 0.0

    def _period(self, seconds: float, copy_seconds: float = 0.0) -> float:
        """Seconds the others' accounts together take to earn a run of this cost at the whole
        budget (the most the pace allows; the rate now dips while the panels draw, and a
        switch-off is for good)."""
        pacer = self.monitor.pacer
        e, _ = pacer.latest()          # read on the training thread too: computes nothing
        budget = pacer.budget
        rate = math.inf if budget >= 1 else OTHERS_SHARE * budget / (1 + budget)
        return pacer.cost(seconds, copy_seconds, e) / rate

    def _trial_limit(self, name: str) -> float | None:
        """The worker seconds a costly analysis's trial may take, as wall time (at least its
        seconds on the worker's clock): its allowance (``TRIAL_GROWTH``), at most the longest
        run that fits ``OPTIONAL_MAX_PERIOD`` (``_whole_trial``); None once a trial has ended,
        and for any other run."""
        if not self.paced or name not in self.optional or name in self._tried:
            return None
        # the first: a run's worth; after a trial stopped short, what ``_run`` grew it to
        allowance = self._allowance.get(name) or max(self._first_seconds(), FIRST_TRIAL)
        return min(allowance, self._whole_trial())

    def _whole_trial(self) -> float:
        """The longest run of a costly analysis that fits ``OPTIONAL_MAX_PERIOD`` (worker
        seconds, the copy's refresh excluded)."""
        period = self._period(1.0)
        # (a contention measured at 0, the worker's steps no slower than the quiet ones around
        # them: any run fits; dividing by it stopped an architectures GPT's scheduling with 120
        # ZeroDivisionErrors in JupyterLab)
        return OPTIONAL_MAX_PERIOD / period if period > 0 else math.inf

    def _switch_off_optional(self, name: str, cost: float, period: float, took: str) -> None:
        self.names = [n for n in self.names if n != name]
        self.monitor.report_notice(name, None, (
            f"off by default for this model: one run {took} {cost:.1f} s, so within the budget "
            f"it could run once in {period:.0f} s; Monitor(analyses=(..., {name!r})) runs it "
            "all the same"))

    def _ready(self, name: str) -> bool:
        described = entry(name)
        if described.needs_probe and self.monitor.probe is None:
            return False
        return described.ready is None or resolve(described.ready)(self.monitor)

    def _since_sample(self, name: str) -> bool:
        """Paced, always; unpaced, whether ``name`` has not run since the newest RWC sample."""
        if self.paced:
            return True
        return self._sample_step is not None and self._analysed.get(name, -1) < self._sample_step

    def _size(self, name: str) -> float:
        """The live size of ``name``'s next run: 1 unpaced, or for a runner that does not scale
        its work (the registry's ``sized``)."""
        return self._sizes.get(name, FIRST_SIZE) if self.paced and entry(name).sized else 1.0

    def offer(self, step: int, sampled: bool = False) -> float:
        """Start the run whose turn it is at training step ``step`` (``sampled``: one that
        recorded an RWC sample), if any may start now; the seconds its copy's refresh took here
        (0 when none started)."""
        if sampled:
            self._sample_step = step
        now = time.perf_counter()
        if now < self.not_before:
            return 0.0
        ready = [n for n in self.names if self._ready(n) and self._since_sample(n)]
        if not ready or not self.worker.idle:
            self.not_before = now + RECHECK if self.paced else 0.0
            return 0.0
        turns = self._turns(ready)
        if not self.paced:
            name = next(turns, None)
            return 0.0 if name is None else self._start(name, step)
        # the last estimate of the pace (the training thread never computes one: over a full
        # window that takes milliseconds); a stale one is renewed on the worker
        pacer = self.monitor.pacer
        e, age = pacer.latest()
        if age > STALE:
            self.worker.offer(PACE, self._renew_pace)
            return 0.0
        # the accounts' shares (``_rate``): the others ready weighed by their runs' seconds,
        # those whose account holds their next run's cost already left out: saved up, they
        # wait for their turn, and what they would accrue meanwhile (lost at their cap) goes to
        # the panels
        self._panels_ready = sum(_account(n) == PANELS for n in ready)
        self._panels_behind = any(self._due_in(n, now) <= 0 for n in ready)
        self._others_ready = {n: max(self._seconds(n), 1e-4) for n in ready
                              if _account(n) != PANELS
                              and pacer.held(_account(n)) < self._need(n, e)}
        total = pacer.rate(e)
        waits = {}                          # account -> s until its credit covers its turn
        for name in turns:
            account = _account(name)
            if account in waits:            # in turn within an account: its first one waits
                continue
            need, rate = self._need(name, e), self._rate(account, total)
            credit = pacer.credit(max(need, rate * self.target / _weight(name)), rate, account)
            due_in = self._due_in(name, now)
            lowest = -rate * self.target if due_in <= 0 else 0.0   # overdue: it may borrow
            if credit - need >= lowest:
                return self._start(name, step)
            self.deferred += 1
            waits[account] = MAX_WAIT if rate <= 0 else min(
                MAX_WAIT, (need + lowest - credit) / rate, due_in if due_in > 0 else math.inf)
        # looked at again when an account's credit comes, or one that ran just now may run again
        soon = [self._started[n] + MIN_INTERVAL - now for n in ready
                if now - self._started.get(n, -math.inf) < MIN_INTERVAL]
        self.not_before = now + max(RECHECK, min([*waits.values(), *soon], default=RECHECK))
        return 0.0

    def _due_in(self, name: str, now: float) -> float:
        """Seconds until ``name``'s run is overdue (``DUE`` x the target after its last start;
        at once before its first), when it may borrow credit; inf for an analysis no panel
        refreshes from."""
        if _account(name) != PANELS:
            return math.inf
        return self._started.get(name, -math.inf) + DUE * self.target - now

    def _need(self, name: str, e: dict) -> float:
        """The training seconds the next run of ``name`` will cost (at the estimate ``e``): its
        worker seconds (``_seconds``) and the copy's refresh."""
        copying = self._copy_seconds if entry(name).needs_model and self._copy_due() else 0.0
        return self.monitor.pacer.cost(self._seconds(name), copying, e)

    def _copy_due(self, step: int | None = None, fresh: bool = False) -> bool:
        """Whether a run (at ``step``) needs the copy refreshed: unless it holds that step's
        weights, or (paced, not ``fresh``) was refreshed less than ``RECOPY`` x the target ago."""
        if self._copied is None:
            return True
        when, copied_step, _ = self._copied
        recent = self.paced and not fresh and time.perf_counter() - when < RECOPY * self.target
        return copied_step != step and not recent

    def _renew_pace(self) -> None:
        """On the worker: a fresh estimate of the pace, its time paid from the credit."""
        begun = self.clock()
        pacer = self.monitor.pacer
        e = pacer.estimate()
        pacer.spend(pacer.cost(self.clock() - begun, e=e), PANELS)

    def _start(self, name: str, step: int, fresh: bool = False) -> float:
        """Hand ``name``'s run at ``step`` to the worker, on the model's copy: refreshed now
        when due (``_copy_due``), else at the step it holds; the seconds the refresh took.
        ``fresh``: the final round's (the copy holds the step's own weights; ``Job.final``)."""
        monitor = self.monitor
        self.not_before = math.inf          # until the run ends
        copied, model, event = 0.0, None, None
        if entry(name).needs_model:
            if self._copy_due(step, fresh):
                begun = time.perf_counter()
                model, event = self._refresh()
                copied = self._copy_seconds = time.perf_counter() - begun
                monitor.pacer.spend(copied, _account(name))
                self._copied = (time.perf_counter(), step, event)
            else:
                model, (_, step, event) = self._copy, self._copied
        self._analysed[name] = step
        job = Job(model=model, probe=monitor.probe, history=monitor.history, step=step,
                  report=lambda layer, exc: monitor.report(name, exc, layer=layer, step=step),
                  optimizer=monitor.optimizer_settings, size=self._size(name), final=fresh)
        limit = self._trial_limit(name)
        if not self.worker.offer(name, lambda: self._run(name, job, time.time(), event, limit)):
            self.not_before = 0.0
        return copied

    def _turns(self, ready: list[str]):
        """The analyses ready, in turn: the one that has waited longest since its last start
        first (never: first, the panels' in the registry's order, then the others'), the wait
        of one that only adds to a panel or sums up the others counting a tenth
        (``SLOW_WEIGHT``): a round of the panels' analyses, the others every ten rounds. Paced,
        one that started less than ``MIN_INTERVAL`` ago is passed (a cheap one would fill the
        history with samples no panel can tell apart); one backing off after faults is passed,
        its turn counted down (as the turns are taken: lazily)."""
        now = time.perf_counter()

        def waited(name: str) -> tuple[float, float]:
            # never run: first, those a panel refreshes from before the others (a first clusters
            # run, 0.1 s of scikit-learn, must not hold up every panel's first frame)
            return (now - self._started.get(name, -math.inf)) * _weight(name), _weight(name)

        for name in sorted(ready, key=waited, reverse=True):   # stable: ties in their order
            if self.paced and now - self._started.get(name, -math.inf) < MIN_INTERVAL:
                continue
            if self._skips.get(name, 0) > 0:
                self._skips[name] -= 1
                continue
            yield name

    def _run(self, name: str, job: Job, when: float, copied, limit: float | None = None) -> None:
        """``name``'s run of ``job`` on the worker; a trial (``limit``: ``_trial_limit``) is
        stopped after that many seconds."""
        start = self._started[name] = time.perf_counter()
        begun = self.clock()
        settled, cut = True, False
        first = name not in self._last
        try:
            with self.worker.cuttable(limit), self._on_stream(copied):   # abandoned: stopped
                results = resolve(entry(name).runner)(job)
            if self._abandoned:
                return
            step = results.pop(STEP, job.step)
            notes = results.pop(NOTES, {})
            for analysis, values in results.items():
                self.monitor.history.record(analysis, step, when, values)
            self._faults.pop(name, None)
            settled = self._resize(name, job.size, self.clock() - begun)
            # (the final round's are the last word, settled or not: a short run's sizes may
            # still be moving at its end, and its panels showed no note at all)
            for layer, message in notes.items() if settled or job.final else ():
                if (name, layer, message) not in self._noted:
                    self._noted.add((name, layer, message))
                    self.monitor.report_notice(name, layer or None, message)
        except UnsupportedModel as exc:
            # the model is outside what this analysis can compute: stop offering it
            self.names = [n for n in self.names if n != name]   # rebound: offer() may read
            self.monitor.report_notice(name, None, f"switched off for this model: {exc}")
        except NonFiniteValues as exc:
            # with non-finite weights, already flagged (monitor.nonfinite): that, not a fault
            if not self.monitor.nonfinite:
                self._fault(name, exc, job.step)
        except Exception as exc:
            self._fault(name, exc, job.step)
        except Abandoned:
            cut = not self._abandoned       # a trial that took too long (else: detached)
            if not cut:
                raise
        finally:
            seconds, spent = time.perf_counter() - start, self.clock() - begun
            # a trial stopped short of the whole allowance is tried again with more
            short = cut and limit is not None and limit < self._whole_trial()
            if limit is not None and not cut:
                self._tried.add(name)
            elif short:
                self._allowance[name] = limit * TRIAL_GROWTH
            self._last[name] = (job.size, spent)
            pacer = self.monitor.pacer
            # the last estimate, renewed by its own job when stale (``_renew_pace``): renewed at
            # the end of a run whenever half a second old, its 1-3 ms took a quarter of the
            # worker's time on a small MLP in JupyterLab, and the panels moved every 1.7 s, at
            # most 3.4 s apart (1.1-1.4 s, at most 1.7 s, without)
            e, _ = pacer.latest()
            pacer.spend(pacer.cost(spent, e=e), _account(name))
            # (a trial stopped at its limit, wall time, is priced by that: it did not end)
            period = self._period(seconds if cut else spent,
                                  self._copy_seconds if job.model is not None else 0.0)
            # (a run above the smallest size is made smaller first: ``_resize``; a first run,
            # at the smallest as every first run is, costs a run or two's warm-up more)
            smallest = not entry(name).sized or (job.size <= MIN_SIZE and not first)
            if (self.paced and name in self.optional and (cut or smallest) and not short
                    and period > OPTIONAL_MAX_PERIOD and not self._abandoned):
                self._switch_off_optional(name, seconds, period,
                                          "was stopped after" if cut else "took")
            self.not_before = 0.0
        if not self._abandoned:
            self.monitor.notify()

    def _resize(self, name: str, size: float, seconds: float) -> bool:
        """After a run of ``name`` at ``size`` that took ``seconds`` on the worker: its next size,
        halved as often as it takes to fit (at least once) when the run did not fit its share of
        a round (its account's rate over a round, ``ROUND_AIM`` x ``target`` for the panels' and
        ten times that for the others', shared by the analyses ready in it, less the copy's
        refresh), doubled while twice it would fit (as often as it would, ``GROWTH`` times at
        most); whether it stays (settled)."""
        if not self.paced or not entry(name).sized:
            return True
        pacer = self.monitor.pacer
        e, _ = pacer.latest()
        copying = self._copy_seconds if entry(name).needs_model else 0.0
        account = _account(name)
        shared = self._panels_ready if account == PANELS else 1   # a round of the panels'
        share = (ROUND_AIM * self.target / _weight(name) * self._rate(account, pacer.rate(e))
                 / max(shared, 1))
        allowed = (share - copying) / max(pacer.cost(1.0, e=e), 1e-9)    # worker seconds
        new = size
        if seconds > allowed and size > MIN_SIZE:
            # at once to the size that would have fitted (halving run by run took a ResNet-18's
            # panels from 1/64 to the smallest in two rounds, 16 s of its first 25); halved once
            # while the pace leaves nothing, which says nothing of the size that fits (a run
            # that ended at one reading over the aim would go to the smallest)
            over = math.ceil(math.log2(seconds / allowed)) if allowed > 0 else 1
            new = max(MIN_SIZE, size / 2 ** min(over, 64))
        elif allowed > 0 and 2 * seconds <= 0.9 * allowed and size < 1:
            fits = math.floor(math.log2(0.9 * allowed / seconds)) if seconds > 0 else GROWTH
            new = min(1.0, size * 2 ** min(fits, GROWTH))
        self._sizes[name] = new
        return new == size

    @contextmanager
    def _on_stream(self, copied):
        """On CUDA, the run on the worker's own stream, after the copy's refresh (``copied``, an
        event on the training stream) and marked done for the next refresh: the device waits,
        never the host. Elsewhere nothing."""
        if self._stream is None:
            yield
            return
        if copied is not None:
            self._stream.wait_event(copied)
        try:
            with torch.cuda.stream(self._stream):
                yield
        finally:
            released = torch.cuda.Event()
            released.record(self._stream)
            self._released = released

    def _fault(self, name: str, exc: BaseException, step: int) -> None:
        """A fault (a bug, a transient out-of-memory), shown as an error at the step analysed;
        the analysis is retried after 1, 2, 4, ... of its turns."""
        self.monitor.report(name, exc, step=step)
        faults = self._faults.get(name, 0) + 1
        self._faults[name] = faults
        self._skips[name] = min(2 ** (faults - 1), MAX_BACKOFF)

    def _refresh(self) -> tuple[nn.Module, object]:
        """The model's copy with the current weights and buffers, and on CUDA the event that
        marks the refresh on the training stream (None elsewhere)."""
        model = self.monitor.model
        tensors = [t.detach() for t in (*model.parameters(), *model.buffers())]
        cuda = self._stream is not None
        if cuda and self._released is not None:    # the last run's reads come first
            torch.cuda.current_stream(self._stream.device).wait_event(self._released)
        if self._pairs is None or len(tensors) != len(self._pairs[1]) or any(
                a.shape != b.shape for a, b in zip(tensors, self._pairs[1])):
            # first use, or the model changed shape: copy the whole module anew
            self._copy = _copy_without_hooks(model).eval().requires_grad_(False)
            self._pairs = ([t.detach() for t in (*self._copy.parameters(), *self._copy.buffers())],
                           tensors)
        else:
            with torch.no_grad():
                torch._foreach_copy_(self._pairs[0], tensors)
            self._pairs = (self._pairs[0], tensors)
        if not cuda:
            return self._copy, None
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self._stream.device))
        return self._copy, event

    def flush(self, timeout: float | None = None) -> bool:
        return self.worker.flush(timeout)

    def final_round(self, step: int, deadline: float | None) -> None:
        """Once more every analysis on the weights of ``step``, the last, so that the run ends
        with the trained model's: each ready one not yet run at ``step``, the cheapest first
        (by its last run; one that never ran in the registry's order, after them), so that as
        many as the time allows get in; then those that sum up the others (the phases; again,
        for what the round added); as far as ``deadline`` (``time.monotonic``) allows."""
        cost = self.worker.last_cost
        # the others by cost; those that sum up in the registry's order (the findings read the
        # phases)
        for name in sorted(self.names, key=lambda n: (entry(n).last, BACKGROUND.index(n)
                                                      if entry(n).last else cost.get(n, math.inf))):
            if not self.worker.flush(time_left(deadline)):
                return
            again = entry(name).last or self._analysed.get(name) != step
            if name in self.names and again and self._ready(name):
                self._start(name, step, fresh=True)
        self.worker.flush(time_left(deadline))

    def close(self, timeout: float | None = None, grace: float = 0.0) -> str | None:
        """Stop the worker, waiting at most ``timeout`` for the run in hand (then it is stopped,
        and the worker's thread gets ``grace`` more seconds to end); the name of the analysis
        abandoned, None when none was. An abandoned run's results are dropped."""
        running = None
        if not self.worker.flush(timeout):
            running = self.worker.running
            self._abandoned = True       # what it still brings is dropped
        self.worker.close(0, grace)
        return running


def _refreshing() -> frozenset[str]:
    """The background analyses a panel refreshes from: the first of each panel in the registry,
    unless it sums up the others."""
    first: dict[str, object] = {}
    for a in REGISTRY:
        if a.panel is not None:
            first.setdefault(a.panel, a)
    return frozenset(a.name for a in first.values() if a.background and not a.last)


_REFRESHING = _refreshing()


def _account(name: str) -> str:
    """The credit account that pays for ``name``'s runs: the panels' shared one, else its own."""
    return PANELS if name in _REFRESHING else name


def _weight(name: str) -> float:
    return 1.0 if name in _REFRESHING else SLOW_WEIGHT


_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
               "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs",
               "_forward_hooks_always_called", "_state_dict_hooks", "_state_dict_pre_hooks",
               "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks")


def _copy_without_hooks(model: nn.Module) -> nn.Module:
    """A deep copy whose modules have no hooks: the user's hooks (and ours, which hold the
    monitor) must neither be copied nor fire when an analysis runs the copy."""
    memo = {}
    for module in model.modules():
        for attr in _HOOK_DICTS:
            hooks = getattr(module, attr, None)
            if hooks is not None:
                memo[id(hooks)] = type(hooks)()   # deepcopy takes the empty one from the memo
    return copy.deepcopy(model, memo)
