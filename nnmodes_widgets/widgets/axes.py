"""The axes of the panels' bqplot figures, alike in every panel: each label clear of its tick
labels, and at most ``num_ticks`` ticks, which the browser makes readable (js/ticks.js)."""

from __future__ import annotations

import bqplot


def x_axis(scale, label: str = "step", ticks: int = 5) -> bqplot.Axis:
    return bqplot.Axis(scale=scale, label=label, grid_lines="none", tick_format=".3~g",
                       num_ticks=ticks, label_offset="30px")


def y_axis(scale, label: str, ticks: int = 5, offset: str = "48px", **kwargs) -> bqplot.Axis:
    return bqplot.Axis(scale=scale, side="left", label=label, tick_format=".3~g",
                       num_ticks=ticks, label_offset=offset, grid_lines="dashed", **kwargs)


def margin(left: int = 64, right: int = 24) -> dict:
    """A figure's margins: room for the axes' tick labels and labels (on the right, for half the
    label of a tick at the end of the x axis: "12.5k")."""
    return {"top": 10, "bottom": 44, "left": left, "right": right}
