"""The dashboard: every live panel of one monitor under one status line."""

from __future__ import annotations

import ipywidgets

from ..monitor import Monitor
from .status import StatusLine
from .trend import Trend


class Dashboard(ipywidgets.VBox):
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

    def close(self) -> None:
        for panel in (getattr(self, "status", None), getattr(self, "trend", None)):
            if panel is not None:   # close() also runs from __del__ after a failed __init__
                panel.close()
        super().close()
