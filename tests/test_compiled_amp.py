"""Plain loops the way people speed them up (SPEC 13): a ``torch.compile``d model keeps the
model's own keys and gets every analysis; bf16 autocast works; a step ``torch.amp.GradScaler``
skips is not a step."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nnmodes_widgets as nm

FIVE = ("rwc", "spectrum", "radiograph", "neuron_modes", "characteristic_maps")


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def batch(step):
    g = torch.Generator().manual_seed(step)
    return torch.randn(32, 8, generator=g), torch.randint(0, 4, (32,), generator=g)


def train_flushing(monitor, model, optimizer, steps=12, autocast=None):
    """Train, letting each background analysis finish before the next step: every one gets its
    turn (budget 1)."""
    for step in range(steps):
        x, y = batch(step)
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=autocast, enabled=autocast is not None):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        monitor.flush()
    monitor.detach()


def test_a_compiled_model_keeps_its_own_keys_and_gets_every_analysis():
    model = mlp()
    # aot_eager traces forward and backward as inductor does, without its C++ compile (minutes
    # on the test machines); the module structure the monitor sees is the same
    compiled = torch.compile(model, backend="aot_eager")
    assert [n for n, _ in compiled.named_parameters()][0] == "_orig_mod.0.weight"
    optimizer = torch.optim.SGD(compiled.parameters(), lr=0.1)
    monitor = nm.Monitor(compiled, optimizer, every=1, budget=1.0, run=False)
    assert monitor.model is model        # the uncompiled module: analysed (and copied) as it is
    train_flushing(monitor, compiled, optimizer)
    assert monitor.errors == [], monitor.errors[:1]
    own = [n for n, p in model.named_parameters() if p.ndim >= 2]
    assert monitor.history.layers("rwc") == monitor.history.layers("spectrum") == own
    for analysis in FIVE:
        assert monitor.history.layers(analysis), analysis
    assert monitor.history.layers("radiograph") == ["0", "2"]
    x, _ = batch(0)
    assert torch.equal(monitor.probe, x)  # the first batch the compiled model saw


def test_bf16_autocast_training_gets_every_analysis():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = nm.Monitor(model, optimizer, every=1, budget=1.0, run=False)
    train_flushing(monitor, model, optimizer, autocast=torch.bfloat16)
    assert monitor.errors == [], monitor.errors[:1]
    assert monitor.current_step == 12
    for analysis in FIVE:
        assert monitor.history.layers(analysis), analysis
    assert monitor.probe.dtype == torch.float32     # the input as given, not autocast's copy


def test_a_step_the_grad_scaler_skips_is_not_a_step():
    model = mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu")
    poisoned = {3, 7}
    monitor = nm.Monitor(model, optimizer, every=1, analyses=("rwc",), run=False)
    for step in range(10):
        x, y = batch(step)
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.float16):
            loss = F.cross_entropy(model(x), y)
        if step in poisoned:
            loss = loss * float("inf")       # inf gradients: the scaler skips optimizer.step()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    monitor.detach()
    updates = int(optimizer.state[model[0].weight]["step"])   # Adam counts the steps it took
    assert updates == 10 - len(poisoned)
    assert monitor.current_step == updates
    steps, rwc = monitor.history.get("rwc", "0.weight")
    assert steps.tolist() == list(range(1, updates + 1))
    assert (rwc > 0).all()          # every step counted moved the weights


@pytest.mark.parametrize("outer", ["compile", "DataParallel"])
def test_nested_wrappers_are_looked_through(outer):
    model = mlp()
    if outer == "compile":
        wrapped = torch.compile(nn.DataParallel(model), backend="aot_eager")
    else:
        wrapped = nn.DataParallel(torch.compile(model, backend="aot_eager"))
    monitor = nm.Monitor(wrapped, every=1, analyses=("rwc",), run=False)
    assert monitor.model is model
    monitor.step()
    assert monitor.history.layers("rwc") == ["0.weight", "2.weight"]
    monitor.detach()
