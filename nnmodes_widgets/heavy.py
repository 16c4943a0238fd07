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

Analyses compute, widgets render: every figure a panel shows is computed here once and recorded
in the monitor's history (the power-law fits beside the spectra, the clusters of the RWC
trends); the panels only decimate and draw.

Faults. An analysis that raises ``UnsupportedModel`` (the model is outside what it can compute)
is switched off for the model, with a notice. Any other exception is a fault (a bug, a transient
out-of-memory): reported in ``monitor.errors`` at the step analysed, and the analysis is retried,
skipping 1, 2, 4, ... (at most ``MAX_BACKOFF``) of its turns after consecutive faults.
"""

from __future__ import annotations

import copy
import math
import time
import weakref
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .analysis.capture import Capture, capture
from .analysis.clustering import aligned_series, bucket_means, cluster_layers
from .analysis.errors import NonFiniteValues, UnsupportedModel
from .analysis.inputs import ModelInputs, as_inputs, call_model, first_tensor
from .analysis.neurons import modes_from_capture
from .analysis.pathways import characteristic_maps, samples_per_chunk, static_radiographs_from
from .analysis.powerlaw import power_law_line
from .analysis.spectrum import SpectrumTracker
from .worker import Worker

NOTES = "notes"
STEP = "step"    # in a runner's results: the step to record them at, when not the step offered
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
# Clusters of the RWC trends (SPEC 4.1), as the trend panel colours its lines:
CLUSTER_MIN_LAYERS = 3       # fewer and a partition says nothing
CLUSTER_MIN_SAMPLES = 8      # shorter trends have no shape to compare yet
CLUSTER_MAX_POINTS = 500     # the trends are averaged into at most this many buckets first
MAX_BACKOFF = 32             # turns skipped at most after consecutive faults of one analysis


@dataclass
class Job:
    """What one run of a heavy analysis is given; a runner takes it and returns its results.

    ``model``: the model's copy, holding the weights of ``step`` (None for a runner that reads
    only the history); ``probe``: the monitor's probe, ``x`` or ``(x, y)`` (None before there is
    one); ``history``: the monitor's history (read it, never record: the runner's results are
    recorded); ``step``: the training step the run was offered at; ``report(layer, exc)``: keep
    a fault confined to one layer in ``monitor.errors`` at ``step`` while the run goes on."""
    model: nn.Module | None
    probe: object
    history: object
    step: int
    report: Callable[[str | None, BaseException], None]


# One tracker per analysed copy: its partial spectra start from the previous run's (the copy is
# refreshed in place between runs; a reshaped model gets a new copy, so a new tracker).
_TRACKERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _spectrum(job: Job) -> dict:
    """Singular values of every weight, descending (SPEC 4.4): ``SpectrumTracker``, exact up to
    its ``max_exact`` elements, above it the leading values warm-started from the last run's.
    With them the ranks as the analysis computes them (a partial spectrum lists only its leading
    values: its stable rank comes from the exact Frobenius norm, its effective rank is NaN), and
    "power_law": the piecewise power law fitted to each spectrum at every rank
    (``power_law_line``), so that no panel re-derives them from the values kept. A fit that
    fails leaves that layer's line NaN, reported; the spectra are recorded all the same."""
    tracker = _TRACKERS.setdefault(job.model, SpectrumTracker())
    spectra = tracker.update(job.model)
    values = {layer: s.singular_values for layer, s in spectra.items()}
    fits = {}
    for layer, s in values.items():
        try:
            fits[layer] = power_law_line(s)
        except Exception as exc:
            fits[layer] = np.full(len(s), np.nan)
            job.report(layer, exc)
    return {"spectrum": values,
            "stable_rank": {layer: s.stable_rank for layer, s in spectra.items()},
            "effective_rank": {layer: s.effective_rank for layer, s in spectra.items()},
            "power_law": fits}


@dataclass
class _Prepared:
    """What one run takes from the model and the probe once: the probe's inputs (all of them),
    its class labels (``labels``: given with the probe, one integer per sample, else None) and
    ``first``, one capture of the first probe sample (or samples): the weight layers the forward
    runs (``called``), whether the input is tokens, the frozen factors (of a static pass), the
    bytes of layer output per sample, the model's output."""
    inputs: ModelInputs
    labels: torch.Tensor | None
    first: Capture

    def count(self, limit: int | None = None) -> int:
        """Probe samples to analyse: as many as fit in ``SAMPLE_BYTES`` of layer outputs (at
        least ``MIN_SAMPLES``), at most ``limit``."""
        return min(self.inputs.batch,
                   max(MIN_SAMPLES, SAMPLE_BYTES // max(1, self.first.sample_bytes)),
                   limit or self.inputs.batch)

    def n_classes(self) -> int | None:
        """Classes from the whole probe's labels, else the width of class scores [B, C] (fixed,
        so that every run has the same shape); None without classes."""
        if self.labels is not None:
            return int(self.labels.max()) + 1
        out = self.first.output
        if out is not None and out.ndim == 2 and out.shape[1] >= 2 and not self.language():
            return int(out.shape[1])
        return None

    def language(self) -> bool:
        """Token inputs and next-token logits [B, T, V]."""
        out = self.first.output
        return self.labels is None and self.first.tokens and out is not None and out.ndim == 3


def _prepare(job: Job, *, static: bool = False, rows: int | None = None) -> _Prepared:
    """One capture of the first probe samples, and the probe as the analyses take it. With
    ``static`` a static pass of the first ``rows`` (default 1): its Jacobians and frozen factors
    are the radiographs'. Otherwise a plain pass of the first two (a model that normalises with
    batch statistics, which neuron modes take as they are, cannot run on one). Probe labels
    count as classes when they are one integer per sample; others (next tokens, regression
    targets) are not used."""
    x, y = _split(job.probe)
    inputs = as_inputs(x, job.model)
    if rows is None:
        rows = 1 if static else 2
    with torch.inference_mode(False), torch.enable_grad() if static else nullcontext():
        first = capture(job.model, inputs.rows(0, min(rows, inputs.batch)), static=static)
    if not first.called:
        raise UnsupportedModel(f"no weight layer runs in {type(job.model).__name__}'s forward")
    labels = y if (y is not None and y.ndim == 1 and len(y) and not y.is_floating_point()
                   and not y.is_complex() and y.dtype != torch.bool) else None
    return _Prepared(inputs, labels, first)


# Whether the static pass of an analysed copy froze factors at its last radiograph run (then
# the next run's one pass takes FROZEN_SAMPLES samples at once). Structural: the same copy gives
# the same answer unless its forward branches on values, which the pass itself then shows.
_FROZEN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _radiograph(job: Job) -> dict:
    """Signed static radiograph of the first ``RADIOGRAPH_UNITS`` units of every weight layer
    the forward runs, in ``pathway_layers`` order, from one pass (SPEC 4.2): [units, inputs], or
    for token inputs [units, positions], the strength of the pathways from each position (the
    L2 norm over embedding dimensions). Taken on the first probe sample when nothing is frozen
    (the static network is then linear), else averaged over the first ``FROZEN_SAMPLES``. One
    static pass per run, the radiographs' own: of the first sample, or of the first
    ``FROZEN_SAMPLES`` when the last run froze factors; a second only when a pass of one sample
    finds factors frozen (the first run of such a model)."""
    model = job.model
    rows = FROZEN_SAMPLES if _FROZEN.get(model) else 1
    prep = _prepare(job, static=True, rows=rows)
    cap = prep.first
    if cap.frozen and rows == 1 and prep.inputs.batch > 1:
        with torch.inference_mode(False), torch.enable_grad():
            cap = capture(model, prep.inputs.rows(0, FROZEN_SAMPLES), static=True)
    _FROZEN[model] = bool(cap.frozen)
    maps = static_radiographs_from(model, cap, units=RADIOGRAPH_UNITS)
    out = {"radiograph": {layer: (r.norm(dim=-1) if cap.tokens else r.flatten(1)).cpu().numpy()
                          for layer, r in maps.items()}}
    frozen = list(dict.fromkeys(f for r in maps.values() for f in r.frozen))
    if frozen:
        out[NOTES] = {"": f"{FROZEN_NOTE}{', '.join(frozen)}"}
    return out


def _neuron_modes(job: Job) -> dict:
    """Active fraction of every activation's neurons over the first ``NEURON_SAMPLES`` probe
    samples (SPEC 4.3; its modes follow from it), and per class ("neuron_classes", [C, n]) when
    the probe has classes: its labels, else the model's predicted classes when its output is
    class scores [B, C] (from the analysed pass's own output). A fraction from n observations
    has a standard error of at most 0.5 / sqrt(n): 0.0625 for a dense unit, less for a
    convolution's channel (every position is an observation); the note says so."""
    model = job.model
    prep = _prepare(job)
    x = prep.inputs.rows(0, prep.count(NEURON_SAMPLES))
    cap = capture(model, x, sites=True, what=f"the probe x ({x.describe()})")
    n_classes = prep.n_classes()
    if prep.labels is not None:
        y = prep.labels[:x.batch]
    elif n_classes is not None and cap.output is not None:
        y = cap.output.argmax(1)
    else:
        y = None
    modes = modes_from_capture(model, cap, x.batch, y=y, num_classes=n_classes if y is not None
                               else None, with_order=False)
    out = {"neuron_modes": {layer: m.active_fraction.numpy() for layer, m in modes.items()}}
    if y is not None:
        out["neuron_classes"] = {layer: m.class_active_fraction.numpy() for layer, m in modes.items()}
    out[NOTES] = {module: f"{BLIND_NOTE}{why}" for module, why in modes.not_analysable.items()}
    out[NOTES][""] = (f"live from the first {x.batch} probe samples: an active fraction's standard "
                      f"error is at most {0.5 / math.sqrt(x.batch):.2g} (a dense unit; less where "
                      f"positions add observations)")
    return out


def _characteristic_maps(job: Job) -> dict:
    """Characteristic maps of the output layer (the last weight layer the forward runs, SPEC
    4.2): class averages [C, n_out, inputs] over at most ``CLASS_SAMPLES`` probe samples of
    each class; for a language model the map of each position's predicted next token over the
    input positions averaged over the first ``SEQUENCE_SAMPLES`` sequences, [1, T, T]. The
    passes are sized from the prepared one (no sizing pass of their own)."""
    model = job.model
    prep = _prepare(job)
    x = prep.inputs.rows(0, prep.count())
    layer = prep.first.called[-1]
    chunk = samples_per_chunk(prep.first.sample_bytes)
    n_classes = prep.n_classes()
    if prep.language():
        maps = characteristic_maps(model, x.rows(0, SEQUENCE_SAMPLES), layer,
                                   chunk_size=chunk).mean(0, keepdim=True)
        note = f"live: averaged over the first {min(x.batch, SEQUENCE_SAMPLES)} probe sequences"
    elif n_classes is None:
        raise UnsupportedModel("characteristic maps need class labels: give probe=(x, y), or a "
                               "model whose output is class scores [B, C] or next-token logits "
                               "[B, T, V]")
    else:
        if prep.labels is not None:
            y = prep.labels[:x.batch]
        else:
            with torch.no_grad():
                y = first_tensor(call_model(model, x)).argmax(1)
        y = y.to(torch.int64)
        index = torch.cat([(y == c).nonzero().flatten()[:CLASS_SAMPLES] for c in range(n_classes)])
        maps = characteristic_maps(model, x.take(index), layer, y=y[index], num_classes=n_classes,
                                   units=RADIOGRAPH_UNITS, chunk_size=chunk)
        note = f"live: class averages over at most {CLASS_SAMPLES} probe samples of each class"
    return {"characteristic_maps": {layer: maps.flatten(2).float().cpu().numpy()}, NOTES: {"": note}}


def _split(probe):
    """(x, y) of a probe: x alone, or x and its labels."""
    return probe if isinstance(probe, tuple) else (probe, None)


def _clusters(job: Job) -> dict:
    """Clusters of the layers' RWC trends (SPEC 4.1, ``cluster_layers`` with its defaults) on
    the series of the steps every layer has (``aligned_series``) averaged into at most
    ``CLUSTER_MAX_POINTS`` buckets (``bucket_means``): "rwc_clusters", {layer: label} (float64),
    recorded at the newest RWC step clustered. Nothing (not an error) while there are fewer
    than ``CLUSTER_MIN_LAYERS`` layers or ``CLUSTER_MIN_SAMPLES`` common samples, or a layer
    has a bucket with no finite mean. K-Means runs on one OpenMP thread, as the worker does."""
    steps, series = aligned_series(job.history, "rwc")
    if len(series) < CLUSTER_MIN_LAYERS or len(steps) < CLUSTER_MIN_SAMPLES:
        return {}
    matrix = np.stack(list(series.values()))
    _, means = bucket_means(np.arange(matrix.shape[1]), matrix.T, CLUSTER_MAX_POINTS)
    if not np.isfinite(means).all():
        return {}
    with _one_thread():
        clusters = cluster_layers(dict(zip(series, means.T)))
    return {"rwc_clusters": {layer: np.float64(label) for layer, label in clusters.labels.items()},
            STEP: int(steps[-1])}


def _one_thread():
    """OpenMP (scikit-learn's K-Means) on one thread inside: a second thread team beside the
    training loop's slows both on few cores."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:      # scikit-learn brings it; without it, as many threads as OpenMP says
        return nullcontext()
    return threadpool_limits(limits=1, user_api="openmp")


def _clusters_ready(monitor) -> bool:
    history = monitor.history
    return ("rwc" in monitor.analyses and history.count("rwc") >= CLUSTER_MIN_SAMPLES
            and len(history.layers("rwc")) >= CLUSTER_MIN_LAYERS)


# name -> (Job) -> {analysis: {layer: array}}, each recorded in the history under its analysis
# (a runner's own name first) at the step offered, or at results[STEP]; under NOTES, {layer or
# module: message} for what the model's structure leaves out or approximates, kept once each in
# monitor.notices. Offered in this order, cheapest first as a rule (a ResNet-18 on one CPU
# thread: 0.3, 0.8, 3.6 and 9.4 s), so that every panel gets its first frame before the
# costliest run sets a long pace.
RUNNERS: dict[str, Callable[[Job], dict]] = {
    "spectrum": _spectrum, "clusters": _clusters, "neuron_modes": _neuron_modes,
    "characteristic_maps": _characteristic_maps, "radiograph": _radiograph}
HEAVY = tuple(RUNNERS)
NEEDS_PROBE = {"radiograph", "neuron_modes", "characteristic_maps"}   # offered once there is a probe
NEEDS_MODEL = {"spectrum", "radiograph", "neuron_modes", "characteristic_maps"}  # get the copy
# name -> (monitor) -> whether it can be offered now (besides a probe for NEEDS_PROBE)
READY: dict[str, Callable] = {"clusters": _clusters_ready}


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
        self._faults: dict[str, int] = {}   # name -> consecutive faults (reset by a run that works)
        self._skips: dict[str, int] = {}    # name -> its turns still to skip (backoff)
        self._noted: set[tuple] = set()   # notes already in monitor.notices
        self._next_start = 0.0     # perf_counter time before which no run starts (pacing)
        self._copy: nn.Module | None = None
        self._pairs: tuple[list, list] | None = None   # (copy's tensors, model's tensors)

    def _ready(self, name: str) -> bool:
        if name in NEEDS_PROBE and self.monitor.probe is None:
            return False
        ready = READY.get(name)
        return ready is None or ready(self.monitor)

    def offer(self, step: int) -> None:
        """Offer the next analysis in turn at training step ``step``."""
        ready = [n for n in self.names if self._ready(n)]
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
        name = first[0] if first else self._next(ready)
        if name is None:                  # every one ready is backing off after faults
            return
        model_copy = self._refresh() if name in NEEDS_MODEL else None
        monitor = self.monitor
        job = Job(model=model_copy, probe=monitor.probe, history=monitor.history, step=step,
                  report=lambda layer, exc: monitor.report(name, exc, layer=layer, step=step))
        self.worker.offer(name, lambda: self._run(name, job, time.time()))

    def _next(self, ready: list[str]) -> str | None:
        """The next analysis in turn, passing (and counting down) those backing off."""
        for _ in range(len(ready)):
            name = ready[self._turn % len(ready)]
            self._turn += 1
            if self._skips.get(name, 0) > 0:
                self._skips[name] -= 1
                continue
            return name
        return None

    def _run(self, name: str, job: Job, when: float) -> None:
        start = time.perf_counter()
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
            self._next_start = end + self.monitor.pacer.wait_after(end - start)
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
