"""Live per-layer trend of the relative weight change (RWC) against the training step."""

from __future__ import annotations

import time

import anywidget
import bqplot
import ipywidgets
import numpy as np
import traitlets

from .. import export
from ..analysis.clustering import LayerClusters, cluster_layers, series_from_history
from ..colors import cluster_colors, layer_colors
from ..monitor import Monitor
from ._bundle import bundle
from .decimate import bucket_means, end_at_last_value, minmax_decimate
from .exportable import Exportable
from .live import LiveBinding, layer_choices
from .scales import free_range, provisional_log_scale

_LEGEND_MAX = 12   # more layers than this and a legend hides the plot; hover names the line
CLUSTER_MIN_LAYERS = 3    # fewer and a partition says nothing
CLUSTER_MIN_SAMPLES = 8   # shorter trends have no shape to compare yet
CLUSTER_INTERVAL = 5.0    # s at least between re-clusterings while training (K-Means restarts)
CLUSTER_MAX_POINTS = 500  # the live colours cluster the trends averaged into this many buckets
HIDDEN_INTERVAL = 2.0     # s between updates of the scale's lines not on screen


class _TrendControls(anywidget.AnyWidget):
    """Front-end half of the trend: header, log-scale switch, layer highlight, frame counting.

    The log switch shows the log-scale lines and axis instead of the linear ones, in the browser,
    so it works while a training cell keeps the kernel busy.
    """

    _esm = bundle("trend.js")
    _css = bundle("widgets.css")
    title = traitlets.Unicode("").tag(sync=True)
    log_y = traitlets.Bool(False).tag(sync=True)
    step = traitlets.Int(0).tag(sync=True)
    layers = traitlets.List(traitlets.Unicode()).tag(sync=True)   # choices of the layer picker
    selected = traitlets.Unicode("").tag(sync=True)               # linked by the dashboard
    legend = traitlets.Bool(True).tag(sync=True)   # few enough layers for a legend
    lines = traitlets.Instance(bqplot.Lines).tag(sync=True, **ipywidgets.widget_serialization)
    log_lines = traitlets.Instance(bqplot.Lines).tag(sync=True, **ipywidgets.widget_serialization)
    linear_axis = traitlets.Instance(bqplot.Axis).tag(sync=True, **ipywidgets.widget_serialization)
    log_axis = traitlets.Instance(bqplot.Axis).tag(sync=True, **ipywidgets.widget_serialization)


class Trend(Exportable, ipywidgets.VBox):
    """RWC of every layer against the training step, coloured front (dark) to back (light) until
    there are enough samples to cluster the layers by their trends (WeightScale, SPEC 4.1:
    ``cluster_layers`` with the elbow's k on the trends averaged into at most 500 time buckets,
    redone every few seconds); then coloured by cluster, ``clusters`` holding the partition shown.
    (``cluster_layers(series_from_history(monitor.history))`` is the published pipeline on the
    full series.)

    Updates live from ``monitor.history`` — at most ``max_rate`` times per second, coalesced to
    the newest data, each series reduced to about ``max_points`` points (min/max per bucket, so
    spikes stay visible). ``log_y`` starts on a log scale; the switch in the header changes it in
    the browser. Root element class: ``nnmodes-trend``.
    """

    def __init__(self, monitor: Monitor, *, log_y: bool = False, max_points: int = 500,
                 max_rate: float = 10.0, **kwargs):
        if not isinstance(monitor, Monitor):
            raise TypeError(f"Trend expects a nnmodes_widgets.Monitor, got {type(monitor).__name__}")
        if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 2:
            raise ValueError(f"max_points must be an integer >= 2, got {max_points!r}")
        self.monitor = monitor
        self.max_points = max_points
        x_scale = bqplot.LinearScale()
        linear, log = bqplot.LinearScale(), provisional_log_scale(1e-4, 1)
        # One mark per scale, the log one without the values <= 0 it cannot place (a frozen
        # layer's RWC is exactly 0; in the domain it would make every position NaN).
        self._lines, self._log_lines = (bqplot.Lines(
            x=np.zeros((1, 0)), y=np.zeros((1, 0)), scales={"x": x_scale, "y": scale},
            stroke_width=1.5, tooltip=bqplot.Tooltip(fields=["name"], show_labels=False),
            visible=visible, display_legend=False)
            for scale, visible in ((linear, not log_y), (log, log_y)))
        # One y axis per scale, both drawn from the start: bqplot sizes an axis's scale when the
        # figure lays it out, so an axis shown later would keep a stale range.
        linear_axis, log_axis = (
            bqplot.Axis(scale=scale, side="left", label=label, tick_format=".2g",
                        label_offset="55px", grid_lines="dashed", visible=visible)
            for scale, label, visible in ((linear, "RWC", not log_y), (log, "RWC (log scale)", log_y)))
        x_axis = bqplot.Axis(scale=x_scale, label="step", grid_lines="none")
        figure = bqplot.Figure(
            marks=[self._lines, self._log_lines], axes=[x_axis, linear_axis, log_axis],
            animation_duration=0,
            fig_margin={"top": 10, "bottom": 40, "left": 75, "right": 20},
            legend_location="top-right", legend_style={"stroke-width": 0},
            layout=ipywidgets.Layout(width="100%", height="320px"),
        )
        self.title = f"Relative weight change per layer ({monitor.rwc_kind}), every {monitor.every} steps"
        self._controls = _TrendControls(
            title=self.title, layers=layer_choices(monitor),
            log_y=log_y, lines=self._lines, log_lines=self._log_lines, linear_axis=linear_axis,
            log_axis=log_axis)
        self._log_scale = log
        self._layers: list[str] = []
        self._version = -1
        self.clusters: LayerClusters | None = None
        self._next_clustering = 0.0
        self._hidden_due = 0.0     # monotonic time the lines not on screen are next refreshed
        super().__init__(children=[self._controls, figure], **kwargs)
        self.add_class("nnmodes-trend")
        self._live = LiveBinding(monitor, self._push, name="trend", max_rate=max_rate)
        # switched in the browser: bring the lines that come on screen up to date
        self._controls.observe(self._on_switch, "log_y")

    def _on_switch(self, change) -> None:
        self._hidden_due = 0.0
        self._version = -1
        self._live.throttle.request()

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
        export.draw_trend(ax, self.monitor.history, step=step, log_y=self.log_y,
                          colors=self._colors(self.monitor.history.layers("rwc")))
        ax.set_title(self._controls.title, loc="left", fontsize="medium", fontweight="bold")

    def _push(self) -> None:
        history = self.monitor.history
        version = history.version_of("rwc")
        if version == self._version:
            return
        self._version = version
        layers, steps, values = history.matrix("rwc")
        if not layers:
            return
        x, y = end_at_last_value(*minmax_decimate(steps.astype(np.float64), values, self.max_points))
        recolor = self._recluster(len(steps)) or layers != self._layers
        positive = np.where(y > 0, y, np.nan)
        shown = np.isfinite(positive).any(axis=1)     # layers with something to draw on a log axis
        log_x, log_y = (end_at_last_value(x[shown], positive[shown]) if shown.any()
                        else (np.zeros((1, 0)), np.zeros((1, 0))))
        if shown.any():
            free_range(self._log_scale)
        colors = self._colors(layers)
        self._layers = layers
        self._controls.legend = len(layers) <= _LEGEND_MAX
        self._controls.step = int(steps[-1])
        # The step goes first: the browser counts a frame when the lines on screen get their
        # data, and labels it with the step it already has. The lines on screen get every push,
        # the others one every few seconds (the browser redraws every mark it is sent, seen or
        # not).
        now = time.monotonic()
        refresh_hidden = now >= self._hidden_due or recolor or self.monitor.detached
        if refresh_hidden:
            self._hidden_due = now + HIDDEN_INTERVAL
        for mark, keep, mx, my in ((self._log_lines, shown, log_x, log_y),
                                   (self._lines, np.ones(len(layers), bool), x, y)):
            if (mark is self._log_lines) != self.log_y and not refresh_hidden:
                continue
            labels = [layer for layer, k in zip(layers, keep) if k]
            with mark.hold_sync():
                if list(mark.labels) != labels or recolor:
                    mark.labels = labels
                    mark.colors = [c for c, k in zip(colors, keep) if k]
                mark.x = mx.astype(np.float32)     # steps: exact in float32 up to 2**24
                mark.y = my.astype(np.float32)

    def _recluster(self, samples: int) -> bool:
        """Cluster the layers' trends when due; whether the partition changed."""
        now = time.monotonic()
        if samples < CLUSTER_MIN_SAMPLES or (now < self._next_clustering and not self.monitor.detached):
            return False
        self._next_clustering = now + CLUSTER_INTERVAL
        series = series_from_history(self.monitor.history)
        if len(series) < CLUSTER_MIN_LAYERS:
            return False
        matrix = np.stack(list(series.values()))
        _, means = bucket_means(np.arange(matrix.shape[1]), matrix.T, CLUSTER_MAX_POINTS)
        try:
            clusters = cluster_layers(dict(zip(series, means.T)))
        except ValueError:    # e.g. a layer with no finite value yet: keep the colours shown
            return False
        # slow (many layers, a loaded machine): cluster less often, so pushes keep flowing
        self._next_clustering = max(self._next_clustering, now + 20 * (time.monotonic() - now))
        changed = self.clusters is None or clusters.labels != self.clusters.labels
        self.clusters = clusters
        if changed:
            k = len(set(clusters.labels.values()))
            self._controls.title = f"{self.title} · coloured by cluster of their trends (k = {k})"
        return changed

    def _colors(self, layers: list[str]) -> list[str]:
        """By cluster once clustered (grey for a layer not in the partition), else by depth."""
        if self.clusters is None:
            return layer_colors(len(layers))
        labels = self.clusters.labels
        palette = cluster_colors(range(max(labels.values()) + 1))
        return [palette[labels[layer]] if layer in labels else "#9a9a9a" for layer in layers]

    def close(self) -> None:
        if hasattr(self, "_live"):   # also called by __del__ after a failed __init__
            self._live.close()
        super().close()
