"""Hostile run files (SPEC 14): the reader and the listing against byte flips, truncations and
crafted fields. Every case either opens or raises RunFileError, nothing else; opening it costs
memory bounded by its size (Python and NumPy by tracemalloc, SQLite by its own high-water mark);
and a listing of its folder lists it, readable or "unreadable" with the reason, beside a good run,
in strict JSON.

The bases are real runs: a finished one (a single file) and a live one's -wal and -shm copied
beside its file (as a killed writer leaves them)."""

import ctypes
import ctypes.util
import json
import shutil
import sqlite3
import tracemalloc
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnmodes_widgets.runs.history import ANALYSES
from nnmodes_widgets.runs.run_file import RunFileError
from nnmodes_widgets.runs.run_listing import list_runs
from nnmodes_widgets.runs.run_reader import open_run
from nnmodes_widgets.runs.run_state import MonitorError
from nnmodes_widgets.runs.run_writer import RunWriter

FUZZ = settings(deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
STEPS = 390                       # the newest step of the base runs


def _fill(writer: RunWriter) -> None:
    """RWC of three layers, spectra of two lengths (two layouts a record), float32 neuron modes,
    integer cluster labels, records whose values take no bytes (an event without values, an
    empty array), a note and an info update."""
    rng = np.random.default_rng(0)
    for i in range(40):
        step, when = 10 * i, 1.7e9 + i
        writer.record("rwc", step, when, {f"l{j}.weight": float(rng.random()) for j in range(3)})
        if i % 5 == 0:
            writer.record("spectrum", step, when, {"l0.weight": rng.random(16), "l1.weight": rng.random(7)})
            writer.record("neuron_modes", step, when, {"0": rng.random((3, 8)).astype(np.float32)})
            writer.record("rwc_clusters", step, when, {"l0.weight": np.int64(i % 3), "l1.weight": np.int64(1)})
            writer.record("radiograph", step, when, {})
            writer.record("phases", step, when, {"*": np.zeros(0)})
    writer.add_note("error", MonitorError(20, "spectrum", "l1.weight", "ValueError: boom", "Traceback..."))
    writer.update_info(stats={"slowdown": 0.03})


class _Bases(dict):
    def __repr__(self) -> str:        # (Hypothesis prints a failing case's arguments)
        return "<the base runs' bytes>"


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, dict[str, bytes]]:
    """name -> {side file suffix ("" for the file itself) -> bytes}."""
    folder = tmp_path_factory.mktemp("bases")
    with RunWriter(folder / "finished.nnmodes", {"model": "MLP", "settings": {"every": 10}}) as writer:
        _fill(writer)
    live = RunWriter(folder / "live.nnmodes", {"model": "MLP"})
    try:
        _fill(live)
        assert live.flush(10)
        wal = {s: Path(f"{live.path}{s}").read_bytes() for s in ("", "-wal", "-shm")}
    finally:
        live.close()
    assert len(wal["-wal"]) > 1000       # the records are in the -wal, not yet in the file
    return _Bases(finished={"": (folder / "finished.nnmodes").read_bytes()}, wal=wal)


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("good") / "good.nnmodes"
    with RunWriter(path, {"model": "MLP"}) as writer:
        _fill(writer)
    return path


class _SQLiteMemory:
    """SQLite's own allocations (outside tracemalloc's sight): its high-water mark, where the
    library that Python's sqlite3 uses can be reached (a shared libsqlite3)."""

    def __init__(self):
        name = ctypes.util.find_library("sqlite3")
        self._lib = ctypes.CDLL(name) if name else None
        if self._lib is not None:
            self._lib.sqlite3_memory_highwater.restype = ctypes.c_int64
            self._lib.sqlite3_memory_used.restype = ctypes.c_int64

    def reset(self) -> int:
        return self._lib.sqlite3_memory_highwater(1) if self._lib else 0

    def peak(self) -> int:
        return self._lib.sqlite3_memory_highwater(0) if self._lib else 0


_sqlite_memory = _SQLiteMemory()


@contextmanager
def _peak_memory():
    """Yields a dict whose "bytes" is, on exit, the peak memory allocated within: Python's and
    NumPy's (tracemalloc) plus SQLite's."""
    out = {}
    _sqlite_memory.reset()
    base = _sqlite_memory.peak()
    tracemalloc.start()
    try:
        yield out
    finally:
        python = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        out["bytes"] = python + max(0, _sqlite_memory.peak() - base)


def _use(run) -> None:
    """What a dashboard reads of a run."""
    json.dumps(run.info, default=repr)
    run.stats()
    run.summary()
    run.notices
    run.errors
    run.layers
    run.probe_facts
    for analysis in ANALYSES:
        for layer in run.history.layers(analysis):
            run.history.get(analysis, layer)
            run.history.times(analysis, layer)


def _attempt(tmp_path: Path, good: Path, files: dict[str, bytes]) -> None:
    """``files`` as ``case.nnmodes`` (and side files) beside a good run in a fresh folder: opening
    it opens or raises RunFileError, within bounded memory; listing the folder lists both."""
    folder = tmp_path / uuid.uuid4().hex
    folder.mkdir()
    try:
        shutil.copy(good, folder / "good.nnmodes")
        for suffix, data in files.items():
            (folder / f"case.nnmodes{suffix}").write_bytes(data)
        size = sum(len(data) for data in files.values())
        with _peak_memory() as peak:
            try:
                run = open_run(folder / "case.nnmodes")
            except RunFileError as exc:
                assert exc.reason and str(folder / "case.nnmodes") in str(exc)
                # (SQLite's busy loop ran out: seconds spent on a -wal it would not read)
                assert "locking protocol" not in exc.reason
            else:
                with run:
                    _use(run)
        assert peak["bytes"] <= 16 * size + (1 << 20), (peak["bytes"], size)

        listing = {entry["name"]: entry for entry in list_runs(folder)}
        assert set(listing) == {"good", "case"}
        assert listing["good"]["status"] == "finished" and listing["good"]["steps"] == STEPS
        case = listing["case"]
        if case["status"] == "unreadable":
            assert isinstance(case["error"], str) and case["error"]
        else:
            assert case["error"] is None and case["status"] in ("running", "finished", "interrupted")
        json.loads(json.dumps(list(listing.values()), allow_nan=False))
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            ["good.nnmodes"] + [f"case.nnmodes{s}" for s in files])     # no side file made
    finally:
        shutil.rmtree(folder)


def test_the_bases_open_and_list(bases, good, tmp_path):
    for files in bases.values():
        _attempt(tmp_path, good, files)
        folder = tmp_path / "base"
        folder.mkdir()
        for suffix, data in files.items():
            (folder / f"run.nnmodes{suffix}").write_bytes(data)
        with open_run(folder / "run.nnmodes") as run:
            assert run.history.count("rwc") == 40 and run.current_step == STEPS
            assert run.history.count("spectrum") == 8
        shutil.rmtree(folder)


# -- byte flips and truncations --------------------------------------------------------------------------

_BASE_FILES = [("finished", ""), ("wal", ""), ("wal", "-wal")]


@st.composite
def _positions(draw, length: int):
    """Offsets into a file, most of them where SQLite keeps its structure: the header, the start
    of each page (page headers, cell pointers), a WAL's frame headers."""
    page = 2048
    return draw(st.one_of(
        st.integers(0, 99),
        st.integers(0, length - 1),
        st.builds(lambda p, k: min(length - 1, p * page + k), st.integers(0, length // page), st.integers(0, 40)),
        st.builds(lambda f, k: min(length - 1, 32 + f * (24 + page) + k), st.integers(0, length // page), st.integers(0, 23)),
    ))


@settings(FUZZ, max_examples=250)
@given(data=st.data(), base=st.sampled_from(_BASE_FILES))
def test_byte_flips(bases, good, tmp_path, data, base):
    name, suffix = base
    files = dict(bases[name])
    flipped = bytearray(files[suffix])
    for _ in range(data.draw(st.integers(1, 6))):
        flipped[data.draw(_positions(len(flipped)))] ^= data.draw(st.integers(1, 255))
    files[suffix] = bytes(flipped)
    _attempt(tmp_path, good, files)


@settings(FUZZ, max_examples=150)
@given(data=st.data(), base=st.sampled_from(_BASE_FILES))
def test_truncations(bases, good, tmp_path, data, base):
    name, suffix = base
    files = dict(bases[name])
    files[suffix] = files[suffix][: data.draw(_positions(len(files[suffix]) + 1))]
    _attempt(tmp_path, good, files)


# -- crafted fields ---------------------------------------------------------------------------------------

def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


_TEXTS = st.one_of(
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "9" * 400, "1" * 5000,
                     '"running"', '"finished"', "null", "true", "{}", "[]", '""', "-1", "0",
                     "2147483648", "9223372036854775807", "1e300", "{", "[1, 2", "\"\\ud800\""]),
    st.one_of(st.sampled_from([2_000, 100_000]), st.integers(1, 200_000)).map(_nested),
    st.integers(0, 2 ** 70).map(str),
    st.text(max_size=30).map(json.dumps),
)
# SQL expressions of values of every storage class, and of the wrong one
_VALUES = st.one_of(
    _TEXTS.map(lambda t: ("?", t)),
    st.sampled_from([("CAST(x'ff41' AS TEXT)", None), ("x'00ff'", None), ("NULL", None),
                     ("zeroblob(?)", 10 ** 6), ("1e308", None), ("-0.5", None)]),
    st.integers(-(2 ** 63), 2 ** 63 - 1).map(lambda i: ("?", i)),
)
_INTEGERS = st.one_of(st.sampled_from([0, 1, -1, 2 ** 31, 2 ** 32 + 7, 2 ** 40, 2 ** 62, 2 ** 63 - 1,
                                       -(2 ** 63)]),
                      st.integers(-5, 100), st.integers(-(2 ** 63), 2 ** 63 - 1))
_BLOBS = st.one_of(st.sampled_from([b"", b"\x00" * 7, b"\x00" * 8, b"\xff" * 16]),
                   st.binary(max_size=64), st.integers(0, 4096).map(lambda n: bytes(n)))
_LAYOUT_TEXTS = {
    "dtype": st.sampled_from([">f4", "<f8", "<f2", "f4", "=f4", "|f4", "<U4", "O", "|V8", "<M8[s]",
                              "<f4 ", "", "<i8", "|b1", "<c8", "float32", "<f4\x00"]),
    "shape": st.one_of(st.sampled_from(["[]", "[0]", "[-1]", "[2147483648]", "[1.5]", "[[1]]",
                                        "[true]", "{}", '"x"', "[4, 4, 4]", "[0, 2147483647]",
                                        "[65536, 65536, 65536]", "[1e3]"]),
                       st.lists(st.integers(0, 40), max_size=70).map(json.dumps)),
    "layers": st.one_of(st.sampled_from(['[]', '[1]', '["a", "a"]', '[null]', '"a"', '{"a": 1}']),
                        st.integers(0, 50_000).map(lambda n: json.dumps([f"l{i}" for i in range(n)]))),
    "ranks": st.one_of(st.sampled_from(['[]', '[0]', '[0, 1, 2]', '["a"]', '[1e400]', '[true]']),
                       st.lists(st.integers(-(2 ** 70), 2 ** 70), max_size=5).map(json.dumps)),
    "analysis": st.sampled_from(["rwc", "spectrum", "future_analysis", "x" * 10_000, ""]),
}
_ROWS = st.one_of(st.none(), st.integers(0, 30))      # a row (modulo their number), or all of them
_META_KEYS = ["model", "started", "updated", "heartbeat", "status", "last_step", "settings", "pid",
              "pid_started", "host", "boot_id", "layers", "probe_facts", "stats", "nonfinite",
              "every", "budget", "rwc_kind"]

# (table, column, which row: a meta key, a row number or None for all, value)
_INFO_FIELDS = st.one_of(
    st.tuples(st.just("meta"), st.just("value"), st.sampled_from(_META_KEYS), _VALUES),
    st.tuples(st.just("meta"), st.just("key"), st.sampled_from(_META_KEYS), _VALUES),
    st.tuples(st.just("notes"), st.sampled_from(["kind", "step", "analysis", "layer", "message",
                                                 "traceback"]), _ROWS, _VALUES),
)
_SAMPLE_FIELDS = st.one_of(
    st.tuples(st.just("layouts"), st.sampled_from(sorted(_LAYOUT_TEXTS)), _ROWS, st.data()),
    st.tuples(st.just("samples"), st.sampled_from(["count", "event", "step", "stride", "layout"]),
              _ROWS, _INTEGERS.map(lambda i: ("?", i))),
    st.tuples(st.just("samples"), st.sampled_from(["count", "events", "steps", "times", "data"]),
              _ROWS, st.one_of(_BLOBS.map(lambda b: ("?", b)), _VALUES)),
)


def _apply(db: sqlite3.Connection, mutation) -> None:
    table, column, which, value = mutation
    if table == "layouts":
        value = ("?", value.draw(_LAYOUT_TEXTS[column]))
    sql, arg = value
    args = [] if arg is None and "?" not in sql else [arg]
    if table == "meta":
        where, key = "key = ?", [which]
    elif which is None:
        where, key = "1", []
    else:
        where = f"id = (SELECT id FROM {table} ORDER BY id LIMIT 1 OFFSET ? % (SELECT count(*) FROM {table}))"
        key = [which]
    try:
        db.execute(f"UPDATE {table} SET {column} = {sql} WHERE {where}", args + key)
    except sqlite3.IntegrityError:      # NULL in a NOT NULL column, a key twice: not this case
        pass


def _craft(tmp_path: Path, base: bytes, mutations) -> bytes:
    path = tmp_path / f"{uuid.uuid4().hex}.db"
    path.write_bytes(base)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        for mutation in mutations:
            _apply(db, mutation)
    finally:
        db.close()
    data = path.read_bytes()
    path.unlink()
    return data


@settings(FUZZ, max_examples=120)
@given(mutations=st.lists(_INFO_FIELDS, min_size=1, max_size=3))
def test_crafted_info(bases, good, tmp_path, mutations):
    _attempt(tmp_path, good, {"": _craft(tmp_path, bases["finished"][""], mutations)})


@settings(FUZZ, max_examples=200)
@given(mutations=st.lists(_SAMPLE_FIELDS, min_size=1, max_size=2))
def test_crafted_samples(bases, good, tmp_path, mutations):
    _attempt(tmp_path, good, {"": _craft(tmp_path, bases["finished"][""], mutations)})


# -- the cases of the issue, by name ----------------------------------------------------------------------


def _crafted(tmp_path, good_base: bytes, sql: str, *args) -> Path:
    path = tmp_path / "crafted.nnmodes"
    path.write_bytes(good_base)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(sql, args)
    db.close()
    return path


@pytest.mark.parametrize("sql, args, reason", [
    # a count that lies: 2**40 records claimed by a row of a few hundred bytes (NULL steps: once
    # 1.5 GB of np.arange before anything noticed)
    ("UPDATE samples SET count = ?, steps = NULL", (2 ** 40,), "records but"),
    # deeply nested JSON in the info (once a RecursionError out of list_runs)
    ("UPDATE meta SET value = ? WHERE key = 'model'", (_nested(100_000),), "nested too deeply"),
    # a valid dtype that is not the one written
    ("UPDATE layouts SET dtype = '>f4' WHERE dtype = '<f4'", (), "malformed layout"),
    ("UPDATE layouts SET dtype = '<f8' WHERE dtype = '<f4'", (), "malformed layout"),
    ("UPDATE layouts SET dtype = '<i8' WHERE dtype = '<f4'", (), "records of"),
    # text that is not UTF-8 (once a UnicodeDecodeError)
    ("UPDATE meta SET value = CAST(x'22ff22' AS TEXT) WHERE key = 'model'", (), "UTF-8"),
    # numbers beyond int64 arithmetic (once an OverflowError)
    ("UPDATE samples SET step = ?, stride = ?", (2 ** 62, 2 ** 62), "out of range"),
    ("UPDATE layouts SET shape = ?", (json.dumps([2 ** 31 - 1] * 3),), "malformed layout|bytes a record"),
])
def test_named_cases_are_run_file_errors_within_bounded_memory(bases, tmp_path, sql, args, reason):
    path = _crafted(tmp_path, bases["finished"][""], sql, *args)
    with _peak_memory() as peak:
        with pytest.raises(RunFileError, match=reason) as info:
            open_run(path)
    assert peak["bytes"] <= 16 * path.stat().st_size + (1 << 20)
    assert info.value.path == str(path) and info.value.reason in str(info.value)


def test_non_finite_info_reaches_the_listing_as_nulls(bases, tmp_path):
    path = tmp_path / "nan.nnmodes"
    path.write_bytes(bases["finished"][""])
    db = sqlite3.connect(path, isolation_level=None)
    for key, value in (("started", "NaN"), ("updated", "Infinity"), ("heartbeat", "-Infinity"),
                       ("last_step", "1e999"), ("model", "NaN")):
        db.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
    db.close()
    (entry,) = list_runs(tmp_path)
    assert entry["status"] == "finished" and entry["error"] is None
    assert entry["started"] is None and entry["updated"] is None
    assert entry["steps"] == 0 and entry["model"] is None
    json.dumps(entry, allow_nan=False)
