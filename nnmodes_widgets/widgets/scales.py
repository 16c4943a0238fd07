"""bqplot log scales that start empty: a log scale with no data has no domain, and bqplot then
lays out its axis at an undefined position (console errors). They start from a fixed range,
freed once data arrives."""

from __future__ import annotations

import bqplot


def provisional_log_scale(low: float, high: float) -> bqplot.LogScale:
    """A log scale fixed to [low, high] until ``free_range`` is called on it."""
    return bqplot.LogScale(min=low, max=high)


def free_range(scale: bqplot.LogScale) -> None:
    """Let the scale follow its data from now on (once; later calls do nothing)."""
    if scale.min is not None:
        with scale.hold_sync():
            scale.min = scale.max = None
