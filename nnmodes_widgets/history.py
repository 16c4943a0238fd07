"""Full-resolution record of every value the monitor sampled.

Each analysis has one table of sampling events (training step, wall time) and, per layer, the
values it produced at some of those events: a layer added mid-training starts later, a removed
one stops. Arrays grow by doubling, so appending is amortised O(1); readers get NumPy copies.
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
            grown = np.empty((2 * len(self._data), *self._data.shape[1:]), dtype=self._data.dtype)
            grown[: self.size] = self._data[: self.size]
            self._data = grown
        self._data[self.size] = value
        self.size += 1

    def view(self) -> np.ndarray:
        return self._data[: self.size]


class _AnalysisTable:
    def __init__(self):
        self.steps = _Growing(np.int64)
        self.times = _Growing(np.float64)
        self.rows: dict[str, _Growing] = {}    # layer -> indices into steps/times
        self.values: dict[str, _Growing] = {}  # layer -> values, one per row


class History:
    """Every sampled value at full resolution: ``layers(analysis)`` and ``get(analysis, layer)``.

    Thread-safe: the monitor's worker appends while widgets and the user read.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._tables: dict[str, _AnalysisTable] = {}
        self._version = 0

    @property
    def version(self) -> int:
        """Increases with every recorded event; lets readers skip work when nothing changed."""
        return self._version

    def record(self, analysis: str, step: int, time: float, values: dict) -> None:
        """Append one sampling event: ``values`` maps layer -> scalar or array (same shape per layer)."""
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
