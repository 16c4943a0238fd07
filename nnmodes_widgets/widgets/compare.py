"""Runs side by side: one layer's RWC trend overlaid for every run, one colour per run, and each
run's spectra and neuron modes next to the others' (SPEC 11, ``nm.compare``)."""

from __future__ import annotations

import os
import threading

import bqplot
import ipywidgets
import numpy as np

from ..colors import class_colors
from ..runs.run_view import RunView, check_view
from ..ticks import readable_axes
from .axes import margin, x_axis, y_axis
from .decimate import end_at_last_value, minmax_decimate
from .delivery import Delivery, Feed
from .exportable import Exportable
from .neurons import Neurons
from .presence import ShownOnDisplay, presence_of
from .scales import HEADROOM, settle_range
from .spectrum import PanelHeader, Spectra
from .tree import close_parts
from .trend import LINE_WIDTH, POINT_WIDTH, as_lines


def run_label(run: RunView, index: int) -> str:
    """How a run is named in a comparison: its file's name, else its model's class."""
    name = getattr(run, "name", None)
    if name:
        return str(name)
    path = getattr(run, "run_path", None)
    if path:
        return os.path.basename(path).removesuffix(".nnmodes")
    model = getattr(run, "model", None)
    return f"run {index + 1}" + (f" ({type(model).__name__})" if model is not None else "")


class Comparison(ShownOnDisplay, Exportable, ipywidgets.VBox):
    """Runs side by side (root element class ``nnmodes-compare``; ``nm.compare`` opens paths
    and makes one). Top: the RWC trend of one
    layer (the picker's; the layers any run recorded) for every run, one colour per run, updated
    while a run is still written. Below: each run's spectra panel and neuron-modes panel, in a
    row. ``export``/``snapshot`` draw every layer's overlaid trends and each run's spectra."""

    def __init__(self, runs, *, max_points: int = 500, max_rate: float = 4.0, **kwargs):
        if len(runs) < 2:
            raise ValueError(f"compare needs at least two runs, got {len(runs)}")
        for i, run in enumerate(runs):
            check_view(run, f"compare (argument {i + 1})")
        opened = self.runs = list(runs)
        self.labels = [run_label(run, i) for i, run in enumerate(opened)]
        self.colors = class_colors(len(opened))   # the browser's own on a dark theme
        self.max_points = max_points
        layers = list(dict.fromkeys(name for run in opened for name in run.history.layers("rwc")))
        self.picker = ipywidgets.Dropdown(options=layers, value=layers[0] if layers else None,
                                          description="layer")
        x_scale, y_scale = bqplot.LinearScale(), bqplot.LinearScale()
        self._lines = bqplot.Lines(x=np.zeros((1, 0)), y=np.zeros((1, 0)),
                                   scales={"x": x_scale, "y": y_scale}, stroke_width=LINE_WIDTH,
                                   tooltip=bqplot.Tooltip(fields=["name"], show_labels=False))
        # the runs' names in their colours above say which line is which (no legend on the lines)
        figure = bqplot.Figure(
            marks=[self._lines], animation_duration=0,
            axes=[x_axis(x_scale), y_axis(y_scale, "RWC", offset="55px")],
            fig_margin=margin(left=75),
            layout=ipywidgets.Layout(width="100%", height="300px"))
        # the overlay's header: its lines' colours (one per run) and its axes' ticks are the
        # browser's, as in every panel
        self._header = PanelHeader(
            root="nnmodes-compare-overlay", title="Relative weight change of one layer, one colour per run",
            help="The layer chosen below, as each run trained it: where the runs part, they learn "
                 "that layer differently.", reference="WeightScale (arXiv 2107.07005)",
            reference_url="https://arxiv.org/abs/2107.07005", mark=self._lines,
            marks=[self._lines], mark_kinds=["classes"], axes=list(figure.axes))
        self._lock = threading.Lock()     # one overlay update at a time, whichever run brings it
        self._drawn = None                # (layer, versions) of the overlay on screen
        self._delivery = delivery = Delivery()   # one thread for the overlay and every panel
        self.spectra = [Spectra(run, max_points=max_points, max_rate=max_rate, delivery=delivery)
                        for run in opened]
        self.neurons = [Neurons(run, max_points=max_points, max_rate=max_rate, delivery=delivery)
                        for run in opened]
        columns = [ipywidgets.VBox([ipywidgets.HTML(f"<b style='color:{color}'>{label}</b>"),
                                    spectra, neurons],
                                   layout=ipywidgets.Layout(width=f"{100 / len(opened):.0f}%"))
                   for label, color, spectra, neurons
                   in zip(self.labels, self.colors, self.spectra, self.neurons)]
        title = ipywidgets.HTML("<b>Runs compared</b>: " + " · ".join(
            f"<span style='color:{c}'>{label}</span>" for label, c in zip(self.labels, self.colors)))
        title.add_class("nnmodes-compare-title")
        overlay = ipywidgets.VBox([self._header, self.picker, figure])
        overlay.add_class("nnmodes-compare-overlay")
        super().__init__(children=[title, overlay, ipywidgets.HBox(columns)], **kwargs)
        self.add_class("nnmodes-compare")
        # the overlay is on screen with the panels beside it
        presences = [presence_of(panel.front) for panel in (*self.spectra, *self.neurons)]
        self._overlay = delivery.add(Feed(
            self._push, max_rate=max_rate, max_share=min(run.budget for run in opened) / 10,
            on_error=self._report, on_screen=lambda: any(p.on_screen for p in presences),
            begin=self._begin_work, end=self._end_work,
            training_cost=lambda seconds: max(run.work_cost(seconds, "widgets")
                                              for run in self.runs)))
        for presence in presences:
            presence.watch(lambda shown: delivery.screen_changed(self._overlay))
        for run in opened:
            delivery.follow(run)
        self._overlay.deliver()
        self.picker.observe(lambda change: self._overlay.deliver(), "value")

    @property
    def frames(self) -> int:
        """Frames the overlay and the panels built and sent so far, all together."""
        return self._delivery.frames

    # the overlay draws from every run: its cost and faults are each run's
    def _report(self, exc: Exception) -> None:
        for run in self.runs:
            run.report("widget:compare", exc)

    def _begin_work(self) -> list:
        return [run.begin_work("widgets") for run in self.runs]

    def _end_work(self, tokens: list) -> None:
        for run, token in zip(self.runs, tokens):
            run.end_work(token)

    @property
    def layer(self) -> str | None:
        """The layer whose trends are overlaid."""
        return self.picker.value

    @layer.setter
    def layer(self, value: str) -> None:
        if value not in self.picker.options:
            raise ValueError(f"unknown layer {value!r}; choose one of {list(self.picker.options)}")
        self.picker.value = value

    def _push(self) -> bool:
        """Overlay the runs' trends of the picked layer, if it or their RWC changed; whether it
        drew."""
        layer = self.picker.value
        if layer is None:
            return False
        with self._lock:
            drawn = (layer, tuple(run.history.version_of("rwc") for run in self.runs))
            if drawn == self._drawn:
                return False
            self._drawn = drawn
            series = [_series(run, layer) for run in self.runs]
            width = max((len(s) for s, _ in series), default=0)
            if not width:
                return False
            x = np.full((len(series), min(width, self.max_points + 1)), np.nan)
            y = np.full_like(x, np.nan)
            for i, (steps, values) in enumerate(series):
                if len(steps):
                    sx, sy = minmax_decimate(steps.astype(np.float64), values[None, :],
                                             self.max_points)
                    x[i, : sx.shape[1]], y[i, : sy.shape[1]] = sx[0], sy[0]
            mx, my, points, keep = as_lines(*end_at_last_value(x, y))
            with self._lines.hold_sync():
                self._lines.labels = [label for label, k in zip(self.labels, keep) if k]
                self._lines.stroke_width = POINT_WIDTH if points else LINE_WIDTH
                self._lines.x, self._lines.y = mx, my.astype(np.float32)
            headroom = 0.0 if all(run.detached for run in self.runs) else HEADROOM
            settle_range(self._lines.scales["x"], mx, pad=1, headroom=headroom)
            settle_range(self._lines.scales["y"], my, headroom=headroom)
        return True

    @property
    def figsize(self):
        rows = -(-len(self.picker.options) // 3)
        return (10, 2.2 * max(rows, 1) + 3.4)

    def draw(self, fig, step: int | None = None) -> None:
        """Every layer's RWC trends, one small plot per layer with a line per run, and each run's
        spectra with their fits, side by side (up to ``step`` when given)."""
        layers = list(self.picker.options)
        rows = -(-len(layers) // 3)
        top, bottom = fig.subfigures(2, 1, height_ratios=[2.2 * max(rows, 1), 3.4])
        axes = top.subplots(max(rows, 1), 3, squeeze=False).ravel()
        for ax, layer in zip(axes, layers):
            for run, label, color in zip(self.runs, self.labels, self.colors):
                steps, values = _series(run, layer)
                keep = steps <= step if step is not None else slice(None)
                ax.plot(steps[keep], values[keep], color=color, lw=1.0, label=label)
            ax.set_title(layer, fontsize="small", loc="left")
            ax.tick_params(labelsize="small")
            readable_axes(ax, x_count=4, y_count=4)
        for ax in axes[len(layers):]:
            ax.set_axis_off()
        if layers:
            axes[0].legend(fontsize="small", frameon=False)
        top.suptitle("Relative weight change per layer, one colour per run", x=0.01, ha="left",
                     fontsize="medium", fontweight="bold")
        for sub, spectra, label in zip(bottom.subfigures(1, len(self.runs)), self.spectra,
                                       self.labels):
            spectra.draw(sub, step)
            sub.suptitle(label, x=0.01, ha="left", fontsize="small")

    def close(self) -> None:
        """Stop updating and close every panel and part."""
        if hasattr(self, "_delivery"):   # close() also runs from __del__ after a failed __init__
            self._delivery.close()
        super().close()
        close_parts(self)


def _series(run: RunView, layer: str) -> tuple[np.ndarray, np.ndarray]:
    """One run's RWC of ``layer`` (empty where the run has none)."""
    if layer not in run.history.layers("rwc"):
        return np.zeros(0, np.int64), np.zeros(0)
    return run.history.get("rwc", layer)
