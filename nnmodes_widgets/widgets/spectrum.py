"""Live mode spectra: ranked singular values per layer with their fitted power laws (log-log),
and each layer's effective and stable rank against the step (Li & Huang, SPEC 4.4)."""

from __future__ import annotations

import anywidget
import bqplot
import ipywidgets
import numpy as np
import traitlets

from .. import export
from ..colors import layer_colors, line_color
from ..runs.run_view import RunView, check_view
from ._bundle import bundle
from .axes import margin, x_axis, y_axis
from .decimate import decimate_each, end_at_last_value
from .delivery import Delivery
from ..ticks import readable_axes
from .exportable import Exportable
from .front import FigureFront, palette_of
from .live import LivePanel
from .phases import draw_phases, evidence_band, phase_marks, phase_rules, show_phases
from .scales import provisional_log_scale, settle_range
from .trend import POINT_WIDTH, as_lines, cluster_labels, dots_for, send_lines


class PanelHeader(FigureFront, anywidget.AnyWidget):
    """Header of a panel of bqplot figures (its root element class ``root``): title, layer
    picker, step, how to read it; counts a frame when ``mark`` gets new data in the browser,
    colours and brings out the selected layer's lines in ``marks`` (``FigureFront``)."""

    _esm = bundle("spectrum.js")
    _css = bundle("widgets.css")
    root = traitlets.Unicode("nnmodes-spectrum").tag(sync=True)
    mark = traitlets.Instance(bqplot.Lines).tag(sync=True, **ipywidgets.widget_serialization)


HELP = ("Left: each weight matrix's singular values by rank, log-log; a straight stretch is a "
        "power law (dashed: its fit). Right: how many modes carry the weights; a falling rank "
        "means the layer concentrates on fewer modes.")


class Spectra(LivePanel, Exportable, ipywidgets.VBox):
    """Mode spectra of every weight, from the run view's history ("spectrum"), drawn live.

    Left: the newest ranked singular values of each layer on log-log axes, with the fitted
    piecewise power law dashed ("power_law"). Right: effective and stable rank against the step.
    All as the analyses computed and recorded them: a partial spectrum's stable rank uses the
    exact norm, and it has no effective rank. Root element class ``nnmodes-spectrum``.
    """

    analyses = ("spectrum", "stable_rank", "effective_rank", "power_law", "phases")
    panel, what = "spectra", "spectra"

    def __init__(self, run: RunView, *, max_points: int = 500, max_rate: float = 10.0,
                 delivery: Delivery | None = None, **kwargs):
        check_view(run, "Spectra")
        self.max_points = max_points
        self.title = "Mode spectra and ranks"
        rank_x, value_y = provisional_log_scale(1, 10), provisional_log_scale(0.01, 10)
        self._spectra = bqplot.Lines(x=np.zeros((1, 0)), y=np.zeros((1, 0)),
                                     scales={"x": rank_x, "y": value_y}, stroke_width=1.5,
                                     tooltip=bqplot.Tooltip(fields=["name"], show_labels=False))
        self._fits = bqplot.Lines(x=np.zeros((1, 0)), y=np.zeros((1, 0)),
                                  scales={"x": rank_x, "y": value_y}, line_style="dashed",
                                  stroke_width=1)
        spectrum_fig = _figure([self._spectra, self._fits], rank_x, value_y, "rank", "singular value")
        self._step_x = step_x = bqplot.LinearScale()
        self._effective, self._stable = (bqplot.Lines(
            x=np.zeros((1, 0)), y=np.zeros((1, 0)), scales={"x": step_x, "y": bqplot.LinearScale()},
            tooltip=bqplot.Tooltip(fields=["name"], show_labels=False)) for _ in range(2))
        # each rank trend's layers of one record so far, as dots among the others' lines
        self._dots = {mark: dots_for(mark) for mark in (self._effective, self._stable)}
        self._rules = [phase_rules(step_x), phase_rules(step_x)]
        evidence = [evidence_band(step_x), evidence_band(step_x)]
        self._effective_fig, self._stable_fig = (
            _figure([band, rules, mark, self._dots[mark]], step_x, mark.scales["y"], "step",
                    label, height="150px")
            for band, rules, mark, label in (
                (evidence[0], self._rules[0], self._effective, "effective rank"),
                (evidence[1], self._rules[1], self._stable, "stable rank")))
        self._widths = {mark: mark.stroke_width for mark in
                        (self._spectra, self._fits, self._effective, self._stable)}
        marks = [self._spectra, self._fits, self._effective, self._stable, *self._dots.values()]
        self._header = PanelHeader(
            title=self.title, mark=self._spectra, layers=run.layers, help=HELP,
            reference="Li & Huang (arXiv 2208.09859)",
            reference_url="https://arxiv.org/abs/2208.09859",
            marks=marks, mark_kinds=["layers"] * len(marks), evidence=evidence,
            axes=[a for f in (spectrum_fig, self._effective_fig, self._stable_fig) for a in f.axes])
        figures = ipywidgets.Box(
            [spectrum_fig, ipywidgets.VBox([self._effective_fig, self._stable_fig],
                                           layout=ipywidgets.Layout(flex="1 1 220px"))])
        figures.add_class("nnmodes-figures")
        super().__init__(children=[self._header, figures], **kwargs)
        self.add_class("nnmodes-spectrum")
        self.add_class("nnmodes-panel")
        self._bind(run, name="spectrum", max_rate=max_rate, delivery=delivery)

    @property
    def selector(self) -> anywidget.AnyWidget:
        """The front-end model holding this panel's layer selection (``selected``)."""
        return self._header

    def _data(self, step: int | None = None, analysis: str = "spectrum", layers=None):
        """Per layer (steps, values) of ``analysis`` up to ``step``: the layers with values, or
        each of ``layers`` (empty where it has none)."""
        history = self.run.history
        known = history.layers(analysis)
        series = {}
        for layer in (known if layers is None else layers):
            steps, values = (history.get(analysis, layer) if layer in known
                             else (np.zeros(0, np.int64), np.zeros(0)))
            if step is not None:
                keep = steps <= step
                steps, values = steps[keep], values[keep]
            if len(steps) or layers is not None:
                series[layer] = (steps, values)
        return list(series), series

    def _ranks(self, layers, step: int | None = None):
        """The steps of the rank trends (all layers' together) and each layer's effective and
        stable rank on its own steps, as the analysis recorded them (NaN where a layer has none:
        a partial spectrum's effective rank), decimated: ``(steps, (x, y), (x, y))``, [L, P]."""
        effective = self._data(step, "effective_rank", layers)[1]
        stable = self._data(step, "stable_rank", layers)[1]
        steps = np.unique(np.concatenate([s for s, _ in (*effective.values(), *stable.values())]))
        return (steps, decimate_each(effective.values(), self.max_points),
                decimate_each(stable.values(), self.max_points))

    def _draw_live(self) -> None:
        layers, series = self._data()
        self._explain(bool(layers))   # the ranks are recorded with the spectra
        if not layers:
            return
        steps, (ex, ey), (sx, sy) = self._ranks(layers)
        _, fit_series = self._data(None, "power_law", layers)
        width = max(v.shape[1] for _, v in series.values())
        newest, fits = np.full((2, len(layers), width), np.nan)
        for i, layer in enumerate(layers):
            newest[i, : series[layer][1].shape[1]] = series[layer][1][-1]
            fit = fit_series[layer][1]
            if len(fit):     # recorded just after the spectrum: the newest
                fits[i, : fit.shape[1]] = fit[-1]
        newest[~(newest > 0)] = np.nan        # a log axis places no singular value <= 0
        ranks = np.broadcast_to(np.arange(1, width + 1, dtype=np.float64), newest.shape)
        # first: the browser labels the frame with it
        with self._header.hold_sync():
            self._header.step = int(max(steps[-1], *(s[-1] for s, _ in series.values())))
            self._header.palette = palette_of(self.run.history, cluster_labels(self.run.history),
                                              layers)
        # each rank trend's layers on their own steps: lines, and dots for one record so far
        ranks_sent = {mark: send_lines(mark, self._dots[mark], x, y, layers, self._widths[mark])
                      for mark, x, y in ((self._effective, ex, ey), (self._stable, sx, sy))}
        # the spectra last: the browser counts a frame when they get their data
        sent = {}
        for mark, x, y in ((self._fits, ranks, fits), (self._spectra, ranks, newest)):
            x, y, points, keep = as_lines(*end_at_last_value(x, y))
            if not keep.any():    # nothing to draw (no fit yet): keep what is shown
                continue
            labels = [layer for layer, k in zip(layers, keep) if k]
            with mark.hold_sync():
                if list(mark.labels) != labels:
                    mark.labels = labels
                mark.stroke_width = POINT_WIDTH if points else self._widths[mark]
                mark.x, mark.y = x, y.astype(np.float32)
            sent[mark] = (x, y)
        # the scales after the marks, so that a range set from new data never meets the old
        x_scale, y_scale = self._spectra.scales["x"], self._spectra.scales["y"]
        if sent:
            # (the ranks do not grow: no headroom)
            settle_range(x_scale, np.concatenate([x.ravel() for x, _ in sent.values()]), log=True,
                         headroom=0.0)
            settle_range(y_scale, np.concatenate([y.ravel() for _, y in sent.values()]), log=True,
                         headroom=self._headroom)
        settle_range(self._step_x, steps, pad=self.run.every, headroom=self._headroom)
        for rules in self._rules:
            show_phases(rules, phase_marks(self.run.history))
        for mark, y in ranks_sent.items():
            if y is not None:
                settle_range(mark.scales["y"], y, headroom=self._headroom)

    figsize = (9, 3.6)

    def draw(self, fig, step: int | None = None) -> None:
        """Spectra with their fits, and the rank trends, at full resolution (up to ``step``)."""
        layers, series = self._data(step)
        _, effective = self._data(step, "effective_rank", layers)
        _, fits = self._data(step, "power_law", layers)
        left, right = fig.subplots(1, 2)
        palette = palette_of(self.run.history, cluster_labels(self.run.history, step), layers)
        colors = layer_colors(palette["keys"], palette["clusters"])
        for layer in layers:
            color = line_color(layer, colors)
            s = series[layer][1][-1]
            ranks = np.arange(1, len(s) + 1)
            left.loglog(ranks, np.where(s > 0, s, np.nan), color=color, lw=1.2, label=layer,
                        marker=export.point_marker(int((s > 0).sum())))
            fit_steps, fit = fits[layer]
            if len(fit_steps) and fit_steps[-1] == series[layer][0][-1]:   # that spectrum's fit
                left.loglog(ranks[: fit.shape[1]], fit[-1], color=color, lw=0.8, ls="--")
            steps, values = effective[layer]     # NaN for a partial spectrum: not drawn
            right.plot(steps, values, color=color, lw=1.2, label=layer,
                       marker=export.point_marker(int(np.isfinite(values).sum())))
        left.set_xlabel("rank")
        left.set_ylabel("singular value")
        draw_phases(right, phase_marks(self.run.history, step))
        right.set_xlabel("step")
        right.set_ylabel("effective rank")
        for ax in (left, right):
            ax.grid(True, ls="--", lw=0.5, alpha=0.6)
            readable_axes(ax, x_count=5, step_x=ax is right)
        if not layers:
            left.text(0.5, 0.5, "no spectra yet", ha="center", va="center", transform=left.transAxes)
        else:
            export.layer_legend(right, len(layers))
        fig.suptitle(self.title, x=0.01, ha="left", fontsize="medium", fontweight="bold")


def _figure(marks, x_scale, y_scale, x_label, y_label, height="300px"):
    """A figure of ``marks``; its axes' ticks are the browser's (js/ticks.js), at most
    num_ticks: fewer on the small rank trends."""
    small = height != "300px"
    axes = [x_axis(x_scale, x_label, ticks=4 if small else 5),
            y_axis(y_scale, y_label, ticks=3 if small else 5)]
    return bqplot.Figure(marks=marks, axes=axes, animation_duration=0, fig_margin=margin(),
                         layout=ipywidgets.Layout(flex="1 1 240px", min_width="200px",
                                                  height=height))
