"""The dashboard a callback hands out before training starts: a line saying that it waits, then
the monitor's live dashboard in its place (the next monitor's when the callback trains again)."""

from __future__ import annotations

import ipywidgets

WAITING = "nnmodes: waiting for training to start"


class TrainingDashboard(ipywidgets.VBox):
    """``callback.dashboard()``: shows ``WAITING`` until ``bind(monitor)``, then
    ``monitor.dashboard()`` (``.dashboard``; None before)."""

    def __init__(self, **kwargs):
        super().__init__(children=[ipywidgets.HTML(WAITING)], **kwargs)
        self.add_class("nnmodes-training-dashboard")
        self.dashboard = None

    def bind(self, monitor) -> None:
        previous, self.dashboard = self.dashboard, monitor.dashboard()
        self.children = (self.dashboard,)
        if previous is not None:
            previous.close()

    def export(self, path, **kwargs):
        """The monitor's dashboard as a static figure (``Dashboard.export``)."""
        if self.dashboard is None:
            raise ValueError("nothing to export: training has not started")
        return self.dashboard.export(path, **kwargs)

    def close(self) -> None:
        if self.dashboard is not None:
            self.dashboard.close()
        super().close()
