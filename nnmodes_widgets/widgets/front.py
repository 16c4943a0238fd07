"""What the front end of every panel shows around its drawing (js/header.js): a title, how to
read the panel and the paper it comes from, why it is empty when it is, and the shared layer
selection; for panels of bqplot figures also what the browser styles in them (js/figures.js):
the lines' colours, the axes' ticks, the evidence of a finding."""

from __future__ import annotations

import bqplot
import ipywidgets
import traitlets


class PanelFront(traitlets.HasTraits):
    """Traits of a panel's front-end model (mixed in before ``anywidget.AnyWidget``)."""

    title = traitlets.Unicode("").tag(sync=True)
    detail = traitlets.Unicode("").tag(sync=True)           # what this run's panel shows: "every 10 steps"
    help = traitlets.Unicode("").tag(sync=True)             # how to read this, one or two sentences
    reference = traitlets.Unicode("").tag(sync=True)        # the paper: "WeightScale (arXiv 2107.07005)"
    reference_url = traitlets.Unicode("").tag(sync=True)
    empty = traitlets.Unicode("").tag(sync=True)            # why there is nothing to show, "" if there is
    step = traitlets.Int(0).tag(sync=True)
    layers = traitlets.List(traitlets.Unicode()).tag(sync=True)   # choices of the layer picker
    selected = traitlets.Unicode("").tag(sync=True)               # linked by the dashboard


class FigureFront(PanelFront):
    """A panel of bqplot figures: ``marks`` coloured per layer (``mark_kinds``: "layers", or
    "classes" for categorical colours) from ``palette`` (``{"keys": RWC layers in order,
    "clusters": key -> cluster or None}``, js/palette.js), ``axes`` given readable ticks,
    ``evidence`` (one band mark per time axis) showing the steps of a finding clicked."""

    marks = traitlets.List(traitlets.Instance(bqplot.Lines)).tag(sync=True, **ipywidgets.widget_serialization)
    mark_kinds = traitlets.List(traitlets.Unicode()).tag(sync=True)
    axes = traitlets.List(traitlets.Instance(bqplot.Axis)).tag(sync=True, **ipywidgets.widget_serialization)
    evidence = traitlets.List(traitlets.Instance(bqplot.Lines)).tag(sync=True, **ipywidgets.widget_serialization)
    palette = traitlets.Dict({"keys": [], "clusters": None}).tag(sync=True)


def palette_of(history, clusters: dict[str, int] | None, extra=()) -> dict:
    """The ``palette`` trait: the RWC layers (input side first) and their clusters, so that one
    layer has one colour in every panel; then ``extra`` keys a panel draws that RWC has not."""
    keys = history.layers("rwc")
    known = set(keys)
    return {"keys": keys + [k for k in extra if k not in known], "clusters": clusters}
