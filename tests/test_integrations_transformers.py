"""The Hugging Face Trainer callback (SPEC 13), with the real Trainer: optimizer steps counted
under gradient accumulation through Accelerate's optimizer wrapper, the model's own keys (GPT-2's
tied lm_head once), the run named after args.run_name with the arguments that matter, finished
after train(), also after a train() that raises; under torchrun (2 processes, gloo) recorded
once."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import nnmodes_widgets as nm

integration = pytest.importorskip("nnmodes_widgets.integrations.transformers")
NNModesCallback = integration.NNModesCallback
from transformers import Trainer, TrainerCallback  # noqa: E402

from hf_job import Tokens, arguments, tiny_gpt2  # noqa: E402  (tests/hf_job.py)

REPO = Path(__file__).resolve().parent.parent


def test_accumulated_batches_count_one_step_with_the_models_own_keys(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)       # its own nnmodes_runs/: the file name is the run's alone
    callback = NNModesCallback(every=5)
    assert callback.monitor is None
    model = tiny_gpt2()
    args = arguments(tmp_path, run_name="tiny gpt", gradient_accumulation_steps=4,
                     learning_rate=1e-3, seed=7)
    trainer = Trainer(model=model, args=args, train_dataset=Tokens(80), callbacks=[callback])
    trainer.train()
    monitor = callback.monitor
    assert monitor.detached and monitor.model is model
    assert type(trainer.optimizer).__name__ == "AcceleratedOptimizer"    # seen through
    assert monitor.optimizer is trainer.optimizer.optimizer
    assert monitor.current_step == trainer.state.global_step == 80 // 4
    weights = [name for name, p in model.named_parameters() if p.ndim >= 2]
    assert model.lm_head.weight is model.transformer.wte.weight and "lm_head.weight" not in weights
    with nm.open_run(monitor.run_path) as run:
        assert run.info["status"] == "finished"
        assert run.history.layers("rwc") == weights       # the tied head once, as the embedding
        assert run.history.get("rwc", weights[0])[0].tolist() == [5, 10, 15, 20]
        assert run.info["name"] == "tiny gpt" and run.path.endswith("-tiny-gpt.nnmodes")
        settings = run.info["settings"]["hparams"]
        assert (settings["learning_rate"], settings["per_device_train_batch_size"],
                settings["gradient_accumulation_steps"], settings["seed"]) == (1e-3, 1, 4, 7)


def test_a_train_that_raises_leaves_the_run_finished_with_a_notice(tmp_path):
    callback = NNModesCallback(every=1, analyses=("rwc",))
    trainer = Trainer(model=tiny_gpt2(), args=arguments(tmp_path), train_dataset=Tokens(20, fail_at=6),
                      callbacks=[callback])
    with pytest.raises(RuntimeError, match="bad item 6"):     # raised by the data loader
        trainer.train()
    monitor, steps = callback.monitor, trainer.state.global_step
    assert monitor.detached and monitor.current_step == steps > 0   # Accelerate reads ahead: 6 or 7
    with nm.open_run(monitor.run_path) as run:
        assert run.info["status"] in ("finished", "interrupted")
        assert any(f"training stopped at step {steps}: RuntimeError: bad item 6" in n.message
                   for n in run.notices), run.notices


def test_every_analysis_runs_on_the_bf16_trainer_and_options_are_checked_early(tmp_path):
    with pytest.raises(ValueError, match="budget"):
        NNModesCallback(budget=2)
    with pytest.raises(TypeError, match="unknown monitor option 'evrey'"):
        NNModesCallback(evrey=2)
    callback = NNModesCallback(every=1, budget=1.0, run=False, show=False)

    class Flush(TrainerCallback):      # every background analysis gets its turn
        def on_step_end(self, *args, **kwargs):
            callback.monitor.flush()

    args = arguments(tmp_path, bf16=True, per_device_train_batch_size=4)
    trainer = Trainer(model=tiny_gpt2(), args=args, train_dataset=Tokens(48),
                      callbacks=[callback, Flush()])
    trainer.train()
    monitor = callback.monitor
    assert monitor.errors == [], monitor.errors[:1]
    for analysis in ("rwc", "spectrum", "radiograph", "neuron_modes", "characteristic_maps"):
        assert monitor.history.layers(analysis), analysis
    assert {"input_ids", "labels"} <= set(monitor.probe.kwargs)   # the first batch's inputs


def test_torchrun_on_two_processes_records_once(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests"),
                                                       os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               str(REPO / "tests" / "hf_job.py"), "40", "5"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = list((tmp_path / "nnmodes_runs").iterdir())
    assert len(runs) == 1 and runs[0].name.endswith("-ddp.nnmodes"), runs
    assert f"rank 0: step 20, run {runs[0]}" in done.stdout, done.stdout     # 40 batches / 2
    assert "rank 1: step 20, run None" in done.stdout, done.stdout
    with nm.open_run(runs[0]) as run:
        assert run.info["status"] == "finished"
        assert run.info["settings"]["hparams"]["world_size"] == 2
        assert run.history.get("rwc", "transformer.h.0.mlp.c_fc.weight")[0].tolist() == [5, 10, 15, 20]
