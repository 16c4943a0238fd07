"""A monitor records its run to disk (SPEC 11): by default under nnmodes_runs/, read back with
nm.open_run, shown by the same dashboard, compared with nm.compare."""

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import nnmodes_widgets as nm


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 12),
                               torch.nn.ReLU(), torch.nn.Linear(12, 3))


def _train(model, optimizer, steps, lr_scale=1.0):
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    for _ in range(steps):
        optimizer.zero_grad()
        (lr_scale * torch.nn.functional.cross_entropy(model(x), y)).backward()
        optimizer.step()


def test_a_monitor_records_its_run_by_default_and_open_run_reads_it_back():
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = nm.Monitor(model, optimizer, every=2, budget=1.0)
    path = Path(monitor.run_path)
    assert path.parent == Path.cwd() / "nnmodes_runs"
    assert re.fullmatch(r"\d{8}-\d{6}-Sequential(-\d+)?\.nnmodes", path.name), path.name
    _train(model, optimizer, 40)
    monitor.report_notice("rwc", None, "a notice kept with the run")
    monitor.detach()
    run = nm.open_run(path)
    try:
        info = run.info
        assert info["status"] == "finished" and info["model"] == "Sequential"
        assert info["settings"]["every"] == 2 and info["parameters"]["0.weight"] == [16, 6]
        assert run.every == 2 and run.layers == monitor.layers == ["0", "2", "4"]
        assert run.probe_facts == monitor.probe_facts            # the first batch became the probe
        for analysis in ("rwc", "spectrum", "power_law", "neuron_modes", "radiograph"):
            assert run.history.layers(analysis) == monitor.history.layers(analysis), analysis
            for layer in monitor.history.layers(analysis):
                steps, values = monitor.history.get(analysis, layer)
                got_steps, got = run.history.get(analysis, layer)
                assert got_steps.tolist() == steps.tolist()
                np.testing.assert_allclose(got, values.astype(np.float32), rtol=0, equal_nan=True)
        assert [n.message for n in run.notices] == [n.message for n in monitor.notices]
        assert run.stats()["step"] == monitor.current_step == 40
    finally:
        run.close()


def test_run_false_records_nothing_and_a_bad_run_is_refused_with_nothing_changed():
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = nm.Monitor(model, optimizer, run=False)
    assert monitor.run_path is None
    monitor.detach()
    with pytest.raises(TypeError, match="run must be None .* False .* or a path, got 3"):
        nm.Monitor(model, optimizer, run=3)
    path = Path("mine.nnmodes")
    first = nm.Monitor(model, optimizer, run=path)
    assert first.run_path == os.fspath(path.absolute())
    hooks = len(optimizer._optimizer_step_post_hooks)
    with pytest.raises(ValueError, match="mine.nnmodes"):       # two monitors on one path
        nm.Monitor(model, optimizer, run=path)
    assert len(optimizer._optimizer_step_post_hooks) == hooks   # the refused one added nothing
    first.detach()
    with pytest.raises(ValueError):          # a finished run is never overwritten
        nm.Monitor(model, optimizer, run=path)


def test_a_run_is_read_while_it_is_written_and_its_dashboard_follows():
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = nm.Monitor(model, optimizer, every=1, budget=1.0, analyses=("rwc",))
    _train(model, optimizer, 10)
    monitor._writer.flush()
    run = nm.open_run(monitor.run_path)
    dashboard = run.dashboard()
    try:
        assert run.info["status"] == "running" and not run.detached
        assert run.history.count("rwc") == 10
        _train(model, optimizer, 15)
        monitor._writer.flush()
        assert run.poll() and run.history.count("rwc") == 25
        dashboard.trend.push_now()
        assert dashboard.trend._controls.step == 25
        monitor.detach()
        run.poll()
        assert run.info["status"] == "finished" and run.detached
    finally:
        dashboard.close()
        run.close()


def test_compare_overlays_the_runs_trends_and_exports():
    paths = []
    for lr in (0.1, 0.01):
        model = _model()
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        with nm.Monitor(model, optimizer, every=1, budget=1.0) as monitor:
            _train(model, optimizer, 30)
        paths.append(monitor.run_path)
    live = nm.Monitor(_model(), None, run=False)     # a live monitor compares like a stored run
    widget = nm.compare(*paths, live)
    try:
        assert widget.labels[:2] == [Path(p).name.removesuffix(".nnmodes") for p in paths]
        assert widget.layer == "0.weight"
        widget.layer = "2.weight"
        lines = widget._lines
        assert list(lines.labels) == widget.labels[:2]           # the live one has no RWC yet
        for i, path in enumerate(paths):
            with nm.open_run(path) as run:
                _, values = run.history.get("rwc", "2.weight")
            np.testing.assert_allclose(lines.y[i][-1], values[-1], rtol=1e-6)
        assert lines.colors[0] != lines.colors[1]
        assert "nnmodes-compare" in widget._dom_classes
        png = widget.snapshot().data
        assert png[:4] == b"\x89PNG"
        with pytest.raises(ValueError, match="unknown layer"):
            widget.layer = "nope"
    finally:
        widget.close()
        live.detach()
    with pytest.raises(ValueError, match="at least two runs"):
        nm.compare(paths[0])
    with pytest.raises(nm.RunFileError):
        nm.compare(paths[0], "missing.nnmodes")


TRAINING_SCRIPT = """
import sys, time
import torch
import nnmodes_widgets as nm
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
monitor = nm.Monitor(model, optimizer, every=5, run=sys.argv[1])
log = open(sys.argv[2], "w", buffering=1)
x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
while True:                                  # trains until killed, as a kernel would
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    if monitor.current_step % 5 == 0:
        log.write(f"{monitor.current_step} {time.time()!r}\\n")
"""


def test_a_killed_training_process_leaves_its_run_readable(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    path, log = tmp_path / "killed.nnmodes", tmp_path / "steps.log"
    repo = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]))
    child = subprocess.Popen([sys.executable, "-c", TRAINING_SCRIPT, str(path), str(log)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not (log.exists() and log.stat().st_size > 0):
            assert child.poll() is None and time.monotonic() < deadline, "the training child died"
            time.sleep(0.1)
        time.sleep(3)
    finally:
        child.send_signal(signal.SIGKILL)        # no clean-up of any kind
        child.wait()
    logged = [line.split() for line in log.read_text().splitlines() if line.count(" ") == 1]
    last_step, last_time = int(logged[-1][0]), float(logged[-1][1])
    time.sleep(0.1)
    with nm.open_run(path, stale_after=0.05) as run:      # its heartbeat is no younger
        assert run.info["status"] == "interrupted" and run.info["model"] == "Sequential"
        steps = run.history.steps("rwc")
        assert steps.tolist() == list(range(5, int(steps[-1]) + 1, 5))   # nothing lost between
        newest = run.history.times("rwc", "0.weight")[-1]
        assert newest >= last_time - 2.0, f"lost {last_time - newest:.2f} s of samples"
        assert steps[-1] <= last_step


def test_a_full_disk_stops_the_recording_with_a_notice_and_training_goes_on(small_disk):
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = nm.Monitor(model, optimizer, every=1, budget=1.0, analyses=("rwc", "spectrum"),
                         run="full.nnmodes")
    _train(model, optimizer, 3)
    assert monitor._writer.flush(10)          # the start of the run fits on the disk
    _train(model, optimizer, 297)             # the spectra fill it
    monitor.detach()
    assert monitor.current_step == 300 and monitor.history.count("rwc") == 300   # kept in memory
    stopped = [n for n in monitor.notices if n.analysis == "run"]
    assert len(stopped) == 1 and "recording to" in stopped[0].message and "full" in stopped[0].message
    assert monitor.errors == []
    with nm.open_run("full.nnmodes") as run:               # what was written before stays
        assert run.info["status"] == "interrupted" and "full" in run.info["write_error"]
        assert 0 < run.history.count("rwc") < 300


@pytest.mark.parametrize("disk", ["roomy", "full"])
def test_the_runs_commits_are_background_work_within_the_budget(request, disk):
    # Nothing is exempt from the budget (SPEC 5, wave 3): the writer's commits, on its own
    # thread, slow training like any background work; unseen, the steps they overlap counted as
    # quiet ones. Each commit, a failed one too, is one stretch of the pacer's background work.
    if disk == "full":
        request.getfixturevalue("small_disk")
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = nm.Monitor(model, optimizer, every=1, analyses=("rwc",),
                         run=f"commits-{disk}.nnmodes")
    pacer = monitor.pacer
    for step in range(3):
        _train(model, optimizer, 100)
        if disk == "full" and step == 2:    # more than the small disk holds: this commit fails
            monitor.history.record("spectrum", step, 0.0, {"big": np.ones(1 << 14)})
        monitor._writer.flush(10)     # a commit now
    if disk == "full":
        assert any("recording to" in n.message for n in monitor.notices)
    with pacer._lock:
        stretches = [(start, end) for start, end, kind, _ in pacer._busy[:pacer._busy_count]
                     if kind == 2]
        assert not pacer._running                  # every stretch begun has ended
    assert len(stretches) >= 3 and all(end >= start for start, end in stretches)
    # in no share: a run with no widget builds no frames (a headless one), its widget share is 0
    e = pacer.estimate()
    assert e["widget_share"] == 0 and e["worker_share"] == 0, e
    monitor.detach()
