"""Findings (SPEC 15): each detector on a history built to trigger it, quiet on one built not to,
with the rule's edges (sustained for 3 samples, dated from the first, ended at the first sample
that no longer holds), and the tail exponent against power laws of known exponent."""

import math

import numpy as np
import pytest

from nnmodes_widgets.analysis.esd import MIN_EVALS, tail_exponent
from nnmodes_widgets.runs.findings import FindingsTracker, detect
from nnmodes_widgets.runs.history import History


def history_of(analysis, series: dict, steps=None):
    """A history with ``series`` (layer -> values, one per step) recorded under ``analysis``."""
    h = History()
    n = len(next(iter(series.values())))
    steps = list(range(10, 10 * n + 1, 10)) if steps is None else steps
    for t, step in enumerate(steps):
        h.record(analysis, step, float(step), {layer: v[t] for layer, v in series.items()
                                               if v[t] is not None})
    return h


def kinds(findings, kind=None):
    return [f for f in findings if kind is None or f.kind == kind]


# -- dead units --------------------------------------------------------------------------------------

def active(dead: int, n: int = 10):
    """Active fractions of n units, ``dead`` of them dead (0), the rest half active."""
    return np.array([0.0] * dead + [0.5] * (n - dead))


def test_dead_units_fire_after_three_samples_dated_from_the_first_and_end():
    shares = [1, 2, 5, 6, 5, 2, 2, 2]        # dead units of 10: >= 5 at samples 2, 3, 4
    h = history_of("neuron_modes", {"fc1": [active(d) for d in shares]})
    found = kinds(detect(h), "dead_units")
    assert len(found) == 1
    f = found[0]
    assert (f.step, f.ended, f.layer, f.severity) == (30, 60, "fc1", "warning")
    assert f.message == "layer fc1: 50% of units dead since step 30"
    assert f.evidence["analysis"] == "neuron_modes" and f.evidence["steps"] == [30, 40, 50]


def test_dead_units_two_samples_are_not_enough():
    h = history_of("neuron_modes", {"fc1": [active(d) for d in (0, 6, 6, 0, 6, 6)]})
    assert not kinds(detect(h), "dead_units")


def test_dead_units_rise_since_the_first_sample():
    # 1 -> 4 of 10 dead: under half, but risen by 0.3 >= 0.25
    h = history_of("neuron_modes", {"c": [active(d) for d in (1, 4, 4, 4)]})
    found = kinds(detect(h), "dead_units")
    assert [(f.step, f.ended) for f in found] == [(20, None)]
    h = history_of("neuron_modes", {"c": [active(d) for d in (1, 3, 3, 3)]})   # risen by 0.2
    assert not kinds(detect(h), "dead_units")


# -- not learning ------------------------------------------------------------------------------------

def test_a_frozen_layer_is_not_learning_and_a_slow_one_too():
    n = 6
    h = history_of("rwc", {"a.weight": [1e-2] * n, "b.weight": [2e-2] * n, "c.weight": [3e-2] * n,
                           "frozen.weight": [0.0] * n, "slow.weight": [1e-5] * n,
                           "ok.weight": [3e-4] * n})
    found = {f.layer: f for f in kinds(detect(h), "not_learning")}
    assert set(found) == {"frozen.weight", "slow.weight"}      # the median layer's 5.15e-3: 1e-5 is under 1% of it, 3e-4 not
    assert "have not changed since step 10 (frozen?)" in found["frozen.weight"].message
    assert found["slow.weight"].severity == "warning"


# -- diverging ---------------------------------------------------------------------------------------

def test_non_finite_weights_diverge_but_one_zero_start_does_not():
    nan = float("nan")
    h = history_of("rwc", {"a.weight": [0.1, nan, nan, nan, nan],
                           "zero_init.weight": [nan, 0.1, 0.1, 0.1, 0.1],   # 0/0 once: a zero start
                           "b.weight": [0.1] * 5})
    found = kinds(detect(h), "diverging")
    assert [(f.layer, f.step) for f in found] == [("a.weight", 20)]
    assert "not finite" in found[0].message


def test_exploding_mean_rwc_against_its_running_median():
    calm = [0.01, 0.012, 0.011, 0.009, 0.01, 0.011]
    h = history_of("rwc", {"w": calm + [0.5, 0.6, 0.7, 0.8], "v": calm + [0.5, 0.6, 0.7, 0.8]})
    found = [f for f in kinds(detect(h), "diverging") if f.layer is None]
    assert len(found) == 1 and found[0].severity == "warning"
    assert "exploding" in found[0].message
    h = history_of("rwc", {"w": calm + [0.05, 0.06, 0.07, 0.08]})     # 5-7x: not exploding
    assert not kinds(detect(h), "diverging")


# -- rank collapse -----------------------------------------------------------------------------------

def test_rank_collapse_below_half_the_first_value():
    h = history_of("effective_rank", {"w": [20.0, 15.0, 9.9, 9.0, 8.0], "u": [20.0, 11.0, 10.0, 10.0, 10.0]})
    found = kinds(detect(h), "rank_collapse")
    assert [(f.layer, f.step) for f in found] == [("w", 30)]
    assert "fell to 8.0, under half its first value 20.0" in found[0].message


# -- heavy tails ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("alpha", [1.5, 2.5, 4.0, 5.5])
def test_tail_exponent_recovers_power_laws(alpha):
    rng = np.random.default_rng(1)
    lam = rng.random(4000) ** (-1 / (alpha - 1))      # Pareto: density ~ lambda^-alpha
    assert tail_exponent(np.sqrt(lam)) == pytest.approx(alpha, rel=0.08)


def test_tail_exponent_needs_enough_eigenvalues():
    assert math.isnan(tail_exponent(np.arange(1, MIN_EVALS)))
    assert math.isnan(tail_exponent(np.ones(200)))        # no tail to fit


def test_heavy_tail_informs_below_two_and_above_six():
    rng = np.random.default_rng(2)
    heavy = np.sqrt(rng.random(1000) ** (-1 / 0.5))      # alpha 1.5
    good = np.sqrt(rng.random(1000) ** (-1 / 2.5))        # alpha 3.5
    random_like = np.linalg.svd(rng.standard_normal((600, 300)), compute_uv=False)
    h = history_of("spectrum", {"heavy": [heavy] * 3, "good": [good] * 3, "random": [random_like] * 3})
    found = {f.layer: f for f in kinds(detect(h), "heavy_tail")}
    assert set(found) == {"heavy", "random"}
    assert found["heavy"].severity == found["random"].severity == "info"
    assert "very heavy tail" in found["heavy"].message and "random-like" in found["random"].message


# -- edge of stability ----------------------------------------------------------------------------------

def test_edge_of_stability_with_sgd_only():
    h = history_of("sharpness", {"sharpness": [5.0, 15.0, 25.0, 18.0]})
    sgd = {"optimizer": {"class": "SGD", "lr": 0.1, "momentum": 0.0}}
    found = kinds(detect(h, sgd), "edge_of_stability")
    assert [(f.step, f.ended, f.severity) for f in found] == [(30, 40, "info")]   # 25 >= 2 / 0.1
    momentum = {"optimizer": {"class": "SGD", "lr": 0.1, "momentum": 0.9}}        # (2 + 1.8) / 0.1
    assert not kinds(detect(h, momentum), "edge_of_stability")
    assert not kinds(detect(h, {"optimizer": {"class": "Adam", "lr": 0.1}}), "edge_of_stability")
    assert not kinds(detect(h), "edge_of_stability")


# -- phases and the tracker ---------------------------------------------------------------------------

def test_phase_changes_are_information():
    h = history_of("phases", {"*": [np.array([120.0, 480.0] + [np.nan] * 14)]})
    found = kinds(detect(h), "phase_change")
    assert [(f.step, f.severity) for f in found] == [(120, "info"), (480, "info")]


def test_the_tracker_reports_starts_and_ends_once():
    h = History()
    tracker = FindingsTracker()
    events = []
    for t, dead in enumerate((6, 6, 6, 6, 0, 0)):
        h.record("neuron_modes", 10 * (t + 1), 0.0, {"fc": active(dead)})
        started, ended = tracker.update(h)
        events += [("start", f.step) for f in started] + [("end", f.ended) for f in ended]
    assert events == [("start", 10), ("end", 50)]
    assert [(f.step, f.ended) for f in tracker.findings] == [(10, 50)]


def test_a_healthy_history_has_no_findings():
    rng = np.random.default_rng(3)
    n = 12
    h = History()
    for t in range(n):
        step = 10 * (t + 1)
        h.record("rwc", step, 0.0, {f"l{i}.weight": 0.01 * (1 + 0.1 * rng.random()) / (t + 1) ** 0.3
                                    for i in range(4)})
        h.record("neuron_modes", step, 0.0, {"l0": rng.uniform(0.2, 0.8, 32)})
        h.record("effective_rank", step, 0.0, {"l0.weight": 30.0 - t * 0.5})
    assert detect(h) == []


# -- live: the monitor finds them as the analyses arrive; a stored run has the same ---------------------

def _train(monitor_kwargs, *, dead_bias=None, frozen=None, lr=0.05, steps=240, optimizer="adam"):
    import torch
    from torch import nn

    import nnmodes_widgets as nm

    torch.manual_seed(0)
    x = torch.randn(512, 16)
    y = (x[:, 0] + x[:, 1] > 0).long()
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    if dead_bias is not None:
        with torch.no_grad():
            model[2].bias[:48] = dead_bias          # 48 of 64 units of layer 2 never fire
    if frozen is not None:
        model[frozen].weight.requires_grad_(False)
    opt = (torch.optim.Adam(model.parameters(), lr=1e-2) if optimizer == "adam"
           else torch.optim.SGD(model.parameters(), lr=lr))
    monitor = nm.Monitor(model, opt, probe=(x[:128], y[:128]), **monitor_kwargs)
    for _ in range(steps):
        i = torch.randint(0, 512, (64,))
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[i]), y[i]).backward()
        opt.step()
        if monitor.current_step % 20 == 0:
            monitor.flush()      # every analysis gets its samples, whatever the machine's speed
    monitor.detach(timeout=None)
    return monitor


def test_the_monitor_finds_dead_units_and_a_frozen_layer_and_the_run_file_has_them(tmp_path):
    import nnmodes_widgets as nm

    monitor = _train({"every": 5, "budget": 1.0, "run": tmp_path / "provoked.nnmodes",
                      "analyses": ("rwc", "neuron_modes", "findings")}, dead_bias=-50.0, frozen=0)
    found = {(f.kind, f.layer) for f in monitor.findings if f.severity == "warning"}
    assert ("dead_units", "2") in found and ("not_learning", "0.weight") in found
    assert found <= {("dead_units", "2"), ("not_learning", "0.weight")}, found
    dead = next(f for f in monitor.findings if f.kind == "dead_units")
    assert dead.message.startswith("layer 2: 7") and "% of units dead since step" in dead.message
    # recorded when they started: in the history, and so in the run file
    assert set(monitor.history.layers("findings")) >= {"dead_units|2", "not_learning|0.weight"}
    run = nm.open_run(monitor.run_path)
    assert [(f.kind, f.layer, f.step) for f in run.findings if f.severity == "warning"] == \
        [(f.kind, f.layer, f.step) for f in monitor.findings if f.severity == "warning"]
    assert set(run.history.layers("findings")) == set(monitor.history.layers("findings"))


def test_a_healthy_run_has_no_warning():
    monitor = _train({"every": 5, "budget": 1.0, "run": False,
                      "analyses": ("rwc", "spectrum", "neuron_modes", "findings")})
    assert monitor.history.count("neuron_modes") >= 3 and monitor.history.count("spectrum") >= 3
    warnings = [f.message for f in monitor.findings if f.severity == "warning"]
    assert warnings == []


def test_sgd_past_two_over_lr_is_at_the_edge_of_stability():
    monitor = _train({"every": 5, "budget": 1.0, "run": False,
                      "analyses": ("rwc", "sharpness", "findings")}, optimizer="sgd", lr=2.0, steps=120)
    assert monitor.history.count("sharpness") >= 1
    _, sharp = monitor.history.get("sharpness", "sharpness")
    edge = [f for f in monitor.findings if f.kind == "edge_of_stability"]
    assert (sharp >= 2 / 2.0).any() == bool(edge)
    assert edge, f"sharpness {sharp} never reached 2 / lr = 1"
    assert "edge of stability" in edge[0].message and edge[0].severity == "info"


def test_the_running_median_of_the_exploding_rule_equals_each_prefix_median_as_the_history_grows():
    from nnmodes_widgets.runs.findings import EXPLODING_MIN_SAMPLES, SUSTAIN, _running_median

    rng = np.random.default_rng(0)
    mean = rng.lognormal(size=300)
    mean[rng.random(300) < 0.1] = np.nan          # steps no layer had a finite RWC at
    steps = np.arange(1, 301) * 10
    brute = np.full(300, np.nan)
    for t in range(300):
        before = mean[: t - SUSTAIN + 1] if t - SUSTAIN + 1 > 0 else mean[:0]
        before = before[np.isfinite(before)]
        if len(before) >= EXPLODING_MIN_SAMPLES:
            brute[t] = np.median(before)
    cache = {}
    for end in (7, 8, 120, 300):                   # the history as it grows
        np.testing.assert_array_equal(_running_median(steps[:end], mean[:end], cache), brute[:end])
    # another history in the same cache starts anew
    np.testing.assert_array_equal(_running_median(steps[:50] + 1, mean[:50], cache), brute[:50])


def test_a_healthy_digits_conv_net_has_no_warning():
    # the digits conv net of bench/live.py, trained as people do (Adam, batches of 32) on
    # scikit-learn's digits until it reads them: every analysis, every finding rule, no warning
    import torch
    from sklearn.datasets import load_digits
    from torch import nn

    import nnmodes_widgets as nm

    torch.manual_seed(0)
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8), torch.tensor(y)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(512, 32), nn.SiLU(), nn.Linear(32, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    monitor = nm.Monitor(model, opt, every=10, budget=1.0, run=False)
    for step in range(600):
        i = torch.randint(0, len(x), (32,))
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[i]), y[i]).backward()
        opt.step()
        if step % 50 == 49:
            monitor.flush()     # every analysis gets its samples, whatever the machine's speed
    monitor.detach(timeout=None)
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() > 0.9      # it learned
    assert monitor.errors == [] and monitor.history.count("neuron_modes") >= 5
    assert [f.message for f in monitor.findings if f.severity == "warning"] == []
