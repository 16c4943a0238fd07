"""A monitor's lifecycle (SPEC 5, wave 3): one monitor per training loop, one owner of every
resource it makes, bounded waits, a final picture of the trained model."""

import gc
import os
import subprocess
import sys
import threading
import weakref
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nnmodes_widgets as nm
from nnmodes_widgets.live import heavy
from nnmodes_widgets.live.dynamics_jobs import phases_ready
from nnmodes_widgets.runs.analyses import REGISTRY


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


def data(n=32):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


def train(model, optimizer, steps, monitor=None):
    x, y = data()
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        if monitor is not None:
            monitor.flush(30)      # one analysis per step: what runs does not depend on speed


def ours() -> set:
    """The package's threads alive now (worker, run writers)."""
    return {t for t in threading.enumerate() if t.name.startswith("nnmodes")}


def status(path) -> str:
    with nm.open_run(path) as run:
        return run.info["status"]


def no_hooks(model, optimizer) -> bool:
    return not optimizer._optimizer_step_post_hooks and all(
        not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())


# -- one monitor per training loop -------------------------------------------------------------------


def test_five_monitors_on_one_optimizer_leave_one_that_counts_and_four_finished_runs(tmp_path):
    before = ours()
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitors = []
    for i in range(5):        # the cell re-run five times, training a little in between
        monitors.append(nm.Monitor(model, optimizer, every=1, budget=1.0,
                                   analyses=("rwc", "spectrum"), run=tmp_path / f"{i}.nnmodes"))
        train(model, optimizer, 3)
    train(model, optimizer, 3)
    *old, last = monitors
    assert [m.current_step for m in old] == [3, 3, 3, 3] and last.current_step == 6
    assert [m.replaced_at for m in old] == [3, 3, 3, 3] and last.replaced_at is None
    assert all(m.detached and m.stats()["replaced_at"] == 3 for m in old)
    assert all("replaced at step 3" in m.summary() for m in old)
    assert [status(m.run_path) for m in old] == ["finished"] * 4
    assert status(last.run_path) == "running" and not last.detached
    assert len(optimizer._optimizer_step_post_hooks) == 1
    last.detach()
    assert status(last.run_path) == "finished" and no_hooks(model, optimizer)
    assert ours() <= before          # every worker and writer thread has ended


def test_a_model_without_optimizer_is_replaced_likewise():
    model = mlp()
    first = nm.Monitor(model, every=1, run=False, analyses=("rwc",))
    first.step()
    first.step()
    second = nm.Monitor(model, every=1, run=False, analyses=("rwc",))
    assert first.detached and first.replaced_at == 2 and "replaced at step 2" in first.summary()
    second.step()
    assert first.current_step == 2 and second.current_step == 1
    # another model's monitor is another loop's: left alone
    other = nm.Monitor(mlp(1), every=1, run=False, analyses=("rwc",))
    assert not second.detached
    for monitor in (second, other):
        monitor.detach()


def test_a_failing_constructor_leaves_the_working_monitor_attached(tmp_path):
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    working = nm.Monitor(model, optimizer, every=1, run=tmp_path / "a.nnmodes", analyses=("rwc",))
    with pytest.raises(ValueError, match="does not fit"):
        nm.Monitor(model, optimizer, probe=torch.randn(4, 7), run=False)
    with pytest.raises(ValueError, match="a.nnmodes"):          # the same path: refused
        nm.Monitor(model, optimizer, run=tmp_path / "a.nnmodes")
    train(model, optimizer, 2)
    assert not working.detached and working.current_step == 2
    working.detach()


def test_the_map_of_attached_monitors_keeps_none_alive():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    replaced = nm.Monitor(model, optimizer, run=False, analyses=("rwc",))
    current = nm.Monitor(model, optimizer, run=False, analyses=("rwc",))
    refs = [weakref.ref(replaced), weakref.ref(current)]
    current.detach()
    del replaced, current
    gc.collect()
    assert [r() for r in refs] == [None, None]
    # nor one attached to a model that nobody holds (no hook holds it either: it has a probe)
    dropped = weakref.ref(nm.Monitor(model, probe=data()[0], run=False, analyses=("rwc",)))
    gc.collect()
    assert dropped() is None
    # and a monitor nobody holds is still the loop's while its hook holds it
    nm.Monitor(model, optimizer, every=1, run=False, analyses=("rwc",))
    train(model, optimizer, 1)
    gc.collect()
    [held] = [f.__self__ for f in optimizer._optimizer_step_post_hooks.values()]
    assert held.current_step == 1
    held.detach()


# -- a constructor that fails part-way leaves nothing -------------------------------------------------


class NoPreHooks(nn.Sequential):
    """A model that refuses forward pre-hooks: the monitor's probe hook fails after the run
    file, the tracker and the optimizer hook were made."""

    def register_forward_pre_hook(self, *args, **kwargs):
        raise RuntimeError("no pre-hooks on this model")


def failing_models():
    torch.manual_seed(0)
    with torch.device("meta"):
        meta = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    refusing = NoPreHooks(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    return [(meta, {}, "meta device"), (refusing, {}, "no pre-hooks"),
            (mlp(), {"probe": torch.randn(4, 7)}, "does not fit")]


@pytest.mark.parametrize("case", range(3), ids=["meta device", "hook refused", "probe"])
def test_a_constructor_that_fails_leaves_no_hook_thread_or_file(tmp_path, case):
    model, kwargs, message = failing_models()[case]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "run.nnmodes"
    before = ours()
    with pytest.raises((ValueError, RuntimeError), match=message):
        nm.Monitor(model, optimizer, run=path, **kwargs)
    assert no_hooks(model, optimizer)
    assert ours() <= before
    assert not any(tmp_path.iterdir())       # no run file, no side file
    working = nm.Monitor(mlp(), run=path)    # the path is free at once
    working.detach()
    assert status(path) == "finished"


# -- bounded waits --------------------------------------------------------------------------------------


class HangsInTheWorker(nn.Sequential):
    """Its forward blocks on ``gate`` when the monitor's worker runs it (an analysis)."""

    gate = threading.Event()

    def forward(self, x):
        if threading.current_thread().name.startswith("nnmodes-worker"):
            HangsInTheWorker.gate.wait()
        return super().forward(x)


def test_detach_returns_while_an_analysis_hangs_and_names_it(tmp_path):
    HangsInTheWorker.gate.clear()
    model = HangsInTheWorker(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = ours()
    monitor = nm.Monitor(model, optimizer, probe=data(), every=1, budget=1.0,
                         analyses=("rwc", "neuron_modes"), run=tmp_path / "hang.nnmodes")
    try:
        train(model, optimizer, 2)
        assert monitor.flush(0.2) is False              # neuron modes hang in the worker
        monitor.detach(timeout=1)
        assert monitor.detached and not optimizer._optimizer_step_post_hooks
        [notice] = [n for n in monitor.notices if "abandoned" in n.message]
        assert notice.analysis == "neuron_modes"
        assert notice.message == "neuron_modes still running at detach: abandoned after 1 s"
        assert status(monitor.run_path) == "finished"
    finally:
        HangsInTheWorker.gate.set()
    for thread in ours() - before:       # the abandoned analysis ends with its job
        thread.join(30)
        assert not thread.is_alive()
    assert monitor.history.count("neuron_modes") == 0      # an abandoned run records nothing


def test_an_import_that_raises_is_an_error_and_the_monitor_works_on(monkeypatch):
    real = heavy.importlib.import_module

    def shutting_down(name, package=None):     # what importing scikit-learn met at exit
        if name == "sklearn.cluster":
            raise RuntimeError("can't register atexit after shutdown")
        return real(name, package)
    monkeypatch.setattr(heavy.importlib, "import_module", shutting_down)
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = ours()
    with nm.Monitor(model, optimizer, every=1, budget=1.0, run=False,
                    analyses=("rwc", "clusters", "spectrum")) as monitor:
        train(model, optimizer, 3)
        assert monitor.flush(30)
        assert monitor.history.count("spectrum") >= 1        # the jobs ran all the same
    assert monitor.detached and ours() <= before
    [error] = monitor.errors      # imported when the monitor is made: for the clusters
    assert error.analysis == "clusters" and "can't register atexit" in error.message


def test_a_detach_interrupted_in_its_final_round_still_lets_go_of_everything(monkeypatch, tmp_path):
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = ours()
    monitor = nm.Monitor(model, optimizer, every=1, budget=1.0, analyses=("rwc", "spectrum"),
                         run=tmp_path / "stopped.nnmodes")
    train(model, optimizer, 2, monitor)

    def interrupted(step, deadline):      # the user stops the cell while detach() waits
        raise KeyboardInterrupt
    monkeypatch.setattr(monitor._heavy, "final_round", interrupted)
    with pytest.raises(KeyboardInterrupt):
        monitor.detach()
    assert monitor.detached and no_hooks(model, optimizer) and ours() <= before
    assert status(monitor.run_path) == "finished"


def test_detach_refuses_a_bad_timeout_and_changes_nothing():
    monitor = nm.Monitor(mlp(), run=False, analyses=("rwc",))
    for bad in (-1, "10", True):
        with pytest.raises(ValueError, match="timeout must be None or a number of seconds"):
            monitor.detach(timeout=bad)
    assert not monitor.detached
    monitor.detach(timeout=None)
    assert monitor.detached


# -- the final picture ------------------------------------------------------------------------------------


def test_detach_records_every_analysis_of_the_final_weights():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = nm.Monitor(model, optimizer, probe=data(), every=1, budget=1.0, run=False)
    # until the phases have the samples they are found in (the others ran by then)
    steps = 0
    while not phases_ready(monitor) and steps < 5000:
        train(model, optimizer, 10, monitor)
        steps += 10
    monitor.detach()
    assert monitor.errors == []
    for analysis in REGISTRY:
        if analysis.name == "findings":     # recorded only when a finding starts or ends
            continue
        newest = max((monitor.history.steps(r)[-1] for r in analysis.records
                      if monitor.history.count(r)), default=None)
        assert newest == steps, analysis.name
    # a healthy run: no warning (a phase change found is information)
    assert [f.kind for f in monitor.findings if f.severity != "info"] == []


# -- interpreter exit ------------------------------------------------------------------------------------

EXIT_SCRIPT = """
import sys, torch, nnmodes_widgets as nm
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
monitor = nm.Monitor(model, optimizer, every=1, run=sys.argv[1])
for _ in range(5):
    optimizer.zero_grad()
    model(torch.randn(8, 4)).pow(2).mean().backward()
    optimizer.step()
class NoPreHooks(torch.nn.Sequential):     # fails the constructor after its run file is made
    def register_forward_pre_hook(self, *args, **kwargs):
        raise RuntimeError("no pre-hooks on this model")
other = NoPreHooks(torch.nn.Linear(4, 2))
try:
    nm.Monitor(other, run=sys.argv[2])
except RuntimeError:
    pass
"""


def test_at_exit_an_attached_monitor_finishes_its_run_and_a_failed_one_left_no_file(tmp_path):
    left, failed = tmp_path / "left.nnmodes", tmp_path / "failed.nnmodes"
    repo = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]))
    subprocess.run([sys.executable, "-c", EXIT_SCRIPT, str(left), str(failed)], env=env,
                   check=True, timeout=300)
    with nm.open_run(left) as run:
        assert run.info["status"] == "finished"
        assert run.info["stats"]["step"] == 5          # closed by the monitor, not only its writer
    assert not failed.exists()


def test_an_analysis_abandoned_at_detach_is_stopped_not_left_running(monkeypatch):
    from nnmodes_widgets.live import jobs

    laps = []

    def endless(job):        # a run far longer than any detach waits: torch work, lap after lap
        a = torch.randn(64, 64)
        while True:
            a = torch.tanh(a @ a)
            laps.append(1)
    monkeypatch.setattr(jobs, "spectrum", endless)
    before = ours()
    monitor = nm.Monitor(mlp(), every=1, budget=1.0, run=False, analyses=("spectrum",))
    monitor.step()
    assert monitor.flush(0.2) is False
    monitor.detach(timeout=1)
    [notice] = monitor.notices
    assert notice.message == "spectrum still running at detach: abandoned after 1 s"
    for thread in ours() - before:
        thread.join(30)          # stopped at its next instruction: it ends without help
        assert not thread.is_alive()
    assert laps and monitor.history.count("spectrum") == 0
