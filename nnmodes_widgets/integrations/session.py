"""What a training-framework callback does whatever the framework: check the monitor's options
when the callback is made, make the monitor when training starts, detach it when training ends
or fails, and hand out a dashboard before there is a monitor to show."""

from __future__ import annotations

import inspect
import os
import sys
import warnings

from torch import nn

from ..live import distributed
from ..live.monitor import Monitor

# what the callback takes from the trainer; every other Monitor option is the user's
FROM_TRAINER = ("model", "optimizer")


def check_options(options: dict) -> dict:
    """The monitor's options, checked now by the Monitor itself on a stand-in model, so that a
    wrong one fails where the callback is made rather than inside fit. A probe is checked
    against the real model when training starts; a run path is not created here."""
    known = [p for p in inspect.signature(Monitor).parameters if p not in FROM_TRAINER]
    for name in options:
        if name in FROM_TRAINER:
            raise TypeError(f"the callback monitors the trainer's {name}: do not pass {name}=")
        if name not in known:
            raise TypeError(f"unknown monitor option {name!r}; the options are {', '.join(known)}")
    run = options.get("run")
    stand_in_run = False if run is None or isinstance(run, (str, os.PathLike)) else run
    Monitor(nn.Linear(1, 1), **{**options, "probe": None, "run": stand_in_run}).detach()
    return dict(options)


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (where a widget can be shown)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


class TrainingSession:
    """One callback's monitor across the fits it sees. ``monitor`` is None until training
    starts; with ``show`` the dashboard is displayed then (rank 0, in a notebook) unless
    ``dashboard()`` was already handed out."""

    def __init__(self, show: bool, options: dict):
        if not isinstance(show, bool):
            raise TypeError(f"show must be True or False, got {show!r}")
        self.show = show
        self.options = check_options(options)
        self.monitor: Monitor | None = None
        self._dashboard = None
        self._counted: int | None = None   # trainer steps counted, when no optimizer is hooked

    def start(self, model: nn.Module, optimizer, *, name: str | None = None,
              hparams: dict | None = None, step: int = 0) -> Monitor:
        """The monitor of the training that starts: on ``model`` and the torch optimizer under
        ``optimizer``'s wrappers (its step hooks count the real updates). Where there is none to
        hook, ``count(step)`` counts the trainer's steps from ``step`` on. ``name`` and
        ``hparams`` are the trainer's; the user's options win."""
        self.end()     # an earlier fit's monitor, should its failure have gone unseen
        hooked = distributed.unwrap_optimizer(optimizer)
        hookable = distributed.hookable(hooked)
        options = {"name": name, **self.options,
                   "hparams": {**(hparams or {}), **(self.options.get("hparams") or {})}}
        self.monitor = Monitor(model, hooked if hookable else None, **options)
        self._counted = None if hookable else step
        if not hookable:
            under = ("the trainer has none" if optimizer is None
                     else f"none under {type(optimizer).__name__}")
            self.monitor.report_notice("schedule", None, f"steps counted from the trainer's: no "
                                       f"torch optimizer to hook ({under})")
        if self._dashboard is not None:
            self._dashboard.bind(self.monitor)
        elif self.show and self.monitor.rank == 0 and in_notebook():
            from IPython.display import display

            display(self.dashboard())
        return self.monitor

    def count(self, step: int) -> None:
        """The trainer is at optimizer step ``step``: count the steps since (only where no
        optimizer is hooked; a hooked one counts its own)."""
        if self._counted is not None and self.monitor is not None and not self.monitor.detached:
            while self._counted < step:
                self._counted += 1
                self.monitor.step()

    def end(self, failure: BaseException | None = None) -> None:
        """Training ended (``failure``: the exception that stopped it): detach, which finishes
        the run on disk. A fault here is a warning: it must not hide the user's exception, nor
        fail a fit that worked."""
        monitor = self.monitor
        if monitor is None or monitor.detached:
            return
        try:
            if failure is not None:
                monitor.report_notice("training", None, f"training stopped at step "
                                      f"{monitor.current_step}: {type(failure).__name__}: {failure}")
            monitor.detach()
        except Exception as exc:
            warnings.warn(f"nnmodes_widgets: detaching the monitor failed: {type(exc).__name__}: {exc}",
                          RuntimeWarning, stacklevel=2)

    def dashboard(self):
        """The dashboard: shows that it waits until training starts, then the monitor's."""
        if self._dashboard is None:
            # imported here: a callback in a script never needs the widget side
            from .dashboard import TrainingDashboard

            self._dashboard = TrainingDashboard()
            if self.monitor is not None:
                self._dashboard.bind(self.monitor)
        return self._dashboard
