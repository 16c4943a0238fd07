"""The dashboard's status header: step, speed, the measured slowdown of training against the
budget, how fresh each panel is, faults — in plain words."""

from __future__ import annotations

import math

import anywidget
import traitlets

from ..runs.run_view import RunView, check_view
from ._bundle import bundle
from .delivery import Delivery
from .live import LivePanel


class StatusLine(LivePanel, anywidget.AnyWidget):
    """The header drawn in the browser from these numbers (class ``nnmodes-status``); the
    browser adds each panel's age ("spectra 1.8 s ago": since its newest frame came)."""

    _esm = bundle("status.js")
    _css = bundle("widgets.css")
    step = traitlets.Int(0).tag(sync=True)
    steps_per_second = traitlets.Float(None, allow_none=True).tag(sync=True)
    slowdown = traitlets.Float(None, allow_none=True).tag(sync=True)   # measured, vs budget
    budget = traitlets.Float(0.05).tag(sync=True)
    samples = traitlets.Int(0).tag(sync=True)
    every = traitlets.Int(1).tag(sync=True)
    own_share = traitlets.Float(None, allow_none=True).tag(sync=True)   # sampling's share
    every_within_budget = traitlets.Int(None, allow_none=True).tag(sync=True)
    errors = traitlets.Int(0).tag(sync=True)
    last_error = traitlets.Unicode("").tag(sync=True)
    nonfinite = traitlets.List(traitlets.Unicode()).tag(sync=True)
    detached = traitlets.Bool(False).tag(sync=True)
    replaced_at = traitlets.Int(None, allow_none=True).tag(sync=True)   # by a newer monitor

    def __init__(self, run: RunView, *, max_rate: float = 10.0, delivery: Delivery | None = None,
                 **kwargs):
        check_view(run, "StatusLine")
        super().__init__(budget=run.budget, every=run.every, **kwargs)
        self._bind(run, name="status", max_rate=max_rate, delivery=delivery)

    @property
    def front(self) -> StatusLine:
        return self

    def _draw_live(self) -> None:
        s = self.run.stats()
        with self.hold_sync():
            self.steps_per_second = _finite_or_none(s["steps_per_second"])
            self.slowdown = _finite_or_none(s["slowdown"])
            self.samples = s["samples"]
            self.every = self.run.every     # chosen in the first steps: provisional until then
            self.own_share = _finite_or_none(s.get("sampling_share", math.nan))
            self.every_within_budget = s["every_within_budget"]
            self.errors = s["errors"]
            self.last_error = s["last_error"] or ""
            self.nonfinite = s["nonfinite"]
            self.detached = s["detached"]
            self.replaced_at = s.get("replaced_at")   # a stored run's stats have none
            self.step = s["step"]   # last: the browser redraws on it


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def headline(run: RunView) -> str:
    """The status as an export's title: step, speed, slowdown against the budget, samples."""
    s = run.stats()
    every = "every step" if run.every == 1 else f"every {run.every} steps"
    parts = [f"step {s['step']:,}"]
    if math.isfinite(s["steps_per_second"]):
        parts.append(f"{s['steps_per_second']:.3g} steps/s")
    if math.isfinite(s["slowdown"]):
        parts.append(f"slowdown {100 * s['slowdown']:.1f}% (budget {100 * run.budget:.0f}%)")
    parts.append(f"{s['samples']:,} {'sample' if s['samples'] == 1 else 'samples'}, {every}")
    if s["errors"]:
        parts.append(f"{s['errors']} {'error' if s['errors'] == 1 else 'errors'}")
    if s.get("replaced_at") is not None:
        parts.append(f"replaced at step {s['replaced_at']:,} by a new monitor")
    elif s["detached"]:
        parts.append("detached")
    return " · ".join(parts)
