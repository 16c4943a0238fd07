"""What each background analysis computes (its runner, named in the registry
``runs.analyses``): from a ``Job`` (the model's copy, the probe, the history, the step) to its
results, recorded by the scheduler (``heavy``) in the monitor's history. Analyses compute,
widgets render: every figure a panel shows is computed here once (the power-law fits beside the
spectra, the clusters of the RWC trends); the panels only decimate and draw.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..analysis.capture import Capture, capture
from ..analysis.clustering import aligned_series, bucket_means, cluster_layers
from ..analysis.errors import UnsupportedModel
from ..analysis.inputs import ModelInputs, as_inputs, call_model, first_tensor
from ..analysis.neurons import modes_from_capture
from ..analysis import pathways
from ..analysis.pathways import samples_per_chunk, static_radiographs_from
from ..analysis.powerlaw import power_law_line
from ..analysis.capture import unit_axis
from ..analysis.spectrum import MAX_EXACT, PARTIAL_TOP, SpectrumTracker

NOTES = "notes"
STEP = "step"    # in a runner's results: the step to record them at, when not the step offered
FROZEN_NOTE = "static radiographs freeze at the probe what is neither a weight nor a gate: "
BLIND_NOTE = "not analysable: "
RADIOGRAPH_UNITS = 64        # units per layer in the recorded radiographs (what the panel shows)
SAMPLE_BYTES = 64 * 2**20    # probe samples analysed: as many as fit in this much layer output
MIN_SAMPLES = 8
# Live runs analyse part of the probe, so that every panel refreshes within the budget (a 10M-
# parameter CNN took 0.7 s for neuron modes and 2.7 s for characteristic maps on all 256 probe
# samples, one thread); the analysis functions called directly use every sample given. These
# are the full live sizes; a job of a smaller ``size`` takes that share of them (``live``).
NEURON_SAMPLES = 64          # neuron modes: 64 observations of a dense unit, x positions for a conv
CLASS_SAMPLES = 4            # characteristic maps: at most this many samples of each class
SEQUENCE_SAMPLES = 8         # ... and sequences of a language model
FROZEN_SAMPLES = 4           # probe samples a static radiograph with frozen factors averages over
MIN_NEURON_SAMPLES = 4       # the fewest a smaller size leaves to neuron modes
MIN_UNITS = 4                # ... and units to a radiograph
MIN_TOP = 8                  # ... and leading singular values to a partial spectrum
# Runs in turns predict an unlabelled probe's classes anew within this many runs, a share of the
# samples each run (predicting the whole probe each run was 70% of a ResNet-18's characteristic-
# maps run at the smallest size; once in ten runs, its first run cost 4 times a later one)
PREDICTION_RUNS = 10
REDUCED = "fewer to refresh within the budget"   # how a note says the size was reduced
# Clusters of the RWC trends (SPEC 4.1), as the trend panel colours its lines:
CLUSTER_MIN_LAYERS = 3       # fewer and a partition says nothing
CLUSTER_MIN_SAMPLES = 8      # shorter trends have no shape to compare yet
CLUSTER_MAX_POINTS = 500     # the trends are averaged into at most this many buckets first
CLUSTER_MIN_POINTS = 50      # ... at the smallest size


@dataclass
class Job:
    """What one run of a heavy analysis is given; a runner takes it and returns its results.

    ``model``: the model's copy, holding the weights of ``step`` (None for a runner that reads
    only the history); ``probe``: the monitor's probe, ``x`` or ``(x, y)`` (None before there is
    one); ``history``: the monitor's history (read it, never record: the runner's results are
    recorded); ``step``: the training step the run was offered at; ``report(layer, exc)``: keep
    a fault confined to one layer in ``monitor.errors`` at ``step`` while the run goes on;
    ``optimizer``: the optimizer's class and hyperparameters (``Monitor.optimizer_settings``),
    None without one; ``size``: the share of its full live work the run does (1, or down to
    1/256 so that every panel refreshes within the budget: the scheduler's; the runner's notes
    say what it left out); ``final``: a run of the round that ends the run (``detach``): every
    layer at once, none left to a later turn."""
    model: nn.Module | None
    probe: object
    history: object
    step: int
    report: Callable[[str | None, BaseException], None]
    optimizer: dict | None = None
    size: float = 1.0
    final: bool = False


def live(full: int, size: float, least: int = 1) -> int:
    """How many of ``full`` (samples, units, directions) a run of ``size`` takes: at least
    ``least`` (or ``full``, when fewer)."""
    return max(min(least, full), min(full, round(full * size)))


# One tracker per analysed copy: its partial spectra start from the previous run's (the copy is
# refreshed in place between runs; a reshaped model gets a new copy, so a new tracker); a new
# one when the live size changes what it tracks. And where the next run at a smaller size
# takes up the layers.
_TRACKERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_TURNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_RADIOGRAPH_TURNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # ... the radiographs'
_CLASS_TURNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # ... the maps' next class
_UNIT_TURNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()    # ... (class, units) last
_PREDICTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # ... (``_kept``)


def spectrum(job: Job) -> dict:
    """Singular values of every weight, descending (SPEC 4.4): ``SpectrumTracker``, exact up to
    its ``max_exact`` elements, above it the leading values warm-started from the last run's.
    With them the ranks as the analysis computes them (a partial spectrum lists only its leading
    values: its stable rank comes from the exact Frobenius norm, its effective rank is NaN), and
    "power_law": the piecewise power law fitted to each spectrum at every rank
    (``power_law_line``), so that no panel re-derives them from the values kept. A fit that
    fails leaves that layer's line NaN, reported; the spectra are recorded all the same.

    A smaller ``size`` tracks more weights partially (``max_exact`` x size) and fewer leading
    values (``top`` x size, at least ``MIN_TOP``); each layer's record keeps the length its full
    size gives, NaN past the values computed, and a note names the layers reduced. It also
    takes the layers in turns (not in the ``final`` round): from where the last run stopped, as
    many as hold ``size`` of the weights' elements (at least one layer); the others are not in
    this run's record."""
    settings = (live(PARTIAL_TOP, job.size, MIN_TOP), round(MAX_EXACT * min(1.0, job.size)))
    kept = _TRACKERS.get(job.model)
    if kept is None or kept[0] != settings:
        kept = _TRACKERS[job.model] = (settings, SpectrumTracker(settings[0], max_exact=settings[1]))
    layers = None if job.final else _turn(job.model, job.size)
    spectra = kept[1].update(job.model, layers=layers)
    values, reduced = {}, []
    for layer, s in spectra.items():
        length = _spectrum_length(s.shape)
        values[layer] = np.pad(s.singular_values, (0, length - len(s.singular_values)),
                               constant_values=np.nan)
        if len(s.singular_values) < length:
            reduced.append(layer)
    fits = {}
    for layer, s in values.items():
        try:
            fits[layer] = power_law_line(s)
        except Exception as exc:
            fits[layer] = np.full(len(s), np.nan)
            job.report(layer, exc)
    out = {"spectrum": values,
           "stable_rank": {layer: s.stable_rank for layer, s in spectra.items()},
           "effective_rank": {layer: s.effective_rank for layer, s in spectra.items()},
           "power_law": fits}
    notes = []
    if layers is not None:
        notes.append(f"live: the layers in turns, about {_share(job.size)} of the weights a run")
    if reduced:
        notes.append(f"live: the leading {settings[0]} singular values of {', '.join(reduced)}")
    if notes:
        out[NOTES] = {"": f"{'; '.join(notes)} ({REDUCED})"}
    return out


def _turn(model: nn.Module, size: float) -> list[str] | None:
    """The weights a spectrum run of ``size`` takes: all (None) at full size; else from where the
    last run stopped, in order, until they hold ``size`` of the elements (at least one)."""
    if size >= 1:
        return None
    weights = [(n, p.numel()) for n, p in model.named_parameters() if p.ndim >= 2]
    return _in_turns(_TURNS, model, weights, size)


def _in_turns(turns: weakref.WeakKeyDictionary, model: nn.Module,
              items: list[tuple[str, float]], share: float) -> list[str] | None:
    """Of ``items`` (name, weight), in order, those a run taking ``share`` of their weight takes:
    from where the last run stopped (kept in ``turns`` for ``model``) until they hold that share
    (at least one); None when that is all of them."""
    total = sum(weight for _, weight in items)
    start = turns.get(model, 0) % len(items)
    taken, held = [], 0
    for name, weight in items[start:] + items[:start]:
        if taken and held + weight > share * total:
            break
        taken.append(name)
        held += weight
    turns[model] = start + len(taken)
    return None if len(taken) == len(items) else taken


def _share(size: float) -> str:
    return f"1/{round(1 / size)}" if size < 1 else "all"


def _spectrum_length(shape) -> int:
    """Values a weight's spectrum lists at full size: all of them, or ``PARTIAL_TOP`` where
    ``mode_spectrum``'s defaults make it partial."""
    rows, cols = shape[0], math.prod(shape[1:])
    partial = rows * cols > MAX_EXACT and min(rows, cols) > 8 * PARTIAL_TOP
    return PARTIAL_TOP if partial else min(rows, cols)


@dataclass(frozen=True)
class _Pass:
    """What the runs take from one plain pass of the first probe samples, all of it structure:
    the weight layers the forward runs (``called``), whether the input is tokens, the bytes of
    layer output per sample, the shape of the model's output (None without one)."""
    called: list[str]
    tokens: bool
    sample_bytes: int
    output_shape: tuple[int, ...] | None


@dataclass
class _Prepared:
    """What one run takes from the model and the probe once: the probe's inputs (all of them),
    its class labels (``labels``: given with the probe, one integer per sample, else None) and
    ``first``, the structure a pass of the first probe samples shows (``_Pass``)."""
    inputs: ModelInputs
    labels: torch.Tensor | None
    first: _Pass

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
        shape = self.first.output_shape
        if shape is not None and len(shape) == 2 and shape[1] >= 2 and not self.language():
            return int(shape[1])
        return None

    def language(self) -> bool:
        """Token inputs and next-token logits [B, T, V]."""
        shape = self.first.output_shape
        return self.labels is None and self.first.tokens and shape is not None and len(shape) == 3


def class_labels(y):
    """The probe's labels when they are classes (one integer per sample), else None: next
    tokens, regression targets and masks are not classes."""
    if (y is None or y.ndim != 1 or not len(y) or y.is_floating_point() or y.is_complex()
            or y.dtype == torch.bool):
        return None
    return y


def _prepare(job: Job) -> _Prepared:
    """The probe as the analyses take it, and the structure of a plain pass of its first two
    samples (a model that normalises with batch statistics, which neuron modes take as they
    are, cannot run on one): that pass runs once per copy and probe, not in every run (it was
    a third of a ResNet-18's neuron-modes run). Probe labels count as classes when they are one
    integer per sample; others (next tokens, regression targets) are not used."""
    x, y = _split(job.probe)
    inputs = as_inputs(x, job.model)
    probe, first = _PASSES.get(job.model, (None, None))
    if probe is not job.probe:
        cap = capture(job.model, inputs.rows(0, min(2, inputs.batch)))
        if not cap.called:
            raise UnsupportedModel(f"no weight layer runs in {type(job.model).__name__}'s forward")
        first = _Pass(cap.called, cap.tokens, cap.sample_bytes,
                      None if cap.output is None else tuple(cap.output.shape))
        _PASSES[job.model] = (job.probe, first)
    return _Prepared(inputs, class_labels(y), first)


# The plain pass's structure, per analysed copy: (the probe it ran on, its _Pass)
_PASSES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


# The weight layers a full static pass of an analysed copy ran, in order, each with whether
# factors were frozen before it (a radiograph of it then averages FROZEN_SAMPLES samples): what a
# run in turns picks its layers from, and the samples its one pass takes. Structural: the same
# copy gives the same answer unless its forward branches on values, which the pass then shows.
_STATIC: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def radiograph(job: Job) -> dict:
    """Signed static radiograph of the first ``RADIOGRAPH_UNITS`` units of every weight layer
    the forward runs, in ``pathway_layers`` order, from one pass (SPEC 4.2): [units, inputs], or
    for token inputs [units, positions], the strength of the pathways from each position (the
    L2 norm over embedding dimensions). Taken on the first probe sample when nothing is frozen
    (the static network is then linear), else averaged over the first ``FROZEN_SAMPLES``. One
    static pass per run, the radiographs' own: of the first sample, or of the first
    ``FROZEN_SAMPLES`` when factors are frozen before the run's layers (``_STATIC``); a second
    only when a pass of one sample finds factors frozen (the first run of such a model). A
    smaller ``size`` computes fewer of the first units (at least ``MIN_UNITS``); the rows of the
    others are NaN (gaps), so that every record of a layer has the rows its full size gives.
    Below the size that leaves ``MIN_UNITS`` (not in the ``final`` round) it takes the layers in
    turns, as many as the rest of the size leaves (at least one; each layer's pull-back costs
    about the same), and the pass ends at the deepest of them: a record holds the layers of its
    run only."""
    model = job.model
    inputs = as_inputs(_split(job.probe)[0], model)
    units = live(RADIOGRAPH_UNITS, job.size, MIN_UNITS)
    share = job.size * RADIOGRAPH_UNITS / units     # of the layers: 1 until units is the least
    in_turns = share < 1 and not job.final

    def turn(order) -> list[str] | None:
        return _in_turns(_RADIOGRAPH_TURNS, model, [(layer, 1) for layer in order], share)

    known = _STATIC.get(model)
    layers = turn(known) if known is not None and in_turns else None
    averaged = known is not None and any(known[layer] for layer in layers or known)

    def static_pass(rows: int) -> Capture:
        # a pass for some layers ends at the deepest (on a ResNet-18 the whole forward was
        # 28 of a run's 36 ms at 1/256, the layers' pull-backs the rest)
        return capture(model, inputs.rows(0, min(rows, inputs.batch)), static=True,
                       layers=layers, stop=layers is not None)

    with torch.inference_mode(False), torch.enable_grad():
        cap = static_pass(FROZEN_SAMPLES if averaged else 1)
        if cap.frozen and not averaged and inputs.batch > 1:
            cap = static_pass(FROZEN_SAMPLES)
    if not cap.called:
        raise UnsupportedModel(f"no weight layer runs in {type(model).__name__}'s forward")
    if layers is None:
        _STATIC[model] = {layer: bool(cap.frozen_at.get(layer)) for layer in cap.called}
        if in_turns:                        # the first run in turns: its pass ran them all
            layers = turn(cap.called)
    maps = static_radiographs_from(model, cap, units=units, layers=layers)
    modules = dict(model.named_modules())
    out, notes = {"radiograph": {}}, {}
    for layer, r in maps.items():
        values = (r.norm(dim=-1) if cap.tokens else r.flatten(1)).cpu().numpy()
        z = cap.outputs[layer]
        rows = min(RADIOGRAPH_UNITS, z.shape[unit_axis(modules[layer]) % z.ndim])
        out["radiograph"][layer] = np.pad(values, ((0, rows - len(values)), (0, 0)),
                                          constant_values=np.nan)
    if units < RADIOGRAPH_UNITS:
        turns = f", the layers in turns, about {_share(share)} of them a run" if layers else ""
        notes[""] = f"live: the first {units} units of each layer{turns} ({REDUCED})"
    frozen = list(dict.fromkeys(f for r in maps.values() for f in r.frozen))
    if frozen:
        notes[""] = " · ".join(filter(None, (notes.get(""), f"{FROZEN_NOTE}{', '.join(frozen)}")))
    if notes:
        out[NOTES] = notes
    return out


def neuron_modes(job: Job) -> dict:
    """Active fraction of every activation's neurons over the first ``NEURON_SAMPLES`` probe
    samples (SPEC 4.3; its modes follow from it), and per class ("neuron_classes", [C, n]) when
    the probe has classes: its labels, else the model's predicted classes when its output is
    class scores [B, C] (from the analysed pass's own output). A fraction from n observations
    has a standard error of at most 0.5 / sqrt(n): 0.0625 for a dense unit, less for a
    convolution's channel (every position is an observation); the note says so. A smaller
    ``size`` takes fewer samples (at least ``MIN_NEURON_SAMPLES``); below the size that leaves
    those (not in the ``final`` round), the activations in turns: those after as many of the
    weight layers that activations follow as the rest of the size leaves (from where the last
    run stopped, at least one), the pass ending at the next weight layer. A record then holds
    the activations of its run only, and a pass that ends before the output takes the
    predicted classes kept from the last runs (``_kept``). The first run
    is a whole pass (which layers activations follow is learnt from it)."""
    model = job.model
    prep = _prepare(job)
    full = prep.count(NEURON_SAMPLES)
    samples = live(NEURON_SAMPLES, job.size, MIN_NEURON_SAMPLES)
    x = prep.inputs.rows(0, prep.count(samples))
    share = job.size * NEURON_SAMPLES / samples     # of the layers: 1 until samples is the least
    order, owners = _OWNERS.get(model, (None, None))
    turn = None if share >= 1 or job.final or owners is None else \
        _in_turns(_NEURON_TURNS, model, [(order[i], 1) for i in owners], share)
    what = f"the probe x ({x.describe()})"
    cap = None
    if turn is not None:
        # the pass ends at the weight layer after the turn's deepest (a whole pass of a
        # ResNet-18's four samples was 46 of its neuron-modes run's 74 ms)
        indices = {order.index(layer) for layer in turn}
        end = order[max(indices) + 1:max(indices) + 2]       # none after the last layer
        cap = capture(model, x, sites=True, layers=end or None, stop=bool(end), what=what)
        cap.sites = [site for site in cap.sites if _owner(site) in indices]
    if cap is None or not cap.sites:      # (none: a forward that branches on values)
        turn, cap = None, capture(model, x, sites=True, what=what)
        _OWNERS[model] = (cap.called, sorted({_owner(site) for site in cap.sites}))
    n_classes = prep.n_classes()
    if prep.labels is not None:
        y = prep.labels[:x.batch]
    elif n_classes is not None:
        # a pass that ends before the output takes those kept (``_kept``: one sample's
        # prediction a run); a whole pass's own are kept for them
        y = _kept(_NEURON_CLASSES, job, x.batch, x, every=True,
                  known=None if cap.output is None else cap.output.argmax(1))
    else:
        y = None
    modes = modes_from_capture(model, cap, x.batch, y=y, num_classes=n_classes if y is not None
                               else None, with_order=False)
    out = {"neuron_modes": {layer: m.active_fraction.numpy() for layer, m in modes.items()}}
    if y is not None:
        out["neuron_classes"] = {layer: m.class_active_fraction.numpy() for layer, m in modes.items()}
    out[NOTES] = {module: f"{BLIND_NOTE}{why}" for module, why in modes.not_analysable.items()}
    taken = f"{x.batch} of {full} probe samples ({REDUCED})" if x.batch < full else \
        f"{x.batch} probe samples"
    reduced = []
    if turn is not None:
        reduced.append(f"the activations in turns, those of about {_share(share)} of the "
                       "layers a run")
    if y is not None and prep.labels is None and cap.output is None:
        reduced.append(f"the classes as predicted at most {PREDICTION_RUNS - 1} runs before")
    out[NOTES][""] = (f"live from the first {taken}: an active fraction's standard error is at "
                      f"most {0.5 / math.sqrt(x.batch):.2g} (a dense unit; less where positions "
                      f"add observations){''.join(f'; {r}' for r in reduced)}")
    return out


# Per analysed copy: from a whole pass, the weight layers in the order the forward runs them and
# (their indices) those activations follow; where the next neuron-modes run in turns takes those
# up; and the predicted classes its passes take (``_kept``)
_OWNERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_NEURON_TURNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_NEURON_CLASSES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _owner(site) -> int:
    """The weight layer an activation follows: the last the pass ran before it (the first, for
    one before any), as its index in ``Capture.called``."""
    return max(site.after - 1, 0)


def characteristic_maps(job: Job) -> dict:
    """Characteristic maps of the output layer (the last weight layer the forward runs, SPEC
    4.2): class averages [C, n_out, inputs] over at most ``CLASS_SAMPLES`` probe samples of
    each class; for a language model the map of each position's predicted next token over the
    input positions averaged over the first ``SEQUENCE_SAMPLES`` sequences, [1, T, T]. The
    passes are sized from the prepared one (no sizing pass of their own). A smaller ``size``
    takes fewer samples of each class (of sequences), at least one; below one a class, the
    classes in turns (not in the ``final`` round, which takes them all; a first run of every
    class took a ResNet-18 0.94 s, 35 s of its budget):
    from where the last run stopped, as many of those in the probe as ``size`` leaves (at least
    one); the others are NaN in this run's record, as a class no probe sample has is in every
    record (a 10M-parameter CNN's run took 1.7 s at one sample of each of its 10 classes).
    Below one class's worth, one class a run and its output units in turns as well (a Linear's
    or a convolution's): as many as the size leaves, the others NaN."""
    model = job.model
    per_class = live(CLASS_SAMPLES, job.size)
    share = CLASS_SAMPLES * job.size      # samples of each class a run may take
    sequences = live(SEQUENCE_SAMPLES, job.size)
    reduced = f" ({REDUCED})" if job.size < 1 else ""
    prep = _prepare(job)
    x = prep.inputs.rows(0, prep.count())
    layer = prep.first.called[-1]
    chunk = samples_per_chunk(prep.first.sample_bytes)
    n_classes = prep.n_classes()
    if prep.language():
        maps = pathways.characteristic_maps(model, x.rows(0, sequences), layer,
                                            chunk_size=chunk).mean(0, keepdim=True)
        note = f"live: averaged over the first {min(x.batch, sequences)} probe sequences{reduced}"
    elif n_classes is None:
        raise UnsupportedModel("characteristic maps need class labels: give probe=(x, y), or a "
                               "model whose output is class scores [B, C] or next-token logits "
                               "[B, T, V]")
    else:
        in_turns = not (job.final or share >= 1)
        if prep.labels is not None:
            y = prep.labels[:x.batch].to(torch.int64)
        elif in_turns:
            y = _kept(_PREDICTIONS, job, None, x)
        else:
            y = _predicted(model, x, n_classes, per_class)
            _PREDICTIONS.pop(model, None)         # those kept would be older than they say
        present = [c for c in torch.unique(y).tolist() if c >= 0]    # -1: not predicted yet
        classes_share = share * n_classes         # classes' worth a run may take
        width = _output_units(model.get_submodule(layer))
        units = RADIOGRAPH_UNITS if width is None else list(range(width))
        if not in_turns:
            classes = present
        elif classes_share >= 1 or width is None:
            classes = _class_turn(model, present, max(1, round(classes_share)))
        else:
            # below a class's worth, its output units in turns too: each costs a pull-back
            # through the whole network (ten of them were a ResNet-18's 0.37 s run at 1/64)
            per_run = max(1, round(classes_share * width))
            c, part = _unit_turn(model, present, math.ceil(width / per_run))
            classes, units = [c], units[part * per_run: (part + 1) * per_run]
        index = torch.cat([(y == c).nonzero().flatten()[:per_class] for c in classes])
        maps = pathways.characteristic_maps(model, x.take(index), layer, y=y[index],
                                            num_classes=n_classes, units=units,
                                            chunk_size=chunk)
        some = width is not None and len(units) < width
        if some:                           # the other units NaN, as the other classes are
            whole = torch.full((maps.shape[0], width, *maps.shape[2:]), math.nan,
                               dtype=maps.dtype, device=maps.device)
            whole[:, units] = maps
            maps = whole
        turns = (f", {len(classes)} of the {len(present)} classes in the probe"
                 f"{f' and {len(units)} of its {width} output units' if some else ''} a run, "
                 "in turns" if len(classes) < len(present) or some else "")
        unknown = int((y < 0).sum())
        kept = (f"; the classes as predicted at most {PREDICTION_RUNS - 1} runs before"
                f"{f' ({len(y) - unknown} of {len(y)} probe samples so far)' if unknown else ''}"
                if in_turns and prep.labels is None else "")
        note = (f"live: class averages over at most {per_class} probe "
                f"sample{'s' if per_class > 1 else ''} of each class{turns}{kept}{reduced}")
    return {"characteristic_maps": {layer: maps.flatten(2).float().cpu().numpy()}, NOTES: {"": note}}


def _class_turn(model: nn.Module, present: list[int], count: int) -> list[int]:
    """``count`` of the classes ``present`` (sorted), from the one after the last run's last."""
    start = _CLASS_TURNS.get(model, 0)
    taken = ([c for c in present if c >= start] + [c for c in present if c < start])[:count]
    _CLASS_TURNS[model] = taken[-1] + 1
    return taken


def _unit_turn(model: nn.Module, present: list[int], parts: int) -> tuple[int, int]:
    """The (class, part of its output units) after the last run's: a class's ``parts`` in order,
    then the next class ``present`` (sorted)."""
    c, part = _UNIT_TURNS.get(model, (-1, parts))
    if part + 1 < parts and c in present:
        taken = (c, part + 1)
    else:
        taken = (next((k for k in present if k > c), present[0]), 0)
    _UNIT_TURNS[model] = taken
    return taken


def _output_units(module: nn.Module) -> int | None:
    """Units of the output layer the maps show (at most ``RADIOGRAPH_UNITS``): a Linear's
    outputs, a convolution's channels; None for other layers (all their units every run)."""
    units = getattr(module, "out_features", None) or getattr(module, "out_channels", None)
    return None if units is None else min(RADIOGRAPH_UNITS, int(units))


def _kept(cache: weakref.WeakKeyDictionary, job: Job, key, x: ModelInputs, *,
          known: torch.Tensor | None = None, every: bool = False) -> torch.Tensor:
    """Predicted classes of the samples ``x``, kept in ``cache`` for ``job.model``: each
    predicted anew once in ``PREDICTION_RUNS`` runs, a share of them a run, in turns (a run
    predicting them all once in ten runs made a ResNet-18's first characteristic-maps run cost
    4 times a later one, 183 of its 250 ms for the 16-sample probe, and its debt held the next
    panels for 8 s). Those not predicted yet are -1; ``every``: none is (a run with none kept
    predicts them all). ``known``: the classes of all of them from the run's own pass, kept
    instead. Anew for another probe or another ``key`` (what else they depend on)."""
    probe, kept, y, run = cache.get(job.model, (None, None, None, 0))
    fresh = probe is job.probe and kept == key and y is not None and len(y) == x.batch
    if known is not None:
        y, run = known.to(torch.int64), 0
    elif every and not fresh:
        y, run = _classes_of(job.model, x), 0
    else:
        if not fresh:
            y, run = None, 0
        # the samples of run k (from 0): those i with floor(i x PREDICTION_RUNS / batch) = k
        start, stop = (-(-k * x.batch // PREDICTION_RUNS) for k in (run, run + 1))
        if stop > start:          # (always at run 0)
            part = _classes_of(job.model, x.rows(start, stop))
            if y is None:
                y = torch.full((x.batch,), -1, dtype=torch.int64, device=part.device)
            y[start:stop] = part
        run = (run + 1) % PREDICTION_RUNS
    cache[job.model] = (job.probe, key, y, run)
    return y


def _classes_of(model: nn.Module, x: ModelInputs) -> torch.Tensor:
    """The model's predicted classes of the samples ``x`` (its output's argmax)."""
    with torch.no_grad():
        return first_tensor(call_model(model, x)).argmax(1).to(torch.int64)


def _predicted(model: nn.Module, x: ModelInputs, n_classes: int, per_class: int) -> torch.Tensor:
    """The model's predicted classes of the first samples of ``x``, as far as it takes to find
    ``per_class`` of every class (all of ``x`` when some class has fewer): the same samples are
    then taken as from every prediction. Predicted in passes of ``n_classes`` x ``per_class``
    samples, doubling: a 10M-parameter CNN's prediction of a whole probe was half of its
    characteristic maps' run at the smallest size, which takes one sample of each class."""
    parts, done, chunk = [], 0, n_classes * per_class
    counts = torch.zeros(n_classes, dtype=torch.int64)
    while done < x.batch and bool((counts < per_class).any()):
        stop = min(x.batch, done + chunk)
        y = _classes_of(model, x.rows(done, stop))
        counts += torch.bincount(y.cpu(), minlength=n_classes)[:n_classes]
        parts.append(y)
        done, chunk = stop, 2 * chunk
    return torch.cat(parts)


def _split(probe):
    """(x, y) of a probe: x alone, or x and its labels."""
    return probe if isinstance(probe, tuple) else (probe, None)


def clusters(job: Job) -> dict:
    """Clusters of the layers' RWC trends (SPEC 4.1, ``cluster_layers`` with its defaults) on
    the series of the steps every layer has (``aligned_series``) averaged into at most
    ``CLUSTER_MAX_POINTS`` buckets (x a smaller ``size``, at least ``CLUSTER_MIN_POINTS``;
    ``bucket_means``): "rwc_clusters", {layer: label} (float64),
    recorded at the newest RWC step clustered. Nothing (not an error) while there are fewer
    than ``CLUSTER_MIN_LAYERS`` layers or ``CLUSTER_MIN_SAMPLES`` common samples, or a layer
    has a bucket with no finite mean. K-Means runs on one OpenMP thread, as the worker does."""
    steps, series = aligned_series(job.history, "rwc")
    if len(series) < CLUSTER_MIN_LAYERS or len(steps) < CLUSTER_MIN_SAMPLES:
        return {}
    matrix = np.stack(list(series.values()))
    _, means = bucket_means(np.arange(matrix.shape[1]), matrix.T,
                            live(CLUSTER_MAX_POINTS, job.size, CLUSTER_MIN_POINTS))
    if not np.isfinite(means).all():
        return {}
    with _one_thread():
        partition = cluster_layers(dict(zip(series, means.T)))
    return {"rwc_clusters": {layer: np.float64(label) for layer, label in partition.labels.items()},
            STEP: int(steps[-1])}


def _one_thread():
    """OpenMP (scikit-learn's K-Means) on one thread inside: a second thread team beside the
    training loop's slows both on few cores."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:      # scikit-learn brings it; without it, as many threads as OpenMP says
        return nullcontext()
    return threadpool_limits(limits=1, user_api="openmp")


def clusters_ready(monitor) -> bool:
    history = monitor.history
    return ("rwc" in monitor.analyses and history.count("rwc") >= CLUSTER_MIN_SAMPLES
            and len(history.layers("rwc")) >= CLUSTER_MIN_LAYERS)
