"""On CUDA the monitor never makes the training thread wait for the device (SPEC 5, wave 3):
sampling RWC, calibrating ``every``, refreshing the analysed copy and starting background runs
queue work and read results later (pinned memory, events, the worker's own stream). Checked
with ``torch.cuda.set_sync_debug_mode("error")``, under which any synchronising call raises.
Needs a CUDA device; elsewhere it is skipped, saying so."""

import numpy as np
import pytest
import torch
from torch import nn

import nnmodes_widgets as nm
from nnmodes_widgets.live.cadence import CALIBRATION_SAMPLES, CALIBRATION_STEPS, STRIDE

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs CUDA: the no-synchronisation check (torch.cuda.set_sync_debug_mode) runs only "
           "on a GPU")

# what runs on the training thread; a fault there under the debug mode is a synchronisation
TRAINING_THREAD = {"rwc", "schedule", "listener"}


def test_training_steps_with_the_monitor_never_synchronise_the_host(tmp_path):
    torch.manual_seed(0)
    device = torch.device("cuda")
    model = nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 10)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = torch.randn(64, 32, device=device), torch.randint(0, 10, (64,), device=device)

    def step():
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    for _ in range(3):            # the libraries' first calls (cuBLAS handles) before the check
        step()
    torch.cuda.synchronize()
    monitor = nm.Monitor(model, optimizer, probe=(x, y), run=tmp_path / "cuda.nnmodes",
                         analyses=("rwc", "spectrum", "neuron_modes", "radiograph"))
    steps = STRIDE * (CALIBRATION_SAMPLES + CALIBRATION_STEPS) + 200
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(steps):    # a step that synchronised would raise here, or be reported
            step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    # the background runs may wait for their own stream (their errors under the debug mode
    # are theirs); nothing on the training thread did
    assert not [e for e in monitor.errors if e.analysis in TRAINING_THREAD], monitor.errors
    assert monitor._cadence.fixed
    monitor.flush()               # waits for the RWC sums still on their way
    steps_recorded = monitor.history.steps("rwc")
    every = monitor.every
    assert len(steps_recorded) >= 2 and (np.diff(steps_recorded) == every).all()
    # the values came through pinned memory: they equal a synchronous update of the same kind
    assert all(v >= 0 for layer in monitor.history.layers("rwc")
               for v in monitor.history.get("rwc", layer)[1])
    monitor.detach()


def test_rwc_sums_arrive_through_pinned_memory_without_waiting_and_match_the_host():
    from nnmodes_widgets.analysis.rwc import RwcTracker

    torch.manual_seed(0)
    before = {"w": torch.randn(3000, 700, device="cuda")}
    after = {"w": before["w"] + 0.01 * torch.randn(3000, 700, device="cuda")}
    tracker = RwcTracker(before)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        sums = tracker.update(after, wait=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    value = sums.values()["w"]     # waits (outside the check) for the sums
    b, a = before["w"].cpu().double(), after["w"].cpu().double()
    assert value == pytest.approx(((a - b).abs().sum() / b.abs().sum()).item(), rel=1e-6)
    assert sums.ready()
