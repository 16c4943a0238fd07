"""History (SPEC 5): full-resolution record of sampled values, per analysis and layer."""

import threading
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nnmodes_widgets as nm
from nnmodes_widgets.runs.history import ANALYSES, History


def filled():
    h = History()
    h.record("rwc", 10, 100.0, {"a": 0.1, "b": 0.2})
    h.record("rwc", 20, 101.0, {"a": 0.3})                      # b missing here
    h.record("rwc", 30, 102.0, {"a": 0.4, "b": 0.5, "c": 0.6})  # c appears late
    return h


def test_empty_history():
    h = History()
    for analysis in ANALYSES:
        assert h.layers(analysis) == []
        assert h.steps(analysis).tolist() == []
        layers, steps, values = h.matrix(analysis)
        assert layers == [] and steps.size == 0 and values.size == 0
        with pytest.raises(KeyError):
            h.get(analysis, "a")


def test_record_layers_get_times_steps():
    h = filled()
    assert h.layers("rwc") == ["a", "b", "c"]                   # order of first appearance
    assert h.steps("rwc").tolist() == [10, 20, 30]
    steps, values = h.get("rwc", "a")
    assert steps.tolist() == [10, 20, 30] and values.tolist() == [0.1, 0.3, 0.4]
    assert steps.dtype.kind == "i" and values.dtype.kind == "f"
    steps, values = h.get("rwc", "b")
    assert steps.tolist() == [10, 30] and values.tolist() == [0.2, 0.5]   # absent step not returned
    assert h.times("rwc", "b").tolist() == [100.0, 102.0]
    steps, values = h.get("rwc", "c")
    assert steps.tolist() == [30] and values.tolist() == [0.6]
    assert h.times("rwc", "c").tolist() == [102.0]


def test_matrix_nan_fills_missing_values():
    layers, steps, values = filled().matrix("rwc")
    assert layers == ["a", "b", "c"]
    assert steps.tolist() == [10, 20, 30]
    expected = np.array([[0.1, 0.3, 0.4],
                         [0.2, np.nan, 0.5],
                         [np.nan, np.nan, 0.6]])
    np.testing.assert_array_equal(values, expected)            # NaN positions must match too


def test_analyses_are_independent():
    h = filled()
    h.record("spectrum", 5, 99.0, {"x": np.arange(3.0)})
    assert h.layers("spectrum") == ["x"] and h.steps("spectrum").tolist() == [5]
    assert h.layers("rwc") == ["a", "b", "c"] and h.steps("rwc").tolist() == [10, 20, 30]
    assert h.layers("neuron_modes") == []
    with pytest.raises(KeyError):
        h.get("spectrum", "a")


def test_event_without_values_counts_as_a_step():
    h = History()
    h.record("rwc", 1, 0.0, {})
    h.record("rwc", 2, 1.0, {"a": 1.0})
    assert h.steps("rwc").tolist() == [1, 2]
    assert h.layers("rwc") == ["a"]
    assert h.get("rwc", "a")[0].tolist() == [2]


@pytest.mark.parametrize("call", ["record", "layers", "get", "times", "steps", "matrix"])
def test_unknown_analysis_is_value_error(call):
    h = filled()
    args = {"record": ("bogus", 1, 0.0, {"a": 1.0}), "get": ("bogus", "a"), "times": ("bogus", "a")}
    with pytest.raises(ValueError, match="bogus"):
        getattr(h, call)(*args.get(call, ("bogus",)))
    assert h.steps("rwc").tolist() == [10, 20, 30]


def test_unknown_layer_is_key_error_naming_it():
    h = filled()
    with pytest.raises(KeyError) as info:
        h.get("rwc", "nope.weight")
    assert "nope.weight" in str(info.value)
    with pytest.raises(KeyError, match="nope"):
        h.times("rwc", "nope")


def test_array_values():
    rng = np.random.default_rng(0)
    h = History()
    spectra = [rng.random(5) for _ in range(4)]
    maps = [rng.random((3, 4)).astype(np.float32) for _ in range(4)]
    for i in range(4):
        h.record("spectrum", i * 10, float(i), {"l1": spectra[i]})
        h.record("radiograph", i * 10, float(i), {"m": maps[i]})
    steps, values = h.get("spectrum", "l1")
    assert steps.tolist() == [0, 10, 20, 30]
    assert values.shape == (4, 5)
    np.testing.assert_array_equal(values, np.stack(spectra))
    steps, values = h.get("radiograph", "m")
    assert values.shape == (4, 3, 4)
    np.testing.assert_array_equal(values, np.stack(maps))


def test_integer_values_come_back_as_floats():
    h = History()
    h.record("rwc", 1, 0.0, {"a": 3})
    h.record("rwc", 2, 0.0, {"a": np.int64(4)})
    values = h.get("rwc", "a")[1]
    assert values.dtype.kind == "f" and values.tolist() == [3.0, 4.0]


@pytest.mark.parametrize("bad", [np.ones(4), 5.0, np.ones((1, 3))], ids=["longer", "scalar", "extra-dim"])
def test_value_of_wrong_shape_is_rejected_and_changes_nothing(bad):
    # A layer's values share one shape ([T, ...]); a value of another shape is an error, not
    # silently broadcast, and a rejected record must not leave a half-written event behind.
    h = History()
    h.record("spectrum", 1, 0.0, {"a": np.arange(3.0), "b": np.arange(3.0)})
    version = h.version
    with pytest.raises(ValueError):
        h.record("spectrum", 2, 1.0, {"a": np.arange(3.0) + 10, "b": bad})
    assert h.steps("spectrum").tolist() == [1]
    for layer in ("a", "b"):
        steps, values = h.get("spectrum", layer)
        assert steps.tolist() == [1] and values.tolist() == [[0.0, 1.0, 2.0]]
    assert h.version == version
    # still usable afterwards
    h.record("spectrum", 3, 2.0, {"a": np.ones(3), "b": np.ones(3)})
    assert h.get("spectrum", "b")[0].tolist() == [1, 3]


def test_growth_past_initial_capacity():
    h = History()
    n = 10_000
    for i in range(n):
        values = {"every": i * 0.5}
        if i % 3 == 0:
            values["third"] = -float(i)
        h.record("rwc", i + 1, 1000.0 + i, values)
    assert h.steps("rwc").tolist() == list(range(1, n + 1))
    steps, values = h.get("rwc", "every")
    assert steps.tolist() == list(range(1, n + 1))
    assert values.tolist() == [i * 0.5 for i in range(n)]
    steps, values = h.get("rwc", "third")
    assert steps.tolist() == [i + 1 for i in range(0, n, 3)]
    assert values.tolist() == [-float(i) for i in range(0, n, 3)]
    assert h.times("rwc", "third").tolist() == [1000.0 + i for i in range(0, n, 3)]
    layers, msteps, matrix = h.matrix("rwc")
    assert matrix.shape == (2, n)
    assert np.isnan(matrix[1]).sum() == n - len(range(0, n, 3))


def test_returned_arrays_are_copies():
    h = filled()
    h.record("spectrum", 1, 0.0, {"x": np.arange(4.0)})
    steps, values = h.get("rwc", "a")
    times = h.times("rwc", "a")
    all_steps = h.steps("rwc")
    _, msteps, matrix = h.matrix("rwc")
    spec = h.get("spectrum", "x")[1]
    for arr in (steps, values, times, all_steps, msteps, matrix, spec):
        arr[...] = 0
    layers = h.layers("rwc")
    layers.append("zzz")
    assert h.layers("rwc") == ["a", "b", "c"]
    assert h.get("rwc", "a")[0].tolist() == [10, 20, 30]
    assert h.get("rwc", "a")[1].tolist() == [0.1, 0.3, 0.4]
    assert h.times("rwc", "a").tolist() == [100.0, 101.0, 102.0]
    assert h.steps("rwc").tolist() == [10, 20, 30]
    assert h.matrix("rwc")[2][0].tolist() == [0.1, 0.3, 0.4]
    assert h.get("spectrum", "x")[1].tolist() == [[0.0, 1.0, 2.0, 3.0]]


def test_recorded_array_is_copied_in():
    # the caller may reuse its buffer after recording
    h = History()
    buf = np.arange(3.0)
    h.record("spectrum", 1, 0.0, {"x": buf})
    buf[:] = -1
    assert h.get("spectrum", "x")[1].tolist() == [[0.0, 1.0, 2.0]]


def test_version_increases_with_every_event():
    h = History()
    v0 = h.version
    h.record("rwc", 1, 0.0, {"a": 1.0})
    v1 = h.version
    h.record("spectrum", 1, 0.0, {"a": np.ones(2)})
    assert v0 < v1 < h.version


def test_concurrent_record_and_read():
    h = History()
    n = 3000
    errors = []
    reads = []
    started, done = threading.Event(), threading.Event()

    def writer():
        started.wait(10)
        try:
            for i in range(n):
                if i % 100 == 0:
                    time.sleep(0.0005)               # let the reader in mid-stream
                values = {"a": float(i)}
                if i >= n // 2:
                    values["late"] = float(-i)       # a layer appearing while readers read
                h.record("rwc", i, float(i), values)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    def reader():
        started.set()
        try:
            while True:
                finished = done.is_set()
                for layer in h.layers("rwc"):
                    steps, values = h.get("rwc", layer)
                    assert len(steps) == len(values)
                    # every value was written together with its step
                    expected = steps.astype(float) * (1 if layer == "a" else -1)
                    assert np.array_equal(values, expected)
                layers, steps, matrix = h.matrix("rwc")
                assert matrix.shape == (len(layers), len(steps))
                assert np.array_equal(steps, np.arange(len(steps)))
                reads.append(len(steps))
                if finished:
                    break
        except Exception as exc:
            errors.append(exc)

    _run_together(reader, writer)
    assert errors == []
    assert reads[-1] == n                            # the last read saw everything
    assert h.steps("rwc").tolist() == list(range(n))
    assert len(h.get("rwc", "a")[0]) == n
    assert h.get("rwc", "late")[0].tolist() == list(range(n // 2, n))


def test_latest_is_the_newest_record_of_a_layer_without_the_rest():
    h = History()
    h.record("radiograph", 5, 0.0, {"a": np.ones((2, 3))})
    h.record("radiograph", 9, 1.0, {"a": np.full((2, 3), 7.0), "b": np.zeros((1, 3))})
    h.record("radiograph", 12, 2.0, {"b": np.ones((1, 3))})
    step, value = h.latest("radiograph", "a")
    assert step == 9 and (value == 7).all()
    value[:] = 0                                   # a copy: the history keeps its own
    assert (h.latest("radiograph", "a")[1] == 7).all()
    assert h.latest("radiograph", "b")[0] == 12
    with pytest.raises(KeyError, match="'c'"):
        h.latest("radiograph", "c")


def test_recent_is_the_newest_records_of_a_layer_oldest_first():
    h = History()
    for step in (5, 9, 12, 20):
        values = {"a": np.full((1, 2), float(step))}
        if step != 12:                            # "b" skips step 12: its rows have a gap
            values["b"] = np.full((2, 1, 1), float(step))
        h.record("radiograph", step, 0.0, values)
    steps, values = h.recent("radiograph", "a", 2)
    assert steps.tolist() == [12, 20] and values[:, 0, 0].tolist() == [12.0, 20.0]
    steps, values = h.recent("radiograph", "b", 2)
    assert steps.tolist() == [9, 20] and values[:, 0, 0, 0].tolist() == [9.0, 20.0]
    assert h.recent("radiograph", "a", 10)[0].tolist() == [5, 9, 12, 20]   # all there are
    assert h.recent("radiograph", "a", 0)[1].shape == (0, 1, 2)
    values[:] = 0                                  # a copy: the history keeps its own
    assert h.recent("radiograph", "b", 1)[1][0, 0, 0, 0] == 20.0
    with pytest.raises(KeyError, match="'c'"):
        h.recent("radiograph", "c", 1)


def test_count_is_the_number_of_events():
    h = History()
    assert h.count("rwc") == 0
    for step in range(1, 40):
        h.record("rwc", step, float(step), {"a": 1.0} if step % 2 else {"b": 2.0})
    assert h.count("rwc") == 39 == len(h.steps("rwc"))


# -- bounded memory: thinning -------------------------------------------------------------------------

def nbytes(events):
    return sum(v.nbytes for _, _, _, vals in events for v in vals.values())


class BruteHistory:
    """The capped history of one analysis as a plain list of (event index, step, time, {layer: value}).

    Every recorded event gets the next index; the list holds the events with index % stride == 0
    and the newest. A new event replaces an off-grid newest one. Over the cap, the stride doubles
    (keeping the events on the new grid and the newest) while more than two events are left; two
    that still do not fit leave only the newest, and the stride as it was before the record.
    ``record`` returns the expected on_thin arguments (after a doubling, or when only the newest is
    left where the previous thinning left more), else None.
    """

    def __init__(self, cap):
        self.cap, self.events, self.stride, self.n, self.alone = cap, [], 1, 0, False

    def record(self, step, time, vals):
        if self.events and self.events[-1][0] % self.stride:
            self.events.pop()
        self.events.append((self.n, step, time, {k: np.array(v, dtype=float) for k, v in vals.items()}))
        self.n += 1
        if self.cap is None or nbytes(self.events) <= self.cap or len(self.events) == 1:
            return None
        before = self.stride
        while nbytes(self.events) > self.cap and len(self.events) > 1:
            if len(self.events) > 2:
                self.stride *= 2
                self.events = [e for e in self.events[:-1] if e[0] % self.stride == 0] + self.events[-1:]
            else:
                self.events = self.events[-1:]
        was_alone, self.alone = self.alone, len(self.events) == 1
        if self.alone:
            self.stride = before
        if self.stride != before or (self.alone and not was_alone):
            return self.stride, len(self.events)
        return None


def assert_same(h, analysis, events):
    """The history holds exactly ``events``: steps, and per layer its steps, times and values."""
    assert h.steps(analysis).tolist() == [s for _, s, _, _ in events]
    assert h.count(analysis) == len(events)
    layers = []
    for _, _, _, vals in events:
        layers += [layer for layer in vals if layer not in layers]
    assert sorted(h.layers(analysis)) == sorted(layers)
    for layer in layers:
        mine = [(s, t, v) for _, s, t, vals in events for name, v in vals.items() if name == layer]
        steps, values = h.get(analysis, layer)
        assert steps.tolist() == [s for s, _, _ in mine]
        assert h.times(analysis, layer).tolist() == [t for _, t, _ in mine]
        np.testing.assert_array_equal(values, np.stack([v for _, _, v in mine]))
        assert h.latest(analysis, layer)[0] == mine[-1][0]


def on_grid(n, stride):
    """Event indices kept after ``n`` events at ``stride`` (nothing dropped by the two-event rule)."""
    return sorted(set(range(0, n, stride)) | {n - 1})


def test_thinning_matches_brute_force_with_layers_starting_late_and_gaps():
    rng = np.random.default_rng(1)
    cap = 1000                        # bytes; a value is 4 float64 = 32 bytes
    calls = []
    h = History(max_bytes=cap, on_thin=lambda *args: calls.append(args))
    brute, expected_calls = BruteHistory(cap), []
    n = 1000
    for i in range(n):
        vals = {"a": rng.random(4)}
        if i >= 7:
            vals["late"] = rng.random(4)          # rows of this layer start at an offset
        if i % 3 == 0:
            vals["third"] = rng.random(4)         # a layer with gaps
        if i == 1:
            vals["once"] = rng.random(4)          # at an odd index: dropped by the first thinning
        if i % 7 == 5:
            vals["sevens"] = rng.random(4)        # often only at an off-grid newest event
        stride = h.stride("spectrum")
        version = h.version
        h.record("spectrum", 10 * i, 0.5 * i, vals)
        call = brute.record(10 * i, 0.5 * i, vals)
        if call is not None:
            expected_calls.append(("spectrum", *call))
        if h.stride("spectrum") != stride:
            assert h.version == version + 2       # the event and the thinning
        else:
            assert h.version == version + 1
        assert_same(h, "spectrum", brute.events)
        assert h.stride("spectrum") == brute.stride
        # evenly spaced: every kept event but the newest is on the grid, and none on it is missing
        assert [e[0] for e in brute.events] == on_grid(i + 1, brute.stride)
        assert h.latest("spectrum", "a")[0] == 10 * i
    assert brute.stride >= 16                     # repeated thinning was exercised
    # each value is 32 bytes of 1000 -> between 11 and 15 events fit; the stride stays near n / that
    assert brute.stride <= 2 ** int(np.ceil(np.log2(n / 8)))
    assert calls == expected_calls
    assert [c[1] for c in calls] == [2 ** k for k in range(1, len(calls) + 1)]   # one per doubling
    assert "once" not in h.layers("spectrum")
    with pytest.raises(KeyError):
        h.get("spectrum", "once")
    assert h.steps("spectrum")[-1] == 10 * (n - 1)   # the newest is always kept


def test_long_run_keeps_an_exact_grid_and_a_small_stride():
    # 3000 scalar events, 50 fit: the kept events are 0, s, 2s, ... plus the newest, with the
    # smallest power of two s that fits (the stride never grows past what the cap needs)
    capacity, n = 50, 3000
    calls = []
    h = History(max_bytes=8 * capacity, on_thin=lambda *args: calls.append(args))
    for i in range(n):
        h.record("rwc", 10 * i + 5, float(i), {"a": float(i)})
        stride = h.stride("rwc")
        want = next(s for s in (2 ** k for k in range(20)) if len(on_grid(i + 1, s)) <= capacity)
        assert stride == want
        steps, values = h.get("rwc", "a")
        assert ((steps - 5) // 10).tolist() == on_grid(i + 1, stride)
        assert values.tolist() == ((steps - 5) // 10).astype(float).tolist()
        assert h.latest("rwc", "a") == (10 * i + 5, i)
    assert stride == 64 <= 2 ** int(np.ceil(np.log2(n / (capacity - 2))))
    # one notice per doubling, not one every capacity / 2 samples
    assert [c[:2] for c in calls] == [("rwc", 2 ** k) for k in range(1, 7)]
    assert all(kept <= capacity for _, _, kept in calls)
    assert np.diff(h.steps("rwc")[:-1]).tolist() == [10 * stride] * (len(h.steps("rwc")) - 2)


def test_thinning_keeps_the_grid_and_replaces_an_off_grid_newest_explicitly():
    calls = []
    h = History(max_bytes=64, on_thin=lambda *args: calls.append(args))   # 8 scalars fit
    for step in range(1, 9):
        h.record("rwc", step, float(step), {"a": float(step)})
    assert h.stride("rwc") == 1 and calls == []
    h.record("rwc", 9, 9.0, {"a": 9.0})           # event 8: over the cap
    assert h.get("rwc", "a")[0].tolist() == [1, 3, 5, 7, 9]
    assert h.get("rwc", "a")[1].tolist() == [1.0, 3.0, 5.0, 7.0, 9.0]
    assert h.times("rwc", "a").tolist() == [1.0, 3.0, 5.0, 7.0, 9.0]
    assert h.stride("rwc") == 2 and calls == [("rwc", 2, 5)]
    h.record("rwc", 10, 10.0, {"a": 10.0})        # event 9: off the grid, kept as the newest
    assert h.steps("rwc").tolist() == [1, 3, 5, 7, 9, 10] and h.latest("rwc", "a") == (10, 10.0)
    h.record("rwc", 11, 11.0, {"a": 11.0})        # event 10 replaces it
    assert h.steps("rwc").tolist() == [1, 3, 5, 7, 9, 11] and h.latest("rwc", "a") == (11, 11.0)
    for step in range(12, 16):
        h.record("rwc", step, float(step), {"a": float(step)})
        assert h.latest("rwc", "a") == (step, float(step))
    assert h.steps("rwc").tolist() == [1, 3, 5, 7, 9, 11, 13, 15] and calls == [("rwc", 2, 5)]
    h.record("rwc", 16, 16.0, {"a": 16.0})        # event 15: over the cap again
    assert h.steps("rwc").tolist() == [1, 5, 9, 13, 16]
    assert h.stride("rwc") == 4 and calls[-1] == ("rwc", 4, 5) and len(calls) == 2
    layers, steps, matrix = h.matrix("rwc")
    assert layers == ["a"] and steps.tolist() == [1, 5, 9, 13, 16]
    assert matrix.tolist() == [[1.0, 5.0, 9.0, 13.0, 16.0]]


def test_a_layer_only_at_a_replaced_event_disappears_and_others_keep_their_order():
    h = History(max_bytes=64)
    for step in range(1, 10):
        h.record("rwc", step, float(step), {"a": float(step)})
    assert h.stride("rwc") == 2 and h.steps("rwc").tolist() == [1, 3, 5, 7, 9]
    h.record("rwc", 10, 10.0, {"a": 10.0, "x": -10.0})    # event 9, off the grid
    assert h.layers("rwc") == ["a", "x"] and h.latest("rwc", "x") == (10, -10.0)
    version = h.version
    h.record("rwc", 11, 11.0, {"a": 11.0})                # replaces it: x had no other value
    assert h.version == version + 1
    assert h.layers("rwc") == ["a"] and h.steps("rwc").tolist() == [1, 3, 5, 7, 9, 11]
    with pytest.raises(KeyError, match="'x'"):
        h.latest("rwc", "x")
    h.record("rwc", 12, 12.0, {"y": 12.0})                # event 11, off the grid, without a
    assert h.layers("rwc") == ["a", "y"]
    assert h.latest("rwc", "a") == (11, 11.0) and h.latest("rwc", "y") == (12, 12.0)
    h.record("rwc", 13, 13.0, {"y": 13.0, "a": 13.0})     # replaces it; y stays, in its place
    assert h.layers("rwc") == ["a", "y"]
    assert h.get("rwc", "y")[0].tolist() == [13] and h.get("rwc", "a")[0].tolist() == [1, 3, 5, 7, 9, 11, 13]
    layers, steps, matrix = h.matrix("rwc")
    assert steps.tolist() == [1, 3, 5, 7, 9, 11, 13]
    np.testing.assert_array_equal(matrix[1], [np.nan] * 6 + [13.0])


def test_scalar_analysis_with_a_cap_keeps_its_matrix_consistent():
    h = History(max_bytes=200)
    brute = BruteHistory(200)
    for i in range(100):
        vals = {"a": i * 1.0}
        if i % 2:
            vals["odd"] = -i * 1.0
        h.record("rwc", i, 100.0 + i, vals)
        brute.record(i, 100.0 + i, vals)
    assert_same(h, "rwc", brute.events)
    layers, steps, matrix = h.matrix("rwc")
    for row, layer in zip(matrix, layers):
        want = [vals.get(layer, np.nan) for _, _, _, vals in brute.events]
        np.testing.assert_array_equal(row, want)
    assert h.stride("rwc") == brute.stride > 1


def test_thinning_releases_memory():
    h = History(max_bytes=2**20)
    value = np.ones((100, 100))                   # 80 kB: 13 fit in 1 MiB
    backing = []
    for step in range(200):
        h.record("radiograph", step, 0.0, {"m": value * step})
        table = h._tables["radiograph"]
        stored = sum(layer.values.view().nbytes for layer in table.layers.values())
        backing.append(sum(layer.values._data.nbytes for layer in table.layers.values()))
        assert stored <= 2**20
        assert backing[-1] <= 1.5 * 2**20 + value.nbytes   # growing by half: about 1.5 x the cap
    assert h.count("radiograph") <= 13
    assert max(backing[:14]) > backing[13]        # the arrays themselves shrank at the first thinning
    steps, values = h.get("radiograph", "m")
    assert (values == steps[:, None, None]).all() and steps[-1] == 199


def test_cap_none_never_thins():
    calls = []
    h = History(max_bytes=None, on_thin=lambda *args: calls.append(args))
    for step in range(50):
        h.record("radiograph", step, 0.0, {"m": np.zeros((100, 100))})
    assert h.count("radiograph") == 50 and h.stride("radiograph") == 1 and calls == []
    assert History().max_bytes is None


def test_a_single_event_over_the_cap_is_kept_and_the_newest_never_dropped():
    calls = []
    h = History(max_bytes=10, on_thin=lambda *args: calls.append(args))
    h.record("radiograph", 1, 0.0, {"m": np.ones(100)})
    assert h.count("radiograph") == 1 and calls == [] and h.stride("radiograph") == 1
    h.record("radiograph", 2, 1.0, {"m": np.full(100, 2.0)})
    # two events that do not fit: the older goes (event 0 is on every grid), the stride stays
    assert calls == [("radiograph", 1, 1)] and h.stride("radiograph") == 1
    step, value = h.latest("radiograph", "m")
    assert step == 2 and (value == 2).all()
    assert h.get("radiograph", "m")[0].tolist() == [2]
    # the rule is by events: a newest event without values still pushes the older one out
    h.record("radiograph", 3, 2.0, {})
    assert h.steps("radiograph").tolist() == [3] and h.layers("radiograph") == []
    for step in range(4, 100):                    # one notice, and the stride does not run away
        h.record("radiograph", step, 0.0, {"m": np.full(100, float(step))})
        assert h.latest("radiograph", "m")[0] == step and h.count("radiograph") == 1
    assert h.stride("radiograph") == 1 and len(calls) == 1


def test_an_event_too_big_for_the_cap_thins_down_to_itself():
    calls = []
    h = History(max_bytes=80, on_thin=lambda *args: calls.append(args))   # 10 scalars fit
    brute, expected_calls = BruteHistory(80), []
    for step in range(30):
        vals = {"big": np.ones(20)} if step == 20 else {"a": float(step)}
        h.record("rwc", step, 0.0, vals)
        call = brute.record(step, 0.0, vals)
        assert_same(h, "rwc", brute.events)
        assert h.stride("rwc") == brute.stride
        if call is not None:
            expected_calls.append(("rwc", *call))
        assert calls == expected_calls
    assert h.steps("rwc")[-1] == 29 and "big" not in h.layers("rwc")
    # the big event left only itself, with a notice, and the stride as before: afterwards the
    # events are kept on that grid again
    assert calls[-1] == ("rwc", 4, 1) and h.stride("rwc") == 4
    assert h.steps("rwc").tolist() == [24, 28, 29]


def test_caps_are_per_analysis():
    h = History(max_bytes=80)
    for step in range(30):
        h.record("rwc", step, 0.0, {"a": 1.0})
        if step < 5:
            h.record("spectrum", step, 0.0, {"a": np.ones(2)})
    assert h.stride("rwc") > 1 and h.count("rwc") <= 10
    assert h.stride("spectrum") == 1 and h.steps("spectrum").tolist() == [0, 1, 2, 3, 4]
    assert h.stride("neuron_modes") == 1


def test_on_thin_is_called_outside_the_lock():
    seen = []

    def on_thin(analysis, stride, kept):
        free = h._lock.acquire(blocking=False)    # would be held if called under the lock
        if free:
            h._lock.release()
        seen.append((free, h.count(analysis) == kept))

    h = History(max_bytes=16, on_thin=on_thin)
    for step in range(5):
        h.record("rwc", step, 0.0, {"a": 1.0})
    assert seen and all(free and same for free, same in seen)


@pytest.mark.parametrize("bad", [-1, True, 1.5, "1"])
def test_bad_max_bytes_is_refused(bad):
    with pytest.raises(ValueError, match="max_bytes"):
        History(max_bytes=bad)
    with pytest.raises(TypeError, match="on_thin"):
        History(on_thin=3)


def test_concurrent_record_and_read_with_thinning():
    h = History(max_bytes=800)
    n = 3000
    errors, reads = [], []
    done = threading.Event()

    def writer():
        try:
            for i in range(n):
                if i % 100 == 0:
                    time.sleep(0.0005)               # let the reader in mid-stream
                h.record("rwc", i, float(i), {"a": float(i), **({"b": -float(i)} if i % 2 else {})})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    def reader():
        try:
            while not done.is_set():
                for layer in h.layers("rwc"):
                    try:
                        steps, values = h.get("rwc", layer)
                    except KeyError:              # thinned away between layers() and get()
                        continue
                    assert np.array_equal(values, steps * (1.0 if layer == "a" else -1.0))
                layers, steps, matrix = h.matrix("rwc")
                assert matrix.shape == (len(layers), len(steps))
                assert (np.diff(steps) > 0).all()
                reads.append(len(steps))
        except Exception as exc:
            errors.append(exc)

    _run_together(reader, writer)
    assert errors == []
    assert h.steps("rwc")[-1] == n - 1 and h.stride("rwc") > 1
    assert len(reads) > 1


# -- the monitor's history_mb ----------------------------------------------------------------------------

def small_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


@pytest.mark.parametrize("bad", [0, -1, True, "x", float("nan"), float("inf")])
def test_monitor_refuses_bad_history_mb(bad):
    with pytest.raises(ValueError, match="history_mb") as info:
        nm.Monitor(small_model(), analyses=("rwc",), history_mb=bad)
    assert repr(bad) in str(info.value)


def test_monitor_history_mb_sets_the_cap():
    assert nm.Monitor(small_model(), analyses=("rwc",)).history.max_bytes == 512 * 2**20
    assert nm.Monitor(small_model(), analyses=("rwc",), history_mb=None).history.max_bytes is None
    assert nm.Monitor(small_model(), analyses=("rwc",), history_mb=0.5).history.max_bytes == 2**19


def test_monitor_with_a_tiny_history_thins_rwc_and_leaves_a_notice():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 4, generator=g), torch.randint(0, 2, (16,), generator=g)
    monitors = []
    for history_mb in (100 / 2**20, None):        # 100 bytes: six events of two float64 values
        model = small_model()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        monitor = nm.Monitor(model, opt, every=1, analyses=("rwc",), history_mb=history_mb)
        for _ in range(20):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        monitor.detach()
        monitors.append(monitor)
    capped, full = monitors
    assert full.notices == [] and full.history.count("rwc") == 20
    # the 7th sample took it over: events 0, 2, 4, 6 of 7 stayed
    first = capped.notices[0]
    assert (first.step, first.analysis, first.layer) == (7, "rwc", None)
    assert first.message.endswith("samples thinned to one in 2 (4 kept)")
    assert "history of 'rwc' over" in first.message
    assert all(n.analysis == "rwc" for n in capped.notices) and len(capped.notices) >= 2
    assert capped.history.stride("rwc") > 2
    steps = capped.history.steps("rwc")
    assert 2 * 8 * len(steps) <= 100 and steps[-1] == 20
    for layer in ("0.weight", "2.weight"):        # thinning drops samples, never changes them
        kept_steps, kept = capped.history.get("rwc", layer)
        all_steps, values = full.history.get("rwc", layer)
        assert kept_steps.tolist() == steps.tolist()
        np.testing.assert_array_equal(kept, values[np.searchsorted(all_steps, kept_steps)])


def _run_together(*targets):
    """Run each target in its own thread, all at once; every thread must finish in 30 s."""
    threads = [threading.Thread(target=t) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)


def test_on_record_hands_over_every_event_outside_the_lock():
    seen = []

    def listener(analysis, step, time, values):
        free = h._lock.acquire(blocking=False)
        if free:
            h._lock.release()
        seen.append((analysis, step, time, {k: v.tolist() for k, v in values.items()}, free))

    h = History(max_bytes=64, on_record=listener)
    for step in range(1, 5):
        h.record("rwc", step, float(step), {"a": 0.5 * step})
    h.record("spectrum", 4, 4.0, {"a.weight": np.array([2.0, 1.0])})
    assert [s[:4] for s in seen] == [("rwc", s, float(s), {"a": 0.5 * s}) for s in range(1, 5)] + [
        ("spectrum", 4, 4.0, {"a.weight": [2.0, 1.0]})]
    assert all(s[4] for s in seen)
    with pytest.raises(TypeError, match="on_record must be callable"):
        History(on_record=3)


# -- extend: many events at once ----------------------------------------------------------------------

def _blocks(rng):
    """(analysis, steps, times, values) blocks: layers appearing late, leaving, coming back (gaps),
    arrays, integers and float32."""
    blocks, step = [], 0
    for k in range(12):
        count = int(rng.integers(1, 9))
        steps = np.arange(step, step + 10 * count, 10)
        step += 10 * count
        times = 1000.0 + 0.5 * steps
        values = {"a": rng.random(count)}
        if k >= 3:
            values["late"] = rng.random(count).astype(np.float32)     # float32 kept
        if k % 3 == 1:
            values["gaps"] = rng.random((count, 2))                   # comes and goes
        if k == 5:
            values["ints"] = rng.integers(0, 9, count)               # become float64
        blocks.append(("rwc" if k % 4 else "spectrum", steps, times, values))
    blocks.append(("rwc", np.array([step]), np.array([0.0]), {}))     # an event without values
    return blocks


def _same(h, g):
    assert h.version == g.version
    for analysis in ANALYSES:
        assert h.version_of(analysis) == g.version_of(analysis)
        assert h.layers(analysis) == g.layers(analysis)
        assert h.steps(analysis).tolist() == g.steps(analysis).tolist()
        assert h.count(analysis) == g.count(analysis) and h.stride(analysis) == g.stride(analysis)
        for layer in h.layers(analysis):
            (s1, v1), (s2, v2) = h.get(analysis, layer), g.get(analysis, layer)
            assert s1.tolist() == s2.tolist() and v1.dtype == v2.dtype
            np.testing.assert_array_equal(v1, v2)
            np.testing.assert_array_equal(h.times(analysis, layer), g.times(analysis, layer))
            step, value = h.latest(analysis, layer)
            assert step == g.latest(analysis, layer)[0]
            np.testing.assert_array_equal(value, g.latest(analysis, layer)[1])
        if analysis == "rwc" and h.layers(analysis):
            scalar = [layer for layer in h.layers(analysis) if h.get(analysis, layer)[1].ndim == 1]
            if len(scalar) == len(h.layers(analysis)):
                np.testing.assert_array_equal(h.matrix(analysis)[2], g.matrix(analysis)[2])


def _record_each(h, analysis, steps, times, values):
    for i in range(len(steps)):
        h.record(analysis, steps[i], times[i], {layer: v[i] for layer, v in values.items()})


@pytest.mark.parametrize("cap", [None, 600], ids=["unbounded", "thinning"])
def test_extend_is_the_loop_of_records(cap):
    rng = np.random.default_rng(5)
    thins = ([], [])
    seen = ([], [])
    h = History(max_bytes=cap, on_thin=lambda *a: thins[0].append(a))
    g = History(max_bytes=cap, on_thin=lambda *a: thins[1].append(a))
    for analysis, steps, times, values in _blocks(rng):
        version = h.version
        h.extend(analysis, steps, times, values)
        _record_each(g, analysis, steps, times, values)
        assert h.version >= version + len(steps)     # T more, plus one per thinning
        _same(h, g)
    assert thins[0] == thins[1]
    if cap is not None:
        assert thins[0] and h.stride("rwc") > 1       # the fallback thinned, as record does
    else:
        assert h.version == sum(len(b[1]) for b in _blocks(np.random.default_rng(5)))
    # on_record: once per event, with that event's values
    h = History(on_record=lambda *a: seen[0].append(a))
    g = History(on_record=lambda *a: seen[1].append(a))
    for analysis, steps, times, values in _blocks(np.random.default_rng(6)):
        h.extend(analysis, steps, times, values)
        _record_each(g, analysis, steps, times, values)
    assert len(seen[0]) == len(seen[1]) == h.count("rwc") + h.count("spectrum")
    for (a1, s1, t1, v1), (a2, s2, t2, v2) in zip(*seen):
        assert (a1, s1, t1) == (a2, s2, t2) and list(v1) == list(v2)
        for layer in v1:
            np.testing.assert_array_equal(v1[layer], v2[layer])
    _same(h, g)


def test_extend_checks_everything_before_recording_anything():
    h = History()
    h.extend("spectrum", [1, 2], [0.0, 1.0], {"a": np.ones((2, 3))})
    version = h.version
    bad = [
        ([3, 4], [2.0], {"a": np.ones((2, 3))}),                       # times of another length
        ([3, 4], [2.0, 3.0], {"a": np.ones((3, 3))}),                  # values of another length
        ([3, 4], [2.0, 3.0], {"b": np.ones((2, 3)), "a": np.ones((2, 4))}),   # a's shape changed
        ([3, 4], [2.0, 3.0], {"b": np.ones(())}),                      # no event axis
        ([[3, 4]], [[2.0, 3.0]], {}),                                  # steps not [T]
    ]
    for steps, times, values in bad:
        with pytest.raises(ValueError):
            h.extend("spectrum", steps, times, values)
    assert h.version == version and h.layers("spectrum") == ["a"]
    assert h.steps("spectrum").tolist() == [1, 2]
    h.extend("spectrum", [], [], {"a": np.ones((0, 3))})              # no events: no change
    assert h.version == version and h.count("spectrum") == 2
    with pytest.raises(ValueError, match="bogus"):
        h.extend("bogus", [1], [0.0], {})


def test_extend_under_concurrent_reads():
    h = History()
    errors, done = [], threading.Event()

    def writer():
        try:
            for k in range(300):
                steps = np.arange(10 * k, 10 * k + 10)
                values = {"a": steps.astype(float)}
                if k >= 150:
                    values["late"] = -steps.astype(float)
                h.extend("rwc", steps, steps * 0.5, values)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    def reader():
        try:
            while not done.is_set():
                layers, steps, matrix = h.matrix("rwc")
                assert len(steps) % 10 == 0                   # whole blocks only
                assert np.array_equal(steps, np.arange(len(steps)))
                for i, layer in enumerate(layers):
                    row = matrix[i][~np.isnan(matrix[i])]
                    assert np.array_equal(np.abs(row), h.get("rwc", layer)[0][: len(row)])
        except Exception as exc:
            errors.append(exc)

    _run_together(reader, writer)
    assert errors == [] and h.count("rwc") == 3000


# -- memory: values only, rows only for layers with gaps ---------------------------------------------

def _layer(h, analysis, name):
    return h._tables[analysis].layers[name]


def test_a_dense_layer_keeps_no_row_per_value():
    h = History()
    for i in range(1000):
        values = {"every": float(i)}
        if i >= 10:
            values["late"] = -float(i)                  # dense from its first value on
        if i < 500:
            values["leaves"] = 2.0 * i                  # dense while it lasts
        h.record("rwc", i, float(i), values)
    for name, first in (("every", 0), ("late", 10), ("leaves", 0)):
        layer = _layer(h, "rwc", name)
        assert layer.rows is None and layer.first == first
    # about 8 bytes per float64 value: spare room of at most half what is held
    every = _layer(h, "rwc", "every")
    assert every.values._data.nbytes <= 1.5 * 8 * 1000 + 8 * 16
    assert h.get("rwc", "late")[0].tolist() == list(range(10, 1000))
    assert h.times("rwc", "leaves").tolist() == [float(i) for i in range(500)]
    assert h.latest("rwc", "leaves") == (499, 998.0)
    layers, steps, matrix = h.matrix("rwc")
    assert layers == ["every", "leaves", "late"]
    assert np.isnan(matrix[2, :10]).all() and np.isnan(matrix[1, 500:]).all()
    np.testing.assert_array_equal(matrix[2, 10:], -np.arange(10.0, 1000.0))
    np.testing.assert_array_equal(matrix[1, :500], 2.0 * np.arange(500.0))


def test_a_layer_with_a_gap_stores_int32_rows_and_reads_back_right():
    h = History()
    for i in range(40):
        values = {"a": float(i)}
        if i < 10 or i >= 25:
            values["gap"] = 100.0 + i                   # absent at 10 .. 24, back at 25
        h.record("rwc", 10 * i, float(i), values)
    gap = _layer(h, "rwc", "gap")
    assert gap.rows is not None and gap.rows.view().dtype == np.int32
    expected = [i for i in range(40) if i < 10 or i >= 25]
    steps, values = h.get("rwc", "gap")
    assert steps.tolist() == [10 * i for i in expected]
    assert values.tolist() == [100.0 + i for i in expected]
    assert h.times("rwc", "gap").tolist() == [float(i) for i in expected]
    assert h.latest("rwc", "gap") == (390, 139.0)
    assert _layer(h, "rwc", "a").rows is None
    # a block appended after a gap, by extend
    h.extend("rwc", [400, 410], [40.0, 41.0], {"a": [40.0, 41.0]})
    h.extend("rwc", [420, 430], [42.0, 43.0], {"a": [42.0, 43.0], "gap": [142.0, 143.0]})
    assert h.get("rwc", "gap")[0].tolist()[-3:] == [390, 420, 430]
    assert h.get("rwc", "a")[0].tolist() == list(range(0, 440, 10))


def test_rows_widen_to_int64_past_two_billion():
    from nnmodes_widgets.runs.history import _Layer

    layer = _Layer(np.float64, (), first=2**31 - 3)
    layer.append(2**31 - 3, 1.0)
    layer.append(2**31 - 2, 2.0)                        # dense: no rows at all
    assert layer.rows is None and layer.last_row() == 2**31 - 2
    layer.append(2**31 + 5, 3.0)                        # a gap, past int32
    assert layer.rows.view().dtype == np.int64
    assert layer.rows.view().tolist() == [2**31 - 3, 2**31 - 2, 2**31 + 5]
    small = _Layer(np.float64, (), first=0)
    small.append(0, 1.0)
    small.append(2, 2.0)
    assert small.rows.view().dtype == np.int32
    small.extend(2**31, np.ones(2))                     # widened when the rows outgrow int32
    assert small.rows.view().dtype == np.int64 and small.last_row() == 2**31 + 1
    assert small.rows.view().tolist() == [0, 2, 2**31, 2**31 + 1]


def test_thinning_keeps_dense_layers_dense_and_can_make_gapped_ones_dense():
    cap = 800
    h, brute = History(max_bytes=cap), BruteHistory(cap)
    for i in range(400):
        vals = {"a": float(i)}
        if i >= 5:
            vals["late"] = -float(i)
        if i % 2 == 0:
            vals["even"] = 0.5 * i                      # gaps at every odd event
        h.record("rwc", i, float(i), vals)
        brute.record(i, float(i), vals)
        assert_same(h, "rwc", brute.events)
        assert _layer(h, "rwc", "a").rows is None
        assert i < 5 or _layer(h, "rwc", "late").rows is None
        if i == 2:
            assert _layer(h, "rwc", "even").rows is not None     # the gap at event 1
    # from stride 2 on, the odd events (the gaps) are off the grid: only the newest can be odd,
    # and even has a value at every kept event before it: consecutive rows again
    assert h.stride("rwc") > 2
    assert _layer(h, "rwc", "even").rows is None and _layer(h, "rwc", "even").first == 0
    h.record("rwc", 400, 400.0, {"a": 400.0, "even": 200.0})   # event 400: even, the newest
    brute.record(400, 400.0, {"a": 400.0, "even": 200.0})
    assert_same(h, "rwc", brute.events)
    assert _layer(h, "rwc", "even").rows is None
    layers, msteps, matrix = h.matrix("rwc")
    for row, layer in zip(matrix, layers):
        np.testing.assert_array_equal(row, [v.get(layer, np.nan) for _, _, _, v in brute.events])


def test_make_room_sizes_the_arrays_exactly():
    h = History()
    h._make_room("spectrum", 1000, {"a": 1000, "b": 400})
    h.extend("spectrum", np.arange(600), np.zeros(600), {"a": np.ones((600, 3))})
    h.extend("spectrum", np.arange(600, 1000), np.zeros(400), {"a": np.ones((400, 3)),
                                                                  "b": np.ones((400, 2))})
    table = h._tables["spectrum"]
    for growing in (table.steps, table.times, table.index, table.layers["a"].values,
                    table.layers["b"].values):
        assert len(growing._data) == growing.size          # no spare room, no regrowth
    assert table.layers["b"].rows is None and table.layers["b"].first == 600
    assert h.get("spectrum", "b")[0].tolist() == list(range(600, 1000))
    # growing past it, by half again (amortised), not by what is asked each time
    h._make_room("spectrum", 10, {"a": 10})
    assert len(table.layers["a"].values._data) == 1500
