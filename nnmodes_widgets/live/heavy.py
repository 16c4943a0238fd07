"""Heavier analyses for the monitor: run on a copy of the model, in the background, in budget.

At each sample the monitor offers the analysis whose turn it is: each gets an equal share of the
worker's time, so a cheap one (weight alignment) runs often and a costly one (a radiograph)
now and then. It runs only if the worker is free (else it is dropped and counted: the next offer
carries newer weights) and if the pace allows: after a run of c seconds the next waits
``monitor.pacer.wait_after(c)``, the share of wall time the measured slowdown of training
leaves to the worker (``pacing``). Every run after an analysis's first sets the pace; the first
run of each comes as soon as the worker is free, so that every panel gets its first frame.
The model is copied once; each run refreshes the copy's tensors in place (a memcpy on the
weights' device, on the training thread, counted in the monitor's overhead) and analyses the
copy, so training goes on changing the original meanwhile.

What each analysis computes is in ``jobs`` (and ``dynamics_jobs``); this module schedules them.

Faults. An analysis that raises ``UnsupportedModel`` (the model is outside what it can compute)
is switched off for the model, with a notice. Any other exception is a fault (a bug, a transient
out-of-memory): reported in ``monitor.errors`` at the step analysed, and the analysis is retried,
skipping 1, 2, 4, ... (at most ``MAX_BACKOFF``) of its turns after consecutive faults.
"""

from __future__ import annotations

import copy
import importlib
import time
from collections.abc import Callable

import torch
from torch import nn

from ..analysis.errors import NonFiniteValues, UnsupportedModel
from .dynamics_jobs import _alignment, _basins, _phases, _phases_ready, basins_cost
from .jobs import (NOTES, STEP, Job, _characteristic_maps, _clusters, _clusters_ready,
                   _neuron_modes, _radiograph, _spectrum)
from .worker import Worker

MAX_BACKOFF = 32             # turns skipped at most after consecutive faults of one analysis
# An analysis on by default only where the budget allows: after its first run, off (with a
# notice) when at the worker's share of wall time it could run only once in this many seconds
# Their cost is estimated before their first run (name -> (monitor, last costs) -> seconds, None
# while it cannot be told yet), and they are never run first-come as the others are.
OPTIONAL = {"basins": basins_cost}
OPTIONAL_MAX_PERIOD = 120.0
# Paced, an analysis runs at most once in this many seconds: a cheap one (weight alignment takes
# a millisecond) would otherwise fill the history with samples no panel can show apart
MIN_INTERVAL = 1.0

# name -> (Job) -> {analysis: {layer: array}}, each recorded in the history under its analysis
# (a runner's own name first) at the step offered, or at results[STEP]; under NOTES, {layer or
# module: message} for what the model's structure leaves out or approximates, kept once each in
# monitor.notices. Offered in this order, cheapest first as a rule (a ResNet-18 on one CPU
# thread: 0.3, 0.8, 3.6 and 9.4 s), so that every panel gets its first frame before the
# costliest run sets a long pace.
RUNNERS: dict[str, Callable[[Job], dict]] = {
    "spectrum": _spectrum, "clusters": _clusters, "alignment": _alignment, "phases": _phases,
    "neuron_modes": _neuron_modes, "characteristic_maps": _characteristic_maps,
    "radiograph": _radiograph, "basins": _basins}
HEAVY = tuple(RUNNERS)
NEEDS_PROBE = {"radiograph", "neuron_modes", "characteristic_maps", "basins"}   # once there is one
NEEDS_MODEL = {"spectrum", "alignment", "radiograph", "neuron_modes", "characteristic_maps",
               "basins"}                                                       # get the copy
# name -> (monitor) -> whether it can be offered now (besides a probe for NEEDS_PROBE)
READY: dict[str, Callable] = {"clusters": _clusters_ready, "phases": _phases_ready}
# name -> libraries it imports when first used, imported when the worker starts instead: 1.3 s of
# importing scikit-learn counted as the first clustering's cost set a 28 s pause for every panel
IMPORTS = {"clusters": ("sklearn.cluster",), "phases": ("ruptures",)}

class HeavyAnalyses:
    """The background analyses ``names`` of ``monitor``; those in ``optional`` (the default
    analyses, not asked for by name) run only where the budget allows them (``OPTIONAL``)."""

    def __init__(self, monitor, names, optional=()):
        self.monitor = monitor
        self.names = list(names)
        self.optional = set(optional) & set(OPTIONAL)
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
        self._next_start = 0.0     # perf_counter time before which no run starts (pacing)
        self._copy: nn.Module | None = None
        self._pairs: tuple[list, list] | None = None   # (copy's tensors, model's tensors)

    def _affordable(self, name: str) -> bool:
        """Whether an optional analysis can run within the budget, its cost estimated before its
        first run: switched off (with a notice) when one run in ``OPTIONAL_MAX_PERIOD`` would
        not fit the worker's share; not yet when its cost cannot be told."""
        if name not in self.optional or self._runs.get(name):
            return True
        cost = OPTIONAL[name](self.monitor, self.worker.last_cost)
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
            for module in {m for name in self.names for m in IMPORTS.get(name, ())}:
                importlib.import_module(module)
        except ImportError as exc:     # the analysis itself will report it
            self.monitor.report_notice("schedule", None, f"not imported ahead: {exc}")
        finally:
            self.monitor.pacer.end(token)

    def _ready(self, name: str) -> bool:
        if name in NEEDS_PROBE and self.monitor.probe is None:
            return False
        ready = READY.get(name)
        return ready is None or ready(self.monitor)

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
        job = Job(model=self._refresh() if name in NEEDS_MODEL else None, probe=monitor.probe,
                  history=monitor.history, step=step,
                  report=lambda layer, exc: monitor.report(name, exc, layer=layer, step=step))
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
            results = RUNNERS[name](job)
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
            if name in self.optional and end - start + wait > OPTIONAL_MAX_PERIOD:
                self._switch_off_optional(name, end - start, end - start + wait, "took")
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

    def finish(self, step: int) -> None:
        """At the end of the run: once more what sums up the whole run (the phases), after
        everything scheduled."""
        self.flush()
        if "phases" in self.names and self._ready("phases"):
            self._start("phases", step)
            self.flush()

    def close(self, timeout: float | None = None) -> bool:
        return self.worker.close(timeout)


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
