"""Heavier analyses for the monitor: run on a copy of the model, in the background, in budget.

At each sample the monitor offers the next heavy analysis in turn. It runs only if the worker is
free (else it is dropped and counted: the next offer carries newer weights) and if the pace
allows: after a run of c seconds the next waits ``monitor.pacer.wait_after(c)``, the share of
wall time the measured slowdown of training leaves to the worker (``pacing``). Every run sets
the pace, the first included: exempting first runs (library warm-up) let one 9 s radiograph of
a 10M-parameter CNN start 2 s into training.
The model is copied once; each run refreshes the copy's tensors in place (a memcpy on the
weights' device, on the training thread, counted in the monitor's overhead) and analyses the
copy, so training goes on changing the original meanwhile.
"""

from __future__ import annotations

import copy
import math
import time
import weakref
from collections.abc import Callable

import torch
from torch import nn

from .analysis.capture import capture
from .analysis.inputs import as_inputs, call_model, first_tensor
from .analysis.neurons import neuron_modes
from .analysis.pathways import characteristic_maps, static_radiographs
from .analysis.spectrum import SpectrumTracker
from .worker import Worker

NOTES = "notes"
FROZEN_NOTE = "static radiographs freeze at the probe what is neither a weight nor a gate: "
BLIND_NOTE = "not analysable: "
RADIOGRAPH_UNITS = 64        # units per layer in the recorded radiographs (what the panel shows)
SAMPLE_BYTES = 64 * 2**20    # probe samples analysed: as many as fit in this much layer output
MIN_SAMPLES = 8
# Live runs analyse part of the probe, so that every panel refreshes within the budget (a 10M-
# parameter CNN took 0.7 s for neuron modes and 2.7 s for characteristic maps on all 256 probe
# samples, one thread); the analysis functions called directly use every sample given.
NEURON_SAMPLES = 64          # neuron modes: 64 observations of a dense unit, x positions for a conv
CLASS_SAMPLES = 4            # characteristic maps: at most this many samples of each class
SEQUENCE_SAMPLES = 8         # ... and sequences of a language model
FROZEN_SAMPLES = 4           # probe samples a static radiograph with frozen factors averages over


# One tracker per analysed copy: its partial spectra start from the previous run's (the copy is
# refreshed in place between runs; a reshaped model gets a new copy, so a new tracker).
_TRACKERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _spectrum(model: nn.Module, probe) -> dict:
    """Singular values of every weight, descending (SPEC 4.4): ``SpectrumTracker``, exact up to
    its ``max_exact`` elements, above it the leading values warm-started from the last run's.
    With them the ranks as the analysis computes them (a partial spectrum lists only its leading
    values: its stable rank comes from the exact Frobenius norm, its effective rank is NaN), so
    that no panel re-derives them from the values kept."""
    tracker = _TRACKERS.setdefault(model, SpectrumTracker())
    spectra = tracker.update(model)
    return {"spectrum": {layer: s.singular_values for layer, s in spectra.items()},
            "stable_rank": {layer: s.stable_rank for layer, s in spectra.items()},
            "effective_rank": {layer: s.effective_rank for layer, s in spectra.items()}}


def _radiograph(model: nn.Module, probe) -> dict:
    """Signed static radiograph of the first ``RADIOGRAPH_UNITS`` units of every weight layer
    the forward runs, in ``pathway_layers`` order, from one pass (SPEC 4.2): [units, inputs], or
    for token inputs [units, positions], the strength of the pathways from each position (the
    L2 norm over embedding dimensions). Taken on the first probe sample when nothing is frozen
    (the static network is then linear), else averaged over the first ``FROZEN_SAMPLES``."""
    x, _ = _split(probe)
    inputs = as_inputs(x, model)
    first = capture(model, inputs.rows(0, 1), static=True)
    samples = inputs.rows(0, FROZEN_SAMPLES) if first.frozen else inputs.rows(0, 1)
    maps = static_radiographs(model, samples, units=RADIOGRAPH_UNITS)
    out = {"radiograph": {layer: (r.norm(dim=-1) if first.tokens else r.flatten(1)).cpu().numpy()
                          for layer, r in maps.items()}}
    frozen = list(dict.fromkeys(f for r in maps.values() for f in r.frozen))
    if frozen:
        out[NOTES] = {"": f"{FROZEN_NOTE}{', '.join(frozen)}"}
    return out


def _neuron_modes(model: nn.Module, probe) -> dict:
    """Active fraction of every activation's neurons over the first ``NEURON_SAMPLES`` probe
    samples (SPEC 4.3; its modes follow from it), and per class ("neuron_classes", [C, n]) when
    the probe has classes (see ``_classes``). A fraction from n observations has a standard
    error of at most 0.5 / sqrt(n): 0.0625 for a dense unit, less for a convolution's channel
    (every position is an observation); the note says so."""
    x, y, n_classes, _, _ = _classes(model, probe, limit=NEURON_SAMPLES)
    modes = neuron_modes(model, x, y=y, num_classes=n_classes, with_order=False)
    out = {"neuron_modes": {layer: m.active_fraction.numpy() for layer, m in modes.items()}}
    if y is not None:
        out["neuron_classes"] = {layer: m.class_active_fraction.numpy() for layer, m in modes.items()}
    out[NOTES] = {module: f"{BLIND_NOTE}{why}" for module, why in modes.not_analysable.items()}
    out[NOTES][""] = (f"live from the first {x.batch} probe samples: an active fraction's standard "
                      f"error is at most {0.5 / math.sqrt(x.batch):.2g} (a dense unit; less where "
                      f"positions add observations)")
    return out


def _characteristic_maps(model: nn.Module, probe) -> dict:
    """Characteristic maps of the output layer (the last weight layer the forward runs, SPEC
    4.2): class averages [C, n_out, inputs] over at most ``CLASS_SAMPLES`` probe samples of
    each class; for a language model the map of each position's predicted next token over the
    input positions averaged over the first ``SEQUENCE_SAMPLES`` sequences, [1, T, T]."""
    x, y, n_classes, language, layer = _classes(model, probe)
    if language:
        maps = characteristic_maps(model, x.rows(0, SEQUENCE_SAMPLES), layer).mean(0, keepdim=True)
        note = f"live: averaged over the first {min(x.batch, SEQUENCE_SAMPLES)} probe sequences"
    elif y is None:
        raise ValueError("characteristic maps need class labels: give probe=(x, y), or a model "
                         "whose output is class scores [B, C] or next-token logits [B, T, V]")
    else:
        y = y.to(torch.int64)
        index = torch.cat([(y == c).nonzero().flatten()[:CLASS_SAMPLES] for c in range(n_classes)])
        maps = characteristic_maps(model, x.take(index), layer, y=y[index], num_classes=n_classes,
                                   units=RADIOGRAPH_UNITS)
        note = f"live: class averages over at most {CLASS_SAMPLES} probe samples of each class"
    return {"characteristic_maps": {layer: maps.flatten(2).float().cpu().numpy()}, NOTES: {"": note}}


def _split(probe):
    """(x, y) of a probe: x alone, or x and its labels."""
    return probe if isinstance(probe, tuple) else (probe, None)


def _classes(model: nn.Module, probe, limit: int | None = None):
    """``(x, y, n_classes, language, output_layer)`` for the analyses: x the first probe samples
    that fit in ``SAMPLE_BYTES`` of layer outputs (at least ``MIN_SAMPLES``; at most ``limit``
    when given); y their labels when given, else the model's predicted classes when its output
    is class scores [B, C], else None;
    ``n_classes`` from the whole probe's labels or the output's width (fixed, so that every run
    has the same shape). ``language``: token inputs and next-token logits [B, T, V].
    ``output_layer``: the last weight layer the forward runs."""
    x, y = _split(probe)
    inputs = as_inputs(x, model)
    one = capture(model, inputs.rows(0, 1))
    count = min(inputs.batch, max(MIN_SAMPLES, SAMPLE_BYTES // max(1, one.sample_bytes)),
                limit or inputs.batch)
    inputs, layer = inputs.rows(0, count), one.called[-1]
    if y is not None:
        n_classes = int(y.max()) + 1 if y.ndim == 1 and len(y) else None
        return inputs, y[:count], n_classes, False, layer
    with torch.no_grad():
        out = first_tensor(call_model(model, inputs))
    if out is not None and one.tokens and out.ndim == 3:
        return inputs, None, None, True, layer
    if out is None or out.ndim != 2 or out.shape[1] < 2:
        return inputs, None, None, False, layer
    return inputs, out.argmax(1), out.shape[1], False, layer


# name -> (model copy, probe) -> {analysis: {layer: array}}, each recorded in the history under
# its analysis (a runner's own name first); under NOTES, {layer or module: message} for what the
# model's structure leaves out or approximates, kept once each in monitor.notices. Offered in
# this order, cheapest first as a rule (a ResNet-18 on one CPU thread: 0.3, 0.8, 3.6 and 9.4 s),
# so that every panel gets its first frame before the costliest run sets a long pace.
RUNNERS: dict[str, Callable] = {"spectrum": _spectrum, "neuron_modes": _neuron_modes,
                                "characteristic_maps": _characteristic_maps,
                                "radiograph": _radiograph}
HEAVY = tuple(RUNNERS)
NEEDS_PROBE = {"radiograph", "neuron_modes", "characteristic_maps"}   # offered once there is a probe


class HeavyAnalyses:
    def __init__(self, monitor, names):
        self.monitor = monitor
        self.names = list(names)
        # One intra-op thread for the worker (a per-thread setting): a second thread team
        # spinning beside the training loop's made both several times slower on few cores.
        self.worker = Worker(on_error=lambda name, exc: monitor.report(name, exc),
                             on_start=lambda: torch.set_num_threads(1),
                             begin=lambda: monitor.pacer.begin("worker"), end=monitor.pacer.end)
        self.deferred = 0          # offers skipped to stay within the budget
        self._turn = 0
        self._runs: dict[str, int] = {}
        self._noted: set[tuple] = set()   # notes already in monitor.notices
        self._next_start = 0.0     # perf_counter time before which no run starts (pacing)
        self._copy: nn.Module | None = None
        self._pairs: tuple[list, list] | None = None   # (copy's tensors, model's tensors)

    def offer(self, step: int) -> None:
        """Offer the next analysis in turn at training step ``step``."""
        ready = [n for n in self.names if n not in NEEDS_PROBE or self.monitor.probe is not None]
        if not ready:
            return
        # An analysis that has not run yet is not paced: every panel gets its first frame as
        # soon as the worker is free (a one-time burst), not after rounds of the others; on a
        # loaded machine the fourth analysis's first run came later than 40 s of training.
        first = [n for n in ready if not self._runs.get(n)]
        if not first and time.perf_counter() < self._next_start:
            self.deferred += 1
            return
        if not self.worker.accepts():     # busy: counted as dropped there
            return
        if first:
            name = first[0]
        else:
            name = ready[self._turn % len(ready)]
            self._turn += 1
        model_copy = self._refresh()
        probe = self.monitor.probe
        self.worker.offer(name, lambda: self._run(name, model_copy, probe, step, time.time()))

    def _run(self, name, model_copy, probe, step, when) -> None:
        start = time.perf_counter()
        try:
            results = RUNNERS[name](model_copy, probe)
            for layer, message in results.pop(NOTES, {}).items():
                if (name, layer, message) not in self._noted:
                    self._noted.add((name, layer, message))
                    self.monitor.report_notice(name, layer or None, message)
            for analysis, values in results.items():
                self.monitor.history.record(analysis, step, when, values)
        except Exception as exc:
            if self._runs.get(name):
                # it worked before: a fault, shown as an error at the step analysed
                self.monitor.report(name, exc, step=step)
            else:
                # Failing at once means the model is outside what this analysis can compute
                # exactly (say, residual connections for pathways): stop offering it.
                self.names = [n for n in self.names if n != name]   # rebound: offer() may read
                self.monitor.report_notice(name, None, f"switched off for this model: {exc}")
        finally:
            end = time.perf_counter()
            self._runs[name] = self._runs.get(name, 0) + 1
            self._next_start = end + self.monitor.pacer.wait_after(end - start)
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
