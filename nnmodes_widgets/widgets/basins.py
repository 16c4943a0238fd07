"""Network dynamics over training (SPEC 4.6): sample-space basin radii per class, weight-space
basin radii per layer, and weight alignment per layer against the step, with the phase changes
found in them marked on every time axis."""

from __future__ import annotations

import html

import anywidget
import bqplot
import ipywidgets
import numpy as np

from .. import export
from ..colors import class_colors, layer_colors, line_color
from ..runs.run_view import RunView, check_view
from ..ticks import readable_axes
from .axes import margin, x_axis, y_axis
from .decimate import decimate_each
from .delivery import Delivery
from .exportable import Exportable
from .empty import plot_reason
from .front import palette_of
from .live import LivePanel
from .notes import panel_note
from .phases import draw_phases, evidence_band, phase_marks, phase_rules, show_phases
from .scales import settle_range
from .spectrum import PanelHeader
from .trend import LINE_WIDTH, cluster_labels, dots_for, send_lines

# (history name, y label, colours by key: per class or per layer, the analysis that records it)
PLOTS = (("sample_basins", "sample basin radius", "classes", "basins"),
         ("weight_basins", "weight basin radius", "layers", "basins"),
         ("weight_alignment", "alignment (mean |cos|)", "layers", "alignment"))
HELP = ("How far a sample (left: median per class) or a layer's weights (middle; black: all "
        "layers) can be pushed before the prediction or the loss changes; right: how alike each "
        "layer's weight vectors are. Dashed red: a new learning phase.")


class Basins(LivePanel, Exportable, ipywidgets.VBox):
    """Attraction basins and weight alignment of a run, drawn live (root element class
    ``nnmodes-basins``): the median sample-space basin radius of each class ("sample_basins"),
    each layer's weight-space basin radius and that of all layers together ("weight_basins",
    "*"), and each layer's weight alignment ("weight_alignment"), against the step; the phase
    changes ("phases") as dashed rules. Radii as defined in SPEC 4.6; an unbounded radius
    (``inf``: no direction tried left the basin) is not drawn."""

    analyses = ("sample_basins", "weight_basins", "weight_alignment", "phases")
    panel, what = "basins", "basins"
    figsize = (9, 3.2)

    def __init__(self, run: RunView, *, max_points: int = 500, max_rate: float = 10.0,
                 delivery: Delivery | None = None, **kwargs):
        check_view(run, "Basins")
        self.max_points = max_points
        self.title = "Attraction basins and weight alignment"
        self._step_x = bqplot.LinearScale()
        self._marks, self._figures, self._rules, evidence, figures = {}, {}, [], [], []
        self._dots = {}
        for analysis, label, kind, _ in PLOTS:
            mark = bqplot.Lines(x=np.zeros((1, 0)), y=np.zeros((1, 0)), stroke_width=LINE_WIDTH,
                                scales={"x": self._step_x, "y": bqplot.LinearScale()},
                                tooltip=bqplot.Tooltip(fields=["name"], show_labels=False))
            if kind == "layers":     # a layer of one record so far: a dot among the lines
                self._dots[analysis] = dots_for(mark)
            rules, band = phase_rules(self._step_x), evidence_band(self._step_x)
            axes = [x_axis(self._step_x, ticks=4), y_axis(mark.scales["y"], label, ticks=4)]
            figures.append(bqplot.Figure(
                marks=[band, rules, mark, *([self._dots[analysis]] if kind == "layers" else [])],
                axes=axes, animation_duration=0, fig_margin=margin(),
                layout=ipywidgets.Layout(flex="1 1 200px", min_width="190px", height="220px")))
            self._marks[analysis] = mark
            self._figures[analysis] = figures[-1]
            self._rules.append(rules)
            evidence.append(band)
        marks = [*self._marks.values(), *self._dots.values()]
        kinds = {analysis: kind for analysis, _, kind, _ in PLOTS}
        self._header = PanelHeader(
            root="nnmodes-basins", title=self.title, layers=run.layers, help=HELP,
            reference="Lin, Feng, Zhang, Zhao (arXiv 2501.02436), as defined here",
            reference_url="https://arxiv.org/abs/2501.02436",
            mark=self._marks["weight_alignment"], marks=marks,
            mark_kinds=[*(kinds[a] for a in self._marks), *("layers" for _ in self._dots)],
            evidence=evidence,
            axes=[a for f in figures for a in f.axes])
        self._note = ipywidgets.HTML()
        self._note.add_class("nnmodes-note")
        self._row = row = ipywidgets.Box(figures)
        row.add_class("nnmodes-figures")
        super().__init__(children=[self._header, row, self._note], **kwargs)
        self.add_class("nnmodes-basins")
        self.add_class("nnmodes-panel")
        self._bind(run, name="basins", max_rate=max_rate, delivery=delivery)

    @property
    def selector(self) -> anywidget.AnyWidget:
        """The front-end model holding this panel's layer selection (``selected``)."""
        return self._header

    @property
    def shown(self) -> bool:
        """Whether there is anything to show (and so to export)."""
        return any(self.run.history.layers(a) for a, _, _, _ in PLOTS)

    def _series(self, analysis: str, step: int | None = None):
        """Per key (a class, a layer) its (steps, values) up to ``step``, inf as NaN."""
        history = self.run.history
        out = {}
        for key in history.layers(analysis):
            steps, values = history.get(analysis, key)
            if step is not None:
                keep = steps <= step
                steps, values = steps[keep], values[keep]
            out[key] = (steps, np.where(np.isfinite(values), values, np.nan))
        return out

    def _draw_live(self) -> None:
        series = {analysis: self._series(analysis) for analysis, _, _, _ in PLOTS}
        # history name -> the analysis that records it, for those with nothing yet
        missing = {analysis: name for analysis, _, _, name in PLOTS if not series[analysis]}
        newest = max([0, *(int(s[-1]) for per_key in series.values()
                           for s, _ in per_key.values() if len(s))])
        self._explain(bool(newest))
        if not newest:
            return
        # the step goes first: the browser labels a frame, when the alignment's lines get their
        # data, with the step it already has (after the data, the last frame kept the step before)
        with self._header.hold_sync():
            self._header.step = newest
            self._header.palette = palette_of(self.run.history, cluster_labels(self.run.history))
        for analysis, _, _, _ in PLOTS:
            if analysis in missing:
                continue
            x, y = decimate_each(series[analysis].values(), self.max_points)
            mark = self._marks[analysis]
            y = send_lines(mark, self._dots.get(analysis), x, y, list(series[analysis]))
            if y is not None:
                settle_range(mark.scales["y"], y, headroom=self._headroom)
        # the plots with nothing to show are left out (hidden, bqplot would lay them out at size
        # 0), and the note says why
        shown = tuple(self._figures[a] for a, _, _, _ in PLOTS if a not in missing)
        if self._row.children != shown:
            self._row.children = shown
        history = self.run.history
        settle_range(self._step_x, np.concatenate([history.steps(a) for a, _, _, _ in PLOTS]),
                     pad=self.run.every, headroom=self._headroom)
        for rules in self._rules:
            show_phases(rules, phase_marks(history))
        why = [plot_reason(self.run, name) for name in dict.fromkeys(missing.values())]
        note = " · ".join(filter(None, [*why, panel_note(self.run, "basins", "alignment")]))
        self._note.value = html.escape(note)

    def draw(self, fig, step: int | None = None) -> None:
        """The three plots at full resolution, with the phase changes (up to ``step``)."""
        axes = fig.subplots(1, len(PLOTS))
        history = self.run.history
        marks = phase_marks(history, step)
        palette = palette_of(history, cluster_labels(history, step))
        for ax, (analysis, label, kind, _) in zip(axes, PLOTS):
            series = self._series(analysis, step)
            for (key, (steps, values)), color in zip(series.items(),
                                                     _colors(list(series), kind, palette)):
                ax.plot(steps, values, color=color, lw=1.2, label=key,
                        marker=export.point_marker(int(np.isfinite(values).sum())))
            draw_phases(ax, marks)
            ax.set_xlabel("step")
            ax.set_ylabel(label, fontsize="small")
            ax.grid(True, ls="--", lw=0.5, alpha=0.6)
            readable_axes(ax, x_count=4, y_count=4)
            if series:
                export.layer_legend(ax, len(series))
            else:
                ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
        fig.suptitle(self.title, x=0.01, ha="left", fontsize="medium", fontweight="bold")


def _colors(keys: list[str], kind: str, palette: dict) -> list[str]:
    """Classes in categorical colours; layers in their colours of every panel, "*" (all layers)
    in the text colour."""
    if kind == "classes":
        return class_colors(len(keys))
    colors = layer_colors(palette["keys"], palette["clusters"])
    return [line_color(key, colors) for key in keys]
