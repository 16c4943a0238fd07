"""The dashboard: every live panel of one monitor under one status line."""

from __future__ import annotations

import ipywidgets
from matplotlib.figure import Figure

from .. import export
from ..monitor import Monitor
from .exportable import Exportable
from .status import StatusLine
from .trend import Trend


class Dashboard(Exportable, ipywidgets.VBox):
    """Live panels of ``monitor`` (root element class ``nnmodes-dashboard``).

    ``Dashboard(monitor)`` is the same as ``monitor.dashboard()``. ``trend`` and ``status`` are
    the panels; each updates itself at most ``max_rate`` times per second.
    """

    def __init__(self, monitor: Monitor, *, max_rate: float = 10.0, **kwargs):
        if not isinstance(monitor, Monitor):
            raise TypeError(f"Dashboard expects a nnmodes_widgets.Monitor, got {type(monitor).__name__}")
        self.monitor = monitor
        self.status = StatusLine(monitor, max_rate=max_rate)
        self.trend = Trend(monitor, max_rate=max_rate)
        super().__init__(children=[self.status, self.trend], **kwargs)
        self.add_class("nnmodes-dashboard")

    def figure(self, step: int | None = None) -> Figure:
        """Every panel in one matplotlib figure, titled with the status line."""
        fig = Figure(figsize=(8, 4), layout="constrained")
        ax = fig.add_subplot()
        export.draw_trend(ax, self.monitor.history, step=step, log_y=self.trend.log_y)
        ax.set_title(self.trend.title, loc="left", fontsize="medium", fontweight="bold")
        status = self.monitor.summary() if step is None else f"up to step {step}"
        fig.suptitle(status, x=0.01, ha="left", fontsize="small")
        return fig

    def close(self) -> None:
        for panel in (getattr(self, "status", None), getattr(self, "trend", None)):
            if panel is not None:   # close() also runs from __del__ after a failed __init__
                panel.close()
        super().close()
