"""Layer colours shared by the live widgets and the exported figures: one sequential map from the
input side (dark) to the output side (light)."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import to_hex

# viridis, stopping short of its palest yellow, which is unreadable on white
_RANGE = (0.0, 0.9)


def layer_colors(n: int) -> list[str]:
    """``n`` hex colours, first layer to last, evenly spaced along viridis."""
    if n <= 0:
        return []
    positions = np.linspace(*_RANGE, n) if n > 1 else [_RANGE[0]]
    return [to_hex(c) for c in colormaps["viridis"](positions)]


def cluster_colors(labels) -> list[str]:
    """One categorical colour per cluster number (tab10, repeating after ten clusters)."""
    palette = colormaps["tab10"].colors
    return [to_hex(palette[label % len(palette)]) for label in labels]
