"""Full-resolution record of every value the monitor sampled.

Each analysis has one table of sampling events (training step, wall time) and, per layer, the
values it produced at some of those events: a layer added mid-training starts later, a removed
one stops. Readers get NumPy copies.

Memory: per stored value, the value itself (float64 as recorded live, float32 in a reopened run)
and, only for a layer with gaps, its event's row (int32). A layer that has a value at every event
from its first on (all layers, usually) keeps just the row of its first value; the first gap
turns on the per-value rows. The step, time and event index (24 bytes) are kept once per event,
for all layers. Arrays grow by half, or straight to the size needed when that is more (amortised
O(1) appends, at most about 1.5 times what they hold; a run file's reader makes room for all it
reads at once, so a reopened run's arrays have no spare room).

With ``max_bytes`` each analysis is bounded: it keeps every stride-th sampling event (evenly
spaced) plus the newest, and the stride doubles whenever the values exceed the cap.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from .analyses import RECORDS

__all__ = ["History", "ANALYSES"]

# Every name a value is recorded under: the records of the analyses (``runs.analyses``).
# "neuron_classes": per-class active fractions [C, n] of each neuron-modes layer;
# "characteristic_maps": class-averaged maps [C, n_out, n_in] of the output layer (NaN for a class
# no probe sample has, and live, for one a run left to the next in turn);
# "power_law": the piecewise power law fitted to each spectrum, its value at every rank;
# "rwc_clusters": each layer's cluster label, from its RWC trend;
# "weight_alignment", "weight_basins": per weight layer ("*": all of them), "sample_basins": the
# median radius per class ("class 0", ...); "phases": the steps where a phase begins ("*")
ANALYSES = RECORDS

_FIRST_BYTES = 1 << 16           # a new array holds 16 elements, or fewer when that is over 64 KiB
_INT32_MAX = int(np.iinfo(np.int32).max)


class _Growing:
    """A NumPy array that grows along axis 0 by half (by what is needed, when that is more)."""

    def __init__(self, dtype, tail_shape=(), capacity: int | None = None):
        if capacity is None:
            element = np.dtype(dtype).itemsize * math.prod(tail_shape)
            capacity = max(1, min(16, _FIRST_BYTES // element)) if element else 16
        self._data = np.empty((capacity, *tail_shape), dtype=dtype)
        self.size = 0

    @property
    def shape(self) -> tuple:
        """Shape of one element."""
        return self._data.shape[1:]

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    def reserve(self, extra: int) -> None:
        """Make room for ``extra`` more elements without another reallocation."""
        needed = self.size + extra
        capacity = len(self._data)
        if needed > capacity:
            # max(): thinning may leave an array of length 0 or 1
            grown = np.empty((max(needed, capacity + capacity // 2, 4), *self._data.shape[1:]),
                             dtype=self._data.dtype)
            grown[: self.size] = self._data[: self.size]
            self._data = grown

    def append(self, value) -> None:
        size = self.size
        if size == len(self._data):
            self.reserve(1)
        self._data[size] = value
        self.size = size + 1

    def extend(self, values) -> None:
        """Append ``values`` [n, *shape] (cast to this array's dtype)."""
        n = len(values)
        self.reserve(n)
        self._data[self.size: self.size + n] = values
        self.size += n

    def pop(self) -> None:
        """Drop the last element (its memory stays allocated for the next append)."""
        self.size -= 1

    def view(self) -> np.ndarray:
        return self._data[: self.size]

    def replace(self, array: np.ndarray) -> None:
        """Hold exactly ``array``, a fresh one, so that the old backing memory is freed."""
        self._data = array
        self.size = len(array)


def _row_dtype(largest: int):
    return np.int32 if largest <= _INT32_MAX else np.int64


class _Layer:
    """The values of one layer and the rows (events of its table) they belong to.

    Dense (``rows`` None): the values are at rows ``first, first + 1, ...``, one per event from the
    first on, and no row is stored per value. The first value at a later row (a gap) stores the
    rows of all values from then on (int32; int64 past 2**31 rows); a thinning that leaves them
    consecutive again makes the layer dense again.
    """

    __slots__ = ("values", "first", "rows")

    def __init__(self, dtype, shape, first: int, capacity: int | None = None):
        self.values = _Growing(dtype, shape, capacity)
        self.first = first
        self.rows: _Growing | None = None

    @property
    def size(self) -> int:
        return self.values.size

    def last_row(self) -> int:
        return self.first + self.values.size - 1 if self.rows is None else int(self.rows.view()[-1])

    def index(self):
        """The rows of the values, as an index into the table's arrays: a slice when dense."""
        if self.rows is None:
            return slice(self.first, self.first + self.values.size)
        return self.rows.view()

    def _rows_for(self, row: int, count: int) -> None:
        """Rows ``row .. row + count - 1`` are about to be added: store rows if they leave a gap,
        wide enough for the largest."""
        if self.rows is None:
            if row == self.first + self.values.size:
                return
            end = self.first + self.values.size
            self.rows = _Growing(_row_dtype(row + count - 1), (), max(self.values.size + count, 16))
            self.rows.extend(np.arange(self.first, end))
        elif row + count - 1 > _INT32_MAX and self.rows.dtype == np.int32:
            self.rows.replace(self.rows.view().astype(np.int64))
        self.rows.reserve(count)

    def append(self, row: int, value) -> None:
        values = self.values
        if self.rows is None and row == self.first + values.size:
            values.append(value)                  # dense, and stays so (the usual case)
            return
        values.reserve(1)
        self._rows_for(row, 1)
        values.append(value)
        self.rows.append(row)

    def extend(self, row: int, values: np.ndarray) -> None:
        """Append ``values`` [n, ...] at rows ``row .. row + n - 1``."""
        n = len(values)
        self.values.reserve(n)
        self._rows_for(row, n)
        self.values.extend(values)
        if self.rows is not None:
            self.rows.extend(np.arange(row, row + n))

    def pop(self) -> None:
        self.values.pop()
        if self.rows is not None:
            self.rows.pop()

    def keep(self, kept: np.ndarray, new_rows: np.ndarray) -> None:
        """Keep the values where ``kept`` (some), at ``new_rows`` (increasing), in fresh arrays."""
        # Boolean indexing copies, so replace() releases the old (larger) arrays.
        self.values.replace(self.values.view()[kept])
        first = int(new_rows[0])
        if int(new_rows[-1]) - first == len(new_rows) - 1:
            self.first, self.rows = first, None     # consecutive: dense
        else:
            self.first = first
            if self.rows is None:
                self.rows = _Growing(np.int32, (), 0)
            self.rows.replace(new_rows.astype(_row_dtype(int(new_rows[-1]))))


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
        self.layers: dict[str, _Layer] = {}    # in the order of first appearance
        self.capacity: dict[str, int] = {}     # layer not there yet -> values to make room for
        self.events = 0                        # events recorded so far (the next event's index)
        self.stride = 1
        self.alone = False                     # whether the last thinning left only the newest

    def nbytes(self) -> int:
        """Bytes of the stored values (the step, time and row arrays are small beside them)."""
        return sum(layer.values.view().nbytes for layer in self.layers.values())

    def new_layer(self, name: str, value_dtype, shape, row: int) -> _Layer:
        dtype = value_dtype if value_dtype.kind == "f" else np.float64
        layer = self.layers[name] = _Layer(dtype, shape, row, self.capacity.pop(name, None))
        return layer

    def newest_off_grid(self) -> bool:
        return self.index.size > 0 and int(self.index.view()[-1]) % self.stride != 0

    def drop_newest(self) -> None:
        """Remove the newest row; layers left without values are removed by ``drop_empty``."""
        row = self.steps.size - 1
        self.steps.pop()
        self.times.pop()
        self.index.pop()
        for layer in self.layers.values():
            if layer.size and layer.last_row() == row:
                layer.pop()

    def drop_empty(self) -> None:
        for name in [name for name, layer in self.layers.items() if layer.size == 0]:
            del self.layers[name]

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
        for name in list(self.layers):
            layer = self.layers[name]
            rows = layer.index()
            kept = keep[rows]
            if not kept.any():      # all of this layer's values were at dropped events
                del self.layers[name]
                continue
            layer.keep(kept, new_index[rows][kept])


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
    backing arrays grow by half, so they may take up to about 1.5 times the cap.

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
        """Increases with every recorded event (``extend`` of T events: by T) and every thinning;
        lets readers skip work when nothing changed."""
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
                known = table.layers.get(layer)
                if known is not None and known.values.shape != value.shape:
                    raise ValueError(f"{analysis!r} value of layer {layer!r} has shape {value.shape}, "
                                     f"earlier ones {known.values.shape}")
            if table.newest_off_grid():
                table.drop_newest()
            row = table.steps.size
            table.steps.append(step)
            table.times.append(time)
            table.index.append(table.events)
            table.events += 1
            for layer, value in arrays.items():
                known = table.layers.get(layer)
                if known is None:
                    known = table.new_layer(layer, value.dtype, value.shape, row)
                known.append(row, value)
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

    def extend(self, analysis: str, steps, times, values: dict) -> None:
        """Append T sampling events at once: ``steps`` [T], ``times`` [T], ``values`` maps layer ->
        array [T, ...] (every listed layer has a value at each of the T events).

        The result is that of ``record(analysis, steps[i], times[i], {layer: v[i] for layer, v in
        values.items()})`` for i = 0 .. T-1: the same events, values (floating values keep their
        dtype, others become float64, as in ``record``), layers (new ones in the order of
        ``values``), ``version`` (T more, and one more per thinning) and callbacks. Without
        ``max_bytes`` and ``on_record`` (a reopened run's history) it copies each layer's values
        in one go under the lock; else it is that loop of ``record`` calls (thinning and
        ``on_record`` per event). ValueError, with nothing recorded, when the lengths differ or
        a layer's values have another shape than its earlier ones.
        """
        _check_analysis(analysis)
        steps, times = np.asarray(steps), np.asarray(times)
        if steps.ndim != 1 or times.shape != steps.shape:
            raise ValueError(f"extend needs steps and times of one length T, got shapes "
                             f"{steps.shape} and {times.shape}")
        count = len(steps)
        arrays = {}
        for layer, value in values.items():
            array = np.asarray(value)
            if array.ndim == 0 or len(array) != count:
                raise ValueError(f"{analysis!r} values of layer {layer!r} have shape {array.shape}, "
                                 f"not [{count}, ...] for {count} events")
            # (cast here, outside the lock, as record's storage would cast them)
            arrays[layer] = array if array.dtype.kind == "f" else array.astype(np.float64)
        with self._lock:
            table = self._tables.get(analysis)
            for layer, array in arrays.items():
                known = table.layers.get(layer) if table is not None else None
                if known is not None and known.values.shape != array.shape[1:]:
                    raise ValueError(f"{analysis!r} value of layer {layer!r} has shape "
                                     f"{array.shape[1:]}, earlier ones {known.values.shape}")
            if count == 0:
                return
            if self._max_bytes is None and self.on_record is None:
                if table is None:
                    table = self._tables[analysis] = _AnalysisTable()
                # No cap: the stride stays 1, no event is ever off the grid or dropped.
                row = table.steps.size
                for growing in (table.steps, table.times, table.index):
                    growing.reserve(count)
                table.steps.extend(steps)
                table.times.extend(times)
                table.index.extend(np.arange(table.events, table.events + count))
                table.events += count
                for layer, array in arrays.items():
                    known = table.layers.get(layer)
                    if known is None:
                        known = table.new_layer(layer, array.dtype, array.shape[1:], row)
                    known.extend(row, array)
                self._version += count
                self._versions[analysis] = self._versions.get(analysis, 0) + count
                return
        for i in range(count):
            self.record(analysis, steps[i], times[i], {layer: array[i] for layer, array in arrays.items()})

    def _make_room(self, analysis: str, events: int, values: dict[str, int]) -> None:
        """Make room for ``events`` more events of ``analysis`` and ``values[layer]`` more values
        of each layer (also of one not there yet), so that the ``extend`` calls that bring them
        need not grow the arrays on the way (``run_reader`` knows the counts of a file it opens).
        The arrays grow to exactly that when it is more than half again what they hold."""
        _check_analysis(analysis)
        with self._lock:
            table = self._tables.setdefault(analysis, _AnalysisTable())
            for growing in (table.steps, table.times, table.index):
                growing.reserve(events)
            for name, count in values.items():
                layer = table.layers.get(name)
                if layer is None:
                    table.capacity[name] = max(table.capacity.get(name, 0), count)
                else:
                    layer.values.reserve(count)
                    if layer.rows is not None:
                        layer.rows.reserve(count)

    def layers(self, analysis: str) -> list[str]:
        """Layers with at least one recorded value, in the order they first appeared."""
        _check_analysis(analysis)
        with self._lock:
            table = self._tables.get(analysis)
            return list(table.layers) if table else []

    def get(self, analysis: str, layer: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of one layer: steps [T] int64, values [T] or [T, ...]."""
        steps, _, values = self._series(analysis, layer)
        return steps, values

    def latest(self, analysis: str, layer: str) -> tuple[int, np.ndarray]:
        """``(step, value)`` of the newest record of one layer, without copying the rest."""
        steps, values = self.recent(analysis, layer, 1)
        return int(steps[0]), values[0]

    def recent(self, analysis: str, layer: str, count: int) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of the newest ``count`` records of one layer (fewer when fewer
        were made), oldest first, without copying the rest."""
        _check_analysis(analysis)
        with self._lock:
            table = self._tables.get(analysis)
            known = table.layers.get(layer) if table is not None else None
            if known is None:
                raise KeyError(f"no {analysis!r} values recorded for layer {layer!r}")
            first = max(known.size - max(count, 0), 0)
            rows = known.index()       # only the rows asked for: a gapped layer's are an array
            rows = slice(rows.start + first, rows.stop) if isinstance(rows, slice) else rows[first:]
            return table.steps.view()[rows].copy(), known.values.view()[first:].copy()

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
            layers = list(table.layers)
            out = np.full((len(layers), len(steps)), np.nan)
            for i, layer in enumerate(table.layers.values()):
                out[i, layer.index()] = layer.values.view()
            return layers, steps, out

    def _series(self, analysis: str, layer: str):
        _check_analysis(analysis)
        with self._lock:
            table = self._tables.get(analysis)
            if table is None or layer not in table.layers:
                known = list(table.layers) if table else []
                raise KeyError(
                    f"no {analysis!r} values recorded for layer {layer!r}; "
                    f"recorded layers: {known if known else 'none yet'}"
                )
            entry = table.layers[layer]
            rows = entry.index()
            return (_take(table.steps.view(), rows), _take(table.times.view(), rows),
                    entry.values.view().copy())


def _take(array: np.ndarray, index) -> np.ndarray:
    """``array[index]`` as a copy (a slice gives a view, an index array a copy already)."""
    return array[index].copy() if isinstance(index, slice) else array[index]


def _check_analysis(analysis: str) -> None:
    if analysis not in ANALYSES:
        raise ValueError(f"unknown analysis {analysis!r}; choose one of {', '.join(map(repr, ANALYSES))}")
