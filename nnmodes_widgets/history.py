"""Full-resolution record of every value the monitor sampled.

Each analysis has one table of sampling events (training step, wall time) and, per layer, the
values it produced at some of those events: a layer added mid-training starts later, a removed
one stops. Arrays grow by doubling, so appending is amortised O(1); readers get NumPy copies.

With ``max_bytes`` each analysis is bounded: it keeps every stride-th sampling event (evenly
spaced) plus the newest, and the stride doubles whenever the values exceed the cap.
"""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["History", "ANALYSES"]

# "neuron_classes": per-class active fractions [C, n] of each neuron-modes layer;
# "characteristic_maps": class-averaged maps [C, n_out, n_in] of the output layer;
# "power_law": the piecewise power law fitted to each spectrum, its value at every rank;
# "rwc_clusters": each layer's cluster label, from its RWC trend
ANALYSES = ("rwc", "spectrum", "stable_rank", "effective_rank", "power_law", "neuron_modes",
            "radiograph", "neuron_classes", "characteristic_maps", "rwc_clusters")


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

    def pop(self) -> None:
        """Drop the last element (its memory stays allocated for the next append)."""
        self.size -= 1

    def view(self) -> np.ndarray:
        return self._data[: self.size]

    def replace(self, array: np.ndarray) -> None:
        """Hold exactly ``array``, a fresh one, so that the old backing memory is freed."""
        self._data = array
        self.size = len(array)


class _AnalysisTable:
    """The kept sampling events of one analysis.

    Every recorded event gets an index i = 0, 1, 2, ... (dropped ones included); the event is on
    the grid when ``i % stride == 0``. The table holds the events on the grid and, when it is off
    the grid, the newest one, which the next event replaces.
    """

    def __init__(self):
        self.steps = _Growing(np.int64)
        self.times = _Growing(np.float64)
        self.index = _Growing(np.int64)        # event index of each row
        self.rows: dict[str, _Growing] = {}    # layer -> indices into steps/times
        self.values: dict[str, _Growing] = {}  # layer -> values, one per row
        self.events = 0                        # events recorded so far (the next event's index)
        self.stride = 1
        self.alone = False                     # whether the last thinning left only the newest

    def nbytes(self) -> int:
        """Bytes of the stored values (the step, time and row arrays are small beside them)."""
        return sum(v.view().nbytes for v in self.values.values())

    def newest_off_grid(self) -> bool:
        return self.index.size > 0 and int(self.index.view()[-1]) % self.stride != 0

    def drop_newest(self) -> None:
        """Remove the newest row; layers left without values are removed by ``drop_empty``."""
        row = self.steps.size - 1
        self.steps.pop()
        self.times.pop()
        self.index.pop()
        for layer, rows in self.rows.items():
            if rows.size and rows.view()[-1] == row:
                rows.pop()
                self.values[layer].pop()

    def drop_empty(self) -> None:
        for layer in [layer for layer, values in self.values.items() if values.size == 0]:
            del self.rows[layer], self.values[layer]

    def thin(self, max_bytes: int) -> bool:
        """Double the stride, keeping the events on the new grid and the newest, until the values
        fit in ``max_bytes`` or only the newest event is left. Returns whether a notice is due: the
        stride doubled, or only the newest is left where the last thinning left more.

        Doubling cannot thin two events (event 0 is on every grid): two that do not fit leave only
        the newest, and then the stride is put back to what it was, as no event is kept on the
        coarser grids (a value too big for the cap would otherwise push it up to the run length).
        """
        before = self.stride
        while self.nbytes() > max_bytes and self.steps.size > 1:
            keep = np.zeros(self.steps.size, dtype=bool)
            if self.steps.size > 2:
                self.stride *= 2
                keep[:] = self.index.view() % self.stride == 0
            keep[-1] = True
            if keep.all():          # cannot happen (rows on the grid are consecutive multiples)
                keep[:-1] = False
            self._keep(keep)
        alone, self.alone = self.alone, self.steps.size == 1
        if self.alone:
            self.stride = before
        return self.stride != before or (self.alone and not alone)

    def _keep(self, keep: np.ndarray) -> None:
        new_index = np.cumsum(keep) - 1
        # Boolean indexing copies, so replace() releases the old (larger) arrays.
        self.steps.replace(self.steps.view()[keep])
        self.times.replace(self.times.view()[keep])
        self.index.replace(self.index.view()[keep])
        for layer in list(self.values):
            rows = self.rows[layer].view()
            kept = keep[rows]
            if not kept.any():      # all of this layer's values were at dropped events
                del self.rows[layer], self.values[layer]
                continue
            self.rows[layer].replace(new_index[rows[kept]])
            self.values[layer].replace(self.values[layer].view()[kept])


class History:
    """Every sampled value: ``layers(analysis)`` and ``get(analysis, layer)``.

    ``max_bytes`` caps the stored values of each analysis separately (``None``: unbounded, full
    resolution). Each analysis keeps every stride-th sampling event (evenly spaced: the events
    i = 0, stride, 2 * stride, ... of all it recorded) plus the newest; an off-grid newest event is
    replaced by the next one, so ``latest`` always sees the newest. The stride starts at 1; a
    ``record`` that takes an analysis over the cap doubles it (dropping the events off the new grid)
    until the values fit or only the newest event is left, so it grows only about
    log2(events / events that fit) times. When even two events do not fit, only the newest is kept
    (a single event over the cap stays) and the stride is left as it was. ``on_thin(analysis,
    stride, kept_events)`` is called, outside the lock, after each record that doubled the stride,
    and after one that left only the newest event where the previous thinning had left more. The
    backing arrays grow by doubling, so they may take up to about twice the cap.

    ``on_record(analysis, step, time, values)`` is called, outside the lock, after each event
    recorded, with the values as NumPy arrays (the monitor hands them to its run file).

    Thread-safe: the monitor's worker appends while widgets and the user read.
    """

    def __init__(self, max_bytes: int | None = None, on_thin=None, on_record=None):
        if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int)
                                      or max_bytes < 0):
            raise ValueError(f"max_bytes must be None or a non-negative integer, got {max_bytes!r}")
        if on_thin is not None and not callable(on_thin):
            raise TypeError(f"on_thin must be callable or None, got {type(on_thin).__name__}")
        if on_record is not None and not callable(on_record):
            raise TypeError(f"on_record must be callable or None, got {type(on_record).__name__}")
        self._lock = threading.Lock()
        self._tables: dict[str, _AnalysisTable] = {}
        self._version = 0
        self._versions: dict[str, int] = {}    # analysis -> its events and thinnings so far
        self._max_bytes = max_bytes
        self._on_thin = on_thin
        self.on_record = on_record

    @property
    def version(self) -> int:
        """Increases with every recorded event and every thinning; lets readers skip work when
        nothing changed."""
        return self._version

    def version_of(self, *analyses: str) -> int:
        """Like ``version``, counting only ``analyses``: a panel that draws the spectra skips its
        work while only RWC samples arrive."""
        for analysis in analyses:
            _check_analysis(analysis)
        return sum(self._versions.get(a, 0) for a in analyses)

    @property
    def max_bytes(self) -> int | None:
        """The cap on the stored values of each analysis (``None``: unbounded)."""
        return self._max_bytes

    def stride(self, analysis: str) -> int:
        """A power of two, 1 until the first thinning: the history keeps every stride-th sampling
        event of ``analysis`` (evenly spaced) plus the newest."""
        _check_analysis(analysis)
        with self._lock:
            table = self._tables.get(analysis)
            return table.stride if table else 1

    def record(self, analysis: str, step: int, time: float, values: dict) -> None:
        """Append one sampling event: ``values`` maps layer -> scalar or array (same shape per layer).

        Replaces the newest event if it is off the stride grid, and thins ``analysis`` if this
        event takes it over ``max_bytes``.
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
            if table.newest_off_grid():
                table.drop_newest()
            row = table.steps.size
            table.steps.append(step)
            table.times.append(time)
            table.index.append(table.events)
            table.events += 1
            for layer, value in arrays.items():
                if layer not in table.values:
                    dtype = value.dtype if value.dtype.kind == "f" else np.float64
                    table.rows[layer] = _Growing(np.int64)
                    table.values[layer] = _Growing(dtype, value.shape)
                table.rows[layer].append(row)
                table.values[layer].append(value)
            table.drop_empty()      # layers whose only value was at a replaced event
            changes = 1
            thinned = None
            if (self._max_bytes is not None and table.nbytes() > self._max_bytes
                    and table.steps.size > 1):
                notice = table.thin(self._max_bytes)
                changes += 1
                if notice:
                    thinned = (table.stride, table.steps.size)
            self._version += changes
            self._versions[analysis] = self._versions.get(analysis, 0) + changes
        # Outside the lock: the callbacks may read this history.
        if self.on_record is not None:
            self.on_record(analysis, step, time, arrays)
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
