"""Bounded views of long series for plotting: the full resolution stays in the history."""

from __future__ import annotations

import numpy as np


def minmax_decimate(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Reduce ``y`` [L, T] sampled at ``x`` [T] to at most ``max_points + 1`` points per row.

    Each of ``max_points // 2`` buckets keeps its minimum and its maximum in time order, so spikes
    survive (a stride would skip them); the newest point is always kept. NaN gaps stay NaN.
    Returns ``(x [L, P], y [L, P])``.
    """
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2, got {max_points}")
    y = np.asarray(y, dtype=float)
    x = np.asarray(x)
    n_rows, n = y.shape
    if n <= max_points + 1:
        return np.broadcast_to(x, y.shape).copy(), y.copy()
    head = n - 1                                   # the last point is appended as it is
    buckets = max_points // 2
    width = -(-head // buckets)
    padded = np.full((n_rows, buckets * width), np.nan)
    padded[:, :head] = y[:, :head]
    blocks = padded.reshape(n_rows, buckets, width)
    nan = np.isnan(blocks)
    lo = np.where(nan, np.inf, blocks).argmin(axis=2)
    hi = np.where(nan, -np.inf, blocks).argmax(axis=2)
    base = (np.arange(buckets) * width)[None, :]
    idx = np.stack([base + np.minimum(lo, hi), base + np.maximum(lo, hi)], axis=2)
    idx = np.minimum(idx.reshape(n_rows, 2 * buckets), head - 1)   # buckets lying past the end
    idx = np.concatenate([idx, np.full((n_rows, 1), n - 1)], axis=1)
    return x[idx], np.take_along_axis(y, idx, axis=1)


def end_at_last_value(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``y`` [L, P] whose tail is NaN end at their last finite point instead, repeated.

    bqplot places every line's label at its last point, and an undefined one is a console error;
    repeating the last point draws the same line. Rows with no finite value are left as they are.
    """
    x, y = np.array(x, dtype=float), np.array(y, dtype=float)
    finite = np.isfinite(y)
    has = finite.any(axis=1)
    last = y.shape[1] - 1 - np.argmax(finite[:, ::-1], axis=1)
    tail = (np.arange(y.shape[1])[None, :] > last[:, None]) & has[:, None]
    rows = np.arange(len(y))
    y = np.where(tail, y[rows, last][:, None], y)
    x = np.where(tail, x[rows, last][:, None], x)
    return x, y


def decimate_each(series, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Each of ``series`` (steps [T_i], values [T_i]) decimated on its own steps
    (``minmax_decimate``), the rows padded at the end with NaN to one length: ``(x, y)`` [L, P].

    A series recorded at other steps than the rest (an analysis taking its layers in turns) is
    then a line through its own points; on the steps of all series together it would be points
    cut apart by the others' steps, each drawn as nothing or a dot."""
    rows = [minmax_decimate(np.asarray(steps, dtype=float), np.asarray(values, dtype=float)[None],
                            max_points) for steps, values in series]
    out = np.full((2, len(rows), max((x.shape[1] for x, _ in rows), default=0)), np.nan)
    for i, (x, y) in enumerate(rows):
        out[0, i, : x.shape[1]], out[1, i, : y.shape[1]] = x[0], y[0]
    return out[0], out[1]
