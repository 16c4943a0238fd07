"""The ranges of the live plots' scales: fixed, and moved by ``settle_range`` as their data grow.

A log scale with no data has no domain, and bqplot then lays out its axis at an undefined
position (console errors): the log scales start from a fixed range (``provisional_log_scale``)."""

from __future__ import annotations

import math

import bqplot
import numpy as np

HEADROOM = 0.25     # of a live range's span left above its data (``settle_range``)
MARGIN = 0.05       # ... and on either side of it, live or not


def provisional_log_scale(low: float, high: float) -> bqplot.LogScale:
    """A log scale fixed to [low, high] until data arrive."""
    return bqplot.LogScale(min=low, max=high)


def settle_range(scale, values, *, log: bool = False, pad: float | None = None,
                 headroom: float = HEADROOM) -> None:
    """Fix ``scale``'s range to hold ``values``: their span (on a log scale, their decades)
    and ``MARGIN`` of it on either side (a dot, a line's round end, at an extreme stays whole
    inside the plot), with ``headroom`` more above; kept while they stay inside it and fill at
    least 1 / (1 + 2 ``MARGIN`` + 2 ``headroom``) of it. A live plot's data grow at every frame:
    a range that followed them moved every axis and mark with each one (an architectures GPT's
    trend frame took Chromium 53 ms of CPU so, 31 ms with its ranges fixed), and the headroom
    leaves them room to grow for a while. With no headroom (a run that ended) the range is the
    data's and their margins.

    One value (one step, one layer) spans no range: a linear scale is then fixed to the value
    ± ``pad`` (default half its size, 1 for zero), a log scale to half to twice it. Values a
    log scale cannot place (<= 0) are left out; with none, or none at all, the range is kept.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v) & (v > 0)] if log else v[np.isfinite(v)]
    if not v.size:
        return
    lo, hi = float(v.min()), float(v.max())
    if lo == hi:
        if log:
            lo, hi = lo / 2, lo * 2
        else:
            h = pad if pad is not None else (abs(lo) / 2 or 1.0)
            lo, hi = lo - h, hi + h
    else:
        to, back = (math.log10, lambda x: 10.0 ** x) if log else (float, float)
        a, b = to(lo), to(hi)
        if scale.min is not None and scale.max is not None and (scale.min > 0 or not log):
            low, high = to(scale.min), to(scale.max)
            if low <= a and b <= high and high - low <= (1 + 2 * (MARGIN + headroom)) * (b - a):
                return
        lo, hi = back(a - MARGIN * (b - a)), back(b + (MARGIN + headroom) * (b - a))
    if (scale.min, scale.max) != (lo, hi):
        with scale.hold_sync():
            scale.min, scale.max = lo, hi
