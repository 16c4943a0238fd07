"""The %nnmodes magic in a real IPython kernel (jupyter_client), as a notebook user meets it."""

import pytest

from kernel import Kernel

SETUP = """
import torch
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
def train(steps):
    for _ in range(steps):
        optimizer.zero_grad()
        model(torch.randn(8, 4)).pow(2).mean().backward()
        optimizer.step()
class Trainer:
    pass
trainer = Trainer()
trainer.model = model
"""


@pytest.fixture(scope="module")
def kernel():
    k = Kernel()
    k.ok("%load_ext nnmodes_widgets")
    k.ok(SETUP)
    yield k
    k.close()


def usage_error(kernel, line):
    result = kernel.run(line)
    assert result.error is not None, f"{line!r} did not fail"
    ename, evalue = result.error
    assert ename == "UsageError", result.error
    assert "\n" not in evalue.strip(), f"not a one-line message: {evalue!r}"
    return evalue


def test_watch_shows_the_dashboard_and_follows_training(kernel):
    result = kernel.ok("monitor = %nnmodes watch model optimizer --every 5")
    views = [d for d in result.displays if "application/vnd.jupyter.widget-view+json" in d]
    assert len(views) == 1, result.displays
    kernel.ok("train(40)")
    out = kernel.ok("%nnmodes status").stdout
    assert "step 40" in out and "8 samples every 5 steps" in out and "0 errors" in out, out
    steps = kernel.ok("print(monitor.history.steps('rwc').tolist())").stdout
    assert steps.strip() == str(list(range(5, 41, 5)))
    layers = kernel.ok("print(monitor.history.layers('rwc'))").stdout
    assert layers.strip() == "['0.weight', '2.weight']"
    out = kernel.ok("%nnmodes detach").stdout
    assert "detached" in out and "step 40" in out
    hooks = kernel.ok("print(len(optimizer._optimizer_step_post_hooks), monitor.detached)").stdout
    assert hooks.split() == ["0", "True"]


def test_watch_options_and_attribute_names(kernel):
    kernel.ok("x_probe = torch.randn(32, 4); y_probe = torch.randint(0, 2, (32,))")
    kernel.ok("m2 = %nnmodes watch trainer.model --every 3 --budget 0.1 --probe x_probe y_probe")
    out = kernel.ok("print(m2.every, m2.budget, m2.optimizer, m2.probe[0].shape[0], m2.model is model)")
    assert out.stdout.split() == ["3", "0.1", "None", "32", "True"]
    # without an optimizer the loop steps the monitor itself
    kernel.ok("for _ in range(6): m2.step()")
    assert kernel.ok("print(len(m2.history.steps('rwc')))").stdout.strip() == "2"
    kernel.ok("%nnmodes detach")


@pytest.mark.parametrize("line, fragment", [
    ("%nnmodes", "no subcommand"),
    ("%nnmodes frobnicate", "unknown subcommand 'frobnicate'"),
    ("%nnmodes watch", "takes MODEL [OPTIMIZER]"),
    ("%nnmodes watch nope", "name 'nope' is not defined"),
    ("%nnmodes watch model nope", "name 'nope' is not defined"),
    ("%nnmodes watch trainer.nope", "'trainer' has no attribute 'nope'"),
    ("%nnmodes watch __import__('os')", "is not a name"),
    ("%nnmodes watch model optimizer extra", "takes MODEL [OPTIMIZER]"),
    ("%nnmodes watch model --every", "--every needs a value"),
    ("%nnmodes watch model --every ten", "--every expects an integer, got 'ten'"),
    ("%nnmodes watch model --every 0", "every must be a positive integer"),
    ("%nnmodes watch model --budget 2", "budget must be a fraction"),
    ("%nnmodes watch model --speed 3", "unknown option '--speed'"),
    ("%nnmodes watch model --every 2 --every 3", "--every given twice"),
    ("%nnmodes watch optimizer", "expects a torch.nn.Module"),
    ("%nnmodes watch model model", "expects a torch.optim.Optimizer"),
    ("%nnmodes watch model 'unclosed", "cannot parse"),
    ("%nnmodes status extra", "takes no arguments"),
])
def test_mistakes_are_one_line_usage_errors(kernel, line, fragment):
    assert fragment in usage_error(kernel, line)


def test_export_writes_the_current_dashboard(kernel, tmp_path):
    kernel.ok("%nnmodes watch model optimizer --every 2")
    kernel.ok("train(10)")
    for fmt, magic in [("png", b"\x89PNG"), ("svg", b"<?xml"), ("pdf", b"%PDF-")]:
        path = tmp_path / f"dash.{fmt}"
        out = kernel.ok(f"%nnmodes export {path}").stdout
        assert str(path) in out and "step 10" in out, out
        assert path.read_bytes().startswith(magic)
    assert "unknown format 'gif'" in usage_error(kernel, f"%nnmodes export {tmp_path / 'dash.gif'}")
    assert "takes one PATH" in usage_error(kernel, "%nnmodes export")
    kernel.ok("%nnmodes detach")
    # the detached monitor's dashboard still exports: nothing recorded is lost
    kernel.ok(f"%nnmodes export {tmp_path / 'after.png'}")
    assert (tmp_path / "after.png").stat().st_size > 1000


def test_a_failed_watch_changes_nothing(kernel):
    before = kernel.ok("print(len(optimizer._optimizer_step_post_hooks))").stdout
    usage_error(kernel, "%nnmodes watch model optimizer --every 0")
    assert kernel.ok("print(len(optimizer._optimizer_step_post_hooks))").stdout == before


def test_status_and_detach_without_a_monitor(kernel):
    kernel.ok("%nnmodes watch model optimizer")
    kernel.ok("%nnmodes detach")
    assert "no monitor is attached" in usage_error(kernel, "%nnmodes status")
    assert "no monitor is attached" in usage_error(kernel, "%nnmodes detach")


def test_unload_detaches_every_monitor():
    k = Kernel()
    try:
        k.ok("%load_ext nnmodes_widgets")
        k.ok(SETUP)
        k.ok("a = %nnmodes watch model optimizer --every 2")
        k.ok("b = %nnmodes watch trainer.model --every 4")
        k.ok("train(8)")
        assert k.ok("print(a.detached, b.detached)").stdout.split() == ["False", "False"]
        k.ok("%unload_ext nnmodes_widgets")
        out = k.ok("print(a.detached, b.detached, len(optimizer._optimizer_step_post_hooks))")
        assert out.stdout.split() == ["True", "True", "0"]
        result = k.run("%nnmodes status")
        assert result.error and "not found" in result.error[1]
        # and it can be loaded again
        k.ok("%load_ext nnmodes_widgets")
        k.ok("c = %nnmodes watch model optimizer")
        k.ok("train(3)")
        assert "step 3" in k.ok("%nnmodes status").stdout
    finally:
        k.close()


def test_a_probe_that_does_not_fit_is_refused_with_the_models_error(kernel):
    kernel.ok("bad_probe = torch.randn(4, 7)")
    before = kernel.ok("print(len(optimizer._optimizer_step_post_hooks))").stdout
    evalue = usage_error(kernel, "%nnmodes watch model optimizer --probe bad_probe")
    assert "the probe ((4, 7) float32) does not fit the model Sequential (RuntimeError: mat1 and mat2" \
        in evalue, evalue
    assert kernel.ok("print(len(optimizer._optimizer_step_post_hooks))").stdout == before


def test_watch_records_a_run_that_open_shows(kernel):
    kernel.ok("import os, tempfile; os.chdir(tempfile.mkdtemp())")
    kernel.ok("m = %nnmodes watch model optimizer --every 2 --run mine.nnmodes")
    kernel.ok("train(10)")
    kernel.ok("%nnmodes detach")
    assert kernel.ok("print(os.path.basename(m.run_path))").stdout.strip() == "mine.nnmodes"
    result = kernel.ok("run = %nnmodes open mine.nnmodes")
    views = [d for d in result.displays if "application/vnd.jupyter.widget-view+json" in d]
    assert len(views) == 1, result.displays
    out = kernel.ok("print(run.info['status'], run.history.steps('rwc').tolist())").stdout
    assert out.strip().split(maxsplit=1) == ["finished", "[2, 4, 6, 8, 10]"]
    kernel.ok("q = %nnmodes watch model optimizer --no-run")
    assert kernel.ok("print(q.run_path)").stdout.strip() == "None"
    kernel.ok("%nnmodes detach")
    assert "exclude each other" in usage_error(kernel, "%nnmodes watch model --run a.nnmodes --no-run")
    assert "missing.nnmodes: no such file" in usage_error(kernel, "%nnmodes open missing.nnmodes")
    assert "takes one PATH" in usage_error(kernel, "%nnmodes open")


# -- in this process: an IPython shell without a kernel (the magic's own state is visible) ----------


@pytest.fixture
def shell():
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "nnmodes_widgets")
    ip.run_cell(SETUP)
    yield ip
    ip.run_line_magic("unload_ext", "nnmodes_widgets")


def test_watch_twice_replaces_the_first_monitor_and_lets_go_of_its_dashboard(shell):
    magics = shell.magics_manager.registry["NnmodesMagics"]
    first = shell.run_line_magic("nnmodes", "watch model optimizer --every 1 --no-run")
    shell.run_cell("train(3)")
    second = shell.run_line_magic("nnmodes", "watch model optimizer --every 1 --no-run")
    shell.run_cell("train(2)")
    assert first.detached and first.replaced_at == 3 and first.current_step == 3
    assert not second.detached and second.current_step == 2
    assert magics.monitors == [second] and list(magics.dashboards) == [second]
    optimizer = shell.user_ns["optimizer"]
    assert len(optimizer._optimizer_step_post_hooks) == 1
    shell.run_line_magic("unload_ext", "nnmodes_widgets")       # detaches what it made
    assert second.detached and not optimizer._optimizer_step_post_hooks
    shell.run_line_magic("load_ext", "nnmodes_widgets")         # for the fixture's unload
