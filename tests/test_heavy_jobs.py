"""What the heavy analyses record besides their own figures (issue 12: analyses compute, widgets
render): the power-law fits beside the spectra, the clusters of the RWC trends; which failures
switch an analysis off (UnsupportedModel) and which are retried with backoff; one prepared pass
per radiograph run."""

import math
import threading
import time

import numpy as np
import pytest
import torch
from torch import nn

from spending import spend  # tests/spending.py

import nnmodes_widgets as nm
from nnmodes_widgets.live import dynamics_jobs, heavy, jobs
from nnmodes_widgets.live import sharpness as sharpness_module
from nnmodes_widgets.analysis import (UnsupportedModel, characteristic_maps, cluster_layers,
                                      fit_power_law, neuron_modes, pathway_layers,
                                      power_law_line, static_radiograph)
from nnmodes_widgets.analysis import pathways
from nnmodes_widgets.analysis.capture import Refusal
from nnmodes_widgets.analysis.clustering import aligned_series, bucket_means
from nnmodes_widgets.analysis.powerlaw import MIN_SEGMENT
from nnmodes_widgets.runs.history import History


def mlp(*sizes):
    torch.manual_seed(0)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def train(model, optimizer, steps, monitor=None):
    for _ in range(steps):
        optimizer.zero_grad()
        model(torch.randn(16, model[0].in_features)).pow(2).mean().backward()
        optimizer.step()
        if monitor is not None:
            monitor.flush()     # every offered run finishes: none is dropped


def unpaced(monitor, monkeypatch):
    """Every offer past the first runs of each analysis is taken at once (no pacing pause)."""
    monkeypatch.setattr(monitor.pacer, "rate", lambda e=None: math.inf)
    return monitor


def job(model, probe=None, history=None, step=1, reports=None, size=1.0):
    return jobs.Job(model=model, probe=probe, history=history, step=step,
                     report=lambda layer, exc: (reports if reports is not None else []).append(
                         (layer, exc)), size=size)


# -- power-law fits recorded with the spectra ------------------------------------------------------

def test_power_law_line_fits_the_positive_head():
    values = np.array([9.0, 5.0, 4.0, 3.1, 2.0, 1.7, 1.1, 0.0, 0.0])
    line = power_law_line(values)
    assert line.dtype == np.float64 and line.shape == values.shape
    np.testing.assert_allclose(line[:7], fit_power_law(values[:7], breaks=1).predict())
    assert np.isnan(line[7:]).all()
    # fewer than 2 * MIN_SEGMENT positive values: one segment; fewer than MIN_SEGMENT: none
    np.testing.assert_allclose(power_law_line(values[:5])[:5],
                               fit_power_law(values[:5], breaks=0).predict())
    assert np.isnan(power_law_line(np.array([3.0, 1.0, 0.0]))).all()
    assert np.isnan(power_law_line(np.zeros(0))).size == 0
    np.testing.assert_array_equal(power_law_line(torch.tensor(values)), line)


def test_power_law_is_recorded_with_every_spectrum_and_equals_a_fit_of_it(monkeypatch):
    model = mlp(8, 32, 16, 2)          # "4.weight" has 2 singular values: too few to fit
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = unpaced(nm.Monitor(model, optimizer, every=2, budget=1.0, analyses=("spectrum",)),
                      monkeypatch)
    train(model, optimizer, 12, monitor)
    h = monitor.history
    assert h.layers("power_law") == h.layers("spectrum") == ["0.weight", "2.weight", "4.weight"]
    checked = 0
    for layer in h.layers("spectrum"):
        steps, spectra = h.get("spectrum", layer)
        fit_steps, lines = h.get("power_law", layer)
        assert fit_steps.tolist() == steps.tolist() and len(steps) >= 5
        assert lines.dtype == np.float64 and lines.shape == spectra.shape
        for s, line in zip(spectra, lines):
            positive = s[s > 0]
            if len(positive) < MIN_SEGMENT:
                assert np.isnan(line).all()
                continue
            expected = fit_power_law(positive, breaks=1 if len(positive) >= 2 * MIN_SEGMENT
                                     else 0).predict()
            np.testing.assert_allclose(line[:len(positive)], expected, rtol=1e-12)
            assert np.isnan(line[len(positive):]).all()
            checked += 1
    assert checked >= 10 and monitor.errors == []
    monitor.detach()


def test_a_failing_fit_costs_only_its_layer(monkeypatch):
    model = mlp(8, 32, 16, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def fit(values):
        if len(values) == 16:      # "2.weight", 16 x 32
            raise FloatingPointError("fit diverged")
        return power_law_line(values)

    monkeypatch.setattr(jobs, "power_law_line", fit)
    monitor = nm.Monitor(model, optimizer, every=1, budget=1.0, analyses=("spectrum",))
    train(model, optimizer, 1, monitor)          # unpaced: run once after the sample of step 1
    h = monitor.history
    assert h.layers("spectrum") == ["0.weight", "2.weight", "4.weight"]   # every spectrum kept
    assert np.isnan(h.latest("power_law", "2.weight")[1]).all()
    assert np.isfinite(h.latest("power_law", "0.weight")[1]).all()
    [error] = monitor.errors
    assert (error.analysis, error.layer, error.step) == ("spectrum", "2.weight", 1)
    assert "FloatingPointError: fit diverged" in error.message
    assert monitor.notices == []                                           # not switched off
    monitor.detach()


# -- clusters of the RWC trends ------------------------------------------------------------------------

def test_bucket_means_average_consecutive_rows():
    steps = np.arange(10) * 3
    values = np.arange(20, dtype=float).reshape(10, 2)
    s, v = bucket_means(steps, values, 4)
    edges = np.linspace(0, 10, 5).astype(int)                       # [0, 2, 5, 7, 10]
    assert s.tolist() == steps[edges[1:] - 1].tolist()
    np.testing.assert_allclose(v, [values[a:b].mean(0) for a, b in zip(edges[:-1], edges[1:])])
    same_steps, same = bucket_means(steps, values, 10)
    assert same_steps is steps and same is values                   # short enough: as it is
    _, one_d = bucket_means(steps, values[:, 0], 4)                 # 1-D values too
    np.testing.assert_allclose(one_d, v[:, 0])


def test_rwc_clusters_are_recorded_and_equal_clustering_the_same_trends(monkeypatch):
    model = mlp(8, 16, 16, 16, 4)       # four weights
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = unpaced(nm.Monitor(model, optimizer, every=1, budget=1.0,
                                 analyses=("rwc", "clusters")), monkeypatch)
    train(model, optimizer, jobs.CLUSTER_MIN_SAMPLES - 1, monitor)
    assert monitor.history.count("rwc_clusters") == 0                # too short a trend yet
    train(model, optimizer, 6, monitor)
    h = monitor.history
    layers = ["0.weight", "2.weight", "4.weight", "6.weight"]
    assert h.layers("rwc_clusters") == layers
    steps = h.steps("rwc_clusters")
    assert steps[0] == jobs.CLUSTER_MIN_SAMPLES and len(steps) >= 3
    for step in steps[-3:]:
        rwc_steps, series = aligned_series(h, "rwc")
        kept = rwc_steps <= step
        expected = cluster_layers({layer: v[kept] for layer, v in series.items()})
        labels = {layer: h.get("rwc_clusters", layer)[1][list(steps).index(step)]
                  for layer in layers}
        assert labels == {layer: float(k) for layer, k in expected.labels.items()}
        assert all(isinstance(v, np.float64) for v in labels.values())
    assert monitor.errors == [] and monitor.notices == []
    monitor.detach()


def test_the_clusters_runner_averages_long_trends_into_buckets():
    history = History()
    rng = np.random.default_rng(0)
    trends = {"a": np.linspace(1, 0, 1203), "b": np.linspace(1, 0, 1203) ** 2,
              "c": np.full(1203, 0.3), "d": np.full(1203, 0.31)}
    for i in range(1203):
        history.record("rwc", 10 * (i + 1), 0.0,
                       {k: v[i] + 1e-3 * rng.standard_normal() for k, v in trends.items()})
    history.record("rwc", 12040, 0.0, {"a": 0.1})        # only "a": not a common step
    out = jobs.clusters(job(None, history=history, step=12040))
    steps, series = aligned_series(history, "rwc")
    assert out[jobs.STEP] == steps[-1] == 12030
    matrix = np.stack(list(series.values()))
    bucketed, means = bucket_means(np.arange(matrix.shape[1]), matrix.T, jobs.CLUSTER_MAX_POINTS)
    assert means.shape == (jobs.CLUSTER_MAX_POINTS, 4)
    expected = cluster_layers(dict(zip(series, means.T)))
    assert out["rwc_clusters"] == {k: float(v) for k, v in expected.labels.items()}
    assert out["rwc_clusters"]["c"] == out["rwc_clusters"]["d"]


def test_no_clusters_without_enough_layers_or_samples_or_rwc(monkeypatch):
    runs = []
    real = jobs.clusters
    monkeypatch.setattr(jobs, "clusters", lambda j: runs.append(j.step) or real(j))
    # two weights: never offered
    model = mlp(8, 16, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = unpaced(nm.Monitor(model, optimizer, every=1, budget=1.0,
                                 analyses=("rwc", "clusters")), monkeypatch)
    train(model, optimizer, 12, monitor)
    assert runs == [] and monitor.history.count("rwc_clusters") == 0
    monitor.detach()
    # no RWC sampled: never offered
    model = mlp(8, 16, 16, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = nm.Monitor(model, optimizer, every=1, budget=1.0, analyses=("clusters",))
    train(model, optimizer, 12, monitor)
    assert runs == [] and monitor.errors == [] and monitor.notices == []
    monitor.detach()
    # a layer without a finite trend: nothing recorded, and not an error
    history = History()
    for i in range(10):
        history.record("rwc", i, 0.0, {"a": 0.1 * i, "b": 0.2, "c": float("nan")})
    assert jobs.clusters(job(None, history=history)) == {}


# -- switched off only for what cannot work; other faults retried with backoff --------------------

def test_the_analyses_say_what_they_cannot_compute_with_unsupported_model():
    assert Refusal is UnsupportedModel and issubclass(UnsupportedModel, ValueError)
    with pytest.raises(UnsupportedModel, match="nothing to analyse"):
        pathway_layers(nn.Sequential(nn.ReLU()))
    with pytest.raises(UnsupportedModel, match="calls no elementwise activation"):
        neuron_modes(nn.Sequential(nn.Linear(3, 2)), torch.randn(4, 3))
    batch_stats = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3, track_running_stats=False),
                                nn.ReLU(), nn.Linear(3, 2))
    with pytest.raises(UnsupportedModel, match="batch statistics"):
        static_radiograph(batch_stats, "3")
    with pytest.raises(UnsupportedModel, match="no input to differentiate"):
        characteristic_maps(nn.Sequential(nn.Linear(3, 2)), torch.zeros(2, 3, dtype=torch.long), "0")
    with pytest.raises(UnsupportedModel, match="no weight with ndim >= 2"):
        nm.analysis.mode_spectrum(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="does not fit") as info:   # the input's fault
        static_radiograph(nn.Sequential(nn.Linear(3, 2)), "0", x=torch.randn(2, 5))
    assert not isinstance(info.value, UnsupportedModel)


def test_batch_statistics_switch_off_only_the_analyses_that_need_a_jacobian(monkeypatch):
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8, track_running_stats=False),
                          nn.ReLU(), nn.Linear(8, 3))
    x = torch.randn(32, 6)
    monitor = unpaced(nm.Monitor(model, every=1, budget=1.0, probe=x,
                                 analyses=("neuron_modes", "characteristic_maps", "radiograph")),
                      monkeypatch)
    for _ in range(6):
        monitor.step()
        monitor.flush()
    off = {n.analysis: n.message for n in monitor.notices if "switched off" in n.message}
    assert sorted(off) == ["characteristic_maps", "radiograph"]
    assert all("batch statistics" in m for m in off.values())
    assert monitor.history.count("neuron_modes") == 4 and monitor.errors == []
    assert monitor._heavy.names == ["neuron_modes"]
    monitor.detach()


def spectrum_monitor(monkeypatch, runner):
    monkeypatch.setattr(jobs, "spectrum", runner)
    model = mlp(8, 16, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = unpaced(nm.Monitor(model, optimizer, every=1, budget=1.0, analyses=("spectrum",)),
                      monkeypatch)
    return monitor, model, optimizer


def test_unsupported_model_switches_off_with_a_notice(monkeypatch):
    calls = []

    def unsupported(j):
        calls.append(j.step)
        raise UnsupportedModel("this model has no spectrum")

    monitor, model, optimizer = spectrum_monitor(monkeypatch, unsupported)
    train(model, optimizer, 8, monitor)
    assert calls == [1] and monitor.errors == []
    [notice] = monitor.notices
    assert (notice.analysis, notice.message) == \
        ("spectrum", "switched off for this model: this model has no spectrum")
    monitor.detach()


def test_any_other_fault_is_an_error_and_the_analysis_runs_again_and_records(monkeypatch):
    calls = []

    def flaky(j):       # out of memory once, on its very first run
        calls.append(j.step)
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory (pretend)")
        return {"spectrum": {"w": np.ones(3)}}

    monitor, model, optimizer = spectrum_monitor(monkeypatch, flaky)
    train(model, optimizer, 6, monitor)
    [error] = monitor.errors
    assert (error.analysis, error.step) == ("spectrum", 1) and "out of memory" in error.message
    assert monitor.notices == [] and "spectrum" in monitor._heavy.names
    # one turn skipped after the fault, then every turn again
    assert calls == [1, 3, 4, 5, 6]
    assert monitor.history.steps("spectrum").tolist() == [3, 4, 5, 6]
    monitor.detach()


def test_consecutive_faults_back_off_exponentially_up_to_a_cap(monkeypatch):
    calls = []

    def broken(j):
        calls.append(j.step)
        raise RuntimeError("still broken")

    monitor, model, optimizer = spectrum_monitor(monkeypatch, broken)
    train(model, optimizer, 110, monitor)
    # skipped 1, 2, 4, 8, 16, then 32 (MAX_BACKOFF) turns after each fault
    assert heavy.MAX_BACKOFF == 32
    assert calls == [1, 3, 6, 11, 20, 37, 70, 103]
    assert [e.step for e in monitor.errors] == calls and monitor.notices == []
    monitor.detach()


def test_a_run_that_works_ends_the_backoff(monkeypatch):
    calls = []

    def recovering(j):
        calls.append(j.step)
        if len(calls) <= 3:
            raise RuntimeError("transient")
        return {"spectrum": {"w": np.ones(3)}}

    monitor, model, optimizer = spectrum_monitor(monkeypatch, recovering)
    train(model, optimizer, 16, monitor)
    assert calls == [1, 3, 6, 11, 12, 13, 14, 15, 16]
    assert len(monitor.errors) == 3 and monitor.history.count("spectrum") == 6
    monitor.detach()


def test_a_backing_off_analysis_leaves_its_turns_to_the_others(monkeypatch):
    calls = []

    def broken(j):
        calls.append(j.step)
        raise RuntimeError("broken")

    monkeypatch.setattr(jobs, "spectrum", broken)
    model = mlp(8, 16, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = unpaced(nm.Monitor(model, optimizer, every=1, budget=1.0, probe=torch.randn(8, 8),
                                 analyses=("spectrum", "neuron_modes")), monkeypatch)
    train(model, optimizer, 12, monitor)
    # every step runs one of them, in turns (the one that waited longest): the spectrum at
    # its turns (it fails at once) unless it is backing off (1 turn after its first fault, 2
    # after the second, 4 after the third), else neuron modes
    assert calls == [1, 4, 8]
    assert monitor.history.steps("neuron_modes").tolist() == [2, 3, 5, 6, 7, 9, 10, 11, 12]
    assert [e.step for e in monitor.errors] == [1, 4, 8]
    monitor.detach()


# -- one prepared pass per run -------------------------------------------------------------------

@pytest.fixture
def passes(monkeypatch):
    """Counts every capture (forward pass watched) the heavy runners make, theirs and the
    analysis functions'."""
    from nnmodes_widgets.analysis import capture as capture_module
    from nnmodes_widgets.analysis import neurons

    counted = []
    real = capture_module.capture

    def counting(model, inputs, **kwargs):
        counted.append((inputs.batch, kwargs.get("static", False)))
        return real(model, inputs, **kwargs)

    for module in (jobs, pathways, neurons):
        monkeypatch.setattr(module, "capture", counting)
    return counted


def test_one_radiograph_run_makes_one_pass_whatever_the_depth(passes):
    model = mlp(8, 16, 16, 16, 16, 4)
    probe = torch.randn(32, 8)
    out = jobs.radiograph(job(model, probe))
    assert passes == [(1, True)]                    # one static pass of one sample
    assert list(out["radiograph"]) == pathway_layers(model)
    for layer, maps in out["radiograph"].items():
        np.testing.assert_allclose(maps, static_radiograph(model, layer)[:jobs.RADIOGRAPH_UNITS]
                                   .numpy(), rtol=1e-5, atol=1e-7)


def test_a_radiograph_with_frozen_factors_is_averaged_and_needs_a_second_pass_once(passes):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 12), nn.LayerNorm(12), nn.ReLU(), nn.Linear(12, 3)).eval()
    probe = torch.randn(32, 8)
    first = jobs.radiograph(job(model, probe))
    assert passes == [(1, True), (jobs.FROZEN_SAMPLES, True)]     # found frozen: averaged
    passes.clear()
    again = jobs.radiograph(job(model, probe))
    assert passes == [(jobs.FROZEN_SAMPLES, True)]                # known: one pass
    expected = static_radiograph(model, "3", x=probe[:jobs.FROZEN_SAMPLES])
    for out in (first, again):
        np.testing.assert_allclose(out["radiograph"]["3"], expected.numpy(), rtol=1e-5, atol=1e-7)
        assert "1:layer_norm (scale)" in out[jobs.NOTES][""]


def test_a_radiograph_run_in_turns_averages_only_where_its_layers_have_factors_frozen(passes):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 12), nn.LayerNorm(12),
                          nn.ReLU(), nn.Linear(12, 3)).eval()           # layers "0", "2", "5"
    probe = torch.randn(32, 8)
    one_layer = jobs.MIN_UNITS / jobs.RADIOGRAPH_UNITS / 3
    runs = [jobs.radiograph(job(model, probe, size=one_layer)) for _ in range(4)]
    assert [list(r["radiograph"]) for r in runs] == [["0"], ["2"], ["5"], ["0"]]
    # the first run's whole pass found the LayerNorm frozen: a second of FROZEN_SAMPLES; then
    # only the turn of "5", after it, averages
    assert passes == [(1, True), (jobs.FROZEN_SAMPLES, True), (1, True),
                      (jobs.FROZEN_SAMPLES, True), (1, True)]
    np.testing.assert_allclose(runs[1]["radiograph"]["2"][:jobs.MIN_UNITS],
                               static_radiograph(model, "2")[:jobs.MIN_UNITS].numpy(),
                               rtol=1e-5, atol=1e-7)
    expected = static_radiograph(model, "5", x=probe[:jobs.FROZEN_SAMPLES])
    np.testing.assert_allclose(runs[2]["radiograph"]["5"], expected.numpy(), rtol=1e-5, atol=1e-7)


def test_characteristic_maps_and_neuron_modes_share_their_prepared_pass(passes):
    model = mlp(8, 16, 16, 4)
    probe = torch.randn(40, 8)
    jobs.characteristic_maps(job(model, torch.randn(40, 8)))    # another probe: its own pass
    passes.clear()
    out = jobs.characteristic_maps(job(model, probe))
    # the prepared pass (of two samples) sizes the chunks: no sizing pass of its own
    assert len(passes) == 2 and passes[0] == (2, False)
    y = model(probe).argmax(1)
    index = torch.cat([(y == c).nonzero().flatten()[:jobs.CLASS_SAMPLES] for c in range(4)])
    np.testing.assert_allclose(out["characteristic_maps"]["4"],
                               characteristic_maps(model, probe[index], "4", y=y[index],
                                                   num_classes=4).flatten(2).numpy(),
                               rtol=1e-5, atol=1e-6, equal_nan=True)
    passes.clear()
    out = jobs.neuron_modes(job(model, probe))
    # the prepared pass ran once for the copy and this probe (it was a third of a ResNet-18's
    # neuron-modes run); the classes come from the analysed pass's own output
    assert passes == [(40, False)]
    n = min(40, jobs.NEURON_SAMPLES)
    expected = neuron_modes(model, probe[:n], y=y[:n], num_classes=4, with_order=False)
    for layer, fractions in out["neuron_classes"].items():
        np.testing.assert_allclose(fractions, expected[layer].class_active_fraction.numpy())


@pytest.mark.parametrize("absent", [False, True])
def test_characteristic_maps_predict_only_as_many_samples_as_their_classes_need(absent,
                                                                                 monkeypatch):
    # The prediction of a whole probe was half of a 10M CNN's characteristic maps run at the
    # smallest size (one sample of each class): the passes stop once every class has its
    # samples, in chunks of classes x samples, doubling; the samples taken are the same. A
    # class never predicted needs every sample predicted.
    # predicts argmax(x[:4]): relu(x) - relu(-x) = x (a random net predicts mostly one class)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    with torch.no_grad():
        model[0].weight.copy_(torch.cat([torch.eye(8), -torch.eye(8)]))
        model[2].weight.copy_(torch.cat([torch.eye(8), -torch.eye(8)], 1)[:4])
        model[0].bias.zero_()
        model[2].bias.zero_()
        if absent:
            model[2].bias[3] = -1e3                  # class 3: never predicted
    torch.manual_seed(0)
    probe = torch.randn(200, 8)
    probe[torch.arange(200), torch.arange(200) % 4] = 10.0     # sample i predicts i % 4
    predicted, call_model = [], jobs.call_model

    def predicting(model, x):                        # the runner's own passes: its predictions
        predicted.append(x.batch)
        return call_model(model, x)
    monkeypatch.setattr(jobs, "call_model", predicting)
    out = jobs.characteristic_maps(job(model, probe))
    with torch.no_grad():
        y = model(probe).argmax(1)
    per_class = jobs.CLASS_SAMPLES
    seen = torch.stack([(y[:n + 1, None] == torch.arange(4)).sum(0) for n in range(200)])
    needed = 200 if absent else int((seen >= per_class).all(1).nonzero()[0]) + 1
    assert needed == (200 if absent else 4 * per_class)
    chunks, total, size = [], 0, 4 * per_class
    while total < needed:
        chunks.append(min(size, 200 - total))
        total, size = total + chunks[-1], 2 * size
    assert predicted == chunks
    index = torch.cat([(y == c).nonzero().flatten()[:per_class] for c in range(4)])
    np.testing.assert_allclose(out["characteristic_maps"]["2"],
                               characteristic_maps(model, probe[index], "2", y=y[index],
                                                   num_classes=4).flatten(2).numpy(),
                               rtol=1e-5, atol=1e-6, equal_nan=True)


# -- whose turn it is ---------------------------------------------------------------------------------

def test_the_turn_is_of_the_analysis_that_waited_longest(monkeypatch):
    model = mlp(8, 16, 4)
    monitor = nm.Monitor(model, None, budget=0.05, run=False,
                         analyses=("spectrum", "alignment", "radiograph"))
    heavy_ = monitor._heavy
    ready = ["spectrum", "alignment", "radiograph"]
    assert next(heavy_._turns(ready), None) == "spectrum"  # none ran yet: the registry's order
    now = time.perf_counter()
    heavy_._started = {"spectrum": now - 3, "alignment": now - 5, "radiograph": now - 4}
    assert next(heavy_._turns(ready), None) == "alignment"         # the longest wait
    heavy_._started["alignment"] = now - 0.5          # ran just now: at most once a second
    assert next(heavy_._turns(ready), None) == "radiograph"
    heavy_._started = {"spectrum": now - 0.1, "alignment": now - 0.2, "radiograph": now - 0.3}
    assert next(heavy_._turns(ready), None) is None  # every one ran within the last second
    monitor.detach()


def test_the_analyses_panels_refresh_from_come_round_ten_times_as_often_as_the_others():
    model = mlp(8, 16, 4)
    monitor = nm.Monitor(model, None, budget=0.05, run=False, analyses=("spectrum", "clusters"))
    heavy_ = monitor._heavy
    now = time.perf_counter()
    # the spectrum refreshes its panel; the clusters only colour the trend's lines: their wait
    # counts a tenth (at a quarter, clusters and sharpness took half of a small model's worker
    # time, and its panels moved every 2.5-4 s)
    heavy_._started = {"spectrum": now - 3, "clusters": now - 29}
    assert next(heavy_._turns(["spectrum", "clusters"]), None) == "spectrum"      # 3 > 29 / 10
    heavy_._started = {"spectrum": now - 3, "clusters": now - 31}
    assert next(heavy_._turns(["spectrum", "clusters"]), None) == "clusters"      # 3 < 31 / 10
    monitor.detach()


def test_libraries_are_imported_when_the_monitor_is_made_not_in_a_training_step(monkeypatch):
    imported, real = [], heavy.importlib.import_module

    def recording(name, package=None):
        imported.append((name, threading.current_thread().name))
        return real(name, package)
    monkeypatch.setattr(heavy.importlib, "import_module", recording)
    model = mlp(8, 16, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = nm.Monitor(model, optimizer, every=1, budget=1.0, run=False,
                         analyses=("rwc", "clusters", "phases", "spectrum"))
    # the registry's imports of the analyses chosen, each once, by the thread making the
    # monitor: before training, so that neither a step nor the worker's budget pays for them
    made = [(name, thread) for name, thread in imported if not name.startswith("nnmodes_widgets")]
    assert sorted(made) == [("ruptures", "MainThread"), ("sklearn.cluster", "MainThread")]
    train(model, optimizer, 2, monitor)
    monitor.flush()
    # then only the runners (resolved by name) of the jobs
    later = [name for name, _ in imported[len(made):]]
    assert later and all(name.startswith("nnmodes_widgets.live.") for name in later), later
    monitor.detach()


@pytest.mark.parametrize("name, module, runner", [
    ("basins", dynamics_jobs, "basins"), ("sharpness", sharpness_module, "sharpness_run")])
def test_a_costly_analysis_is_tried_with_what_its_credit_holds_and_stopped_past_what_the_budget_allows(
        monkeypatch, name, module, runner):
    # A costly analysis (many passes a run) is on by default only where it fits the budget. Its
    # cost was estimated before its first run from the neuron modes' run, tens of times too high
    # on a small MLP (basins was off there); then its first run was a trial allowed at once the
    # longest run whose credit comes once in OPTIONAL_MAX_PERIOD: 0.2 s of basins 2 s into a
    # digits ResNet's training held the measured slowdown at 10-16% for 10 s. Now each trial
    # waits for the credit of what it may take, a run's worth first, TRIAL_GROWTH times more
    # after each stopped short, and the analysis is switched off only when stopped at the whole
    returned = []

    def endless(job):          # as a 10M CNN's run: far longer than any budget allows
        spend(30.0)
        returned.append(job.step)
        return {}
    monkeypatch.setattr(module, runner, endless)
    model = mlp(8, 16, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = nm.Monitor(model, optimizer, budget=0.05, run=False, probe=torch.randn(8, 8))
    h = monitor._heavy
    assert name in h.optional and h._size(name) == (heavy.FIRST_SIZE if name == "basins" else 1.0)
    whole = h._whole_trial()
    # at 5% (0.048 training s a second, a quarter of it to the others' account) a run of
    # whole x c training seconds is earned once in OPTIONAL_MAX_PERIOD
    e = monitor.pacer.estimate()
    earned = heavy.OTHERS_SHARE * 0.05 / 1.05
    assert whole * e["contention"] / earned == pytest.approx(heavy.OPTIONAL_MAX_PERIOD)
    limits = []
    for step in range(3, 10):
        limit = h._trial_limit(name)
        # what the trial may take is what its account must hold before it starts
        assert h._need(name, e) == pytest.approx(monitor.pacer.cost(limit, e=e))
        limits.append(limit)
        h._start(name, step)
        assert monitor.flush(timeout=20)          # stopped: not after its 30 s
        if name not in h.names:
            break
        assert not monitor.notices, monitor.notices     # stopped short: tried again
    assert limits[0] == heavy.FIRST_TRIAL
    assert limits[1:-1] == pytest.approx([heavy.FIRST_TRIAL * heavy.TRIAL_GROWTH ** k
                                          for k in range(1, len(limits) - 1)])
    assert limits[-1] == pytest.approx(whole) and limits[-2] < whole
    assert returned == [] and name not in h.names
    [notice] = [n.message for n in monitor.notices if n.analysis == name]
    assert notice.startswith("off by default for this model: one run was stopped after"), notice
    assert h._trial_limit("spectrum") is None                 # the panels' are never tried
    monitor.detach()
    # asked for by name, it is not on trial
    chosen = nm.Monitor(model, optimizer, budget=0.05, run=False, analyses=(name,))
    assert chosen._heavy.optional == set() and chosen._heavy._trial_limit(name) is None
    chosen.detach()


def test_a_worker_that_costs_nothing_measurable_leaves_a_trial_its_allowance():
    # the worker's steps no slower than the quiet ones around them: a contention of 0, and the
    # longest trial that fits the budget is any (an architectures GPT's scheduling raised a
    # ZeroDivisionError at each look)
    model = mlp(8, 16, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = nm.Monitor(model, optimizer, budget=0.05, run=False, probe=torch.randn(8, 8))
    h = monitor._heavy
    pacer = monitor.pacer
    pacer._estimate = dict(pacer.estimate(), contention=0.0)
    assert h._whole_trial() == math.inf
    assert h._trial_limit("basins") == heavy.FIRST_TRIAL
    monitor.detach()
    assert monitor.errors == []


def test_a_costly_analysis_that_fits_is_tried_once_then_runs_on(monkeypatch):
    def quick(job):
        spend(0.01)
        return {"sharpness": {"sharpness": 1.0}}
    monkeypatch.setattr(sharpness_module, "sharpness_run", quick)
    model = mlp(8, 16, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = nm.Monitor(model, optimizer, budget=0.05, run=False, probe=torch.randn(8, 8))
    h = monitor._heavy
    assert h._trial_limit("sharpness") is not None
    h._start("sharpness", 3)
    assert monitor.flush(timeout=20)
    assert "sharpness" in h.names and monitor.history.count("sharpness") == 1
    assert h._trial_limit("sharpness") is None                # tried: its runs are measured
    monitor.detach()


@pytest.mark.parametrize("seconds, kept", [(0.6, False), (0.02, True)])
def test_an_optional_analysis_that_took_too_long_is_switched_off(monkeypatch, seconds, kept):
    # Once a run has shown what it costs, an optional analysis stays on only where its account
    # earns that once in OPTIONAL_MAX_PERIOD (30 s). 0.6 s of CPU at 5% of the budget (a quarter
    # of it to the others' account) is once in 50 s at the least; 0.02 s once in 2 s.
    def spending(job):
        spend(seconds)
        return {"sharpness": {"sharpness": 1.0}}
    monkeypatch.setattr(sharpness_module, "sharpness_run", spending)
    model = mlp(8, 16, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = nm.Monitor(model, optimizer, budget=0.05, run=False)
    h = monitor._heavy
    job = jobs.Job(model=None, probe=None, history=monitor.history, step=3,
                   report=lambda layer, exc: None)
    h._started["sharpness"] = time.perf_counter()
    h._run("sharpness", job, time.time(), None)
    assert ("sharpness" in h.names) == kept
    off = [n.message for n in monitor.notices if n.analysis == "sharpness"]
    assert bool(off) != kept and all(m.startswith("off by default for this model: one run took")
                                     for m in off), off
    assert monitor.history.count("sharpness") == 1          # what it computed is kept
    monitor.detach()


def test_an_optional_analysis_above_its_smallest_size_is_made_smaller_not_switched_off(monkeypatch):
    def spending(job):
        spend(0.6)
        return {}
    monkeypatch.setattr(dynamics_jobs, "basins", spending)
    monitor = nm.Monitor(mlp(8, 16, 4), None, budget=0.05, run=False)
    h = monitor._heavy
    assert "basins" in h.optional
    # a first run, at the smallest (every first run is), is not judged: it costs a warm-up more
    for size, kept in ((heavy.MIN_SIZE, True), (0.5, True), (heavy.MIN_SIZE, False)):
        job = jobs.Job(model=None, probe=None, history=monitor.history, step=3,
                       report=lambda layer, exc: None, size=size)
        h._started["basins"] = time.perf_counter()
        h._run("basins", job, time.time(), None)
        assert ("basins" in h.names) == kept, size
        if kept:
            assert h._size("basins") < max(size, 2 * heavy.MIN_SIZE)   # smaller, or the smallest
    monitor.detach()


def test_every_analysis_is_described_once_in_the_registry_and_every_name_in_it_resolves():
    from nnmodes_widgets.runs.analyses import REGISTRY, analysis
    from nnmodes_widgets.runs.history import ANALYSES

    assert heavy.HEAVY == tuple(a.name for a in REGISTRY if a.background)
    assert sorted(ANALYSES) == sorted(r for a in REGISTRY for r in a.records)   # each once
    monitor = nm.Monitor(mlp(8, 16, 4), run=False)
    dashboard = monitor.dashboard()
    try:
        for described in REGISTRY:
            for ref in (described.runner, described.ready):
                assert ref is None or callable(heavy.resolve(ref)), ref
            assert described.panel is None or hasattr(dashboard, described.panel), described.panel
    finally:
        dashboard.close()
        monitor.detach()
    assert [a.name for a in REGISTRY if a.last] == ["phases", "findings"]   # findings read the phases
    with pytest.raises(ValueError, match="unknown analysis 'radiographs'; choose from"):
        analysis("radiographs")
