"""The dashboard: every live panel of one run in a grid that uses the width, under a status
header and the strip of findings."""

from __future__ import annotations

import ipywidgets

from ..runs.run_view import RunView, check_view
from .basins import Basins
from .delivery import Delivery
from .exportable import Exportable
from .findings import Findings, finding_lines
from .neurons import Neurons
from .presence import ShownOnDisplay
from .radiograph import LiveCharacteristicMaps, LiveRadiograph
from .spectrum import Spectra
from .status import StatusLine, headline
from .tree import close_parts
from .trend import Trend

_PANELS = ("trend", "spectra", "neurons", "basins", "radiograph", "characteristic_maps")
FINDING_LINE = 0.2     # inches per line of the findings in an export


class Dashboard(ShownOnDisplay, Exportable, ipywidgets.VBox):
    """Live panels of ``run`` (root element class ``nnmodes-dashboard``): a ``Monitor``, or a run
    stored on disk.

    ``Dashboard(monitor)`` is the same as ``monitor.dashboard()``. On top, the ``status`` header
    and the ``findings`` strip; under them the panels ``trend``, ``spectra``, ``neurons``,
    ``basins``, ``radiograph`` and ``characteristic_maps`` in a grid (two columns where the
    dashboard is wide enough), each collapsible, with how to read it and its paper. Each
    updates itself at most ``max_rate`` times per second while it is on screen, from one
    delivery thread (``frames`` counts what they built). One layer selection is shared by the
    findings strip and the trend, spectra, neurons, basins and radiograph panels: choosing a
    layer in one (its picker, a click on its band or strip, or on a finding) selects it in the
    others, in the browser. ``selected`` reads or sets it.
    """

    def __init__(self, run: RunView, *, max_rate: float = 10.0, **kwargs):
        check_view(run, "Dashboard")
        self.run = run
        self._delivery = delivery = Delivery()
        self.status = StatusLine(run, max_rate=max_rate, delivery=delivery)
        self.findings = Findings(run, max_rate=max_rate, delivery=delivery)
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
                       for panel in (self.findings, self.spectra, self.neurons, self.basins,
                                     self.radiograph)]
        grid = ipywidgets.Box(children=[getattr(self, name) for name in _PANELS])
        grid.add_class("nnmodes-grid")
        super().__init__(children=[self.status, self.findings, grid], **kwargs)
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
        for panel in (self.trend, self.findings, self.spectra, self.neurons, self.basins,
                      self.radiograph):
            panel.selector.selected = layer

    @property
    def frames(self) -> int:
        """Frames the panels built and sent so far, all together."""
        return self._delivery.frames

    def _shown(self) -> list:
        """The panels with something to draw, in the order of the dashboard."""
        return [self.trend, self.spectra] + [p for p in (self.neurons, self.basins, self.radiograph,
                                                          self.characteristic_maps) if p.shown]

    def _findings(self, step: int | None) -> list[str]:
        """The lines of the findings block: those started up to ``step`` (all when None)."""
        findings = [f for f in self.run.findings if step is None or f.step <= step]
        return finding_lines(findings) if findings else ["No findings."]

    @property
    def figsize(self):
        lines = len(self._findings(None))
        return (9, 0.3 + FINDING_LINE * lines + sum(p.figsize[1] for p in self._shown()))

    def draw(self, fig, step: int | None = None) -> None:
        """Titled with the status, the findings (newest first), then every panel with data, one
        under the other."""
        panels = self._shown()
        lines = self._findings(step)
        heights = [0.3 + FINDING_LINE * len(lines)] + [p.figsize[1] for p in panels]
        block, *subs = fig.subfigures(len(heights), 1, height_ratios=heights)
        block.text(0.01, 1.0, "Findings\n" + "\n".join(lines), ha="left", va="top",
                   fontsize="small", linespacing=1.4)
        for panel, sub in zip(panels, subs):
            panel.draw(sub, step)
        status = headline(self.run) if step is None else f"up to step {step:,}"
        fig.suptitle(status, x=0.01, ha="left", fontsize="small")

    def close(self) -> None:
        """Stop updating and close every panel and part: nothing of the dashboard is kept."""
        if hasattr(self, "_delivery"):   # close() also runs from __del__ after a failed __init__
            self._delivery.close()
        for link in getattr(self, "_links", ()):
            link.close()
        super().close()
        close_parts(self)
