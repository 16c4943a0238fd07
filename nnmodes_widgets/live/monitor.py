"""Attaching analyses to a training loop: cadence, overhead accounting, history, errors.

The monitor runs inside the user's training step, so every fault it meets is caught and kept in
``monitor.errors``; only KeyboardInterrupt and friends (not Exception) pass through.
"""

from __future__ import annotations

import atexit
import collections
import math
import os
import re
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from contextlib import ExitStack

import torch
from torch import nn

from ..analysis.capture import capture
from ..analysis.inputs import ModelInputs, as_inputs
from ..analysis.rwc import RWC_KINDS, RwcTracker
from ..runs.history import History
from ..runs.run_file import SUFFIX, RunFileError
from ..runs.run_state import MonitorError, RunState
from ..runs.run_view import ProbeFacts
from ..runs.run_writer import RunWriter, exit_status
from . import attached, distributed, worker
from .findings import tracker as findings_tracker
from .cadence import RECORD, Cadence, agree_largest
from .heavy import HEAVY, STALE, HeavyAnalyses
from .pacing import WIDGET_PRIOR, Pacer, every_within
from .worker import time_left

__all__ = ["Monitor", "MonitorError"]

PROBE_SIZE = 256            # samples of the first training batch kept as the default probe
RUNS_FOLDER = "nnmodes_runs"   # where runs are recorded by default, under the working directory
DETACH_TIMEOUT = 10.0       # s detach() takes at most, by default
# s at most between two news of the step count to the listeners (the status line) when no step
# sampled: news with every step cost each step microseconds, 1% of a small MLP's 0.8 ms steps
NEWS_INTERVAL = 0.2
REPLACED_TIMEOUT = 2.0      # s a monitor replaced by a new one waits for its analysis in hand
EXIT_TIMEOUT = 5.0          # s the monitors still attached at interpreter exit take, all together
# s more at exit for worker threads stopping (each at its next Python instruction: after the
# torch call under way, which may take seconds); one still in torch at exit aborts the process
EXIT_JOIN = 30.0
# of a detach's time, this share (at most CLOSE_RESERVE s) is kept for closing: half for a stopped
# analysis's thread to end, the rest for the run file (a commit, a checkpoint)
CLOSE_SHARE, CLOSE_RESERVE = 0.2, 1.0


class Monitor:
    """Watch a model while it trains.

    ``Monitor(model, optimizer)`` hooks ``optimizer.step`` (``register_step_post_hook``);
    without an optimizer the loop calls ``monitor.step()`` after each update. Every ``every``
    steps it records the relative weight change (SPEC 4.1, ``rwc_kind``) of each weight since the
    previous sample into ``monitor.history`` under ``"rwc"``, keyed by parameter name.
    ``every=None`` (the default) is chosen in the first steps from the measured cost of a sample
    against the step: the smallest of 1, 2, 5, 10, 20, 50, ... whose sampling takes at most a
    quarter of the budget (``live.cadence``), then fixed, kept in the run's settings and said in
    the status line; ``monitor.every`` reads 10 until then. A given ``every`` is kept.

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
    error (a full disk) stops the recording with a notice; training goes on. ``name`` (a
    trainer's run name) takes the model class's place in the default file name and is kept in
    ``info["name"]``; ``hparams`` (the training's hyperparameters) in ``info["settings"]``.

    One monitor per training loop: a new Monitor on the optimizer (without one, the model) of a
    monitor still attached replaces it once the new one is whole — the old one detaches within
    ``REPLACED_TIMEOUT`` (no final round), closes its run, and says "replaced at step N"
    (``replaced_at``). A constructor that fails leaves nothing behind: no hook, no thread, no
    run file. At interpreter exit an attached monitor closes its run within ``EXIT_TIMEOUT``.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        probe=None,
        every: int | None = None,
        budget: float = 0.05,
        rwc_kind: str = "l1",
        include_bias: bool = False,
        analyses=None,
        history_mb: float | None = 512,
        run: str | os.PathLike | bool | None = None,
        name: str | None = None,
        hparams: dict | None = None,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"Monitor expects a torch.nn.Module as model, got {type(model).__name__}")
        # the torch optimizer under a framework's wrapper (Accelerate, Lightning): its step hooks
        # fire on real updates only
        optimizer = None if optimizer is None else distributed.unwrap_optimizer(optimizer)
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"Monitor expects a torch.optim.Optimizer (or None), got {type(optimizer).__name__}"
            )
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise ValueError(f"every must be a positive integer (or None: chosen from the "
                             f"measured cost of a sample), got {every!r}")
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
        if name is not None and not (isinstance(name, str) and name.strip()):
            raise TypeError(f"name must be None or a non-empty string, got {name!r}")
        if hparams is not None and not isinstance(hparams, dict):
            raise TypeError(f"hparams must be None or a dict, got {type(hparams).__name__}")
        # Under torch.distributed every process makes its monitor; only rank 0 records, shows
        # and runs the background analyses (SPEC 5). DDP's wrapper is looked through.
        model = distributed.unwrap(model)
        self.rank = distributed.rank()
        self.model = model
        self.optimizer = optimizer
        self.probe = _check_probe(probe, model)
        self.budget = float(budget)
        self.rwc_kind = rwc_kind
        self.include_bias = include_bias
        self.name, self.hparams = name, dict(hparams or {})
        self.analyses = analyses

        weights = self._weights()
        if not weights:
            what = "parameters" if include_bias else "weights with ndim >= 2"
            raise ValueError(f"nothing to analyse: {type(model).__name__} has no {what}")
        unmade = [n for n, p in weights.items() if p.is_meta]
        if unmade:
            raise ValueError(f"{type(model).__name__}'s weights are on the meta device (not "
                             f"materialised: {', '.join(unmade[:3])}{', ...' if len(unmade) > 3 else ''}); "
                             "initialise or load them (model.to_empty(device=...)) before "
                             "attaching a Monitor")
        # FSDP2 shards the weights: RWC sums each process's shards and adds them up across
        # processes (every rank takes part); a background analysis would need the whole
        # weights on rank 0, gathered by every rank at once, which a worker thread cannot do.
        sharded = any(distributed.is_sharded(p) for p in weights.values())
        if self.rank != 0:
            run = False
            self.analyses = analyses = ("rwc",) if sharded and "rwc" in analyses else ()
        heavy = [] if sharded else [a for a in analyses if a in HEAVY]
        # every=None: chosen in the first steps from the measured cost of a sample (cadence);
        # under FSDP sampling is a collective call: every process takes the largest choice
        self._cadence = Cadence(every, self.budget, sampling="rwc" in self.analyses,
                                on_fixed=self._every_fixed,
                                agree=agree_largest(distributed.sum_across_processes())
                                if sharded else None)

        self.history_mb = history_mb     # kept for the thinning notice
        self.history = History(max_bytes=None if history_mb is None else int(history_mb * 2**20),
                               on_thin=self._history_thinned)
        # Thread ownership: the training thread steps, samples RWC and calls the listeners; the
        # worker thread records the background analyses and notices; panel threads read and
        # report their faults. What more than one of them touches is the history (its own lock)
        # and the run state (the step, errors, notices, non-finite layers: run_state).
        self._state = RunState()
        self._probe_facts: tuple[int, ProbeFacts] | None = None   # (id of the probe, its facts)
        self._trained: list[str] | None = None      # names of the parameters the optimizer trains
        self._listeners: list[Callable[[Monitor], None]] = []
        self._overhead_total = 0.0
        self._next_due = 1     # the first step the cadence or the background analyses may want
        # the step under way, for the pacer: the monitor's seconds in it, whether it sampled (or
        # refreshed the copy), the seconds of that refresh; the probe's capture, in the forward
        self._last_overhead, self._last_sampled, self._last_copied = 0.0, False, 0.0
        self._hook_seconds = 0.0
        self._notified = -math.inf         # when the listeners last had news of a step
        self._rwc_pending: collections.deque = collections.deque()   # RWC sums on their way
        # calibrating every (on the host), a scratch history its samples are recorded into
        # (``_rehearse_record``); dropped once every is fixed
        self._rehearsal: History | None = History() if self._cadence.chosen else None
        self._writer: RunWriter | None = None
        self._probe_hook = None
        # The lifecycle: every resource is entered in _resources as it is made and released in
        # reverse order by detach(), by a constructor that fails part-way, at interpreter exit.
        self._resources = ExitStack()
        self._lifecycle = threading.Lock()
        self._stopping = False          # detach() has begun: steps are ignored
        self._detached = False          # ... and ended
        self._replaced_at: int | None = None
        self._status = "finished"       # what the run file is closed as
        self._timeout: float | None = None                  # the detach's, for its notice
        self._deadline = self._work_deadline = None         # time.monotonic() bounds of it
        self._reserve = 0.0                                 # s of it kept for closing
        try:
            replaced = self._attach(run, weights, sharded, heavy, chosen)
        except BaseException:
            self._resources.__exit__(*sys.exc_info())
            raise
        if replaced is not None:      # its fault must not cost the user the new monitor
            self._guarded("replace", lambda: replaced._close(REPLACED_TIMEOUT, final_round=False,
                                                             replaced=True))

    def _attach(self, run, weights, sharded: bool, heavy: list[str], chosen: bool):
        """Make and register, one after the other, what the monitor holds; the monitor this
        one replaces on its training loop, if any (detached by the caller: only once this
        monitor is whole)."""
        model, optimizer, resources = self.model, self.optimizer, self._resources
        resources.callback(self._let_listeners_go)            # released last
        # A background second stalls a CPU training loop's parallel regions on a busy core (each
        # waits for its slowest thread): the prior contention is one per intra-op thread, until
        # the steps themselves have measured it. (Before the run's writer, whose commits count.)
        self._cuda_device = next((p.device for p in model.parameters() if p.is_cuda), None)
        self._on_cuda = on_cuda = self._cuda_device is not None
        self.pacer = Pacer(self.budget, prior_contention=1 if on_cuda else max(1, torch.get_num_threads()),
                           widget_prior=WIDGET_PRIOR)
        self._writer = self._open_run(run, weights)    # last of the checks: it creates a file
        if self._writer is not None:
            resources.push(self._close_run)
            self.history.on_record = self._writer.record
            self._record_probe_facts()
        if sharded and any(a in HEAVY for a in self.analyses):
            self.report_notice("schedule", None, "background analyses are off: the weights are "
                               "sharded (FSDP); RWC is computed from every process's shards")
        self._tracker = RwcTracker(_local(weights), kind=self.rwc_kind,
                                   reduce=distributed.sum_across_processes() if sharded else None)
        self._identity = {name: id(p) for name, p in weights.items()}
        self._heavy = HeavyAnalyses(self, heavy, optional=() if chosen else heavy)
        resources.callback(self._close_worker)
        if optimizer is not None:
            resources.callback(optimizer.register_step_post_hook(self._on_optimizer_step).remove)
        if self.probe is None:
            self._probe_hook = model.register_forward_pre_hook(self._capture_probe, with_kwargs=True)
            resources.callback(self._remove_probe_hook)
        loop = optimizer if optimizer is not None else model
        replaced = attached.claim(loop, self)
        resources.callback(attached.release, loop, self)
        return replaced

    # -- the training-loop side ------------------------------------------------------------------

    def step(self) -> None:
        """Count one training step; sample every ``every`` steps. Never raises an Exception."""
        if self._stopping:
            if self._detached:
                warnings.warn("monitor.step() called on a detached Monitor; ignored", stacklevel=2)
            return
        t0 = time.perf_counter()
        ended = self._last_overhead + self._hook_seconds      # the monitor's, in the step that ended
        self._hook_seconds = 0.0
        self.pacer.step(t0, ended, self._last_sampled, self._last_copied)
        step = self._state.advance()
        due, copied = None, 0.0
        # most steps have nothing due: they skip the cadence and the background offer (on a
        # 0.5 ms step each microsecond here is 0.2% of training)
        if step >= self._next_due or t0 >= self._heavy.not_before or self._rwc_pending:
            if self._rwc_pending:       # CUDA: the sums of an earlier sample may have arrived
                self._guarded("rwc", self._record_rwc)
            due = self._guarded("rwc", self._cadence.due, step, ended, t0)
            if due is not None and "rwc" in self.analyses:
                self._guarded("rwc", self._sample_rwc, step, due == RECORD)
            # the background analyses are looked at when a run may start (not while the
            # cadence measures: its figures are those of training alone)
            copied = (self._guarded("schedule", self._heavy.offer, step, due == RECORD) or 0.0
                      if self._cadence.fixed else 0.0)
            self._next_due = self._guarded("rwc", self._cadence.next_due, step) or step + 1
        # news with what the step did, else of the step count now and then
        if due is not None or copied or t0 - self._notified >= NEWS_INTERVAL:
            self._notified = t0
            self.notify()
        overhead = time.perf_counter() - t0     # inside the step that begins at t0
        self._overhead_total += overhead
        self._last_overhead, self._last_sampled, self._last_copied = \
            overhead, due is not None or copied > 0, copied

    def notify(self) -> None:
        """Tell the listeners (widgets) that there is news: a step, a sample, a finished analysis."""
        for listener in list(self._listeners):
            self._guarded("listener", listener, self)

    def _on_optimizer_step(self, optimizer, args, kwargs) -> None:
        self.step()

    def _capture_probe(self, module, args, kwargs) -> None:
        """The first training batch becomes the probe: every argument of the forward call, the
        first PROBE_SIZE samples of each batched tensor, detached copies; then the hook removes
        itself. A lone positional tensor is kept as a tensor. Its time counts as the monitor's
        in the step."""
        begun = time.perf_counter()
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
        self._hook_seconds += time.perf_counter() - begun

    def _remove_probe_hook(self) -> None:
        if self._probe_hook is not None:
            self._probe_hook.remove()
            self._probe_hook = None

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every analysis already scheduled is in the history; False on timeout (or
        when the worker's thread has died, which never makes it wait).

        RWC is computed inside the step (on CUDA its sums reach the host later: waited for
        here); the heavier analyses run in the background.
        """
        self._guarded("rwc", self._record_rwc, True)
        return self._heavy.flush(timeout)

    def detach(self, timeout: float | None = DETACH_TIMEOUT) -> None:
        """Stop watching, within ``timeout`` seconds (None: however long the analyses take).

        First one round of every background analysis on the final weights, as far as the time
        allows (the phases last: they sum up the run), so that the history and the run file end
        with the trained model's; then every resource the monitor holds is released, newest
        first: its registration as the loop's monitor, its hooks, the worker (an analysis still
        running is abandoned to its daemon thread, with a notice naming it), the run file
        (closed as "finished"), the listeners (told first). The history stays readable."""
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not timeout >= 0):
            raise ValueError(f"timeout must be None or a number of seconds >= 0, got {timeout!r}")
        self._close(timeout, final_round=True)

    def _close(self, timeout: float | None, *, final_round: bool, status: str = "finished",
               replaced: bool = False) -> None:
        """Detach (once): ``final_round`` as ``detach()`` does; the run closed as ``status``;
        ``replaced`` when a new monitor took over this one's training loop."""
        with self._lifecycle:
            if self._stopping:
                return
            self._stopping = True
        if replaced:
            self._replaced_at = self.current_step
        self._status, self._timeout = status, timeout
        if timeout is not None:
            self._reserve = min(CLOSE_RESERVE, CLOSE_SHARE * timeout)
            self._deadline = time.monotonic() + timeout
            self._work_deadline = self._deadline - self._reserve
        try:
            self._guarded("rwc", self._record_rwc, True)
            if final_round and self.current_step > 0:
                self._guarded("schedule", self._heavy.final_round, self.current_step,
                              self._work_deadline)
        finally:     # interrupted or not, nothing is left held
            self._resources.close()

    def _close_worker(self) -> None:
        abandoned = self._heavy.close(time_left(self._work_deadline), self._reserve / 2)
        if abandoned is not None:
            self.report_notice(abandoned, None, f"{abandoned} still running at detach: "
                               f"abandoned after {self._timeout:g} s")

    def _close_run(self, exc_type, exc, tb) -> None:
        """Close the run file: "finished" (or ``_status``) with the final stats; removed when
        the constructor failed (it holds nothing the user recorded, and the path is free
        again at once)."""
        if exc_type is not None:
            self._writer.discard()
            return
        self._writer.update_info(stats=_jsonable_stats(self.stats()))
        self._writer.close(self._status, timeout=time_left(self._deadline))

    def _let_listeners_go(self) -> None:
        """The last release: the listeners hear that the monitor is detached, then are let go."""
        self._detached = True
        self.notify()
        self._listeners.clear()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # a body that raised (a bug, an interrupt) is not kept waiting for a final round
        self._close(DETACH_TIMEOUT, final_round=exc_type is None)

    # -- state for status lines and widgets ----------------------------------------------------------

    @property
    def run_path(self) -> str | None:
        """The file this run is recorded to (``nm.open_run`` reads it), None when not recorded."""
        return self._writer.path if self._writer is not None else None

    @property
    def every(self) -> int:
        """Steps between RWC samples: as given, or chosen by the monitor in the first steps
        (``every=None``; ``cadence``), reading ``cadence.PROVISIONAL`` until then."""
        return self._cadence.every

    @property
    def current_step(self) -> int:
        return self._state.step

    @property
    def detached(self) -> bool:
        return self._detached

    @property
    def replaced_at(self) -> int | None:
        """The step this monitor had reached when a new one replaced it on its training loop
        (the same optimizer, or model without one); None when it was not replaced."""
        return self._replaced_at

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
    def optimizer_settings(self) -> dict | None:
        """The optimizer's class name and its first parameter group's ``lr``, ``momentum``,
        ``nesterov`` and ``weight_decay`` as they are now (a scheduler changes them), and
        ``params``: the names of the parameters it trains; None without an optimizer. The
        edge-of-stability finding reads them."""
        optimizer = self.optimizer
        if optimizer is None:
            return None
        group = optimizer.param_groups[0] if optimizer.param_groups else {}
        settings = {"class": type(optimizer).__name__}
        for key in ("lr", "momentum", "nesterov", "weight_decay"):
            value = group.get(key)
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = value.item()
            if isinstance(value, (bool, int, float)):
                settings[key] = value
        if self._trained is None:
            trained = {id(p) for g in optimizer.param_groups for p in g["params"]}
            self._trained = [n for n, p in self.model.named_parameters() if id(p) in trained]
        settings["params"] = self._trained
        return settings

    @property
    def findings(self) -> list:
        """What the analyses see, in words (SPEC 15): ``Finding(step, kind, layer, severity,
        message, evidence, ended)`` of this run so far, in the order they started."""
        return findings_tracker(self.history).findings   # the worker's, as the analyses came in

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

    def work_cost(self, seconds: float, kind: str) -> float:
        """What ``seconds`` of background work of ``kind`` ("worker" or "widgets") cost
        training, by the last measured contention of that kind (no estimate is made here: the
        widgets ask on every update)."""
        measured, _ = self.pacer.latest()
        return seconds * measured["contention" if kind == "worker" else "widget_contention"]

    def has_room(self) -> bool:
        """Whether the last measured slowdown leaves the worker's runs anything of the budget
        (``Pacer.rate``; no estimate is made here)."""
        measured, _ = self.pacer.latest()
        return self.pacer.rate(measured) > 0

    def stats(self) -> dict:
        """``step``; ``steps_per_second`` over the last steps; ``slowdown``, how much slower
        training runs than without the monitor, measured over the last minute of training, the
        first included (``Pacer``: monitored / bare step time - 1, NaN until enough steps are
        seen; what ``budget`` bounds; from an estimate at most ``heavy.STALE`` seconds old; the
        pace follows a shorter window); ``overhead`` (the same
        figure, under its older name); the monitor's own shares of wall time: ``own_share``
        (inside the training steps), ``worker_share`` (background analyses: their CPU time on
        the CPU, their wall time on CUDA), ``widget_share``
        (widget updates: their CPU time); ``contention`` and ``widget_contention`` (how much a
        second of the worker's analyses, of the widgets' updates, slows training);
        ``every``, ``every_chosen`` (True: chosen by the monitor, None: still being chosen,
        False: given) and ``sampling_share`` (the share of training time the sampling takes:
        the median time of the last samples over ``every`` bare steps, NaN before a sample);
        ``every_within_budget`` (when the sampling alone takes over half the budget: the
        ``every`` that would not, else None; the rest of the monitor's time in the steps does
        not depend on ``every``); ``samples``, ``dropped``, ``deferred``,
        ``errors``, ``last_error``; ``detached``, and ``replaced_at``: the step reached when a
        new monitor replaced this one, else None."""
        step, errors, last_error, nonfinite = self._state.faults()
        rate = self.pacer.steps_per_second()
        # the last estimate while it is fresh enough for the pace (the worker renews an older
        # one): an estimate takes 3-4 ms, and the status line reads the stats with each frame
        measured, age = self.pacer.latest()
        if age > STALE or not math.isfinite(measured["slowdown"]):
            measured = self.pacer.estimate()
        sampling = self._cadence.share(measured["bare"])
        return {
            "step": step,
            "steps_per_second": rate,
            "slowdown": measured["minute_slowdown"],
            "overhead": measured["minute_slowdown"],
            "own_share": measured["own_share"],
            "worker_share": measured["worker_share"],
            "widget_share": measured["widget_share"],
            "contention": measured["contention"],
            "widget_contention": measured["widget_contention"],
            "every": self.every,
            "every_chosen": (None if not self._cadence.fixed else self._cadence.chosen),
            "sampling_share": sampling,
            "every_within_budget": every_within(self.every, sampling, self.budget),
            "overhead_seconds": self._overhead_total,
            "samples": self.history.count("rwc"),
            "dropped": self._heavy.worker.dropped,
            "deferred": self._heavy.deferred,
            "worker_seconds": self._heavy.worker.busy_seconds,
            "errors": errors,
            "last_error": last_error,
            "nonfinite": nonfinite,
            "detached": self._detached,
            "replaced_at": self._replaced_at,
        }

    def summary(self) -> str:
        """One line: step, speed, the monitor's share of wall time, samples, errors."""
        s = self.stats()
        parts = [f"step {s['step']}"]
        if math.isfinite(s["steps_per_second"]):
            parts.append(f"{s['steps_per_second']:.1f} steps/s")
        if math.isfinite(s["slowdown"]):
            parts.append(f"slowdown {100 * s['slowdown']:.1f}% (budget {100 * self.budget:.0f}%)")
        samples = _count(s["samples"], "sample")
        if s["every_chosen"] is None:
            parts.append(f"{samples}, every being chosen in the first steps")
        else:
            every = "step" if s["every"] == 1 else f"{s['every']} steps"
            hint, share = s["every_within_budget"], s["sampling_share"]
            detail = [("chosen" if s["every_chosen"] else "")]
            if math.isfinite(share):
                detail.append(f"sampling takes {100 * share:.1f}% of training time"
                              + (f": every={hint} leaves half the budget to the analyses"
                                 if hint else ""))
            detail = ": ".join(filter(None, detail))
            parts.append(f"{samples} every {every}" + (f" ({detail})" if detail else ""))
        if s["dropped"]:
            parts.append(f"{_count(s['dropped'], 'background analysis', 'background analyses')} dropped")
        parts.append(_count(s["errors"], "error") + (f" (last: {s['last_error']})" if s["last_error"] else ""))
        if s["nonfinite"]:
            parts.append("non-finite weights in " + ", ".join(s["nonfinite"]))
        if s["replaced_at"] is not None:
            parts.append(f"replaced at step {s['replaced_at']} by a new monitor")
        elif s["detached"]:
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

    def _sample_rwc(self, step: int, record: bool = True) -> None:
        """Sample RWC at ``step``: recorded unless ``record`` is False (the cadence's calibration
        and the sample that starts its series), timed for the cadence. On CUDA the sums reach
        the host later (``_record_rwc`` at a later step): no step waits for the device."""
        begun = time.perf_counter()
        events = self._cuda_events()
        weights = self._weights()
        # A module re-created with the same shape has a new Parameter: measuring it against the
        # old one's snapshot would show a change that training never made.
        identity = {name: id(p) for name, p in weights.items()}
        recreated = [n for n, i in identity.items() if self._identity.get(n, i) != i]
        self._identity = identity
        weights = _local(weights)
        sums = self._tracker.update(weights, restart=recreated, wait=False)
        for name in self._tracker.started:
            self.report_notice("rwc", name, "parameter added or replaced; its series (re)starts "
                               "at the next sample")
        if record:
            self._rwc_pending.append((step, time.time(), sums, weights))
            self._record_rwc()
        elif self._rehearsal is not None and not self._on_cuda:
            self._rehearse_record(step, sums, weights)
        if events is not None:
            events[1].record(torch.cuda.current_stream(self._cuda_device))
        self._cadence.sampled(step, time.perf_counter() - begun, events)

    def _rehearse_record(self, step: int, sums, weights) -> None:
        """Calibrating on the host: what recording adds to a sample (its values, the check for
        non-finite weights, the history's append), done into a scratch history, so that the
        sample the cadence times costs what each later one will. Timed without it, a small MLP's
        samples took 0.11-0.13 ms in the calibration and 0.44 ms recorded: every=100 was chosen,
        and sampling took 1.4% of training, more than a quarter of the budget. (On CUDA a
        sample's values reach the host later, in another step, as they will then.)"""
        sums.nonfinite(weights)
        self._rehearsal.record("rwc", step, time.time(), sums.values())

    def _record_rwc(self, wait: bool = False) -> None:
        """Record the RWC samples whose sums are on the host (all of them with ``wait``)."""
        pending = self._rwc_pending
        while pending and (wait or pending[0][2].ready()):
            step, when, sums, weights = pending.popleft()
            for name in sums.nonfinite(weights):
                self._state.mark_nonfinite(name, step)
            self.history.record("rwc", step, when, sums.values())

    def _cuda_events(self) -> tuple | None:
        """On CUDA while the cadence is still measuring: (start, end) events, the start
        recorded now on the training stream (the sample's time on the device)."""
        if self._cadence.fixed or not self._on_cuda:
            return None
        events = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        events[0].record(torch.cuda.current_stream(self._cuda_device))
        return events

    # -- faults ------------------------------------------------------------------------------------------

    def _guarded(self, analysis: str, fn, *args):
        """``fn(*args)``, its fault reported under ``analysis`` (then None)."""
        try:
            return fn(*args)
        except Exception as exc:
            self.report(analysis, exc)
            return None

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
        info = {"model": name, "name": self.name,
                "parameters": {n: list(p.shape) for n, p in model.named_parameters()},
                "weights": list(weights), "layers": self.layers,
                "settings": self._settings()}
        on_error = self._recording_failed
        # its commits are background work: within the budget (in neither the worker's share
        # nor the widgets')
        busy = dict(begin=lambda: self.pacer.begin("run"), end=self.pacer.end)
        if run is not None:     # a path chosen: refused with a clear error if it cannot be
            return RunWriter(os.fspath(run), info, on_error=on_error, **busy)
        stem = os.path.join(RUNS_FOLDER, f"{time.strftime('%Y%m%d-%H%M%S')}-{_file_name(self.name) or name}")
        for attempt in range(1, 100):    # two monitors started in one second
            path = stem + ("" if attempt == 1 else f"-{attempt}") + SUFFIX
            if os.path.exists(path):
                continue
            try:
                return RunWriter(path, info, on_error=on_error, **busy)
            except RunFileError as exc:
                if not os.path.exists(path):   # not taken meanwhile: it cannot be written
                    self.report_notice("run", None, f"not recorded to disk: {exc}")
                    return None
        self.report_notice("run", None, f"not recorded to disk: {stem}{SUFFIX} and 98 more "
                           "names taken")
        return None

    def _settings(self) -> dict:
        """The monitor's settings as the run file keeps them; ``every_chosen`` True when the
        monitor chooses ``every`` (recorded again once chosen, with ``sampling_share``, what the
        sampling takes of training time as calibrated)."""
        return {"every": self.every, "every_chosen": self._cadence.chosen,
                "sampling_share": _finite_or_none(self._cadence.calibrated_share),
                "budget": self.budget,
                "rwc_kind": self.rwc_kind, "include_bias": self.include_bias,
                "analyses": list(self.analyses), "history_mb": self.history_mb,
                "hparams": self.hparams, "optimizer": self.optimizer_settings}

    def _every_fixed(self) -> None:
        """The cadence has chosen ``every``: into the run's settings."""
        self._rehearsal = None
        if self._writer is not None:
            self._writer.update_info(settings=self._settings())

    def _record_probe_facts(self) -> None:
        facts = self.probe_facts if self._writer is not None else None
        if facts is not None:
            self._writer.update_info(probe_facts={"labelled": facts.labelled, "floating": facts.floating,
                                            "input_shape": list(facts.input_shape)})

    def _recording_failed(self, exc: BaseException) -> None:
        self.report_notice("run", None, f"recording to {self.run_path} stopped: "
                           f"{type(exc).__name__}: {exc}; what was written before stays readable")


def _file_name(name: str | None) -> str:
    """A run's name as part of a file name: runs of anything but letters, digits, '.', '_' and
    '-' become one '-'."""
    return re.sub(r"[^\w.-]+", "-", name).strip("-.") if name else ""


def _local(weights: dict) -> dict:
    """Each process's own part of the weights (its shards under FSDP2)."""
    return {name: distributed.local(p) for name, p in weights.items()}


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


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


@atexit.register
def _detach_at_exit() -> None:
    """At interpreter exit every monitor still attached lets go of what it holds, within
    ``EXIT_TIMEOUT`` all together: no final round, no listeners told (the widgets are going
    too); the run closed as "finished", or "interrupted" when a script ends with an uncaught
    exception; then the worker threads still stopping get up to ``EXIT_JOIN`` to end (a daemon
    thread inside torch at exit aborts the process). Registered once, for all: the map of
    attached monitors is weak, so this keeps none of them alive."""
    deadline = time.monotonic() + EXIT_TIMEOUT
    status = exit_status()
    for monitor in attached.monitors():
        monitor._listeners.clear()
        monitor._close(time_left(deadline), final_round=False, status=status)
    worker.join_all(EXIT_JOIN)     # also those of analyses abandoned at a detach
