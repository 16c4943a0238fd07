"""Piecewise power-law fits of ranked values (mode spectra, mode importances).

Li & Huang, "Emergence of hierarchical modes from deep learning" (arXiv 2208.09859) find that the
ranked mode spectra of trained layers follow a piecewise power law; see SPEC section 4.4.

A power law value ~ C * rank^slope is a straight line log(value) = intercept + slope * log(rank)
(natural logarithms throughout). ``fit_power_law`` fits ``breaks + 1`` such lines to contiguous
runs of ranks and finds the break ranks by exhaustive search: the partition it returns has the
smallest total squared error in log space of all admissible partitions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..checks import check_int

__all__ = ["PowerLawFit", "fit_power_law", "power_law_line", "MIN_SEGMENT"]

MIN_SEGMENT = 3          # points per segment: a line through 2 points always fits exactly
_BLOCK = 1 << 18         # candidate (start, end) pairs per vectorised block: ~25 MB of temporaries


@dataclass(frozen=True)
class PowerLawFit:
    """Result of ``fit_power_law``: ``breaks + 1`` lines in log-log space.

    Segment j (0-based) covers the ranks ``segments[j] = (first, last)``, inclusive, 1-based, and
    there log(value) ~ ``intercepts[j] + slopes[j] * log(rank)``, i.e. value ~ exp(intercept) *
    rank^slope. ``breakpoints[j]`` is the rank at which segment j + 1 starts (the first rank of the
    new segment), so with n values the segments are 1..b_1 - 1, b_1..b_2 - 1, ..., b_B..n.
    ``r2`` = 1 - SSE / SST of the whole piecewise fit on the log values (1.0 when every log value
    is the same, which the fit reproduces exactly); ``sse`` is that total squared error.
    """

    slopes: tuple[float, ...]
    intercepts: tuple[float, ...]
    breakpoints: tuple[int, ...]
    r2: float
    sse: float
    n: int

    @property
    def segments(self) -> tuple[tuple[int, int], ...]:
        """(first rank, last rank) of every segment, inclusive and 1-based."""
        starts = (1, *self.breakpoints)
        stops = (*(b - 1 for b in self.breakpoints), self.n)
        return tuple(zip(starts, stops))

    def predict(self, ranks=None) -> np.ndarray:
        """Fitted values exp(intercept + slope * log rank) at ``ranks`` (default 1..n), each rank
        on its own segment's line; ranks beyond n continue the last segment."""
        r = np.arange(1, self.n + 1) if ranks is None else np.asarray(ranks, dtype=np.float64)
        if np.any(r < 1):
            raise ValueError("ranks start at 1")
        seg = np.searchsorted(np.asarray(self.breakpoints, dtype=np.float64), r, side="right")
        slope, intercept = np.asarray(self.slopes)[seg], np.asarray(self.intercepts)[seg]
        return np.exp(intercept + slope * np.log(r))


def fit_power_law(values, *, breaks: int = 1) -> PowerLawFit:
    """Least-squares piecewise power law of ``values`` against their ranks 1..n.

    ``values`` is a 1-D sequence, NumPy array or tensor of positive finite numbers (a spectrum,
    in the order given; usually descending). The fit has ``breaks + 1`` contiguous segments of at
    least 3 points each; within a segment log(value) is fitted by an ordinary least-squares line
    in log(rank). The break ranks are the exhaustive-search optimum: the admissible partition
    with the smallest total squared error (an exact dynamic programme over all partitions, with
    every segment's error from cumulative sums, so every candidate costs O(1) and whole blocks of
    candidates are evaluated at once: O(n) work for breaks <= 1, O((breaks - 1) * n^2) beyond;
    n = 4000 with breaks = 2 takes a fraction of a second on a CPU core). Ties go to the earliest
    break ranks.

    Raises ValueError for ``breaks < 0``, fewer than ``3 * (breaks + 1)`` values, or a value that
    is zero, negative, NaN or infinite (naming its rank: trim a spectrum's zero tail first).
    """
    breaks = check_int(breaks, "breaks", minimum=0)
    y = _log_values(values)
    n = y.size
    need = MIN_SEGMENT * (breaks + 1)
    if n < need:
        raise ValueError(f"fitting {breaks + 1} segment(s) of at least {MIN_SEGMENT} points needs at "
                         f"least {need} values, got {n}")
    x = np.log(np.arange(1, n + 1, dtype=np.float64))
    cuts = _best_partition(x, y, breaks)
    bounds = [0, *cuts, n]
    slopes, intercepts, sse = [], [], 0.0
    for a, b in zip(bounds[:-1], bounds[1:]):
        slope, intercept = _line(x[a:b], y[a:b])
        slopes.append(slope)
        intercepts.append(intercept)
        sse += float(np.sum((y[a:b] - intercept - slope * x[a:b]) ** 2))
    sst = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 if sst == 0.0 else min(1.0, max(0.0, 1.0 - sse / sst))
    return PowerLawFit(slopes=tuple(slopes), intercepts=tuple(intercepts),
                       breakpoints=tuple(c + 1 for c in cuts),   # 0-based start -> 1-based rank
                       r2=r2, sse=sse, n=n)


def power_law_line(values) -> np.ndarray:
    """The piecewise power law fitted to a spectrum's positive head, at every rank: float64
    [len(values)], NaN beyond the head. The head is the positive finite values (the leading ones
    of a descending spectrum); with at least ``2 * MIN_SEGMENT`` of them the fit has one break,
    with at least ``MIN_SEGMENT`` none, with fewer the line is NaN throughout. What the monitor
    records as "power_law" beside each "spectrum" and the spectrum panel draws."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().to(torch.float64).numpy()
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {v.shape}")
    positive = v[np.isfinite(v) & (v > 0)]
    out = np.full(len(v), np.nan)
    if len(positive) >= MIN_SEGMENT:
        breaks = 1 if len(positive) >= 2 * MIN_SEGMENT else 0
        out[: len(positive)] = fit_power_law(positive, breaks=breaks).predict()
    return out


def _log_values(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().to(torch.float64).numpy()
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {v.shape}")
    bad = np.flatnonzero(~(np.isfinite(v) & (v > 0)))
    if bad.size:
        i = int(bad[0])
        hint = f" (to fit the positive head, pass values[:{i}])" if i >= 1 else ""
        raise ValueError(f"power-law fit needs positive finite values; the value at rank {i + 1} is "
                         f"{float(v[i])!r}{hint}")
    return np.log(v)


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Ordinary least-squares slope and intercept of y against x."""
    xm, ym = x.mean(), y.mean()
    dx = x - xm
    slope = float(np.dot(dx, y - ym) / np.dot(dx, dx))
    return slope, float(ym - slope * xm)


class _SegmentErrors:
    """Squared error of the least-squares line through points [a, b) (0-based, half-open), for
    whole arrays of (a, b) at once, from prefix sums of 1, x, y, x^2, xy, y^2."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        # centre first: the prefix sums then stay small and the differences below lose less
        x, y = x - x.mean(), y - y.mean()
        zero = np.zeros(1)
        self.sx, self.sy, self.sxx, self.sxy, self.syy = (
            np.concatenate([zero, np.cumsum(t)]) for t in (x, y, x * x, x * y, y * y))

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        count = (b - a).astype(np.float64)
        sx = self.sx[b] - self.sx[a]
        sy = self.sy[b] - self.sy[a]
        cxx = self.sxx[b] - self.sxx[a] - sx * sx / count
        cxy = self.sxy[b] - self.sxy[a] - sx * sy / count
        cyy = self.syy[b] - self.syy[a] - sy * sy / count
        return np.maximum(cyy - cxy * cxy / cxx, 0.0)   # rounding can dip just below zero


def _best_partition(x: np.ndarray, y: np.ndarray, breaks: int) -> list[int]:
    """0-based start indices of segments 1..breaks of the optimal partition of n points.

    best[j][b]: the smallest error of points [0, b) cut into j + 1 admissible segments, and
    arg[j][b] the start of the last of them. Exact, so the same optimum as enumerating every
    combination of break positions.
    """
    n, m = x.size, MIN_SEGMENT
    err = _SegmentErrors(x, y)
    ends = np.arange(n + 1)
    best = np.full(n + 1, np.inf)
    best[m:] = err(np.zeros(n + 1 - m, dtype=np.int64), ends[m:])
    args: list[np.ndarray] = []
    for j in range(1, breaks + 1):
        # segment j starts at a >= m * j and ends at b with b - a >= m; the last segment must end at n
        lo_b = m * (j + 1)
        end_list = np.array([n]) if j == breaks else ends[lo_b:]
        starts = np.arange(m * j, n - m + 1)
        new_best = np.full(n + 1, np.inf)
        new_arg = np.zeros(n + 1, dtype=np.int64)
        rows = max(1, _BLOCK // max(1, starts.size))
        for i in range(0, end_list.size, rows):
            b = end_list[i:i + rows, None]
            a = starts[None, :]
            with np.errstate(divide="ignore", invalid="ignore"):   # too-short pairs: masked
                total = np.where(b - a >= m, best[a] + err(a, b), np.inf)
            k = np.argmin(total, axis=1)              # first minimum: the earliest break wins ties
            new_best[b[:, 0]] = total[np.arange(k.size), k]
            new_arg[b[:, 0]] = starts[k]
        best = new_best
        args.append(new_arg)
    cuts, b = [], n
    for arg in reversed(args):
        b = int(arg[b])
        cuts.append(b)
    return cuts[::-1]
