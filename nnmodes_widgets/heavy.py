"""Heavier analyses for the monitor: run on a copy of the model, in the background, in budget.

At each sample the monitor offers the next heavy analysis in turn. It runs only if the worker is
free (else it is dropped and counted: the next offer carries newer weights) and if the worker's
duty cycle stays within ``budget``: after a run that took c seconds the next one waits
c' * (1 - budget) / budget, where c' charges c once per intra-op thread of a CPU training loop. The first run of each analysis does not count for this pacing: it
pays one-off costs (library and thread-pool warm-up) that later runs do not. The model is copied
once; each run refreshes the copy's tensors in place (a memcpy on the weights' device, on the
training thread, counted in the monitor's overhead) and analyses the copy, so training goes on
changing the original meanwhile.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .analysis.neurons import neuron_modes
from .analysis.pathways import pathway_layers, static_radiograph
from .analysis.spectrum import mode_spectrum
from .worker import Worker


def _spectrum(model: nn.Module, probe) -> dict[str, np.ndarray]:
    """Singular values of every weight, descending (SPEC 4.4)."""
    return {layer: s.singular_values for layer, s in mode_spectrum(model).items()}


def _radiograph(model: nn.Module, probe) -> dict[str, np.ndarray]:
    """Signed static radiograph of every pathway layer, [neurons, inputs] (SPEC 4.2)."""
    x = probe[0] if isinstance(probe, tuple) else probe
    input_shape = tuple(x.shape[1:]) if x is not None else None
    return {layer: static_radiograph(model, layer, input_shape=input_shape).flatten(1).cpu().numpy()
            for layer in pathway_layers(model, input_shape=input_shape)}


def _neuron_modes(model: nn.Module, probe) -> dict[str, np.ndarray]:
    """Active fraction of every neuron over the probe (SPEC 4.3); its modes follow from it."""
    x, y = probe if isinstance(probe, tuple) else (probe, None)
    return {layer: m.active_fraction.numpy() for layer, m in neuron_modes(model, x, y=y).items()}


# name -> (model copy, probe) -> {layer: array}; recorded in the history under that name
RUNNERS: dict[str, Callable] = {"spectrum": _spectrum, "radiograph": _radiograph,
                                "neuron_modes": _neuron_modes}
HEAVY = tuple(RUNNERS)
NEEDS_PROBE = {"neuron_modes"}   # offered once there is a probe batch (given, or captured)


class HeavyAnalyses:
    def __init__(self, monitor, names):
        self.monitor = monitor
        self.names = list(names)
        # One intra-op thread for the worker (a per-thread setting): a second thread team
        # spinning beside the training loop's made both several times slower on few cores.
        self.worker = Worker(on_error=lambda name, exc: monitor.report(name, exc),
                             on_start=lambda: torch.set_num_threads(1))
        self.deferred = 0          # offers skipped to stay within the budget
        self._turn = 0
        self._runs: dict[str, int] = {}
        self._next_start = 0.0     # perf_counter time before which no run starts (pacing)
        # A worker second is not free for training: on a busy core it stalls one thread of each
        # of the training loop's parallel regions, and the region waits for its slowest thread.
        # Charge it once per intra-op thread of the training loop (measured: with the bare
        # duty cycle, a 5% budget slowed a 2-thread CPU loop by 10-15%).
        self._contention = max(1, torch.get_num_threads()) if not any(
            p.is_cuda for p in monitor.model.parameters()) else 1
        self._copy: nn.Module | None = None
        self._pairs: tuple[list, list] | None = None   # (copy's tensors, model's tensors)

    def offer(self, step: int) -> None:
        """Offer the next analysis in turn at training step ``step``."""
        if not self.names:
            return
        if time.perf_counter() < self._next_start:
            self.deferred += 1
            return
        if not self.worker.idle:
            self.worker.dropped += 1
            return
        ready = [n for n in self.names if n not in NEEDS_PROBE or self.monitor.probe is not None]
        if not ready:
            return
        name = ready[self._turn % len(ready)]
        model_copy = self._refresh()
        self._turn += 1
        probe = self.monitor.probe
        self.worker.offer(name, lambda: self._run(name, model_copy, probe, step, time.time()))

    def _run(self, name, model_copy, probe, step, when) -> None:
        start = time.perf_counter()
        try:
            values = RUNNERS[name](model_copy, probe)
            self.monitor.history.record(name, step, when, values)
        except Exception as exc:
            if self._runs.get(name):
                raise                      # it worked before: a fault, shown as an error
            # Failing at once means the model is outside what this analysis can compute
            # exactly (say, residual connections for pathways): stop offering it.
            self.names = [n for n in self.names if n != name]   # rebound: offer() may be reading
            self.monitor.report_notice(name, None, f"switched off for this model: {exc}")
        finally:
            end = time.perf_counter()
            self._runs[name] = self._runs.get(name, 0) + 1
            if self._runs[name] > 1:   # the first run's warm-up does not set the pace
                budget = self.monitor.budget
                cost = (end - start) * self._contention
                self._next_start = end + cost * (1 - budget) / budget
        self.monitor.notify()

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
