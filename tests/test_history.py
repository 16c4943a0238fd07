"""History (SPEC 5): full-resolution record of sampled values, per analysis and layer."""

import threading
import time

import numpy as np
import pytest

from nnmodes_widgets.history import ANALYSES, History


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

    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
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


def test_count_is_the_number_of_events():
    h = History()
    assert h.count("rwc") == 0
    for step in range(1, 40):
        h.record("rwc", step, float(step), {"a": 1.0} if step % 2 else {"b": 2.0})
    assert h.count("rwc") == 39 == len(h.steps("rwc"))
