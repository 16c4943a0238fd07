"""The read-only view of a run that every panel and export draws from.

A live ``Monitor`` is one; a run stored on disk is another. Panels depend on nothing else, so
the same dashboard shows a run being trained in this kernel, one written by a script or a
``torchrun`` job, or one long finished. Needs neither torch nor the widget side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .history import History
from .run_state import MonitorError

__all__ = ["RunView", "ProbeFacts", "check_view", "analysis_notes"]


@dataclass(frozen=True)
class ProbeFacts:
    """What the panels need to know of the probe, without its tensors: whether it has labels,
    and the shape and kind of its first input (image tiles need [B, H, W] or [B, C, H, W];
    integer inputs are token ids)."""

    labelled: bool
    input_shape: tuple[int, ...]
    floating: bool

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        """``(channels, height, width)`` of image-shaped float inputs, else None."""
        if not self.floating or len(self.input_shape) not in (3, 4):
            return None
        channels = 1 if len(self.input_shape) == 3 else self.input_shape[1]
        return channels, self.input_shape[-2], self.input_shape[-1]

    @property
    def tokens(self) -> bool:
        return not self.floating


@runtime_checkable
class RunView(Protocol):
    """What a panel reads of a run. ``history`` holds every recorded value (``History``);
    ``every``, ``rwc_kind`` and ``budget`` are the monitor's settings; ``layers`` the module
    names of the analysed weights, front to back (the layer pickers' choices); ``probe_facts``
    None until there is a probe; ``findings`` what the analyses see, in words (``runs.findings``).
    ``detached``: no more data will come. ``subscribe(listener)``
    calls ``listener(view)`` when there is news (on whichever thread brings it: keep it cheap).
    ``report`` keeps a panel's own fault with the run's errors; ``begin_work``/``end_work``
    bracket a panel's update, so that a live run counts it in its measured cost; ``work_cost``
    prices it; ``has_room()`` says whether the budget leaves room for more than the work
    already measured (a panel's refresh target is kept only then)."""

    history: History
    every: int
    rwc_kind: str
    budget: float

    @property
    def layers(self) -> list[str]: ...

    @property
    def probe_facts(self) -> ProbeFacts | None: ...

    @property
    def errors(self) -> list[MonitorError]: ...

    @property
    def notices(self) -> list[MonitorError]: ...

    @property
    def findings(self) -> list: ...

    @property
    def detached(self) -> bool: ...

    def stats(self) -> dict: ...

    def summary(self) -> str: ...

    def subscribe(self, listener: Callable[[RunView], None]) -> None: ...

    def unsubscribe(self, listener: Callable[[RunView], None]) -> None: ...

    def report(self, analysis: str, exc: BaseException, layer: str | None = None, *,
               step: int | None = None) -> None: ...

    def begin_work(self, kind: str) -> object: ...

    def end_work(self, token: object) -> None: ...

    def work_cost(self, seconds: float, kind: str) -> float: ...

    def has_room(self) -> bool: ...


def check_view(view, who: str) -> None:
    """TypeError unless ``view`` is a run view (a Monitor, or a stored run)."""
    if not isinstance(view, RunView):
        raise TypeError(f"{who} expects a run view (a nnmodes_widgets.Monitor, or a run from "
                        f"nm.open_run), got {type(view).__name__}")


def analysis_notes(view: RunView, analysis: str) -> str:
    """The run's notices about ``analysis`` that describe the model (what its results leave out,
    what is frozen, what its live size reduced), one line: shown with the analysis's panel. Of
    those about the same layer (or the whole analysis) the newest: a live size that changed
    replaces what the older one said."""
    newest = {n.layer: n for n in view.notices if n.analysis == analysis}
    return " · ".join(f"{n.layer}: {n.message}" if n.layer else n.message for n in newest.values())
