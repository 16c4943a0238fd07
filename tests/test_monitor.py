"""The monitor (SPEC 5): hooks, sampling cadence, history, fault containment, NaN/inf, tied, frozen and
added/removed parameters, bad input, stats."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nnmodes_widgets as nm
from nnmodes_widgets.analysis import rwc as rwc_module
from nnmodes_widgets.live import monitor as monitor_module

from brute import ref_rwc  # tests/brute.py


# -- helpers -------------------------------------------------------------------------------------------

def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


MLP_WEIGHTS = ["0.weight", "2.weight", "4.weight"]


def data(seed=0, n=32, d=6, classes=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, classes, (n,), generator=g)


def train_step(model, opt, x, y):
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()


def weights(model):
    """The test's own copy of the weights (ndim >= 2), independent of the package."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.ndim >= 2}


def hook_state(model, opt=None):
    """Every hook registry the monitor could touch: the optimizer's, each module's, the globals."""
    from torch.nn.modules import module as module_mod
    from torch.optim import optimizer as optimizer_mod

    state = {
        name: (tuple(m._forward_hooks), tuple(m._forward_pre_hooks), tuple(m._backward_hooks),
               tuple(getattr(m, "_backward_pre_hooks", {})))
        for name, m in model.named_modules()
    }
    state["<global>"] = (tuple(module_mod._global_forward_hooks),
                         tuple(module_mod._global_forward_pre_hooks),
                         tuple(module_mod._global_backward_hooks),
                         tuple(optimizer_mod._global_optimizer_post_hooks),
                         tuple(optimizer_mod._global_optimizer_pre_hooks))
    if opt is not None:
        state["<optimizer>"] = (tuple(opt._optimizer_step_post_hooks),
                                tuple(opt._optimizer_step_pre_hooks))
    return state


# -- hooks ---------------------------------------------------------------------------------------------

def test_optimizer_step_drives_sampling_and_detach_removes_hooks():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = data()
    before = hook_state(model, opt)
    monitor = nm.Monitor(model, opt, every=2)
    assert len(opt._optimizer_step_post_hooks) == len(before["<optimizer>"][0]) + 1
    for _ in range(6):
        train_step(model, opt, x, y)        # no monitor.step() call: the hook does it
    assert monitor.current_step == 6
    assert monitor.history.steps("rwc").tolist() == [2, 4, 6]
    monitor.detach()
    assert monitor.detached
    assert hook_state(model, opt) == before


def test_without_optimizer_monitor_step_drives_sampling():
    model = mlp()
    x, y = data()
    monitor = nm.Monitor(model, every=3)
    for _ in range(7):
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad
        monitor.step()
    assert monitor.current_step == 7
    assert monitor.history.steps("rwc").tolist() == [3, 6]
    monitor.detach()


def test_detach_restores_model_and_global_hooks():
    # while attached the monitor may hook the model (e.g. to capture the probe batch); after
    # detach() every module's and the global hook registries are as they were
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = hook_state(model)          # model and globals, not the optimizer
    monitor = nm.Monitor(model, opt, every=1)
    x, y = data()
    train_step(model, opt, x, y)
    monitor.detach()
    assert hook_state(model) == before


def test_context_manager_detaches_on_exit():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = hook_state(model, opt)
    x, y = data()
    with nm.Monitor(model, opt, every=1) as monitor:
        assert not monitor.detached
        train_step(model, opt, x, y)
    assert monitor.detached
    assert hook_state(model, opt) == before
    # optimizer steps after the block are not counted any more
    train_step(model, opt, x, y)
    assert monitor.current_step == 1
    assert monitor.history.steps("rwc").tolist() == [1]


def test_context_manager_detaches_when_body_raises():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = hook_state(model, opt)
    with pytest.raises(RuntimeError, match="user code failed"):
        with nm.Monitor(model, opt) as monitor:
            raise RuntimeError("user code failed")
    assert monitor.detached
    assert hook_state(model, opt) == before


def test_detach_twice_is_harmless_and_step_after_detach_warns_and_records_nothing():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = hook_state(model, opt)
    x, y = data()
    monitor = nm.Monitor(model, opt, every=1)
    train_step(model, opt, x, y)
    monitor.detach()
    monitor.detach()
    assert hook_state(model, opt) == before
    steps_before = monitor.history.steps("rwc").tolist()
    values_before = monitor.history.get("rwc", "0.weight")[1].copy()
    with pytest.warns(Warning):
        monitor.step()
    train_step(model, opt, x, y)
    assert monitor.current_step == 1
    assert monitor.history.steps("rwc").tolist() == steps_before == [1]
    assert np.array_equal(monitor.history.get("rwc", "0.weight")[1], values_before)
    assert monitor.errors == []


# -- cadence and values ---------------------------------------------------------------------------

@pytest.mark.parametrize("every, steps, kind", [(1, 6, "l1"), (3, 20, "l1"), (7, 20, "l1"),
                                                (4, 13, "elementwise"), (4, 13, "l2")])
def test_samples_at_multiples_of_every_with_rwc_of_saved_weights(every, steps, kind):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.5)
    x, y = data()
    saved = {0: weights(model)}          # the monitor's first reference is the construction time
    monitor = nm.Monitor(model, opt, every=every, rwc_kind=kind)
    for s in range(1, steps + 1):
        train_step(model, opt, x, y)
        saved[s] = weights(model)
    expected_steps = list(range(every, steps + 1, every))
    assert monitor.history.steps("rwc").tolist() == expected_steps
    assert monitor.history.layers("rwc") == MLP_WEIGHTS
    for layer in MLP_WEIGHTS:
        got_steps, values = monitor.history.get("rwc", layer)
        assert got_steps.tolist() == expected_steps
        expected = [ref_rwc(saved[s - every][layer], saved[s][layer], kind) for s in expected_steps]
        np.testing.assert_allclose(values, expected, rtol=1e-6, atol=0)
        assert (values > 0).all()
    assert monitor.errors == [] and monitor.error_count == 0
    monitor.detach()


def test_history_shapes_and_lookup_errors():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = data()
    with nm.Monitor(model, opt, every=2) as monitor:
        for _ in range(10):
            train_step(model, opt, x, y)
    h = monitor.history
    assert h.layers("rwc") == MLP_WEIGHTS
    steps, values = h.get("rwc", "2.weight")
    assert steps.shape == (5,) and values.shape == (5,)
    assert steps.dtype.kind == "i" and values.dtype.kind == "f"
    with pytest.raises(ValueError, match="bogus"):
        h.get("bogus", "2.weight")
    with pytest.raises(ValueError, match="bogus"):
        h.layers("bogus")
    with pytest.raises(KeyError) as info:
        h.get("rwc", "2.bias")          # biases are not tracked by default
    assert "2.bias" in str(info.value)


def test_include_bias_tracks_biases():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = data()
    b0 = model[2].bias.detach().clone()
    with nm.Monitor(model, opt, every=3, include_bias=True) as monitor:
        for _ in range(3):
            train_step(model, opt, x, y)
    assert monitor.history.layers("rwc") == [n for n, _ in model.named_parameters()]
    steps, values = monitor.history.get("rwc", "2.bias")
    assert steps.tolist() == [3]
    assert values[0] == pytest.approx(ref_rwc(b0, model[2].bias), rel=1e-6)


# -- faults ---------------------------------------------------------------------------------------------

def _raise(exc):
    # a fresh exception per call: re-raising one instance would grow its traceback every time
    def fn(*args, **kwargs):
        raise type(exc)(*exc.args)
    return fn


def test_exception_in_analysis_does_not_stop_training(monkeypatch):
    monkeypatch.setattr(rwc_module.RwcTracker, "update", _raise(RuntimeError("tracker exploded")))
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = data()
    w0 = weights(model)
    monitor = nm.Monitor(model, opt, every=2)
    for _ in range(9):
        train_step(model, opt, x, y)
    assert monitor.current_step == 9
    assert all(not torch.equal(w0[n], p) for n, p in weights(model).items())   # it trained
    assert [e.step for e in monitor.errors] == [2, 4, 6, 8]
    assert all("tracker exploded" in e.message and e.analysis == "rwc" for e in monitor.errors)
    assert monitor.error_count == 4
    assert "tracker exploded" in monitor.stats()["last_error"]
    monitor.detach()


def test_exception_from_tracker_instance_is_caught(monkeypatch):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = data()
    monitor = nm.Monitor(model, opt, every=1)
    train_step(model, opt, x, y)                      # one good sample
    monkeypatch.setattr(monitor._tracker, "update", _raise(ZeroDivisionError("bad divide")))
    for _ in range(3):
        train_step(model, opt, x, y)
    assert monitor.history.steps("rwc").tolist() == [1]
    assert [(e.step, "bad divide" in e.message) for e in monitor.errors] == [(2, True), (3, True), (4, True)]
    assert monitor.error_count == 3
    monitor.detach()


def test_errors_keep_the_newest_last_and_error_count_counts_all(monkeypatch):
    monkeypatch.setattr(rwc_module.RwcTracker, "update", _raise(RuntimeError("again")))
    monitor = nm.Monitor(mlp(), every=1)
    for _ in range(1100):
        monitor.step()
    assert monitor.error_count == 1100
    steps = [e.step for e in monitor.errors]
    assert steps and steps == list(range(1101 - len(steps), 1101))   # a bounded list may drop the oldest
    assert str(monitor.errors[-1]).startswith("step 1100")
    monitor.detach()


def test_raising_listener_is_caught_and_recorded(monkeypatch):
    # news with every sample, and of the step count at most every NEWS_INTERVAL (here: only
    # the first step's); news with every step cost each step microseconds
    monkeypatch.setattr(monitor_module, "NEWS_INTERVAL", math.inf)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = data()
    seen = []
    # RWC only: a background analysis finishing would notify the listeners once more
    monitor = nm.Monitor(model, opt, every=2, analyses=("rwc",))
    monitor.subscribe(lambda m: seen.append(m.current_step))
    monitor.subscribe(_raise(ValueError("listener broke")))
    for _ in range(4):
        train_step(model, opt, x, y)
    assert seen == [1, 2, 4]
    assert monitor.error_count == 3
    assert [e.step for e in monitor.errors] == [1, 2, 4]
    assert all("listener broke" in e.message for e in monitor.errors)
    assert monitor.history.steps("rwc").tolist() == [2, 4]       # sampling unaffected
    monitor.detach()


def test_keyboard_interrupt_in_analysis_is_not_swallowed(monkeypatch):
    monkeypatch.setattr(rwc_module.RwcTracker, "update", _raise(KeyboardInterrupt()))
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = data()
    monitor = nm.Monitor(model, opt, every=2)
    train_step(model, opt, x, y)
    with pytest.raises(KeyboardInterrupt):
        train_step(model, opt, x, y)
    monitor.detach()


def test_keyboard_interrupt_in_listener_is_not_swallowed():
    monitor = nm.Monitor(mlp(), every=5)
    listener = _raise(KeyboardInterrupt())
    monitor.subscribe(listener)
    with pytest.raises(KeyboardInterrupt):
        monitor.step()
    monitor.unsubscribe(listener)       # detach() notifies listeners too
    monitor.detach()


# -- non-finite weights ------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nonfinite_weight_is_recorded_and_flagged(bad):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = data()
    monitor = nm.Monitor(model, opt, every=2)
    for s in range(1, 5):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        if s == 4:
            # after backward, before the update: only this layer goes bad before the sample at 4
            with torch.no_grad():
                model[2].weight[3, 5] = bad
        opt.step()
    h = monitor.history
    assert h.steps("rwc").tolist() == [2, 4]
    value = h.get("rwc", "2.weight")[1][-1]
    assert not math.isfinite(value)
    if math.isnan(bad):
        assert math.isnan(value)
    for layer in ("0.weight", "4.weight"):
        assert np.isfinite(h.get("rwc", layer)[1]).all()
    assert np.isfinite(h.get("rwc", "2.weight")[1][0])
    assert monitor.nonfinite == {"2.weight": 4}
    assert monitor.stats()["nonfinite"] == ["2.weight"]
    # two more steps that change nothing (no gradients): still flagged from step 4, no crash
    opt.zero_grad(set_to_none=True)
    opt.step()
    opt.step()
    assert h.steps("rwc").tolist() == [2, 4, 6]
    assert math.isnan(h.get("rwc", "2.weight")[1][-1])   # nan - nan, inf - inf
    assert h.get("rwc", "0.weight")[1][-1] == 0.0 and h.get("rwc", "4.weight")[1][-1] == 0.0
    assert monitor.nonfinite == {"2.weight": 4}
    assert monitor.errors == []          # a flag, not a failure
    monitor.detach()


# -- tied, frozen, added, removed, replaced parameters ------------------------------------------------

class TiedLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(12, 8)
        self.hidden = nn.Linear(8, 8)
        self.out = nn.Linear(8, 12, bias=False)
        self.out.weight = self.emb.weight            # tied

    def forward(self, tokens):
        return self.out(torch.tanh(self.hidden(self.emb(tokens).mean(1))))


def test_tied_weight_appears_once_under_first_name():
    torch.manual_seed(0)
    model = TiedLM()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    g = torch.Generator().manual_seed(1)
    tokens, target = torch.randint(0, 12, (16, 5), generator=g), torch.randint(0, 12, (16,), generator=g)
    saved = [weights(model)]
    with nm.Monitor(model, opt, every=1) as monitor:
        for _ in range(3):
            train_step(model, opt, tokens, target)
            saved.append(weights(model))
    assert monitor.history.layers("rwc") == ["emb.weight", "hidden.weight"]
    with pytest.raises(KeyError):
        monitor.history.get("rwc", "out.weight")
    values = monitor.history.get("rwc", "emb.weight")[1]
    expected = [ref_rwc(saved[i - 1]["emb.weight"], saved[i]["emb.weight"]) for i in (1, 2, 3)]
    np.testing.assert_allclose(values, expected, rtol=1e-6)


def test_frozen_parameter_is_included_with_zero_rwc():
    model = mlp()
    model[0].requires_grad_(False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x, y = data()
    with nm.Monitor(model, opt, every=2) as monitor:
        for _ in range(6):
            train_step(model, opt, x, y)
    assert monitor.history.layers("rwc") == MLP_WEIGHTS
    steps, values = monitor.history.get("rwc", "0.weight")
    assert steps.tolist() == [2, 4, 6]
    assert values.tolist() == [0.0, 0.0, 0.0]
    assert (monitor.history.get("rwc", "2.weight")[1] > 0).all()


def test_added_layer_starts_its_series_later():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    x, y = data()
    saved = {0: weights(model)}
    monitor = nm.Monitor(model, opt, every=2)
    for s in range(1, 11):
        if s == 5:                                    # between the samples at 4 and 6
            model.append(nn.Linear(3, 3))
            opt.add_param_group({"params": list(model[3].parameters())})
        train_step(model, opt, x, y)
        saved[s] = weights(model)
    h = monitor.history
    assert h.steps("rwc").tolist() == [2, 4, 6, 8, 10]
    assert h.layers("rwc") == ["0.weight", "2.weight", "3.weight"]
    # no reference state before the sample at 6: its first value is at 8
    steps, values = h.get("rwc", "3.weight")
    assert steps.tolist() == [8, 10]
    np.testing.assert_allclose(values, [ref_rwc(saved[6]["3.weight"], saved[8]["3.weight"]),
                                        ref_rwc(saved[8]["3.weight"], saved[10]["3.weight"])], rtol=1e-6)
    # the older layers are undisturbed by the re-layout
    steps, values = h.get("rwc", "2.weight")
    assert steps.tolist() == [2, 4, 6, 8, 10]
    np.testing.assert_allclose(values, [ref_rwc(saved[s - 2]["2.weight"], saved[s]["2.weight"])
                                        for s in (2, 4, 6, 8, 10)], rtol=1e-6)
    layers, msteps, matrix = h.matrix("rwc")
    assert layers == ["0.weight", "2.weight", "3.weight"] and msteps.tolist() == [2, 4, 6, 8, 10]
    assert np.isnan(matrix[2, :3]).all() and np.isfinite(matrix[2, 3:]).all()
    assert np.isfinite(matrix[:2]).all()
    monitor.detach()


def test_added_attribute_layer_starts_its_series_later():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 3)

        def forward(self, x):
            out = self.fc(x)
            return self.extra(out) if hasattr(self, "extra") else out

    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    x, y = data()
    with nm.Monitor(model, opt, every=1) as monitor:
        train_step(model, opt, x, y)
        model.extra = nn.Linear(3, 3)
        opt.add_param_group({"params": list(model.extra.parameters())})
        for _ in range(3):
            train_step(model, opt, x, y)
    assert monitor.history.layers("rwc") == ["fc.weight", "extra.weight"]
    assert monitor.history.get("rwc", "fc.weight")[0].tolist() == [1, 2, 3, 4]
    assert monitor.history.get("rwc", "extra.weight")[0].tolist() == [3, 4]


def test_removed_layer_series_stops_but_stays_readable():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    x, y = data()
    saved = {0: weights(model)}
    monitor = nm.Monitor(model, opt, every=2)
    for s in range(1, 9):
        if s == 5:
            model[2] = nn.Identity()                 # "2.weight" is gone
        train_step(model, opt, x, y)
        saved[s] = weights(model)
    h = monitor.history
    steps, values = h.get("rwc", "2.weight")
    assert steps.tolist() == [2, 4]
    np.testing.assert_allclose(values, [ref_rwc(saved[0]["2.weight"], saved[2]["2.weight"]),
                                        ref_rwc(saved[2]["2.weight"], saved[4]["2.weight"])], rtol=1e-6)
    assert h.get("rwc", "4.weight")[0].tolist() == [2, 4, 6, 8]
    np.testing.assert_allclose(h.get("rwc", "4.weight")[1],
                               [ref_rwc(saved[s - 2]["4.weight"], saved[s]["4.weight"]) for s in (2, 4, 6, 8)],
                               rtol=1e-6)
    assert h.layers("rwc") == ["0.weight", "2.weight", "4.weight"]
    monitor.detach()


def test_replaced_parameter_of_other_shape_notice_and_restart():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    x, y = data()
    saved = {0: weights(model)}
    monitor = nm.Monitor(model, opt, every=2)
    for s in range(1, 9):
        if s == 3:                                    # widen the hidden layer: both weights change shape
            model[0], model[2] = nn.Linear(6, 24), nn.Linear(24, 3)
            opt.add_param_group({"params": list(model[0].parameters()) + list(model[2].parameters())})
        train_step(model, opt, x, y)
        saved[s] = weights(model)
    h = monitor.history
    assert h.steps("rwc").tolist() == [2, 4, 6, 8]
    notices = [(e.step, e.analysis, e.layer) for e in monitor.notices]
    assert (4, "rwc", "0.weight") in notices and (4, "rwc", "2.weight") in notices
    assert monitor.errors == [], "a changed model is not a fault"
    for layer in ("0.weight", "2.weight"):
        steps, values = h.get("rwc", layer)
        assert steps.tolist() == [2, 6, 8]           # no value at 4: no reference of the new shape
        expected = [ref_rwc(saved[0][layer], saved[2][layer])] + [
            ref_rwc(saved[s - 2][layer], saved[s][layer]) for s in (6, 8)]
        np.testing.assert_allclose(values, expected, rtol=1e-6)
    monitor.detach()


# -- bad input -------------------------------------------------------------------------------------------

class OnlyBiases(nn.Module):
    def __init__(self):
        super().__init__()
        self.b = nn.Parameter(torch.zeros(4))
        self.norm = nn.LayerNorm(4)


BAD_ARGS = [
    (dict(every=0), ValueError, "every"),
    (dict(every=-1), ValueError, "every"),
    (dict(every=1.5), ValueError, "every"),
    (dict(every=True), ValueError, "every"),
    (dict(every="10"), ValueError, "every"),
    (dict(budget=0), ValueError, "budget"),
    (dict(budget=1.5), ValueError, "budget"),
    (dict(budget=-0.1), ValueError, "budget"),
    (dict(budget=math.nan), ValueError, "budget"),
    (dict(rwc_kind="l3"), ValueError, "l3"),
    (dict(probe="batch"), TypeError, "probe"),
    (dict(probe=42), TypeError, "probe"),
    (dict(probe=(torch.zeros(4, 6),)), TypeError, "probe"),
    (dict(probe=(torch.zeros(4, 6), torch.zeros(3, dtype=torch.long))), ValueError, "probe"),
    (dict(probe=torch.randn(4, 7)), ValueError,
     r"the probe \(\(4, 7\) float32\) does not fit the model Sequential \(RuntimeError: mat1 and "
     r"mat2 shapes cannot be multiplied \(4x7"),
]


@pytest.mark.parametrize("kwargs, exc, word", BAD_ARGS, ids=[
    "every=0", "every=-1", "every=1.5", "every=True", "every=str", "budget=0", "budget=1.5",
    "budget=-0.1", "budget=nan", "kind=l3", "probe=str", "probe=int", "probe=1-tuple",
    "probe=len-mismatch", "probe=misfit"])
def test_bad_arguments_raise_and_add_no_hook(kwargs, exc, word):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = hook_state(model, opt)
    with pytest.raises(exc, match=word):
        nm.Monitor(model, opt, **kwargs)
    assert hook_state(model, opt) == before


@pytest.mark.parametrize("model", [nn.Sequential(nn.ReLU()), OnlyBiases(), nn.Sequential()],
                         ids=["relu", "biases", "empty"])
def test_model_with_nothing_to_analyse(model):
    opt = torch.optim.SGD(model.parameters(), lr=0.1) if list(model.parameters()) else None
    before = hook_state(model, opt)
    with pytest.raises(ValueError, match="nothing to analyse"):
        nm.Monitor(model, opt)
    assert hook_state(model, opt) == before


def test_non_module_and_non_optimizer_are_type_errors():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = hook_state(model, opt)
    with pytest.raises(TypeError):
        nm.Monitor(lambda x: x, opt)
    assert hook_state(model, opt) == before
    with pytest.raises(TypeError):
        nm.Monitor(lambda x: x)
    with pytest.raises(TypeError):
        nm.Monitor({"w": torch.ones(2, 2)})
    with pytest.raises(TypeError):
        nm.Monitor(model, "sgd")
    with pytest.raises(TypeError):
        nm.Monitor(model, list(model.parameters()))


def test_valid_probes_are_accepted():
    x, y = data()
    for probe in (x, (x, y), [x, y]):
        nm.Monitor(mlp(), probe=probe).detach()


# -- stats -------------------------------------------------------------------------------------------------

def test_stats_after_training():
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = data()
    with nm.Monitor(model, opt, every=5) as monitor:
        assert monitor.stats()["step"] == 0
        for _ in range(30):
            train_step(model, opt, x, y)
        stats = monitor.stats()
    assert stats["step"] == 30
    assert stats["samples"] == 6
    assert math.isfinite(stats["steps_per_second"]) and stats["steps_per_second"] > 0
    assert 0.0 <= stats["own_share"] <= 1.0 and stats["worker_share"] >= 0.0
    assert stats["errors"] == 0 and stats["last_error"] is None


def test_module_recreated_with_the_same_shape_restarts_its_series():
    # A fresh nn.Linear of the same shape is a new parameter: comparing it with the old weights'
    # snapshot would report a change that training never made.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    x, y = data()
    monitor = nm.Monitor(model, opt, every=2, analyses=("rwc",))   # the RWC series is the subject
    saved = {0: weights(model)}
    for s in range(1, 9):
        if s == 3:
            model[2] = nn.Linear(16, 3)
            opt.add_param_group({"params": list(model[2].parameters())})
        train_step(model, opt, x, y)
        saved[s] = weights(model)
    steps, values = monitor.history.get("rwc", "2.weight")
    assert steps.tolist() == [2, 6, 8]
    np.testing.assert_allclose(values[1:], [ref_rwc(saved[s - 2]["2.weight"], saved[s]["2.weight"])
                                            for s in (6, 8)], rtol=1e-6)
    assert [(n.step, n.layer) for n in monitor.notices] == [(4, "2.weight")]
    assert monitor.history.get("rwc", "0.weight")[0].tolist() == [2, 4, 6, 8]
    monitor.detach()


def test_stats_and_summary_say_when_sampling_alone_takes_over_half_the_budget():
    model = mlp()
    monitor = nm.Monitor(model, every=10, analyses=("rwc",))
    measured = dict(monitor.pacer.estimate(), own_share=0.06, slowdown=0.06)
    monitor.pacer.estimate = lambda: measured
    sampling = {"share": 0.048}
    monitor._cadence.share = lambda bare: sampling["share"]
    s = monitor.stats()
    assert s["every_within_budget"] == 20
    assert "sampling takes 4.8% of training time: every=20 leaves half the budget" in monitor.summary()
    # the rest of the monitor's time in the steps (6% here) is not what every changes
    sampling["share"] = 0.01
    assert monitor.stats()["every_within_budget"] is None
    assert "sampling takes 1.0% of training time)" in monitor.summary()
    monitor.detach()


def test_the_stats_and_the_summary_give_the_slowdown_over_the_last_minute(monkeypatch):
    # the budget is kept over any minute (SPEC 5): the status reads the minute's figure, the
    # pace the last seconds' (a reading over 10 s is a point off either way)
    model = mlp()
    monitor = nm.Monitor(model, torch.optim.SGD(model.parameters(), lr=0.1), run=False,
                         analyses=("rwc",))
    measured = dict(monitor.pacer.latest()[0], slowdown=0.09, minute_slowdown=0.04, bare=1e-3)
    monkeypatch.setattr(monitor.pacer, "latest", lambda: (measured, 0.0))
    assert monitor.stats()["slowdown"] == 0.04
    assert "slowdown 4.0% (budget 5%)" in monitor.summary()
    monitor.detach()
