"""The run store (SPEC 11): one SQLite file per run, written off the training thread, read by any
number of readers, also while it is being written."""

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from nnmodes_widgets.runs import run_file, run_reader
from nnmodes_widgets.runs.history import ANALYSES, History
from nnmodes_widgets.runs.run_state import MonitorError
from nnmodes_widgets.runs.run_view import ProbeFacts, RunView
from nnmodes_widgets.runs.run_file import RunFileError
from nnmodes_widgets.runs.run_reader import list_runs, open_run
from nnmodes_widgets.runs.run_writer import RunWriter

ROOT = Path(__file__).resolve().parents[1]
INFO = {"model": "MLP", "parameters": {"0.weight": [8, 4], "2.weight": [3, 8]},
        "settings": {"every": 5, "budget": 0.1, "rwc_kind": "l2", "analyses": ["rwc", "spectrum"]},
        "layers": ["0", "2"],
        "probe_facts": {"labelled": True, "input_shape": [64, 1, 4, 4], "floating": True}}


def digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def record_both(history: History, writer: RunWriter, analysis, step, when, values):
    history.record(analysis, step, when, values)
    writer.record(analysis, step, when, values)


def assert_same_history(stored: History, original: History):
    """Equal up to float32 rounding of floating values; steps and times exact; one event per
    original record; layers in the same order."""
    for analysis in ANALYSES:
        assert stored.layers(analysis) == original.layers(analysis), analysis
        np.testing.assert_array_equal(stored.steps(analysis), original.steps(analysis))
        assert stored.count(analysis) == original.count(analysis), analysis
        for layer in original.layers(analysis):
            steps, values = original.get(analysis, layer)
            got_steps, got = stored.get(analysis, layer)
            np.testing.assert_array_equal(got_steps, steps)
            np.testing.assert_array_equal(stored.times(analysis, layer), original.times(analysis, layer))
            assert got.shape == values.shape
            np.testing.assert_array_equal(got, values.astype(np.float32).astype(values.dtype))


def fill(history, writer, events=60):
    rng = np.random.default_rng(0)
    t0 = 1.7e9 + 0.123456789
    for i in range(events):
        step, when = 10 * (i + 1), t0 + 0.37 * i
        rwc = {f"layer{j}.weight": float(rng.random()) for j in range(4)}
        if i >= 20:
            rwc["late.weight"] = float(rng.random()) * 1e-3        # added mid-run
        if i >= 40:
            del rwc["layer1.weight"]                                # removed mid-run
        if i == 30:
            rwc["layer0.weight"] = float("nan")
        record_both(history, writer, "rwc", step, when, rwc)
        if i % 5 == 0:
            # spectra of different lengths in one record: several layouts, one event
            spectra = {"layer0.weight": np.sort(rng.random(16))[::-1].copy(),
                       "layer1.weight": np.sort(rng.random(7))[::-1].copy(),
                       "layer2.weight": np.sort(rng.random(16))[::-1].copy()}
            record_both(history, writer, "spectrum", step, when + 0.01, spectra)
            record_both(history, writer, "stable_rank", step, when + 0.01,
                        {k: float(v.sum()) for k, v in spectra.items()})
            record_both(history, writer, "neuron_modes", step, when + 0.02,
                        {"0": rng.random((3, 8)), "2": rng.random((3, 3)).astype(np.float32)})
            record_both(history, writer, "rwc_clusters", step, when + 0.03,
                        {"layer0.weight": np.int64(i % 3), "layer2.weight": np.int64(1)})
    # two records with the same step and time stay two events
    record_both(history, writer, "power_law", 999, t0, {"a": np.arange(3.0)})
    record_both(history, writer, "power_law", 999, t0, {"a": np.arange(3.0) + 1, "b": np.ones(2)})
    record_both(history, writer, "radiograph", 1000, t0, {})        # an event without values


def test_round_trip(tmp_path):
    path = tmp_path / "runs" / "a.nnmodes"                          # parent folders are made
    original = History()
    with RunWriter(path, INFO) as writer:
        fill(original, writer)
        writer.add_note("error", MonitorError(20, "spectrum", "layer1.weight", "ValueError: boom",
                                              "Traceback..."))
        writer.add_note("notice", MonitorError(30, "rwc", "late.weight", "parameter added"))
        writer.update_info(stats={"slowdown": 0.031, "dropped": 2}, nonfinite={"layer0.weight": 310})
    before = digest(path)
    run = open_run(path)
    assert isinstance(run, RunView)
    assert_same_history(run.history, original)
    assert run.history.max_bytes is None
    # the values a reopened run holds are the float32-rounded ones
    _, values = run.history.get("rwc", "late.weight")
    assert values.dtype == np.float32
    info = run.info
    assert info["status"] == "finished" and run.detached
    assert info["model"] == "MLP" and info["parameters"]["0.weight"] == [8, 4]
    assert info["pid"] == os.getpid() and info["host"] and info["started"] <= info["heartbeat"]
    assert info["last_step"] == 1000
    assert (run.every, run.budget, run.rwc_kind) == (5, 0.1, "l2")
    assert run.layers == ["0", "2"]
    assert run.probe_facts == ProbeFacts(labelled=True, input_shape=(64, 1, 4, 4), floating=True)
    assert [str(e) for e in run.errors] == ["step 20: spectrum [layer1.weight]: ValueError: boom"]
    assert run.errors[0].traceback == "Traceback..."
    assert [n.message for n in run.notices] == ["parameter added"]
    stats = run.stats()
    assert stats["step"] == 1000 and stats["samples"] == 60 and stats["errors"] == 1
    assert stats["slowdown"] == 0.031 and stats["dropped"] == 2 and np.isnan(stats["own_share"])
    assert stats["nonfinite"] == ["layer0.weight"] and stats["detached"] is True
    assert stats["steps_per_second"] == pytest.approx(10 / 0.37)
    assert "finished" in run.summary() and "step 1000" in run.summary()
    # a viewer's fault is kept with the errors, never written
    run.report("trend", RuntimeError("panel broke"))
    assert str(run.errors[-1]).endswith("trend: RuntimeError: panel broke")
    assert not run.poll()
    run.close()
    assert digest(path) == before
    # a cleanly closed run is one self-contained file
    assert sorted(os.listdir(path.parent)) == ["a.nnmodes"]


def test_bad_records_are_noted_not_raised(tmp_path):
    path = tmp_path / "b.nnmodes"
    with RunWriter(path, {}) as writer:
        writer.record("spectrum", 1, 1.0, {"a": np.ones(4)})
        writer.record("spectrum", 2, 2.0, {"a": np.ones(5)})             # shape changed
        writer.record("spectrum", 3, 3.0, {"a": np.ones(4), "b": "text"})
        writer.record("spectrum", 4, 4.0, {"a": np.zeros(4)})
        with pytest.raises(ValueError, match="unknown analysis"):
            writer.record("nope", 5, 5.0, {"a": 1.0})
        with pytest.raises(ValueError, match="kept by the store"):
            writer.update_info(status="finished")
    run = open_run(path)
    assert run.history.steps("spectrum").tolist() == [1, 4]
    assert [e.step for e in run.errors] == [2, 3]
    assert all(e.message.startswith("not stored:") for e in run.errors)


def test_a_reader_tails_a_run_being_written(tmp_path):
    path = tmp_path / "tail.nnmodes"
    writer = RunWriter(path, {"model": "MLP"}, commit_every=0.1)
    try:
        for step in range(1, 6):
            writer.record("rwc", step, 100.0 + step, {"a": step / 10})
        assert writer.flush(5)
        run = open_run(path)
        assert run.info["status"] == "running" and not run.detached
        assert run.history.steps("rwc").tolist() == [1, 2, 3, 4, 5]
        assert not run.poll()                                   # nothing new yet
        for step in range(6, 9):
            writer.record("rwc", step, 100.0 + step, {"a": step / 10, "b": 1.0})
        assert writer.flush(5)
        assert run.poll()
        assert run.history.steps("rwc").tolist() == list(range(1, 9))
        assert run.history.layers("rwc") == ["a", "b"]

        news = threading.Event()
        seen = []

        def listener(view):
            seen.append(view.history.count("rwc"))
            news.set()

        run.poll_interval = 0.05
        run.subscribe(listener)
        writer.record("rwc", 9, 109.0, {"a": 0.9})
        assert news.wait(5)
        assert seen[-1] == 9
        news.clear()
        writer.close()
        assert news.wait(5)                                     # the status change is news too
        assert run.detached and run.info["status"] == "finished"
        deadline = time.monotonic() + 5
        while run._poller is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert run._poller is None                              # polling stopped with the run
        run.unsubscribe(listener)
    finally:
        writer.close()


def test_rows_grow_across_commits_and_a_tailing_reader_reads_each_record_once(tmp_path):
    path = tmp_path / "grow.nnmodes"
    original = History()
    rng = np.random.default_rng(3)
    with RunWriter(path, {}, commit_every=60) as writer:
        run = None
        for commit in range(12):
            for k in range(7):
                step = 7 * commit + k
                record_both(original, writer, "rwc", 10 * step, 5.0 + step,
                            {f"w{j}": float(rng.random()) for j in range(50)})
                if k % 3 == 0:       # irregular steps and records that skip a layout
                    values = {"a": rng.random(900), "b": rng.random(40)}
                    if k == 3:
                        del values["a"]
                    record_both(original, writer, "spectrum", step * step, 5.5 + step, values)
            assert writer.flush(5)
            if run is None:
                run = open_run(path)
            else:
                assert run.poll()
            assert run.history.count("rwc") == original.count("rwc")
            assert run.history.count("spectrum") == original.count("spectrum")
        run.close()
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT count(*), count(steps), count(events) FROM samples").fetchone()
        freelist = db.execute("PRAGMA freelist_count").fetchone()[0]
    finally:
        db.close()
    assert rows[0] > 3 and rows[1] >= 1 and rows[2] >= 1     # full rows, irregular steps, gaps
    assert freelist == 0                                     # replaced rows' pages given back
    assert_same_history(open_run(path).history, original)


def test_a_reopened_history_is_loaded_in_blocks_into_arrays_of_exactly_its_size(tmp_path, monkeypatch):
    path = tmp_path / "blocks.nnmodes"
    original = History()
    with RunWriter(path, INFO) as writer:
        fill(original, writer, events=300)
    calls = []
    extend = History.extend

    def counting(self, analysis, steps, times, values):
        calls.append((analysis, len(steps)))
        return extend(self, analysis, steps, times, values)

    def refused(self, *args, **kwargs):
        raise AssertionError("the reader records event by event")

    monkeypatch.setattr(History, "extend", counting)
    monkeypatch.setattr(History, "record", refused)
    run = open_run(path)
    monkeypatch.undo()
    assert_same_history(run.history, original)
    # RWC: a block per run of records with the same layers (the layer set changes twice)
    assert sum(n for a, n in calls if a == "rwc") == 300
    assert len([a for a, _ in calls if a == "rwc"]) <= 4
    table = run.history._tables["rwc"]
    for name, layer in table.layers.items():
        assert layer.rows is None, name                # every RWC layer is dense
        assert len(layer.values._data) == layer.size   # no spare room
    assert len(table.steps._data) == table.steps.size == 300


def test_records_spanning_layouts_whose_rows_fill_at_different_paces(tmp_path, monkeypatch):
    # "big" fills a row every 8 records, "small" never: its one row is replaced by a longer copy
    # at every commit (the newest id), so the big rows read first wait for it; a record without
    # "big", a layer added late, irregular steps. Read in blocks of any size, also while written.
    monkeypatch.setattr(run_reader, "_FLUSH_BYTES", 1)
    path = tmp_path / "paces.nnmodes"
    original = History()
    rng = np.random.default_rng(11)
    run = None
    with RunWriter(path, {}, commit_every=60) as writer:
        for commit in range(9):
            for k in range(13):
                i = 13 * commit + k
                values = {"small": rng.random(3)}
                if i % 7:
                    values["big"] = rng.random(2000)
                if i >= 20:
                    values["mid"] = rng.random(50).astype(np.float32)
                record_both(original, writer, "spectrum", i * i, 0.25 * i, values)
                record_both(original, writer, "rwc", 10 * i, 0.25 * i,
                            {f"w{j}": float(rng.random()) for j in range(5 + (i >= 50))})
            assert writer.flush(5)
            if commit == 2:
                run = open_run(path)
            elif run is not None:
                run.poll()
                assert run.history.count("spectrum") == original.count("spectrum")
                assert_same_history(run.history, original)
    run.close()
    reopened = open_run(path)
    assert_same_history(reopened.history, original)
    assert reopened.history.count("spectrum") == 9 * 13       # one event per record


CHILD = textwrap.dedent("""
    import sys, time
    from nnmodes_widgets.runs.run_writer import RunWriter
    writer = RunWriter(sys.argv[1], {"model": "Child"})
    out = open(sys.argv[2], "w", buffering=1)
    step = 0
    while True:
        step += 1
        now = time.time()
        writer.record("rwc", step, now, {"a": float(step), "b": 2.0 * step})
        out.write(f"{step} {now!r}\\n")
        time.sleep(0.002)
""")


def test_a_killed_writer_leaves_a_readable_run(tmp_path):
    path, log = tmp_path / "killed.nnmodes", tmp_path / "child.log"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(log)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not (log.exists() and log.stat().st_size) and time.monotonic() < deadline:
            assert child.poll() is None, "the writing child died"
            time.sleep(0.05)
        time.sleep(3)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    lines = [line.split() for line in log.read_text().splitlines() if line.endswith(tuple("0123456789"))]
    reported = [(int(s), float(t)) for s, t in lines]
    last_step, last_time = reported[-1]
    assert last_step > 100

    before = digest(path)
    run = open_run(path)                                       # heartbeat still young: running
    assert run.info["status"] == "running"
    run.close()
    time.sleep(0.6)
    run = open_run(path, stale_after=0.5)
    assert run.info["status"] == "interrupted" and run.detached
    steps, values = run.history.get("rwc", "a")
    assert steps.tolist() == list(range(1, len(steps) + 1))   # nothing lost in between
    np.testing.assert_array_equal(values, steps.astype(np.float32))
    newest = run.history.times("rwc", "a")[-1]
    assert newest >= last_time - 2.0, f"lost {last_time - newest:.2f} s of records"
    assert dict(reported)[int(steps[-1])] == newest
    assert run.stats()["step"] == steps[-1] <= last_step
    run.close()
    assert digest(path) == before                              # reading wrote nothing


@pytest.mark.parametrize("ending, status", [("pass", "finished"), ("raise SystemExit(0)", "finished"),
                                            ("raise RuntimeError('crash')", "interrupted")])
def test_a_script_that_ends_without_closing_keeps_every_record(tmp_path, ending, status):
    path = tmp_path / "script.nnmodes"
    code = textwrap.dedent(f"""
        import sys
        from nnmodes_widgets.runs.run_writer import RunWriter
        writer = RunWriter(sys.argv[1], {{}}, commit_every=60)
        for step in range(500):
            writer.record("rwc", step, float(step), {{"a": float(step)}})
        {ending}
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True, timeout=120)
    run = open_run(path)
    assert run.info["status"] == status
    assert run.history.steps("rwc").tolist() == list(range(500))


def test_a_write_error_stops_recording_quietly(tmp_path, small_disk):
    errors = []
    path = tmp_path / "full.nnmodes"
    writer = RunWriter(path, {"model": "MLP"}, on_error=errors.append, commit_every=0.1)
    writer.record("rwc", 1, 1.0, {"a": 0.5})
    assert writer.flush(5)
    for step in range(2, 40):
        writer.record("spectrum", step, float(step), {"a": np.ones(2048)})
    assert not writer.flush(5)
    assert len(errors) == 1 and isinstance(errors[0], sqlite3.Error)
    assert "full" in str(errors[0])
    writer.record("rwc", 50, 50.0, {"a": 0.1})                  # dropped, no exception
    writer.add_note("error", MonitorError(50, "rwc", None, "x"))
    writer.update_info(extra=1)
    writer.close()
    assert len(errors) == 1
    run = open_run(path)
    assert run.history.steps("rwc").tolist() == [1]
    assert run.history.count("spectrum") == 0
    assert run.info["status"] == "interrupted"
    assert "full" in run.info["write_error"]


def test_one_path_one_writer(tmp_path):
    path = tmp_path / "one.nnmodes"
    writer = RunWriter(path, {})
    try:
        with pytest.raises(RunFileError, match="being written by another live writer"):
            RunWriter(path, {})
    finally:
        writer.close()
    with pytest.raises(RunFileError, match="already holds a finished run"):
        RunWriter(path, {})
    junk = tmp_path / "notes.nnmodes"
    junk.write_text("my notes")
    with pytest.raises(RunFileError, match="not a run file: refusing to overwrite"):
        RunWriter(junk, {})
    assert junk.read_text() == "my notes"
    assert sorted(os.listdir(tmp_path)) == ["notes.nnmodes", "one.nnmodes"]

    # two writers racing for one new path: exactly one wins
    raced, results = tmp_path / "race.nnmodes", []
    barrier = threading.Barrier(4)

    def create():
        barrier.wait()
        try:
            results.append(RunWriter(raced, {}))
        except RunFileError as exc:
            results.append(exc)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if isinstance(r, RunWriter)]
    assert len(winners) == 1 and len(results) == 4
    winners[0].close()
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def finished_run(path, events=200) -> Path:
    with RunWriter(path, {"model": "MLP"}) as writer:
        for step in range(events):
            writer.record("rwc", step, float(step), {f"l{j}": float(step * j) for j in range(30)})
    return Path(path)


@pytest.mark.parametrize("case", ["missing", "folder", "empty", "text", "sqlite", "newer", "corrupt",
                                  "truncated"])
def test_bad_files_give_clear_errors_and_stay_unchanged(tmp_path, case):
    path = tmp_path / "x.nnmodes"
    if case == "folder":
        path.mkdir()
    elif case == "empty":
        path.touch()
    elif case == "text":
        path.write_text("hello, not a database\n" * 10)
    elif case == "sqlite":
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE t(x)")
        db.commit()
        db.close()
    elif case in ("newer", "corrupt", "truncated"):
        finished_run(path)
        if case == "newer":
            db = sqlite3.connect(path)
            db.execute("PRAGMA user_version = 2")
            db.close()
        elif case == "corrupt":
            data = bytearray(path.read_bytes())
            data[4096:] = np.random.default_rng(1).bytes(len(data) - 4096)
            path.write_bytes(bytes(data))
        else:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
    expected = {"missing": "no such file", "folder": "not a regular file",
                "empty": "not an SQLite database \\(the file is empty\\)",
                "text": "not an SQLite database",
                "sqlite": "an SQLite database but not a nnmodes_widgets run",
                "newer": "written by a newer nnmodes_widgets: schema 2, this version reads up to 1",
                "corrupt": "corrupt", "truncated": "corrupt"}[case]
    before = digest(path) if path.is_file() else None
    listing = sorted(os.listdir(tmp_path))
    with pytest.raises(RunFileError, match=expected):
        open_run(path)
    assert issubclass(RunFileError, ValueError)
    if before is not None:
        assert digest(path) == before
    assert sorted(os.listdir(tmp_path)) == listing


def _files(folder) -> dict:
    """Every file in ``folder``: its name -> its bytes' digest and modification time."""
    return {p.name: (digest(p), p.stat().st_mtime_ns) for p in Path(folder).iterdir()}


@pytest.mark.parametrize("sides", [(), ("-wal", "-shm"), ("-wal",)])
def test_reading_a_wal_run_creates_and_changes_no_file(tmp_path, sides):
    """A live run's file copied alone, with its -wal and -shm (as a killed writer leaves them), or
    with its -wal alone: open_run and list_runs read it and leave the folder byte for byte as it
    was (SQLite would make a -wal and -shm, and write read marks into a -shm)."""
    live = RunWriter(tmp_path / "live.nnmodes", {"model": "MLP"})
    copy = tmp_path / "copy"
    copy.mkdir()
    try:
        for step in range(1, 6):
            live.record("rwc", step, float(step), {"a": float(step)})
        assert live.flush(5)
        for side in ("", *sides):
            (copy / f"run.nnmodes{side}").write_bytes(Path(live.path + side).read_bytes())
    finally:
        live.close()
    before = _files(copy)
    with open_run(copy / "run.nnmodes") as run:
        steps = run.history.steps("rwc").tolist()
        notices = [n.message for n in run.notices]
    (listed,) = list_runs(copy)
    assert _files(copy) == before
    if "-shm" in sides:             # the records in the -wal are read
        assert steps == [1, 2, 3, 4, 5] and listed["steps"] == 5
    else:                           # the file alone holds none yet
        assert steps == [] and listed["steps"] == 0
    assert listed["status"] == "running"          # (its writer, this process, is alive)
    assert any("-wal has no -shm" in n for n in notices) == (sides == ("-wal",))


def test_a_reused_pid_is_not_a_live_writer(tmp_path):
    """A run recorded as running, its heartbeat stale, by this host's pid that is alive now: it is
    running only if that process started when the writer's did (a pid reused by another process
    does not count)."""
    path = tmp_path / "run.nnmodes"
    with RunWriter(path, {"model": "MLP"}) as writer:
        writer.record("rwc", 1, 1.0, {"a": 0.5})
    started = run_file.this_process()["pid_started"]
    if started is None:
        pytest.skip("no process start times here (/proc)")
    for pid_started, status in ((started + 1, "interrupted"), (started, "running")):
        db = sqlite3.connect(path, isolation_level=None)
        for key, value in (("status", "running"), ("heartbeat", time.time() - 3600),
                           ("pid", os.getpid()), ("pid_started", pid_started)):
            db.execute("UPDATE meta SET value = ? WHERE key = ?", (json.dumps(value), key))
        db.close()
        with open_run(path) as run:
            assert run.info["status"] == status, pid_started
        assert [r["status"] for r in list_runs(tmp_path)] == [status]


def test_importing_the_store_loads_neither_torch_nor_widgets():
    code = ("import sys, nnmodes_widgets.runs.run_file, nnmodes_widgets.runs.run_writer, "
            "nnmodes_widgets.runs.run_reader; "
            "print([m for m in ('torch', 'ipywidgets', 'anywidget', 'bqplot', 'traitlets', 'matplotlib') "
            "if m in sys.modules])")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_list_runs(tmp_path):
    folder = tmp_path / "nnmodes_runs"
    assert list_runs(folder) == []                             # no folder yet
    finished_run(folder / "first.nnmodes", events=30)
    time.sleep(0.01)
    live = RunWriter(folder / "second.nnmodes", {"model": "CNN"})
    try:
        live.record("rwc", 7, time.time(), {"a": 1.0})
        assert live.flush(5)
        (folder / "junk.nnmodes").write_bytes(os.urandom(2000))
        (folder / "readme.txt").write_text("hello")
        db = sqlite3.connect(folder / "other.db")
        db.execute("CREATE TABLE t(x)")
        db.close()
        finished_run(folder / "sub" / "deep.nnmodes", events=3)
        runs = list_runs(folder)
        # newest first; a file named like a run that is not one last, with the reason
        assert [r["name"] for r in runs] == ["second", "first", "junk"]
        second, first, junk = runs
        assert second["status"] == "running" and second["steps"] == 7 and second["model"] == "CNN"
        assert first["status"] == "finished" and first["steps"] == 29
        assert first["path"] == str((folder / "first.nnmodes").absolute())
        assert first["started"] <= first["updated"] and second["started"] > first["started"]
        assert first["error"] is None and second["error"] is None
        assert junk["status"] == "unreadable" and junk["error"] == "not an SQLite database"
        assert junk["steps"] == 0 and junk["started"] is None
        assert {r["name"] for r in list_runs(folder, recursive=True)} == {"first", "second", "deep", "junk"}
    finally:
        live.close()
    assert [r["status"] for r in list_runs(folder)] == ["finished", "finished", "unreadable"]


def test_to_tensorboard_writes_the_scalars_a_tensorboard_reads(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rng = np.random.default_rng(7)
    path = tmp_path / "tb.nnmodes"
    with RunWriter(path, {}) as writer:
        for i in range(30):
            step, when = 10 * i, 1.7e9 + 0.25 * i + 1e-6
            rwc = {"a.weight": float(rng.random()), "b.weight": float(rng.random()) * 1e-4}
            if i == 12:
                rwc["a.weight"] = float("nan")
            writer.record("rwc", step, when, rwc)
            if i % 3 == 0:
                writer.record("stable_rank", step, when + 0.1, {"a.weight": 3.5 + i, "b.weight": 2.25})
                writer.record("effective_rank", step, when + 0.1, {"a.weight": 7.0 - 0.1 * i})
                writer.record("spectrum", step, when + 0.1, {"a.weight": np.ones(4)})   # not a scalar
                writer.record("neuron_modes", step, when + 0.2, {"0": rng.random(40), "2": rng.random(7)})
    run = open_run(path)
    logdir = tmp_path / "tb"
    assert run.to_tensorboard(logdir) == str(logdir.absolute())
    accumulator = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    accumulator.Reload()
    history = run.history
    expected = {}
    for analysis in ("rwc", "stable_rank", "effective_rank"):
        for layer in history.layers(analysis):
            steps, values = history.get(analysis, layer)
            expected[f"{analysis}/{layer}"] = (steps, history.times(analysis, layer), values)
    for layer in ("0", "2"):
        steps, active = history.get("neuron_modes", layer)
        a = active.astype(np.float64)
        linear, dead = a >= 0.95, a <= 0.05
        shares = {"linear": linear.mean(1), "dead": dead.mean(1), "nonlinear": (~linear & ~dead).mean(1)}
        for mode, share in shares.items():
            expected[f"neuron_modes/{layer}/{mode}"] = (steps, history.times("neuron_modes", layer), share)
    assert sorted(accumulator.Tags()["scalars"]) == sorted(expected)
    assert len(expected) == 2 + 2 + 1 + 6
    for tag, (steps, times, values) in expected.items():
        events = accumulator.Scalars(tag)
        np.testing.assert_array_equal([e.step for e in events], steps, err_msg=tag)
        np.testing.assert_array_equal([e.wall_time for e in events], times, err_msg=tag)
        np.testing.assert_array_equal(np.float32([e.value for e in events]), values.astype(np.float32),
                                      err_msg=tag)
    shares = np.array([[e.value for e in accumulator.Scalars(f"neuron_modes/0/{m}")] for m in
                       ("linear", "nonlinear", "dead")])
    np.testing.assert_allclose(shares.sum(axis=0), 1.0, rtol=1e-6)


def test_to_tensorboard_falls_back_to_tensorboardx_then_says_what_to_install(tmp_path, monkeypatch):
    path = finished_run(tmp_path / "x.nnmodes", events=5)
    run = open_run(path)
    calls = []

    class FakeWriter:
        def __init__(self, log_dir):
            calls.append(("open", log_dir))

        def add_scalar(self, tag, value, step, walltime):
            calls.append((tag, value, step, walltime))

        def close(self):
            calls.append("close")

    fake = type(sys)("tensorboardX")
    fake.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)     # import fails
    monkeypatch.setitem(sys.modules, "tensorboardX", fake)
    run.to_tensorboard(tmp_path / "tbx")
    assert calls[0] == ("open", str(tmp_path / "tbx")) and calls[-1] == "close"
    assert ("rwc/l3", 12.0, 4, 4.0) in calls and len(calls) == 2 + 30 * 5
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(ImportError, match="pip install tensorboard .*or pip install tensorboardX"):
        run.to_tensorboard(tmp_path / "none")
