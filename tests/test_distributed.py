"""Under torchrun (2 processes, CPU, gloo) with DDP and with FSDP2: rank 0 records the run, and
its RWC equals that of one process training on the whole batch (SPEC 5, issue 13)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nnmodes_widgets as nm

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "train_ddp.py"
STEPS, EVERY = 40, 5


def _single_process_rwc() -> dict:
    sys.path.insert(0, str(EXAMPLE.parent))
    try:
        from train_ddp import model_and_data
    finally:
        sys.path.remove(str(EXAMPLE.parent))
    model, x, y = model_and_data()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with nm.Monitor(model, optimizer, every=EVERY, analyses=("rwc",), run=False) as monitor:
        for _ in range(STEPS):
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
    return {layer: monitor.history.get("rwc", layer) for layer in monitor.history.layers("rwc")}


@pytest.fixture(scope="module")
def single():
    return _single_process_rwc()


@pytest.mark.parametrize("sharding", ["ddp", "fsdp"])
def test_torchrun_job_records_on_rank_0_the_rwc_of_one_process(tmp_path, single, sharding):
    path = tmp_path / f"{sharding}.nnmodes"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               str(EXAMPLE), "--record", str(path), "--steps", str(STEPS), "--every", str(EVERY)]
    if sharding == "fsdp":
        command.append("--fsdp")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".nnmodes") == [path.name]
    with nm.open_run(path) as run:
        assert run.info["status"] == "finished" and run.info["model"] == "Sequential"
        assert run.history.layers("rwc") == list(single)
        for layer, (steps, values) in single.items():
            got_steps, got = run.history.get("rwc", layer)
            assert got_steps.tolist() == steps.tolist() == list(range(EVERY, STEPS + 1, EVERY))
            # float32 on disk; the processes' gradients are averaged in another order
            np.testing.assert_allclose(got, values, rtol=1e-4)
        if sharding == "ddp":     # rank 0 ran the background analyses on the unwrapped model
            assert run.history.layers("spectrum") == list(single)
        else:
            assert any("sharded" in n.message for n in run.notices)
