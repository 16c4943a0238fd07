"""Learning phases: where the series that describe a network's dynamics change together
(SPEC 4.6, after Lin et al., arXiv 2501.02436; "phase" and "phase change" as defined here).

A phase change is a change point of the multivariate series formed by the given series (the
monitor uses each layer's neuron-mode shares, weight alignment, and the sample- and weight-space
basin radii): found by PELT (Killick, Fearnhead & Eckley 2012, "Optimal detection of
changepoints with a linear computational cost"), as implemented by the ``ruptures`` library,
with a least-squares cost (a change in the mean of the series). Before the search every series
is put on one grid of steps (the steps any series was recorded at, each series held at its last
value between its own samples) and standardised over the run (zero mean, unit variance), so
that no series weighs more for its units; constant series are left out. The penalty for a change
point is ``penalty`` times the number of series times log T (a BIC-like penalty for T grid
points); segments have at least ``min_size`` grid points (default T / 20).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

__all__ = ["phase_changes", "PENALTY"]

PENALTY = 3.0      # per series and log T: a change must explain this much variance to count


def phase_changes(series: Mapping[str, tuple], *, penalty: float = PENALTY,
                  min_size: int | None = None) -> list[int]:
    """The steps at which a new phase begins, ascending (the first step of each segment after
    the first). ``series`` maps a name to ``(steps, values)`` (1-D, steps ascending); with fewer
    than ``2 * min_size`` grid points, or no series that varies, there is none."""
    import ruptures      # imported when used: scipy is slow to import

    if not isinstance(penalty, (int, float)) or isinstance(penalty, bool) or not penalty > 0:
        raise ValueError(f"penalty must be a positive number, got {penalty!r}")
    if min_size is not None and (isinstance(min_size, bool) or not isinstance(min_size, int)
                                 or min_size < 1):
        raise ValueError(f"min_size must be a positive integer, got {min_size!r}")
    grid, columns = _on_one_grid(series)
    if not columns:
        return []
    size = min_size or max(2, len(grid) // 20)
    if len(grid) < 2 * size:
        return []
    signal = np.stack(columns, axis=1)
    pen = penalty * signal.shape[1] * math.log(len(grid))
    ends = ruptures.Pelt(model="l2", min_size=size, jump=1).fit(signal).predict(pen=pen)
    return [int(grid[end]) for end in ends[:-1]]


def _on_one_grid(series: Mapping[str, tuple]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The union of the series' steps, and each varying series held on it and standardised."""
    cleaned = []
    for name, (steps, values) in series.items():
        steps, values = np.asarray(steps), np.asarray(values, dtype=np.float64)
        if steps.ndim != 1 or values.shape != steps.shape:
            raise ValueError(f"series {name!r}: steps and values must be 1-D and of one length, "
                             f"got {steps.shape} and {values.shape}")
        keep = np.isfinite(values)
        if keep.sum() >= 2:
            cleaned.append((steps[keep], values[keep]))
    if not cleaned:
        return np.zeros(0, np.int64), []
    grid = np.unique(np.concatenate([s for s, _ in cleaned]))
    columns = []
    for steps, values in cleaned:
        held = values[np.clip(np.searchsorted(steps, grid, side="right") - 1, 0, len(steps) - 1)]
        spread = held.std()
        if spread > 1e-12 * max(1.0, abs(held.mean())):
            columns.append((held - held.mean()) / spread)
    return grid, columns
