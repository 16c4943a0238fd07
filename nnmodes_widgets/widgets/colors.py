"""Layer colours: one sequential map from the input side (dark) to the output side (light)."""

from __future__ import annotations

import numpy as np

# viridis sampled at 9 points; interpolated in between
_VIRIDIS = np.array([
    [68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
    [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37],
], dtype=float)


def ordered_colors(n: int) -> list[str]:
    """``n`` hex colours, front (first layer) to back, evenly spaced along viridis (stopping short
    of its palest yellow, which is unreadable on white)."""
    if n <= 0:
        return []
    t = np.linspace(0.0, 0.9, n) if n > 1 else np.zeros(1)
    pos = t * (len(_VIRIDIS) - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(_VIRIDIS) - 1)
    frac = (pos - lo)[:, None]
    rgb = np.rint(_VIRIDIS[lo] * (1 - frac) + _VIRIDIS[hi] * frac).astype(int)
    return [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in rgb]
