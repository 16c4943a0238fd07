"""The dashboard: every live panel of one run under one status line."""

from __future__ import annotations

import ipywidgets

from ..runs.run_view import RunView, check_view
from .basins import Basins
from .delivery import Delivery
from .exportable import Exportable
from .neurons import Neurons
from .presence import ShownOnDisplay
from .radiograph import LiveCharacteristicMaps, LiveRadiograph
from .spectrum import Spectra
from .status import StatusLine
from .tree import close_parts
from .trend import Trend

_PANELS = ("status", "trend", "spectra", "neurons", "basins", "radiograph", "characteristic_maps")


class Dashboard(ShownOnDisplay, Exportable, ipywidgets.VBox):
    """Live panels of ``run`` (root element class ``nnmodes-dashboard``): a ``Monitor``, or a run
    stored on disk.

    ``Dashboard(monitor)`` is the same as ``monitor.dashboard()``. The panels are ``status``,
    ``trend``, ``spectra``, ``neurons``, ``basins``, ``radiograph`` and ``characteristic_maps``;
    each updates itself at most ``max_rate`` times per second while it is on screen, from one
    delivery thread (``frames`` counts what they built). One layer selection is shared by the
    trend, spectra, neurons, basins and radiograph panels: choosing a layer in one (its picker,
    or a click on its band or strip) selects it in the others, in the browser. ``selected``
    reads or sets it.
    """

    def __init__(self, run: RunView, *, max_rate: float = 10.0, **kwargs):
        check_view(run, "Dashboard")
        self.run = run
        self._delivery = delivery = Delivery()
        self.status = StatusLine(run, max_rate=max_rate, delivery=delivery)
        self.trend = Trend(run, max_rate=max_rate, delivery=delivery)
        self.spectra = Spectra(run, max_rate=max_rate, delivery=delivery)
        self.neurons = Neurons(run, max_rate=max_rate, delivery=delivery)
        self.basins = Basins(run, max_rate=max_rate, delivery=delivery)
        self.radiograph = LiveRadiograph(run, max_rate=max_rate, delivery=delivery)
        self.characteristic_maps = LiveCharacteristicMaps(run, max_rate=max_rate, delivery=delivery)
        # Links live in the browser (jslink): a choice made while training keeps the kernel busy
        # still reaches every panel.
        hub = self.trend.selector
        self._links = [ipywidgets.jslink((hub, "selected"), (panel.selector, "selected"))
                       for panel in (self.spectra, self.neurons, self.basins, self.radiograph)]
        super().__init__(children=[getattr(self, name) for name in _PANELS], **kwargs)
        self.add_class("nnmodes-dashboard")

    @property
    def selected(self) -> str:
        """The layer (module name) selected in the panels, "" for none."""
        return self.trend.selector.selected

    @selected.setter
    def selected(self, layer: str) -> None:
        choices = self.trend.selector.layers
        if layer != "" and layer not in choices:
            raise ValueError(f"unknown layer {layer!r}; choose one of {choices} or '' for none")
        for panel in (self.trend, self.spectra, self.neurons, self.basins, self.radiograph):
            panel.selector.selected = layer

    @property
    def frames(self) -> int:
        """Frames the panels built and sent so far, all together."""
        return self._delivery.frames

    def _shown(self) -> list:
        """The panels with something to draw, in the order of the dashboard."""
        return [self.trend, self.spectra] + [p for p in (self.neurons, self.basins, self.radiograph,
                                                          self.characteristic_maps) if p.shown]

    @property
    def figsize(self):
        panels = self._shown()
        return (9, sum(p.figsize[1] for p in panels))

    def draw(self, fig, step: int | None = None) -> None:
        """Every panel with data, one under the other, titled with the status line."""
        panels = self._shown()
        heights = [p.figsize[1] for p in panels]
        for panel, sub in zip(panels, fig.subfigures(len(panels), 1, height_ratios=heights)):
            panel.draw(sub, step)
        status = self.run.summary() if step is None else f"up to step {step}"
        fig.suptitle(status, x=0.01, ha="left", fontsize="small")

    def close(self) -> None:
        """Stop updating and close every panel and part: nothing of the dashboard is kept."""
        if hasattr(self, "_delivery"):   # close() also runs from __del__ after a failed __init__
            self._delivery.close()
        for link in getattr(self, "_links", ()):
            link.close()
        super().close()
        close_parts(self)
