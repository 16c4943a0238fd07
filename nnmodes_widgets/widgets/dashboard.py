"""The dashboard: every live panel of one monitor under one status line."""

from __future__ import annotations

import ipywidgets

from ..monitor import Monitor
from .exportable import Exportable
from .radiograph import LiveRadiograph
from .spectrum import Spectra
from .status import StatusLine
from .trend import Trend


class Dashboard(Exportable, ipywidgets.VBox):
    """Live panels of ``monitor`` (root element class ``nnmodes-dashboard``).

    ``Dashboard(monitor)`` is the same as ``monitor.dashboard()``. ``status``, ``trend``,
    ``spectra`` and ``radiograph`` are the panels; each updates itself at most ``max_rate`` times
    per second.
    """

    def __init__(self, monitor: Monitor, *, max_rate: float = 10.0, **kwargs):
        if not isinstance(monitor, Monitor):
            raise TypeError(f"Dashboard expects a nnmodes_widgets.Monitor, got {type(monitor).__name__}")
        self.monitor = monitor
        self.status = StatusLine(monitor, max_rate=max_rate)
        self.trend = Trend(monitor, max_rate=max_rate)
        self.spectra = Spectra(monitor, max_rate=max_rate)
        self.radiograph = LiveRadiograph(monitor, max_rate=max_rate)
        super().__init__(children=[self.status, self.trend, self.spectra, self.radiograph], **kwargs)
        self.add_class("nnmodes-dashboard")

    @property
    def figsize(self):
        return (9, 8 + (self.radiograph.figsize[1] if self.radiograph.shown else 0))

    def draw(self, fig, step: int | None = None) -> None:
        """Every panel, one under the other, titled with the status line."""
        panels = (self.trend, self.spectra) + ((self.radiograph,) if self.radiograph.shown else ())
        for panel, sub in zip(panels, fig.subfigures(len(panels), 1)):
            panel.draw(sub, step)
        status = self.monitor.summary() if step is None else f"up to step {step}"
        fig.suptitle(status, x=0.01, ha="left", fontsize="small")

    def close(self) -> None:
        for panel in (getattr(self, name, None) for name in ("status", "trend", "spectra", "radiograph")):
            if panel is not None:   # close() also runs from __del__ after a failed __init__
                panel.close()
        super().close()
