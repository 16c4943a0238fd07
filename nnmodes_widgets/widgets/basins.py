"""Network dynamics over training (SPEC 4.6): sample-space basin radii per class, weight-space
basin radii per layer, and weight alignment per layer against the step, with the phase changes
found in them marked on every time axis."""

from __future__ import annotations

import anywidget
import bqplot
import ipywidgets
import numpy as np

from .. import export
from ..colors import cluster_colors, layer_colors
from ..runs.run_view import RunView, analysis_notes, check_view
from .decimate import end_at_last_value, minmax_decimate
from .delivery import Delivery
from .exportable import Exportable
from .live import LivePanel
from .phases import draw_phases, phase_marks, phase_rules, show_phases
from .spectrum import PanelHeader
from .trend import LINE_WIDTH, POINT_WIDTH, as_lines, settle_range

# (analysis, y label, colours by key: per class or per layer)
PLOTS = (("sample_basins", "sample basin radius (median)", "classes"),
         ("weight_basins", "weight basin radius", "layers"),
         ("weight_alignment", "weight alignment (mean |cos|)", "layers"))


class Basins(LivePanel, Exportable, ipywidgets.VBox):
    """Attraction basins and weight alignment of a run, drawn live (root element class
    ``nnmodes-basins``): the median sample-space basin radius of each class ("sample_basins"),
    each layer's weight-space basin radius and that of all layers together ("weight_basins",
    "*"), and each layer's weight alignment ("weight_alignment"), against the step; the phase
    changes ("phases") as dashed rules. Radii as defined in SPEC 4.6; an unbounded radius
    (``inf``: no direction tried left the basin) is not drawn."""

    analyses = ("sample_basins", "weight_basins", "weight_alignment", "phases")
    figsize = (9, 3.2)

    def __init__(self, run: RunView, *, max_points: int = 500, max_rate: float = 10.0,
                 delivery: Delivery | None = None, **kwargs):
        check_view(run, "Basins")
        self.max_points = max_points
        self.title = ("Network dynamics: attraction basins and weight alignment, "
                      "phase changes dashed")
        self._step_x = bqplot.LinearScale()
        self._marks, self._rules, figures = {}, [], []
        for analysis, label, _ in PLOTS:
            mark = bqplot.Lines(x=np.zeros((1, 0)), y=np.zeros((1, 0)), stroke_width=LINE_WIDTH,
                                scales={"x": self._step_x, "y": bqplot.LinearScale()},
                                tooltip=bqplot.Tooltip(fields=["name"], show_labels=False))
            rules = phase_rules(self._step_x)
            axes = [bqplot.Axis(scale=self._step_x, label="step", grid_lines="none",
                                tick_format=".3~g", num_ticks=4),
                    bqplot.Axis(scale=mark.scales["y"], side="left", label=label,
                                tick_format=".3~g", label_offset="45px", grid_lines="dashed",
                                num_ticks=4)]
            figures.append(bqplot.Figure(
                marks=[rules, mark], axes=axes, animation_duration=0,
                fig_margin={"top": 10, "bottom": 40, "left": 60, "right": 10},
                layout=ipywidgets.Layout(width="33%", height="240px")))
            self._marks[analysis] = mark
            self._rules.append(rules)
        self._header = PanelHeader(
            root="nnmodes-basins", title=self.title, layers=run.layers,
            mark=self._marks["weight_alignment"], marks=list(self._marks.values()))
        self._note = ipywidgets.HTML()
        super().__init__(children=[self._header, ipywidgets.HBox(figures), self._note], **kwargs)
        self.add_class("nnmodes-basins")
        self._bind(run, name="basins", max_rate=max_rate, delivery=delivery)

    @property
    def selector(self) -> anywidget.AnyWidget:
        """The front-end model holding this panel's layer selection (``selected``)."""
        return self._header

    @property
    def shown(self) -> bool:
        """Whether there is anything to show (and so to export)."""
        return any(self.run.history.layers(a) for a, _, _ in PLOTS)

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
        newest = 0
        for analysis, _, kind in PLOTS:
            series = self._series(analysis)
            if not series:
                continue
            steps = np.unique(np.concatenate([s for s, _ in series.values()]))
            newest = max(newest, int(steps[-1]))
            values = np.full((len(series), len(steps)), np.nan)
            for i, (s, v) in enumerate(series.values()):
                values[i, np.searchsorted(steps, s)] = v
            x, y = minmax_decimate(steps.astype(np.float64), values, self.max_points)
            x, y, points, keep = as_lines(*end_at_last_value(x, y))
            if not keep.any():
                continue
            keys = [k for k, kept in zip(series, keep) if kept]
            colors = _colors(list(series), kind)
            mark = self._marks[analysis]
            with mark.hold_sync():
                mark.labels = keys
                mark.colors = [c for c, kept in zip(colors, keep) if kept]
                mark.stroke_width = POINT_WIDTH if points else LINE_WIDTH
                mark.x, mark.y = x, y.astype(np.float32)
            settle_range(mark.scales["y"], y)
        if not newest:
            return
        self._header.step = newest       # before the data: the browser labels the frame
        history = self.run.history
        settle_range(self._step_x, np.concatenate([history.steps(a) for a, _, _ in PLOTS]),
                     pad=self.run.every)
        for rules in self._rules:
            show_phases(rules, phase_marks(history))
        note = " · ".join(filter(None, (analysis_notes(self.run, "basins"),
                                        analysis_notes(self.run, "alignment"))))
        self._note.value = f"<small>{note}</small>" if note else ""

    def draw(self, fig, step: int | None = None) -> None:
        """The three plots at full resolution, with the phase changes (up to ``step``)."""
        axes = fig.subplots(1, len(PLOTS))
        marks = phase_marks(self.run.history, step)
        for ax, (analysis, label, kind) in zip(axes, PLOTS):
            series = self._series(analysis, step)
            for (key, (steps, values)), color in zip(series.items(), _colors(list(series), kind)):
                ax.plot(steps, values, color=color, lw=1.2, label=key,
                        marker=export.point_marker(int(np.isfinite(values).sum())))
            draw_phases(ax, marks)
            ax.set_xlabel("step")
            ax.set_ylabel(label, fontsize="small")
            ax.grid(True, ls="--", lw=0.5, alpha=0.6)
            if series:
                export.layer_legend(ax, len(series))
            else:
                ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
        fig.suptitle(self.title, x=0.01, ha="left", fontsize="medium", fontweight="bold")


def _colors(keys: list[str], kind: str) -> list[str]:
    """Classes in categorical colours; layers front to back, "*" (all layers) black."""
    if kind == "classes":
        return cluster_colors(range(len(keys)))
    layers = [k for k in keys if k != "*"]
    by_layer = dict(zip(layers, layer_colors(len(layers))))
    return [by_layer.get(k, "#000000") for k in keys]

