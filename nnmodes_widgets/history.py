"""Full-resolution record of every value the monitor sampled.

Each analysis has one table of sampling events (training step, wall time) and, per layer, the
values it produced at some of those events: a layer added mid-training starts later, a removed
one stops. Arrays grow by doubling, so appending is amortised O(1); readers get NumPy copies.

With ``max_bytes`` each analysis is bounded: once its values exceed the cap, every second sampling
event is dropped (evenly, oldest first, the newest always kept) until they fit again.
"""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["History", "ANALYSES"]

# "neuron_classes": per-class active fractions [C, n] of each neuron-modes layer;
# "characteristic_maps": class-averaged maps [C, n_out, n_in] of the output layer
ANALYSES = ("rwc", "spectrum", "neuron_modes", "radiograph", "neuron_classes", "characteristic_maps")


class _Growing:
    """A NumPy array that grows along axis 0 by doubling."""

    def __init__(self, dtype, tail_shape=()):
        self._data = np.empty((16, *tail_shape), dtype=dtype)
        self.size = 0

    @property
    def shape(self) -> tuple:
        """Shape of one element."""
        return self._data.shape[1:]

    def append(self, value) -> None:
        if self.size == len(self._data):
            # max(): thinning may leave an array of length 0 or 1
            grown = np.empty((max(2 * len(self._data), 16), *self._data.shape[1:]), dtype=self._data.dtype)
            grown[: self.size] = self._data[: self.size]
            self._data = grown
        self._data[self.size] = value
        self.size += 1

    def view(self) -> np.ndarray:
        return self._data[: self.size]

    def replace(self, array: np.ndarray) -> None:
        """Hold exactly ``array``, a fresh one, so that the old backing memory is freed."""
        self._data = array
        self.size = len(array)


class _AnalysisTable:
    def __init__(self):
        self.steps = _Growing(np.int64)
        self.times = _Growing(np.float64)
        self.rows: dict[str, _Growing] = {}    # layer -> indices into steps/times
        self.values: dict[str, _Growing] = {}  # layer -> values, one per row
        self.thinned = 0                       # how many times thin() halved the events

    def nbytes(self) -> int:
        """Bytes of the stored values (the step, time and row arrays are small beside them)."""
        return sum(v.view().nbytes for v in self.values.values())

    def thin(self) -> None:
        """Keep the events 0, 2, 4, ... (from the oldest) and the newest; of two, only the newest."""
        n = self.steps.size
        keep = np.zeros(n, dtype=bool)
        keep[::2] = n > 2           # halving two events would keep both: never done
        keep[-1] = True
        new_index = np.cumsum(keep) - 1
        # Boolean indexing copies, so replace() releases the old (larger) arrays.
        self.steps.replace(self.steps.view()[keep])
        self.times.replace(self.times.view()[keep])
        for layer in list(self.values):
            rows = self.rows[layer].view()
            kept = keep[rows]
            if not kept.any():      # all of this layer's values were at dropped events
                del self.rows[layer], self.values[layer]
                continue
            self.rows[layer].replace(new_index[rows[kept]])
            self.values[layer].replace(self.values[layer].view()[kept])
        self.thinned += 1


class History:
    """Every sampled value: ``layers(analysis)`` and ``get(analysis, layer)``.

    ``max_bytes`` caps the stored values of each analysis separately (``None``: unbounded, full
    resolution). A ``record`` that takes an analysis over the cap thins it: every second sampling
    event is dropped (those at even positions from the oldest are kept, and always the newest),
    repeatedly, until it fits or only the newest event is left. Events recorded afterwards are all
    kept until the next thinning, so older parts end up sparser than newer ones; ``stride`` tells
    how sparse. ``on_thin(analysis, stride, kept_events)`` is called after each thinning record,
    outside the lock. The backing arrays grow by doubling, so they may take up to twice the cap.

    Thread-safe: the monitor's worker appends while widgets and the user read.
    """

    def __init__(self, max_bytes: int | None = None, on_thin=None):
        if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int)
                                      or max_bytes < 0):
            raise ValueError(f"max_bytes must be None or a non-negative integer, got {max_bytes!r}")
        if on_thin is not None and not callable(on_thin):
            raise TypeError(f"on_thin must be callable or None, got {type(on_thin).__name__}")
        self._lock = threading.Lock()
        self._tables: dict[str, _AnalysisTable] = {}
        self._version = 0
        self._max_bytes = max_bytes
        self._on_thin = on_thin

    @property
    def version(self) -> int:
        """Increases with every recorded event and every thinning; lets readers skip work when
        nothing changed."""
        return self._version

    @property
    def max_bytes(self) -> int | None:
        """The cap on the stored values of each analysis (``None``: unbounded)."""
        return self._max_bytes

    def stride(self, analysis: str) -> int:
        """``2 ** (times thinned)``, 1 when never thinned: the history keeps about every
        stride-th sampling event of the oldest part of ``analysis`` (newer parts are denser)."""
        _check_analysis(analysis)
        with self._lock:
            table = self._tables.get(analysis)
            return 2 ** table.thinned if table else 1

    def record(self, analysis: str, step: int, time: float, values: dict) -> None:
        """Append one sampling event: ``values`` maps layer -> scalar or array (same shape per layer).

        Thins ``analysis`` if this event takes it over ``max_bytes``.
        """
        _check_analysis(analysis)
        arrays = {layer: np.asarray(value) for layer, value in values.items()}
        with self._lock:
            table = self._tables.setdefault(analysis, _AnalysisTable())
            # Check every value before writing any: a refused event leaves no trace.
            for layer, value in arrays.items():
                known = table.values.get(layer)
                if known is not None and known.shape != value.shape:
                    raise ValueError(f"{analysis!r} value of layer {layer!r} has shape {value.shape}, "
                                     f"earlier ones {known.shape}")
            row = table.steps.size
            table.steps.append(step)
            table.times.append(time)
            for layer, value in arrays.items():
                if layer not in table.values:
                    dtype = value.dtype if value.dtype.kind == "f" else np.float64
                    table.rows[layer] = _Growing(np.int64)
                    table.values[layer] = _Growing(dtype, value.shape)
                table.rows[layer].append(row)
                table.values[layer].append(value)
            self._version += 1
            thinned = None
            if self._max_bytes is not None:
                before = table.thinned
                while table.nbytes() > self._max_bytes and table.steps.size > 1:
                    table.thin()
                if table.thinned != before:
                    self._version += 1
                    thinned = (2 ** table.thinned, table.steps.size)
        # Outside the lock: the callback may read this history.
        if thinned is not None and self._on_thin is not None:
            self._on_thin(analysis, *thinned)

    def layers(self, analysis: str) -> list[str]:
        """Layers with at least one recorded value, in the order they first appeared."""
        _check_analysis(analysis)
        with self._lock:
            table = self._tables.get(analysis)
            return list(table.values) if table else []

    def get(self, analysis: str, layer: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of one layer: steps [T] int64, values [T] or [T, ...]."""
        steps, _, values = self._series(analysis, layer)
        return steps, values

    def latest(self, analysis: str, layer: str) -> tuple[int, np.ndarray]:
        """``(step, value)`` of the newest record of one layer, without copying the rest."""
        _check_analysis(analysis)
        with self._lock:
            table = self._tables.get(analysis)
            if table is None or layer not in table.values:
                raise KeyError(f"no {analysis!r} values recorded for layer {layer!r}")
            row = table.rows[layer].view()[-1]
            return int(table.steps.view()[row]), table.values[layer].view()[-1].copy()

    def times(self, analysis: str, layer: str) -> np.ndarray:
        """Wall-clock times (``time.time()`` seconds) of the values ``get`` returns."""
        return self._series(analysis, layer)[1]

    def steps(self, analysis: str) -> np.ndarray:
        """Training steps of every sampling event of ``analysis``."""
        _check_analysis(analysis)
        with self._lock:
            table = self._tables.get(analysis)
            return table.steps.view().copy() if table else np.empty(0, np.int64)

    def count(self, analysis: str) -> int:
        """Number of sampling events of ``analysis`` (without copying them)."""
        _check_analysis(analysis)
        with self._lock:
            table = self._tables.get(analysis)
            return table.steps.size if table else 0

    def matrix(self, analysis: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        """``(layers, steps [T], values [L, T])`` of a scalar analysis, NaN where a layer has no value."""
        _check_analysis(analysis)
        with self._lock:
            table = self._tables.get(analysis)
            if table is None:
                return [], np.empty(0, np.int64), np.empty((0, 0))
            steps = table.steps.view().copy()
            layers = list(table.values)
            out = np.full((len(layers), len(steps)), np.nan)
            for i, layer in enumerate(layers):
                out[i, table.rows[layer].view()] = table.values[layer].view()
            return layers, steps, out

    def _series(self, analysis: str, layer: str):
        _check_analysis(analysis)
        with self._lock:
            table = self._tables.get(analysis)
            if table is None or layer not in table.values:
                known = list(table.values) if table else []
                raise KeyError(
                    f"no {analysis!r} values recorded for layer {layer!r}; "
                    f"recorded layers: {known if known else 'none yet'}"
                )
            rows = table.rows[layer].view()
            return (table.steps.view()[rows].copy(), table.times.view()[rows].copy(),
                    table.values[layer].view().copy())


def _check_analysis(analysis: str) -> None:
    if analysis not in ANALYSES:
        raise ValueError(f"unknown analysis {analysis!r}; choose one of {', '.join(map(repr, ANALYSES))}")
