"""Neuron transformation modes over training (SPEC 4.3): per layer, the stacked shares of linear,
nonlinear and dead neurons against the step, and the neuron x class map of the selected layer."""

from __future__ import annotations

import textwrap

import anywidget
import numpy as np
import traitlets

from ..analysis.clustering import bucket_means
from ..analysis.neurons import MODES, mode_code
from ..runs.run_view import RunView, check_view
from ._bundle import bundle
from .binary import pack
from .delivery import Delivery
from ..ticks import readable_axes
from .exportable import Exportable
from .front import PanelFront
from .live import LivePanel
from .notes import panel_note
from .phases import draw_phases, phase_marks

MODE_COLORS = ("#3f9f6a", "#e08e29", "#9a9a9a")   # one per mode; sent to the browser too
COMPACT_ABOVE = 8     # more activations than this: thin strips (as in the browser)


def _strip_inches(count: int) -> float:
    return 1.1 * max(1, count) if count <= COMPACT_ABOVE else 0.32 * count


def mode_shares(active_fraction, eps: float = 0.05) -> np.ndarray:
    """Shares of linear / nonlinear / dead neurons [T, 3] from active fractions [T, n]: linear
    when a neuron transmits at least 1 - eps of the samples, dead at most eps (SPEC 4.3)."""
    a = np.asarray(active_fraction, dtype=np.float64)
    code = mode_code(a, eps)      # the analysis's rule, so that panel and analysis agree
    return np.stack([(code == MODES.index(m)).mean(axis=1) for m in MODES], axis=1)


HELP = ("Per layer, the share of neurons that pass every input on in order (linear), clip some "
        "(nonlinear) or pass nothing (dead), over training; below, which classes each neuron of "
        "the selected layer transmits.")


class Neurons(LivePanel, Exportable, PanelFront, anywidget.AnyWidget):
    """Neuron modes of the run view's history ("neuron_modes", "neuron_classes"), drawn live on the
    package's canvas: one strip per layer with the shares of linear (order-preserving), nonlinear
    and dead neurons against the step, and below, for the selected layer (the first when none
    is), which classes each neuron transmits. Classes are the probe's labels, or the model's
    predictions when the probe has none. Root element class ``nnmodes-neurons``.
    """

    _esm = bundle("neurons.js")
    _css = bundle("widgets.css")
    mode_colors = traitlets.List(traitlets.Unicode(), list(MODE_COLORS)).tag(sync=True)
    frame_meta = traitlets.Dict().tag(sync=True)
    frame_data = traitlets.Bytes(b"").tag(sync=True)

    analyses = ("neuron_modes", "neuron_classes", "phases")
    panel, what = "neurons", "neuron modes"

    def __init__(self, run: RunView, *, eps: float = 0.05, max_points: int = 500,
                 max_rate: float = 10.0, delivery: Delivery | None = None, **kwargs):
        check_view(run, "Neurons")
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 <= eps < 0.5:
            raise ValueError(f"eps must be in [0, 0.5), got {eps!r}")
        if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 2:
            raise ValueError(f"max_points must be an integer >= 2, got {max_points!r}")
        kwargs.setdefault("title", "Neuron modes per layer")
        kwargs.setdefault("help", HELP)
        kwargs.setdefault("reference", "Lin, Feng, Zhang, Zhao (arXiv 2501.02436)")
        kwargs.setdefault("reference_url", "https://arxiv.org/abs/2501.02436")
        super().__init__(layers=run.layers, **kwargs)
        self.add_class("nnmodes-panel")
        self.eps = float(eps)
        self.max_points = max_points
        self._bind(run, name="neurons", max_rate=max_rate, delivery=delivery)

    @property
    def selector(self) -> Neurons:
        """The front-end model holding the layer selection (``selected``): this widget."""
        return self

    @property
    def shown(self) -> bool:
        """Whether there are neuron modes to show (and so to export)."""
        return bool(self.run.history.layers("neuron_modes"))

    def _draw_live(self) -> None:
        history = self.run.history
        layers = history.layers("neuron_modes")
        self._explain(bool(layers))
        if not layers:
            return
        items, newest = [], 0
        for layer in layers:
            steps, active = history.get("neuron_modes", layer)
            newest = max(newest, int(steps[-1]))
            steps, shares = bucket_means(steps, mode_shares(active, self.eps), self.max_points)
            items += [({"layer": layer, "kind": "steps"}, steps),
                      ({"layer": layer, "kind": "shares"}, shares)]
        for layer in history.layers("neuron_classes"):
            items.append(({"layer": layer, "kind": "classes"}, history.latest("neuron_classes", layer)[1]))
        metas, payload = pack(items)
        facts = self.run.probe_facts
        with self.hold_sync():
            self.frame_meta = {"step": newest, "arrays": metas, "eps": self.eps,
                               "phases": phase_marks(history),
                               "note": panel_note(self.run, "neuron_modes"),
                               "labels": "labelled" if facts and facts.labelled else "predicted"}
            self.frame_data = payload

    @property
    def figsize(self):
        return (9, 1.5 + _strip_inches(len(self.run.history.layers("neuron_modes"))) + 2.6)

    def draw(self, fig, step: int | None = None) -> None:
        """Every layer's stacked mode shares, and the class map of the selected layer, at full
        resolution (up to ``step`` when given)."""
        history = self.run.history
        layers = history.layers("neuron_modes")
        if not layers:
            raise ValueError("nothing to export yet: no neuron modes recorded")
        strips, classes = fig.subfigures(2, 1, height_ratios=[_strip_inches(len(layers)), 2.6])
        axes = strips.subplots(len(layers), 1, squeeze=False, sharex=True)[:, 0]
        for ax, layer in zip(axes, layers):
            steps, active = history.get("neuron_modes", layer)
            keep = steps <= step if step is not None else slice(None)
            shares = mode_shares(active[keep], self.eps)
            ax.stackplot(steps[keep], shares.T, colors=MODE_COLORS, labels=MODES, step="post")
            draw_phases(ax, phase_marks(history, step))
            ax.set_ylim(0, 1)
            ax.set_ylabel(layer, rotation=0, ha="right", va="center", fontsize="small")
            ax.set_yticks([0, 1] if len(layers) <= COMPACT_ABOVE else [])
        axes[0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False)
        axes[-1].set_xlabel("step")
        readable_axes(axes[-1], y_count=None)
        self._draw_classes(classes, step)
        note = panel_note(self.run, "neuron_modes")
        fig.suptitle(self.title + (f"\n{textwrap.fill(note, 100)}" if note else ""), x=0.01,
                     ha="left", fontsize="medium", fontweight="bold")

    def _draw_classes(self, fig, step) -> None:
        history = self.run.history
        layers = history.layers("neuron_classes")
        layer = self.selected if self.selected in layers else (layers[0] if layers else None)
        ax = fig.add_subplot()
        if layer is None:
            ax.text(0.5, 0.5, "no per-class fractions (the model's output is not class scores)",
                    ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            return
        steps, maps = history.get("neuron_classes", layer)
        index = len(steps) - 1 if step is None else int(np.searchsorted(steps, step, side="right")) - 1
        if index < 0:
            ax.text(0.5, 0.5, f"no per-class fractions up to step {step}", ha="center", va="center",
                    transform=ax.transAxes)
            ax.set_axis_off()
            return
        image = ax.imshow(maps[index], aspect="auto", interpolation="nearest", cmap="viridis",
                          vmin=0, vmax=1)
        ax.set_xlabel(f"neuron of {layer}")
        ax.set_ylabel("class")
        ax.set_title(f"active fraction per class, layer {layer}, step {steps[index]}", loc="left",
                     fontsize="small")
        fig.colorbar(image, ax=ax, shrink=0.8)
