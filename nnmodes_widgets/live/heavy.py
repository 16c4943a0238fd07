"""Heavier analyses for the monitor: run on a copy of the model, in the background, in budget.

Offered at every training step (a glance at one number until a run may start), so that how
often the panels refresh does not depend on how often RWC is sampled. Whose turn it is: each
analysis gets an equal share of the worker's time, so a cheap one (weight alignment) runs often
and a costly one now and then. Nothing is exempt from the budget (SPEC 5, wave 3): a run starts
only when the worker's credit (``pacing.Pacer.credit``, accruing at the rate the measured
slowdown leaves) covers its estimated cost, its first run included, and what it really cost is
taken off when it ends: c x its worker seconds plus the refresh of the copy, which runs on the
training thread. The libraries the analyses import are imported when the monitor is made,
before training, so that no step pays for them.

Live sizes. Each analysis runs at a size, a fraction (1, 1/2, ... ``MIN_SIZE``) of its full live
work (units, samples, directions, leading values: each runner says what; ``Job.size``), so that
one round of every analysis fits the refresh target (``refresh_target``: 2.5 s for a small
model, 10 s for a 10M-parameter one) within the budget: it starts at the smallest and is
doubled while twice its last run's cost fits its equal share of a round, halved when a run
does not fit it. A runner's notes (what it reduced) are kept once its size has settled. With
a budget of 1 (no pace) every run is at full size.

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
import time
from collections.abc import Callable

import torch
from torch import nn

from ..analysis.errors import NonFiniteValues, UnsupportedModel
from ..runs.analyses import BACKGROUND
from ..runs.analyses import analysis as entry
from .jobs import NOTES, STEP, Job
from .worker import Worker, time_left

MAX_BACKOFF = 32             # turns skipped at most after consecutive faults of one analysis
# An analysis with a cost estimate (the registry's ``cost``) is on by default only where the
# budget allows it: off (with a notice) when at the worker's share of wall time it could run
# only once in this many seconds; it never runs first-come as the others do.
OPTIONAL_MAX_PERIOD = 120.0
# Paced, an analysis runs at most once in this many seconds: a cheap one (weight alignment takes
# a millisecond) would otherwise fill the history with samples no panel can show apart
MIN_INTERVAL = 1.0

# The background analyses, in the order they are offered (the registry's, ``runs.analyses``).
# A runner takes a ``Job`` and returns {analysis: {layer: array}}, each recorded in the history
# under its analysis at the step offered, or at results[STEP]; under NOTES, {layer or module:
# message} for what the model's structure leaves out or approximates, kept once each in
# monitor.notices.
HEAVY = BACKGROUND

_PACKAGE = __package__.rpartition(".")[0]      # the registry names functions under it


def resolve(ref: str) -> Callable:
    """The function a registry entry names (``"live.jobs:spectrum"``), looked up at each call:
    always the module's current one."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(f"{_PACKAGE}.{module}"), name)


class HeavyAnalyses:
    """The background analyses ``names`` of ``monitor``; those in ``optional`` (the default
    analyses, not asked for by name) that have a cost estimate run only where the budget allows
    them."""

    def __init__(self, monitor, names, optional=()):
        self.monitor = monitor
        self.names = list(names)
        self.optional = {name for name in optional if entry(name).cost}
        # One intra-op thread for the worker (a per-thread setting): a second thread team
        # spinning beside the training loop's made both several times slower on few cores.
        self.worker = Worker(on_error=lambda name, exc: monitor.report(name, exc),
                             on_start=self._warm_up,
                             begin=lambda: monitor.pacer.begin("worker"), end=monitor.pacer.end)
        self.deferred = 0          # offers skipped to stay within the budget
        self._runs: dict[str, int] = {}
        self._spent: dict[str, float] = {}    # name -> worker seconds so far (fair shares)
        self._started: dict[str, float] = {}  # name -> perf_counter time of its last start
        self._faults: dict[str, int] = {}   # name -> consecutive faults (reset by a run that works)
        self._skips: dict[str, int] = {}    # name -> its turns still to skip (backoff)
        self._noted: set[tuple] = set()   # notes already in monitor.notices
        self._analysed: dict[str, int] = {}   # name -> the step of its newest run
        self._abandoned = False    # closed with a run still going: its results are not wanted
        self._next_start = 0.0     # perf_counter time before which no run starts (pacing)
        self._copy: nn.Module | None = None
        self._pairs: tuple[list, list] | None = None   # (copy's tensors, model's tensors)

    def _affordable(self, name: str) -> bool:
        """Whether an optional analysis can run within the budget, its cost estimated before its
        first run: switched off (with a notice) when one run in ``OPTIONAL_MAX_PERIOD`` would
        not fit the worker's share; not yet when its cost cannot be told."""
        if name not in self.optional or self._runs.get(name):
            return True
        cost = resolve(entry(name).cost)(self.monitor, self.worker.last_cost)
        if cost is None:
            return False
        period = cost + self.monitor.pacer.wait_after(cost)
        if period > OPTIONAL_MAX_PERIOD:
            self._switch_off_optional(name, cost, period, "would take about")
            return False
        return True

    def _switch_off_optional(self, name: str, cost: float, period: float, took: str) -> None:
        self.names = [n for n in self.names if n != name]
        self.monitor.report_notice(name, None, (
            f"off by default for this model: one run {took} {cost:.1f} s, so within the budget "
            f"it could run once in {period:.0f} s; Monitor(analyses=(..., {name!r})) runs it "
            "all the same"))

    def _warm_up(self) -> None:
        """On the worker thread, before its first job: one intra-op thread, and the libraries
        the analyses import. Background work the measured slowdown sees, but no job's cost:
        it does not set the pace."""
        torch.set_num_threads(1)
        token = self.monitor.pacer.begin("worker")
        try:
            for module in dict.fromkeys(m for name in self.names for m in entry(name).imports):
                try:
                    importlib.import_module(module)
                except ImportError as exc:     # the analysis itself will report it
                    self.monitor.report_notice("schedule", None, f"not imported ahead: {exc}")
        finally:
            self.monitor.pacer.end(token)

    def _ready(self, name: str) -> bool:
        described = entry(name)
        if described.needs_probe and self.monitor.probe is None:
            return False
        return described.ready is None or resolve(described.ready)(self.monitor)

    def offer(self, step: int) -> None:
        """Offer the analysis whose turn it is at training step ``step``."""
        ready = [n for n in self.names if self._ready(n)]
        if not ready:
            return
        # An analysis that has not run yet is not paced: every panel gets its first frame as
        # soon as the worker is free (a one-time burst), not after rounds of the others; on a
        # loaded machine the fourth analysis's first run came later than 40 s of training.
        ready = [n for n in ready if self._affordable(n)]
        if not ready:
            return
        first = [n for n in ready if not self._runs.get(n) and n not in self.optional]
        if not first and time.perf_counter() < self._next_start:
            self.deferred += 1
            return
        if not self.worker.accepts():     # busy: counted as dropped there
            return
        name = first[0] if first else self._next(ready)
        if name is None:                  # every one ready is backing off after faults
            return
        self._start(name, step)

    def _start(self, name: str, step: int) -> None:
        """Hand ``name``'s run at ``step`` to the worker (on the model's copy, refreshed now)."""
        monitor = self.monitor
        self._analysed[name] = step
        job = Job(model=self._refresh() if entry(name).needs_model else None, probe=monitor.probe,
                  history=monitor.history, step=step,
                  report=lambda layer, exc: monitor.report(name, exc, layer=layer, step=step),
                  optimizer=monitor.optimizer_settings)
        self.worker.offer(name, lambda: self._run(name, job, time.time()))

    def _next(self, ready: list[str]) -> str | None:
        """The analysis whose turn it is: of those ready, the one that has had the least worker
        time so far (each gets an equal share of the worker's time, so a cheap one runs often
        and a costly one now and then, rather than all at the pace of the costliest), passing
        those that ran less than ``MIN_INTERVAL`` ago and never taking one ahead of its share
        (when paced), and counting down those backing off."""
        now, paced = time.perf_counter(), self.monitor.budget < 1
        spent = {n: self._spent.get(n, 0.0) for n in ready}
        share = sum(spent.values()) / len(ready)
        for name in sorted(ready, key=spent.get):    # stable: ties in their order
            if paced and spent[name] > share:
                return None     # ahead of its share: it waits until the others have had theirs
            if paced and now - self._started.get(name, -MIN_INTERVAL) < MIN_INTERVAL:
                continue
            if self._skips.get(name, 0) > 0:
                self._skips[name] -= 1
                continue
            return name
        return None

    def _run(self, name: str, job: Job, when: float) -> None:
        start = self._started[name] = time.perf_counter()
        try:
            with self.worker.cuttable():     # abandoned at detach: stopped here
                results = resolve(entry(name).runner)(job)
            if self._abandoned:
                return
            step = results.pop(STEP, job.step)
            for layer, message in results.pop(NOTES, {}).items():
                if (name, layer, message) not in self._noted:
                    self._noted.add((name, layer, message))
                    self.monitor.report_notice(name, layer or None, message)
            for analysis, values in results.items():
                self.monitor.history.record(analysis, step, when, values)
            self._faults.pop(name, None)
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
        finally:
            end = time.perf_counter()
            self._runs[name] = self._runs.get(name, 0) + 1
            self._spent[name] = self._spent.get(name, 0.0) + end - start
            wait = self.monitor.pacer.wait_after(end - start)
            self._next_start = end + wait
            if (name in self.optional and end - start + wait > OPTIONAL_MAX_PERIOD
                    and not self._abandoned):
                self._switch_off_optional(name, end - start, end - start + wait, "took")
        if not self._abandoned:
            self.monitor.notify()

    def _fault(self, name: str, exc: BaseException, step: int) -> None:
        """A fault (a bug, a transient out-of-memory), shown as an error at the step analysed;
        the analysis is retried after 1, 2, 4, ... of its turns."""
        self.monitor.report(name, exc, step=step)
        faults = self._faults.get(name, 0) + 1
        self._faults[name] = faults
        self._skips[name] = min(2 ** (faults - 1), MAX_BACKOFF)

    def _refresh(self) -> nn.Module:
        """The model's copy with the current weights and buffers."""
        model = self.monitor.model
        tensors = [t.detach() for t in (*model.parameters(), *model.buffers())]
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
        return self._copy

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
            if name in self.names and again and self._ready(name) and self._affordable(name):
                self._start(name, step)
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
