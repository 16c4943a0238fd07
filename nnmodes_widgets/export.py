"""Static figures of what the widgets show, rendered in the kernel with matplotlib.

No browser is involved, so exports work in nbconvert, CI and plain scripts. Figures are built on
``matplotlib.figure.Figure`` directly (not pyplot), so exporting never touches the user's pyplot
state or backend.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .colors import layer_colors
from .runs.history import History
from .ticks import readable_axes

FORMATS = ("png", "svg", "pdf")
LEGEND_INSIDE_MAX = 12   # more layers than this: the legend goes under the plot, in columns


def figure_format(path) -> str:
    """The format named by ``path``'s suffix; ValueError naming it when it is not supported."""
    fmt = Path(path).suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ValueError(f"cannot export to {Path(path).name!r}: unknown format {fmt or '(none)'!r}; "
                         f"use one of {', '.join('.' + f for f in FORMATS)}")
    return fmt


def save(fig: Figure, path) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix); returns the path."""
    fmt = figure_format(path)
    path = Path(path)
    fig.savefig(path, format=fmt, dpi=150, bbox_inches="tight")
    return path


def to_bytes(fig: Figure, fmt: str) -> bytes:
    figure_format(f"x.{fmt}")
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=110, bbox_inches="tight")
    return buf.getvalue()


def draw_trend(ax, history: History, *, analysis: str = "rwc", step: int | None = None,
               log_y: bool = False, ylabel: str = "RWC", colors: list[str] | None = None) -> None:
    """Every layer's series against the step, at full resolution, up to ``step`` (all when None);
    ``colors`` one per layer (default: each layer its own, by depth)."""
    layers, steps, values = history.matrix(analysis)
    if step is not None:
        keep = steps <= step
        steps, values = steps[keep], values[:, keep]
    if colors is None:
        by_layer = layer_colors(layers)
        colors = [by_layer[layer] for layer in layers]
    marker = point_marker(len(steps))
    for layer, row, color in zip(layers, values, colors):
        shown = np.where(row > 0, row, np.nan) if log_y else row   # log: no zero or negative
        ax.plot(steps, shown, color=color, lw=1.2, label=layer, marker=marker)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel + (" (log scale)" if log_y else ""))
    ax.grid(True, ls="--", lw=0.5, alpha=0.6)
    readable_axes(ax)
    if not layers:
        ax.text(0.5, 0.5, "no samples yet", ha="center", va="center", transform=ax.transAxes)
    else:
        layer_legend(ax, len(layers), loc="upper right")


def point_marker(points: int) -> str | None:
    """A marker for series of a single point (one sample), which a line alone does not draw."""
    return "o" if points == 1 else None


def layer_legend(ax, layers: int, loc: str = "best") -> None:
    """The legend of ``layers`` lines: in the plot for a few, else under it in columns (a GPT's
    or a ResNet's dozens of layers would hide the plot)."""
    if layers <= LEGEND_INSIDE_MAX:
        ax.legend(fontsize="small", frameon=False, loc=loc)
    else:
        ax.legend(fontsize="x-small", frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.2),
                  ncol=min(6, -(-layers // 3)), handlelength=1.2, columnspacing=1.0)
