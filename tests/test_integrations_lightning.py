"""The Lightning callback (SPEC 13), with the real framework: each of lightning.pytorch and
pytorch_lightning. A monitor made when training starts, on the LightningModule and the real
optimizer; optimizer steps counted under gradient accumulation and AMP's scaler; the run named
after the logger, with the hyperparameters, finished after fit, also after a fit that raises;
under DDP (2 processes, gloo) recorded once."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import nnmodes_widgets as nm

integration = pytest.importorskip("nnmodes_widgets.integrations.lightning")
NNModesCallback = integration.NNModesCallback
from lightning_job import classifier, loader, trainer  # noqa: E402  (tests/lightning_job.py)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["lightning.pytorch", "pytorch_lightning"])
def pl(request):
    return pytest.importorskip(request.param)


def test_accumulated_batches_count_one_step_and_the_run_is_named_and_finished(pl, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)       # its own nnmodes_runs/: the file name is the run's alone
    callback = NNModesCallback(every=5)
    assert callback.monitor is None
    module = classifier(pl)
    fit = trainer(pl, callback, accumulate_grad_batches=4,
                  logger=pl.loggers.CSVLogger(tmp_path, name="digits", version="v1"))
    fit.fit(module, loader(80))
    monitor = callback.monitor
    assert monitor.detached and monitor.model is module and monitor.optimizer is fit.optimizers[0]
    assert monitor.current_step == fit.global_step == 80 // 4
    weights = [name for name, p in module.named_parameters() if p.ndim >= 2]
    with nm.open_run(monitor.run_path) as run:
        assert run.info["status"] == "finished"
        assert run.history.layers("rwc") == weights == ["net.0.weight", "net.2.weight"]
        assert run.history.get("rwc", weights[0])[0].tolist() == [5, 10, 15, 20]
        assert run.info["name"] == "digits-v1" and run.path.endswith("-digits-v1.nnmodes")
        hparams = run.info["settings"]["hparams"]
        assert (hparams["lr"], hparams["hidden"]) == (0.01, 16)
        assert hparams["trainer"]["accumulate_grad_batches"] == 4


def test_a_fit_that_raises_leaves_the_run_finished_with_a_notice(pl):
    callback = NNModesCallback(every=1, analyses=("rwc",))
    with pytest.raises(RuntimeError, match="bad batch 6"):
        trainer(pl, callback).fit(classifier(pl, fail_at=6), loader(20))
    monitor = callback.monitor
    assert monitor.detached and monitor.current_step == 6
    with nm.open_run(monitor.run_path) as run:
        assert run.info["status"] in ("finished", "interrupted")
        assert any("training stopped at step 6: RuntimeError: bad batch 6" in n.message
                   for n in run.notices), run.notices


def test_a_step_the_scaler_skips_is_not_counted(pl):
    callback = NNModesCallback(every=1, analyses=("rwc",), run=False)
    module = classifier(pl, poison={5})          # in the second group of 4 batches
    precision = pl.plugins.precision.MixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu"))
    fit = trainer(pl, callback, accumulate_grad_batches=4, plugins=[precision])
    fit.fit(module, loader(40))
    updates = int(fit.optimizers[0].state[module.net[0].weight]["step"])   # Adam's own count
    assert updates == 40 // 4 - 1
    assert callback.monitor.current_step == updates


def test_options_are_checked_when_the_callback_is_made_and_the_probe_when_training_starts(pl, tmp_path):
    with pytest.raises(ValueError, match="every"):
        NNModesCallback(every=0)
    with pytest.raises(TypeError, match="unknown monitor option 'evry'"):
        NNModesCallback(evry=5)
    with pytest.raises(TypeError, match="trainer's optimizer"):
        NNModesCallback(optimizer=None)
    with pytest.raises(TypeError, match="show"):
        NNModesCallback(show="yes")
    path = tmp_path / "later.nnmodes"
    callback = NNModesCallback(run=path, probe=torch.randn(4, 5))     # the model takes 8 features
    assert not path.exists()                  # the file is made when training starts
    with pytest.raises(ValueError, match="probe"):
        trainer(pl, callback).fit(classifier(pl), loader(4))
    assert callback.monitor is None and not path.exists()


@pytest.mark.parametrize("call_self", [True, False])
def test_the_probe_is_the_first_batch_forward_sees_or_a_notice_says_there_is_none(pl, call_self):
    callback = NNModesCallback(every=2, run=False)
    trainer(pl, callback).fit(classifier(pl, call_self=call_self), loader(4))
    monitor = callback.monitor
    missing = [n for n in monitor.notices if n.message.startswith("no probe: training_step")]
    if call_self:
        x, _ = next(iter(loader(4)))
        assert torch.equal(monitor.probe, x) and missing == []
    else:
        assert monitor.probe is None and len(missing) == 1


def test_the_dashboard_waits_for_training_then_shows_the_monitors(pl):
    from nnmodes_widgets.integrations.dashboard import WAITING

    callback = NNModesCallback(every=2, run=False)
    view = callback.dashboard()
    assert view.dashboard is None and view.children[0].value == WAITING
    trainer(pl, callback).fit(classifier(pl), loader(8))
    assert isinstance(view.dashboard, nm.Dashboard) and view.children == (view.dashboard,)
    assert view.dashboard.run is callback.monitor and callback.dashboard() is view
    view.close()


def test_ddp_on_two_processes_records_once(tmp_path):
    pytest.importorskip("lightning.pytorch")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, str(REPO / "tests" / "lightning_job.py"), "40", "5"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = list((tmp_path / "nnmodes_runs").iterdir())
    assert len(runs) == 1, runs
    assert f"rank 0: step 20, run {runs[0]}" in done.stdout, done.stdout      # 40 batches / 2
    assert "rank 1: step 20, run None" in done.stdout, done.stdout
    with nm.open_run(runs[0]) as run:
        assert run.info["status"] == "finished"
        assert run.info["settings"]["hparams"]["trainer"]["world_size"] == 2
        assert run.history.get("rwc", "net.0.weight")[0].tolist() == [5, 10, 15, 20]
        assert run.history.layers("spectrum") == ["net.0.weight", "net.2.weight"]
