"""Live per-layer trend of the relative weight change (RWC) against the training step."""

from __future__ import annotations

import time

import anywidget
import bqplot
import ipywidgets
import numpy as np
import traitlets

from .. import export
from ..colors import layer_colors
from ..runs.run_view import RunView, check_view
from ._bundle import bundle
from .axes import margin, x_axis, y_axis
from .decimate import end_at_last_value, minmax_decimate
from .delivery import Delivery
from .exportable import Exportable
from .front import FigureFront, palette_of
from .live import LivePanel
from .phases import draw_phases, evidence_band, phase_marks, phase_rules, show_phases
from .scales import provisional_log_scale, settle_range

TOTAL_POINTS = 20_000     # points sent per push, all lines together (see _draw_live)
# s between updates of the scale's lines not on screen, while the budget has room for them: they
# cost the browser as much as the lines on screen (an architectures GPT's trend frame took
# Chromium 85 ms of CPU with both scales' lines, 45 ms with one)
HIDDEN_INTERVAL = 2.0
LINE_WIDTH = 1.5
POINT_WIDTH = 8.0          # px: a line of one point (one sample) is drawn as a round dot this wide


def as_lines(x: np.ndarray, y: np.ndarray):
    """What a bqplot Lines mark is sent for rows ``x``, ``y`` [L, P]: ``(x, y, points, keep)``.

    Rows with no point at all are left out (``keep`` says which rows are sent): bqplot would give
    such a line the path "null", a console error. Rows that each have at most one point (one
    sample so far) would draw nothing: a line needs two points, and bqplot squeezes an [L, 1]
    array to [L] (one line through every layer's point, under the first label) and refuses
    [1, 1]. Such rows go as their one point twice, and ``points`` is True: drawn with a wide
    stroke, such a line of length zero is a round dot (the panels' lines have round caps,
    js/widgets.css), and hovering it names the line, as for any line (a bqplot marker's tooltip
    has no name). Otherwise the rows go as they are.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    finite = np.isfinite(x) & np.isfinite(y)
    counts = finite.sum(axis=1)
    keep = counts >= 1
    if y.shape[1] > 1 and counts.max(initial=0) > 1:
        return x[keep], y[keep], False, keep
    rows = np.flatnonzero(keep)
    col = finite.argmax(axis=1)[rows]
    px, py = x[rows, col], y[rows, col]
    return np.stack([px, px], axis=1), np.stack([py, py], axis=1), True, keep


def dots_for(mark: bqplot.Lines) -> bqplot.Lines:
    """A hidden Lines mark on ``mark``'s scales for its rows of one point (``send_lines``)."""
    return bqplot.Lines(x=np.zeros((1, 0)), y=np.zeros((1, 0)), scales=mark.scales,
                        stroke_width=POINT_WIDTH, visible=False,
                        tooltip=bqplot.Tooltip(fields=["name"], show_labels=False))


def send_lines(mark: bqplot.Lines, dots: bqplot.Lines | None, x: np.ndarray, y: np.ndarray,
               labels: list[str], width: float = LINE_WIDTH) -> np.ndarray | None:
    """Send rows ``x``, ``y`` [L, P] (each on its own steps, NaN-padded at the end; one of
    ``labels`` each) to ``mark`` and ``dots`` (``dots_for(mark)``); the y values sent, None when
    no row has a point (both marks keep what they show).

    The rows of two points or more go to ``mark`` as lines ``width`` wide, each ending at its last
    value (``end_at_last_value``); those of one point to ``dots``, round dots ``POINT_WIDTH``
    wide: among lines, on one stroke width for all, a row of one point was a speck 1.5 px wide (a
    GPT's rank trends, its spectra taking the layers in turns, showed one layer's line and specks
    for the others). While no row has two points, ``mark`` draws the dots itself (``as_lines``)
    and ``dots`` is hidden. With no ``dots`` (a mark coloured by its rows' order, whose dots could
    not take their rows' colours), the rows of one point stay among the lines."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    counts = (np.isfinite(x) & np.isfinite(y)).sum(axis=1)
    one = counts == 1
    if (counts >= 2).any():
        kept, stroke = counts >= (1 if dots is None else 2), width
        mx, my = end_at_last_value(x[kept], y[kept])
        one &= ~kept
    elif one.any():              # no line yet: ``mark`` draws the dots
        mx, my, _, kept = as_lines(x, y)
        stroke, one = POINT_WIDTH, np.zeros_like(one)
    else:
        return None
    with mark.hold_sync():
        names = [label for label, k in zip(labels, kept) if k]
        if list(mark.labels) != names:
            mark.labels = names
        mark.stroke_width = stroke
        mark.x, mark.y = mx, my.astype(np.float32)
    if not one.any():
        if dots is not None and dots.visible:
            dots.visible = False
        return my.ravel()
    dx, dy, _, _ = as_lines(x[one], y[one])
    with dots.hold_sync():
        dots.labels = [label for label, k in zip(labels, one) if k]
        dots.x, dots.y = dx, dy.astype(np.float32)
        dots.visible = True
    return np.concatenate([my.ravel(), dy.ravel()])


class _TrendControls(FigureFront, anywidget.AnyWidget):
    """Front-end half of the trend: header, log-scale switch, legend, layer highlight, frame
    counting; and, in the browser, the lines' colours and the axes' ticks (``FigureFront``).

    The log switch shows the log-scale lines and axis instead of the linear ones, in the browser,
    so it works while a training cell keeps the kernel busy.
    """

    _esm = bundle("trend.js")
    _css = bundle("widgets.css")
    log_y = traitlets.Bool(False).tag(sync=True)
    lines = traitlets.Instance(bqplot.Lines).tag(sync=True, **ipywidgets.widget_serialization)
    log_lines = traitlets.Instance(bqplot.Lines).tag(sync=True, **ipywidgets.widget_serialization)
    linear_axis = traitlets.Instance(bqplot.Axis).tag(sync=True, **ipywidgets.widget_serialization)
    log_axis = traitlets.Instance(bqplot.Axis).tag(sync=True, **ipywidgets.widget_serialization)


HELP = ("How far each layer's weights moved since the previous sample, relative to their size. "
        "Layers whose trends move alike form a cluster and share a hue; a line that stays near "
        "zero is a layer that stopped learning.")


class Trend(LivePanel, Exportable, ipywidgets.VBox):
    """RWC of every layer against the training step, each layer in its own colour; once the
    layers are clustered by their trends (WeightScale, SPEC 4.1: the monitor's "clusters"
    analysis records the partition, ``clusters`` holds the one shown), each cluster is a family
    of hues (js/palette.js, ``nnmodes_widgets.colors``).

    Updates live from the run view's history — at most ``max_rate`` times per second, coalesced
    to the newest data, each series reduced to about ``max_points`` points (fewer when the
    layers together would pass ``TOTAL_POINTS``; min/max per bucket, so spikes stay visible).
    ``log_y`` starts on a log scale; the switch in the header changes it in the browser. Root
    element class: ``nnmodes-trend``.
    """

    analyses = ("rwc", "rwc_clusters", "phases")
    panel, what = "trend", "RWC trends"

    def __init__(self, run: RunView, *, log_y: bool = False, max_points: int = 500,
                 max_rate: float = 10.0, delivery: Delivery | None = None, **kwargs):
        check_view(run, "Trend")
        if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 2:
            raise ValueError(f"max_points must be an integer >= 2, got {max_points!r}")
        self.max_points = max_points
        x_scale = bqplot.LinearScale()
        linear, log = bqplot.LinearScale(), provisional_log_scale(1e-4, 1)
        # One mark per scale, the log one without the values <= 0 it cannot place (a frozen
        # layer's RWC is exactly 0; in the domain it would make every position NaN). Their
        # colours are the browser's (js/palette.js: it knows the theme).
        self._lines, self._log_lines = (bqplot.Lines(
            x=np.zeros((1, 0)), y=np.zeros((1, 0)), scales={"x": x_scale, "y": scale},
            stroke_width=LINE_WIDTH, tooltip=bqplot.Tooltip(fields=["name"], show_labels=False),
            visible=visible, display_legend=False)   # the legend is the header's (js/trend.js)
            for scale, visible in ((linear, not log_y), (log, log_y)))
        # One y axis per scale, both drawn from the start: bqplot sizes an axis's scale when the
        # figure lays it out, so an axis shown later would keep a stale range. Their ticks are
        # the browser's (js/ticks.js), at most num_ticks.
        linear_axis, log_axis = (
            y_axis(scale, label, offset="55px", visible=visible)
            for scale, label, visible in ((linear, "RWC", not log_y), (log, "RWC (log scale)", log_y)))
        steps = x_axis(x_scale)
        self._rules = phase_rules(x_scale)
        evidence = evidence_band(x_scale)
        figure = bqplot.Figure(
            marks=[evidence, self._rules, self._lines, self._log_lines],
            axes=[steps, linear_axis, log_axis], animation_duration=0,
            fig_margin=margin(left=75),
            layout=ipywidgets.Layout(width="100%", height="300px"),
        )
        self.title = "Relative weight change per layer"
        self._controls = _TrendControls(
            title=self.title, detail=_sampling(run), layers=run.layers, help=HELP,
            reference="WeightScale (arXiv 2107.07005)",
            reference_url="https://arxiv.org/abs/2107.07005",
            log_y=log_y, lines=self._lines, log_lines=self._log_lines, linear_axis=linear_axis,
            log_axis=log_axis, marks=[self._lines, self._log_lines], mark_kinds=["layers"] * 2,
            axes=[steps, linear_axis, log_axis], evidence=[evidence])
        self._x_scale, self._linear_scale, self._log_scale = x_scale, linear, log
        self._layers: list[str] = []
        self.clusters: dict[str, int] | None = None   # layer -> cluster, as drawn
        self._hidden_due = 0.0     # monotonic time the lines not on screen are next refreshed
        super().__init__(children=[self._controls, figure], **kwargs)
        self.add_class("nnmodes-trend")
        self.add_class("nnmodes-panel")
        self._bind(run, name="trend", max_rate=max_rate, delivery=delivery)
        # switched in the browser: bring the lines that come on screen up to date
        self._controls.observe(self._on_switch, "log_y")

    def _on_switch(self, change) -> None:
        self._hidden_due = 0.0
        self.refresh()

    @property
    def selector(self) -> anywidget.AnyWidget:
        """The front-end model holding this panel's layer selection (``selected``)."""
        return self._controls

    @property
    def log_y(self) -> bool:
        return self._controls.log_y

    @log_y.setter
    def log_y(self, value: bool) -> None:
        self._controls.log_y = bool(value)

    def draw(self, fig, step: int | None = None) -> None:
        """The trend at full resolution (up to ``step`` when given)."""
        ax = fig.add_subplot()
        history = self.run.history
        labels = cluster_labels(history, step)
        layers = history.layers("rwc")
        colors = layer_colors(layers, labels)
        export.draw_trend(ax, history, step=step, log_y=self.log_y,
                          colors=[colors[layer] for layer in layers])
        draw_phases(ax, phase_marks(history, step))
        ax.set_title(f"{self.title} ({self._detail(labels)})", loc="left", fontsize="medium",
                     fontweight="bold")

    def _detail(self, labels: dict[str, int] | None) -> str:
        """How the trends were sampled, and how the lines are coloured once they are clustered."""
        if not labels:
            return _sampling(self.run)
        k = len(set(labels.values()))
        return f"{_sampling(self.run)} · {k} {'cluster' if k == 1 else 'clusters'} of trends, one hue each"

    def _draw_live(self) -> None:
        history = self.run.history
        layers, steps, values = history.matrix("rwc")
        self._explain(bool(layers))
        if not layers:
            return
        # Many layers share a point budget: the browser's redraw grows with the points drawn
        # (100 layers x 501 points took 170 ms in bqplot's SVG; the plot is ~800 px wide)
        per_line = max(2, min(self.max_points, TOTAL_POINTS // len(layers)))
        x, y = minmax_decimate(steps.astype(np.float64), values, per_line)
        labels = cluster_labels(history)
        relabel = labels != self.clusters or layers != self._layers
        with self._controls.hold_sync():
            self._controls.detail = self._detail(labels)
            self._controls.palette = palette_of(history, labels)
        self.clusters = labels
        positive = np.where(y > 0, y, np.nan)     # a log axis places no value <= 0
        self._layers = layers
        self._controls.step = int(steps[-1])
        # The step goes first: the browser counts a frame when the lines on screen get their
        # data, and labels it with the step it already has. The lines on screen get every push,
        # the others one every few seconds (the browser redraws every mark it is sent, seen or
        # not), while the budget has room for them. The scales follow the marks' data, so that a
        # range set from new data never meets the old.
        now = time.monotonic()
        refresh_hidden = ((now >= self._hidden_due and self.run.has_room()) or relabel
                          or self.run.detached)
        if refresh_hidden:
            self._hidden_due = now + HIDDEN_INTERVAL
        for mark, scale, my in ((self._log_lines, self._log_scale, positive),
                                (self._lines, self._linear_scale, y)):
            is_log = mark is self._log_lines
            if is_log != self.log_y and not refresh_hidden:
                continue
            # the log lines leave out the layers with nothing above 0 (a frozen layer's RWC is
            # exactly 0), as any lines leave out those with no value yet
            mx, my, points, keep = as_lines(*end_at_last_value(x, my))
            if not keep.any():    # nothing this scale can place yet: keep what is shown
                continue
            kept = [layer for layer, k in zip(layers, keep) if k]
            with mark.hold_sync():
                if list(mark.labels) != kept:
                    mark.labels = kept
                mark.stroke_width = POINT_WIDTH if points else LINE_WIDTH
                mark.x = mx.astype(np.float32)     # steps: exact in float32 up to 2**24
                mark.y = my.astype(np.float32)
            settle_range(scale, my, log=is_log, headroom=self._headroom)
        settle_range(self._x_scale, steps, pad=self.run.every, headroom=self._headroom)
        show_phases(self._rules, phase_marks(history))


def cluster_labels(history, step: int | None = None) -> dict[str, int] | None:
    """The newest partition of the layers recorded under "rwc_clusters" (up to ``step``), layer
    -> cluster; None before the first."""
    if not history.count("rwc_clusters"):
        return None
    steps = history.steps("rwc_clusters")
    if step is not None:
        steps = steps[steps <= step]
    if not len(steps):
        return None
    last = int(steps[-1])
    labels = {}
    for layer in history.layers("rwc_clusters"):
        layer_steps, values = history.get("rwc_clusters", layer)
        i = int(np.searchsorted(layer_steps, last))
        if i < len(layer_steps) and layer_steps[i] == last:   # in the partition of that step
            labels[layer] = int(values[i])
    return labels or None


def _sampling(run) -> str:
    """How the trends are sampled: read at each draw (``every`` is chosen in the first steps)."""
    every = "every step" if run.every == 1 else f"every {run.every} steps"
    return f"{run.rwc_kind} RWC, sampled {every}"
