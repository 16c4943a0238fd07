"""Attaching analyses to a training loop: cadence, overhead accounting, history, errors.

The monitor runs inside the user's training step, so every fault it meets is caught and kept in
``monitor.errors``; only KeyboardInterrupt and friends (not Exception) pass through.
"""

from __future__ import annotations

import math
import os
import time
import traceback
import warnings
from collections.abc import Callable

import torch
from torch import nn

from . import distributed
from ..analysis.capture import capture
from ..analysis.inputs import ModelInputs, as_inputs
from ..analysis.rwc import RWC_KINDS, RwcTracker
from .heavy import HEAVY, HeavyAnalyses
from ..runs.history import History
from .pacing import Pacer, every_within
from ..runs.run_file import SUFFIX, RunFileError
from ..runs.run_state import MonitorError, RunState
from ..runs.run_view import ProbeFacts
from ..runs.run_writer import RunWriter

__all__ = ["Monitor", "MonitorError"]

PROBE_SIZE = 256            # samples of the first training batch kept as the default probe
RUNS_FOLDER = "nnmodes_runs"   # where runs are recorded by default, under the working directory


class Monitor:
    """Watch a model while it trains.

    ``Monitor(model, optimizer, every=10)`` hooks ``optimizer.step`` (``register_step_post_hook``);
    without an optimizer the loop calls ``monitor.step()`` after each update. Every ``every``
    steps it records the relative weight change (SPEC 4.1, ``rwc_kind``) of each weight since the
    previous sample into ``monitor.history`` under ``"rwc"``, keyed by parameter name.

    ``budget`` bounds how much slower training runs with the monitor (monitored / bare step time
    - 1, measured from the steps themselves: ``nnmodes_widgets.pacing``); the background
    analyses are paced to stay within it. ``probe`` — a batch ``x`` or ``(x, y)`` — is kept for
    the sample-dependent analyses. ``x`` is
    what the model's forward takes: a tensor, a dict of keyword inputs (``input_ids``,
    ``attention_mask``, ...) or ``nm.analysis.ModelInputs(args, kwargs)``; it is never cast
    (token ids stay integers) and is run through the model once here: a probe that does not fit
    is refused at once, quoting the model's error. Without a probe, the first training batch
    the model sees becomes the probe: every positional and keyword argument of that forward
    call, the first ``PROBE_SIZE`` samples of each batched tensor.

    ``history_mb`` (default 512, ``None``: unbounded) is the memory cap per analysis of the
    recorded history; when an analysis exceeds it, it keeps every stride-th sample (evenly
    spaced, plus the newest), the stride doubling as needed, and a notice is kept in
    ``monitor.notices``.

    ``run`` records the run to disk as it goes (SPEC 11; read it with ``nm.open_run``, also
    from another process while it is written): by default to
    ``nnmodes_runs/<YYYYmmdd-HHMMSS>-<model class>.nnmodes`` under the working directory, or to
    the path given; ``run=False`` records nothing. ``monitor.run_path`` says where. The file
    holds every value of the history (floats as float32), the errors and notices, the model's
    class and parameter shapes and the monitor's settings; it is written from a background
    thread, committed at least every 2 s, and closed as "finished" by ``detach()``. A write
    error (a full disk) stops the recording with a notice; training goes on.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        probe=None,
        every: int = 10,
        budget: float = 0.05,
        rwc_kind: str = "l1",
        include_bias: bool = False,
        analyses=None,
        history_mb: float | None = 512,
        run: str | os.PathLike | bool | None = None,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"Monitor expects a torch.nn.Module as model, got {type(model).__name__}")
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"Monitor expects a torch.optim.Optimizer (or None), got {type(optimizer).__name__}"
            )
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 < budget <= 1:
            raise ValueError(f"budget must be a fraction in (0, 1], got {budget!r}")
        chosen = analyses is not None      # by name: each runs whatever its cost
        analyses = ("rwc", *HEAVY) if analyses is None else tuple(analyses)
        unknown = [a for a in analyses if a not in ("rwc", *HEAVY)]
        if unknown:
            raise ValueError(f"unknown analyses {unknown}; choose from {['rwc', *HEAVY]}")
        if rwc_kind not in RWC_KINDS:
            raise ValueError(f"unknown rwc_kind {rwc_kind!r}; choose one of {', '.join(map(repr, RWC_KINDS))}")
        if history_mb is not None and (isinstance(history_mb, bool) or not isinstance(history_mb, (int, float))
                                       or not 0 < history_mb < math.inf):
            raise ValueError(f"history_mb must be None or a positive number of megabytes, got {history_mb!r}")
        if not (run is None or run is False or isinstance(run, (str, os.PathLike))):
            raise TypeError(f"run must be None (record to {RUNS_FOLDER}/), False (record nothing) "
                            f"or a path, got {run!r}")
        # Under torch.distributed every process makes its monitor; only rank 0 records, shows
        # and runs the background analyses (SPEC 5). DDP's wrapper is looked through.
        model = distributed.unwrap(model)
        self.rank = distributed.rank()
        self.model = model
        self.optimizer = optimizer
        self.probe = _check_probe(probe, model)
        self.every = every
        self.budget = float(budget)
        self.rwc_kind = rwc_kind
        self.include_bias = include_bias
        self.analyses = analyses

        weights = self._weights()
        if not weights:
            what = "parameters" if include_bias else "weights with ndim >= 2"
            raise ValueError(f"nothing to analyse: {type(model).__name__} has no {what}")
        # FSDP2 shards the weights: RWC sums each process's shards and adds them up across
        # processes (every rank takes part); a background analysis would need the whole
        # weights on rank 0, gathered by every rank at once, which a worker thread cannot do.
        sharded = any(distributed.is_sharded(p) for p in weights.values())
        if self.rank != 0:
            run = False
            self.analyses = analyses = ("rwc",) if sharded and "rwc" in analyses else ()
        heavy = [] if sharded else [a for a in analyses if a in HEAVY]

        self.history_mb = history_mb     # kept for the thinning notice
        self.history = History(max_bytes=None if history_mb is None else int(history_mb * 2**20),
                               on_thin=self._history_thinned)
        # Thread ownership: the training thread steps, samples RWC and calls the listeners; the
        # worker thread records the background analyses and notices; panel threads read and
        # report their faults. What more than one of them touches is the history (its own lock)
        # and the run state (the step, errors, notices, non-finite layers: run_state).
        self._state = RunState()
        self._probe_facts: tuple[int, ProbeFacts] | None = None   # (id of the probe, its facts)
        self._writer: RunWriter | None = None
        self._writer = self._open_run(run, weights)    # last of the checks: it creates a file
        if self._writer is not None:
            self.history.on_record = self._writer.record
            self._record_probe_facts()
        if sharded and any(a in HEAVY for a in analyses):
            self.report_notice("schedule", None, "background analyses are off: the weights are "
                               "sharded (FSDP); RWC is computed from every process's shards")
        self._tracker = RwcTracker(_local(weights), kind=rwc_kind,
                                   reduce=distributed.sum_across_processes() if sharded else None)
        self._identity = {name: id(p) for name, p in weights.items()}
        self._listeners: list[Callable[[Monitor], None]] = []
        self._overhead_total = 0.0
        self._last_overhead, self._last_sampled = 0.0, False   # the step under way, for the pacer
        self._detached = False
        # A background second stalls a CPU training loop's parallel regions on a busy core (each
        # waits for its slowest thread): the prior contention is one per intra-op thread, until
        # the steps themselves have measured it.
        on_cuda = any(p.is_cuda for p in model.parameters())
        self.pacer = Pacer(self.budget, prior_contention=1 if on_cuda else max(1, torch.get_num_threads()))
        self._heavy = HeavyAnalyses(self, heavy, optional=() if chosen else heavy)
        self._hooks = []
        if optimizer is not None:
            self._hooks.append(optimizer.register_step_post_hook(self._on_optimizer_step))
        self._probe_hook = (model.register_forward_pre_hook(self._capture_probe, with_kwargs=True)
                            if self.probe is None else None)

    # -- the training-loop side ------------------------------------------------------------------

    def step(self) -> None:
        """Count one training step; sample every ``every`` steps. Never raises an Exception."""
        if self._detached:
            warnings.warn("monitor.step() called on a detached Monitor; ignored", stacklevel=2)
            return
        t0 = time.perf_counter()
        self.pacer.step(t0, self._last_overhead, self._last_sampled)   # the step that ended
        step = self._state.advance()
        sampled = step % self.every == 0
        if sampled:
            if "rwc" in self.analyses:
                self._guarded("rwc", self._sample_rwc, step)
            self._guarded("schedule", self._heavy.offer, step)
        self.notify()
        overhead = time.perf_counter() - t0     # inside the step that begins at t0
        self._overhead_total += overhead
        self._last_overhead, self._last_sampled = overhead, sampled

    def notify(self) -> None:
        """Tell the listeners (widgets) that there is news: a step, a sample, a finished analysis."""
        for listener in list(self._listeners):
            self._guarded("listener", listener, self)

    def _on_optimizer_step(self, optimizer, args, kwargs) -> None:
        self.step()

    def _capture_probe(self, module, args, kwargs) -> None:
        """The first training batch becomes the probe: every argument of the forward call, the
        first PROBE_SIZE samples of each batched tensor, detached copies; then the hook removes
        itself. A lone positional tensor is kept as a tensor."""
        try:
            inputs = as_inputs(ModelInputs(tuple(args), dict(kwargs)), what="the first batch")
        except (TypeError, ValueError):
            inputs = None    # nothing batched to keep: the sample analyses wait for a probe
        if self.probe is None and inputs is not None:
            inputs = inputs.rows(0, PROBE_SIZE).map(torch.Tensor.clone)
            lone = len(inputs.args) == 1 and not inputs.kwargs and \
                isinstance(inputs.args[0], torch.Tensor)
            self.probe = inputs.args[0] if lone else inputs
            self._record_probe_facts()
        self._remove_probe_hook()

    def _remove_probe_hook(self) -> None:
        if self._probe_hook is not None:
            self._probe_hook.remove()
            self._probe_hook = None

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every analysis already scheduled is in the history; False on timeout.

        RWC is computed inside the step; the heavier analyses run in the background.
        """
        return self._heavy.flush(timeout)

    def detach(self) -> None:
        """Flush, find the phases of the whole run once more, then remove every hook this monitor
        added. The history stays readable."""
        if self._detached:
            return
        self._heavy.finish(self.current_step)     # flushes: every scheduled analysis is in
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()
        self._remove_probe_hook()
        self._heavy.close()
        if self._writer is not None:
            self._writer.update_info(stats=_jsonable_stats(self.stats()))
            self._writer.close("finished")
        self._detached = True
        self.notify()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc) -> None:
        self.detach()

    # -- state for status lines and widgets ----------------------------------------------------------

    @property
    def run_path(self) -> str | None:
        """The file this run is recorded to (``nm.open_run`` reads it), None when not recorded."""
        return self._writer.path if self._writer is not None else None

    @property
    def current_step(self) -> int:
        return self._state.step

    @property
    def detached(self) -> bool:
        return self._detached

    @property
    def errors(self) -> list[MonitorError]:
        """Analysis failures, newest last (the newest 1000; ``error_count`` counts them all)."""
        return self._state.errors

    @property
    def error_count(self) -> int:
        return self._state.error_count

    @property
    def notices(self) -> list[MonitorError]:
        """Conditions that are not faults (a layer added, what an analysis leaves out), newest
        last."""
        return self._state.notices

    @property
    def nonfinite(self) -> dict[str, int]:
        """Layer -> the step its weights were first seen NaN or inf."""
        return self._state.nonfinite

    @property
    def layers(self) -> list[str]:
        """Module names of the analysed weights, front to back: the layers a panel offers
        (a parameter of the root module is named as itself)."""
        names = (name.rpartition(".")[0] or name for name, p in self.model.named_parameters()
                 if p.ndim >= 2)
        return list(dict.fromkeys(names))

    @property
    def probe_facts(self) -> ProbeFacts | None:
        """The probe's labels and input shape, for the panels; None until there is a probe."""
        probe = self.probe
        if probe is None:
            return None
        if self._probe_facts is None or self._probe_facts[0] != id(probe):
            x = as_inputs(probe[0] if isinstance(probe, tuple) else probe).tensors[0]
            facts = ProbeFacts(labelled=isinstance(probe, tuple), input_shape=tuple(x.shape),
                               floating=x.is_floating_point())
            self._probe_facts = (id(probe), facts)
        return self._probe_facts[1]

    def begin_work(self, kind: str) -> object:
        """Bracket a panel's update (``kind`` "widgets"): counted in the measured cost."""
        return self.pacer.begin(kind)

    def end_work(self, token: object) -> None:
        self.pacer.end(token)

    def stats(self) -> dict:
        """``step``; ``steps_per_second`` over the last steps; ``slowdown``, how much slower
        training runs than without the monitor, measured (``Pacer``: monitored / bare step time
        - 1, NaN until enough steps are seen; what ``budget`` bounds); ``overhead`` (the same
        figure, under its older name); the monitor's own shares of wall time: ``own_share``
        (inside the training steps), ``worker_share`` (background analyses), ``widget_share``
        (widget updates); ``contention`` (how much a background second slows training);
        ``every_within_budget`` (when the sampling alone takes over half the budget: the
        ``every`` that would not, else None); ``samples``, ``dropped``, ``deferred``,
        ``errors``, ``last_error``."""
        step, errors, last_error, nonfinite = self._state.faults()
        rate = self.pacer.steps_per_second()
        measured = self.pacer.estimate()
        return {
            "step": step,
            "steps_per_second": rate,
            "slowdown": measured["slowdown"],
            "overhead": measured["slowdown"],
            "own_share": measured["own_share"],
            "worker_share": measured["worker_share"],
            "widget_share": measured["widget_share"],
            "contention": measured["contention"],
            "every_within_budget": every_within(self.every, measured["own_share"], self.budget),
            "overhead_seconds": self._overhead_total,
            "samples": self.history.count("rwc"),
            "dropped": self._heavy.worker.dropped,
            "deferred": self._heavy.deferred,
            "worker_seconds": self._heavy.worker.busy_seconds,
            "errors": errors,
            "last_error": last_error,
            "nonfinite": nonfinite,
            "detached": self._detached,
        }

    def summary(self) -> str:
        """One line: step, speed, the monitor's share of wall time, samples, errors."""
        s = self.stats()
        parts = [f"step {s['step']}"]
        if math.isfinite(s["steps_per_second"]):
            parts.append(f"{s['steps_per_second']:.1f} steps/s")
        if math.isfinite(s["slowdown"]):
            parts.append(f"slowdown {100 * s['slowdown']:.1f}% (budget {100 * self.budget:.0f}%)")
        parts.append(f"{_count(s['samples'], 'sample')} every "
                     f"{'step' if self.every == 1 else f'{self.every} steps'}")
        if s["every_within_budget"]:
            parts.append(f"sampling takes {100 * s['own_share']:.1f}% of training time: "
                         f"every={s['every_within_budget']} leaves half the budget to the analyses")
        if s["dropped"]:
            parts.append(f"{_count(s['dropped'], 'background analysis', 'background analyses')} dropped")
        parts.append(_count(s["errors"], "error") + (f" (last: {s['last_error']})" if s["last_error"] else ""))
        if s["nonfinite"]:
            parts.append("non-finite weights in " + ", ".join(s["nonfinite"]))
        if s["detached"]:
            parts.append("detached")
        return " · ".join(parts)

    def subscribe(self, listener: Callable[[Monitor], None]) -> None:
        """Call ``listener(monitor)`` after every step (on the training thread: keep it cheap)."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[Monitor], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def dashboard(self):
        """The live dashboard of this monitor (``nnmodes_widgets.Dashboard``)."""
        # Imported here: the panels read a run view and know nothing of the monitor, and a
        # script that never shows one needs no widget library.
        from ..widgets.dashboard import Dashboard

        return Dashboard(self)

    def __repr__(self) -> str:
        state = "detached" if self._detached else "attached"
        return (f"<Monitor {type(self.model).__name__} {state}, step {self.current_step}, "
                f"every {self.every}, {self.error_count} errors>")

    # -- analyses ----------------------------------------------------------------------------------------

    def _weights(self) -> dict[str, nn.Parameter]:
        # named_parameters() lists a tied parameter once, under its first name.
        return {n: p for n, p in self.model.named_parameters() if self.include_bias or p.ndim >= 2}

    def _sample_rwc(self, step: int) -> None:
        weights = self._weights()
        # A module re-created with the same shape has a new Parameter: measuring it against the
        # old one's snapshot would show a change that training never made.
        identity = {name: id(p) for name, p in weights.items()}
        recreated = [n for n, i in identity.items() if self._identity.get(n, i) != i]
        self._identity = identity
        weights = _local(weights)
        values = self._tracker.update(weights, restart=recreated)
        for name in self._tracker.started:
            self.report_notice("rwc", name, "parameter added or replaced; its series (re)starts "
                               "at the next sample")
        for name, value in values.items():
            if not math.isfinite(value) and not torch.isfinite(weights[name].detach()).all():
                self._state.mark_nonfinite(name, step)
        self.history.record("rwc", step, time.time(), values)

    # -- faults ------------------------------------------------------------------------------------------

    def _guarded(self, analysis: str, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as exc:
            self.report(analysis, exc)

    def report(self, analysis: str, exc: BaseException, layer: str | None = None, *,
               step: int | None = None) -> None:
        """Keep a failure of ``analysis`` in ``monitor.errors`` (widgets report theirs here too),
        at ``step``: the step analysed (a background analysis runs behind training), else now."""
        error = MonitorError(self.current_step if step is None else step, analysis, layer,
                             f"{type(exc).__name__}: {exc}", "".join(traceback.format_exception(exc)))
        self._state.add_error(error)
        if self._writer is not None:
            self._writer.add_note("error", error)

    def report_notice(self, analysis: str, layer: str | None, message: str) -> None:
        """Keep a condition that is not a fault (a parameter added, say) in ``notices``."""
        notice = self._state.add_notice(analysis, layer, message)
        if self._writer is not None:
            self._writer.add_note("notice", notice)

    def _history_thinned(self, analysis: str, stride: int, kept: int) -> None:
        self.report_notice(analysis, None, f"history of {analysis!r} over {self.history_mb:g} MB: "
                           f"samples thinned to one in {stride} ({kept} kept)")


    # -- the run on disk -------------------------------------------------------------------------------

    def _open_run(self, run, weights) -> RunWriter | None:
        """The run's writer (None with ``run=False``). A path given that cannot be written is
        refused (RunFileError, a ValueError; nothing created); the default one only costs the
        recording, with a notice (a read-only working directory must not stop anyone training)."""
        if run is False:
            return None
        model = self.model
        name = distributed.model_class(model).__name__
        info = {"model": name,
                "parameters": {n: list(p.shape) for n, p in model.named_parameters()},
                "weights": list(weights), "layers": self.layers,
                "settings": {"every": self.every, "budget": self.budget, "rwc_kind": self.rwc_kind,
                             "include_bias": self.include_bias, "analyses": list(self.analyses),
                             "history_mb": self.history_mb}}
        on_error = self._recording_failed
        if run is not None:     # a path chosen: refused with a clear error if it cannot be
            return RunWriter(os.fspath(run), info, on_error=on_error)
        stem = os.path.join(RUNS_FOLDER, f"{time.strftime('%Y%m%d-%H%M%S')}-{name}")
        for attempt in range(1, 100):    # two monitors started in one second
            path = stem + ("" if attempt == 1 else f"-{attempt}") + SUFFIX
            if os.path.exists(path):
                continue
            try:
                return RunWriter(path, info, on_error=on_error)
            except RunFileError as exc:
                if not os.path.exists(path):   # not taken meanwhile: it cannot be written
                    self.report_notice("run", None, f"not recorded to disk: {exc}")
                    return None
        self.report_notice("run", None, f"not recorded to disk: {stem}{SUFFIX} and 98 more "
                           "names taken")
        return None

    def _record_probe_facts(self) -> None:
        facts = self.probe_facts if self._writer is not None else None
        if facts is not None:
            self._writer.update_info(probe_facts={"labelled": facts.labelled, "floating": facts.floating,
                                            "input_shape": list(facts.input_shape)})

    def _recording_failed(self, exc: BaseException) -> None:
        self.report_notice("run", None, f"recording to {self.run_path} stopped: "
                           f"{type(exc).__name__}: {exc}; what was written before stays readable")


def _local(weights: dict) -> dict:
    """Each process's own part of the weights (its shards under FSDP2)."""
    return {name: distributed.local(p) for name, p in weights.items()}


def _jsonable_stats(stats: dict) -> dict:
    """The final stats as JSON can hold them (NaN as None)."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in stats.items()}


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _check_probe(probe, model: nn.Module):
    """The probe as the monitor keeps it: x, or (x, y) with one label per sample; x a tensor, a
    dict of keyword inputs or ModelInputs. Run through the model once as the analyses run it (eval
    mode, no gradient, the model left as found): ValueError quoting the model's error when it
    does not fit."""
    if probe is None:
        return None
    inputs_types = (torch.Tensor, dict, ModelInputs)
    if isinstance(probe, inputs_types):
        x, y = probe, None
    elif (isinstance(probe, (tuple, list)) and len(probe) == 2
          and isinstance(probe[0], inputs_types) and isinstance(probe[1], torch.Tensor)):
        x, y = probe
    else:
        raise TypeError("probe must be a batch x (a tensor, a dict of keyword inputs or "
                        "nm.analysis.ModelInputs) or a pair (x, y) with labels y, "
                        f"got {type(probe).__name__}")
    inputs = as_inputs(x, model, what="the probe")
    if y is not None and len(y) != inputs.batch:
        raise ValueError(f"probe inputs and labels differ in length: x has {inputs.batch} samples, "
                         f"y {tuple(y.shape)}")
    capture(model, inputs, what=f"the probe ({inputs.describe()})")   # the analyses' own pass
    return x if y is None else (x, y)
