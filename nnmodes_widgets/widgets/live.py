"""Binding a widget to a monitor: every step requests an update, a Throttle delivers it."""

from __future__ import annotations

from collections.abc import Callable

from ..monitor import Monitor
from .throttle import Throttle


class LiveBinding:
    """Calls ``push()`` with the monitor's newest state, at most ``max_rate`` times per second.

    Pushes once at creation so a widget made after training shows the data at once, and once more
    when the monitor detaches so the final state is on screen.
    """

    def __init__(self, monitor: Monitor, push: Callable[[], None], *, name: str,
                 max_rate: float = 10.0):
        if not isinstance(monitor, Monitor):
            raise TypeError(f"expected a nnmodes_widgets.Monitor, got {type(monitor).__name__}")
        self.monitor = monitor
        # Each panel's updates may take a tenth of the budget: their cost on a busy core shows
        # in the measured slowdown like the worker's, and a trend of many long series (18 ms a
        # push) would otherwise take 1% of wall time per panel whatever the budget.
        self.throttle = Throttle(push, max_rate=max_rate, max_share=monitor.budget / 10,
                                 on_error=lambda exc: monitor.report(f"widget:{name}", exc),
                                 begin=lambda: monitor.pacer.begin("widgets"),
                                 end=monitor.pacer.end)
        self.throttle.push_now()
        monitor.subscribe(self._on_step)

    def _on_step(self, monitor: Monitor) -> None:
        if monitor.detached:
            self.throttle.push_now()
        else:
            self.throttle.request()

    def close(self) -> None:
        self.monitor.unsubscribe(self._on_step)
        self.throttle.close()


def layer_choices(monitor: Monitor) -> list[str]:
    """Module names of the monitor's weights, front to back: the layers a panel's picker offers
    (the dashboard's shared selection is a module name; SPEC 3 keys)."""
    names = (name.rpartition(".")[0] for name, p in monitor.model.named_parameters() if p.ndim >= 2)
    return list(dict.fromkeys(names))


def analysis_notes(monitor: Monitor, analysis: str) -> str:
    """The monitor's notices about ``analysis`` that describe the model (what its results leave
    out, what is frozen), one line: shown with the analysis's panel."""
    notes = [n for n in list(monitor.notices) if n.analysis == analysis]
    return " · ".join(f"{n.layer}: {n.message}" if n.layer else n.message for n in notes)
