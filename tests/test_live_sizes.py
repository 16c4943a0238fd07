"""Live sizes (SPEC 5, wave 3): a run given a smaller size analyses less (samples, units,
leading values, neurons) and its note says so; the scheduler halves a size whose run did not
fit its share of a round and doubles one that would fit twice; notes are kept once the size
has settled."""

import numpy as np
import pytest
import torch
from torch import nn

import nnmodes_widgets as nm
from nnmodes_widgets.analysis import neuron_modes, static_radiograph, weight_alignment
from nnmodes_widgets.live import dynamics_jobs, heavy, jobs
from nnmodes_widgets.live.jobs import REDUCED


def job(model, probe=None, size=1.0):
    return jobs.Job(model=model, probe=probe, history=None, step=1,
                    report=lambda layer, exc: None, size=size)


def mlp(*sizes):
    torch.manual_seed(0)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1]).eval().requires_grad_(False)


def test_neuron_modes_at_a_quarter_size_take_a_quarter_of_the_samples_and_say_so():
    model, probe = mlp(8, 32, 4), torch.randn(200, 8)
    full = jobs.neuron_modes(job(model, probe))
    quarter = jobs.neuron_modes(job(model, probe, size=0.25))
    n = jobs.NEURON_SAMPLES // 4
    np.testing.assert_array_equal(quarter["neuron_modes"]["0"],
                                  neuron_modes(model, probe[:n])["0"].active_fraction.numpy())
    assert full["neuron_modes"]["0"].shape == quarter["neuron_modes"]["0"].shape
    assert quarter[jobs.NOTES][""].startswith(
        f"live from the first {n} of {jobs.NEURON_SAMPLES} probe samples ({REDUCED}):")
    assert full[jobs.NOTES][""].startswith(f"live from the first {jobs.NEURON_SAMPLES} probe "
                                           "samples:")


def test_neuron_modes_below_their_fewest_samples_take_the_activations_in_turns(monkeypatch):
    model, probe = mlp(8, 32, 32, 32, 4), torch.randn(40, 8)     # layers "0", "2", "4", "6"
    n = jobs.MIN_NEURON_SAMPLES
    x = probe[:n]
    predicted = model(x).argmax(1)
    whole = neuron_modes(model, x, y=predicted, num_classes=4)
    ran, predicting, call_model = [], [], jobs.call_model
    model[6].register_forward_hook(lambda *a: ran.append("6"))

    def counting(m, inputs):                       # the probe rows each prediction takes
        rows = [i for i in range(n) for row in inputs.args[0] if torch.equal(row, x[i])]
        predicting.append((len(runs), rows))
        return call_model(m, inputs)
    monkeypatch.setattr(jobs, "call_model", counting)
    half = n / jobs.NEURON_SAMPLES / 2
    runs = []
    for _ in range(4):
        ran.clear()
        runs.append((jobs.neuron_modes(job(model, probe, size=half)), list(ran)))
    # the first run: a whole pass (after the prepared one), which shows the activations follow
    # "0", "2" and "4" (keyed by them); then those after one of them a run, the pass ending at
    # the next weight layer ("6" after "4"); a sample's prediction runs "6" too
    assert [(list(r["neuron_modes"]), seen) for r, seen in runs] == [
        (["0", "2", "4"], ["6", "6"]), (["0"], ["6"]), (["2"], []), (["4"], ["6", "6"])]
    # the whole pass's own classes were kept: the runs after it predict one sample at most
    assert predicting == [(1, [0]), (3, [1])]
    for r, _ in runs:
        for layer, active in r["neuron_modes"].items():
            np.testing.assert_array_equal(active, whole[layer].active_fraction.numpy())
            np.testing.assert_array_equal(r["neuron_classes"][layer],
                                          whole[layer].class_active_fraction.numpy())
    note = "; the activations in turns, those of about 1/2 of the layers a run"
    assert note not in runs[0][0][jobs.NOTES][""]
    for r, _ in runs[1:]:
        assert r[jobs.NOTES][""].endswith(
            f"{note}; the classes as predicted at most {jobs.PREDICTION_RUNS - 1} runs before")
    final = jobs.neuron_modes(jobs.Job(model=model, probe=probe, history=None, step=1,
                                       report=lambda *a: None, size=half, final=True))
    assert list(final["neuron_modes"]) == ["0", "2", "4"]   # the final round: every activation
    predicting.clear()
    for _ in range(3 * jobs.PREDICTION_RUNS):
        runs.append(None)
        jobs.neuron_modes(job(model, probe, size=half))
    # every sample predicted anew once in PREDICTION_RUNS runs, one at a time
    for start in range(5, 5 + 2 * jobs.PREDICTION_RUNS):
        window = [rows for run, rows in predicting if start <= run < start + jobs.PREDICTION_RUNS]
        assert sorted(sum(window, [])) == list(range(n)) and max(map(len, window)) == 1


def test_a_smaller_radiograph_computes_the_first_units_and_leaves_the_others_as_gaps():
    model, probe = mlp(8, 96, 4), torch.randn(4, 8)
    small = jobs.radiograph(job(model, probe, size=1 / 8))
    full = jobs.radiograph(job(model, probe))
    units = jobs.RADIOGRAPH_UNITS // 8
    r, f = small["radiograph"]["0"], full["radiograph"]["0"]
    assert r.shape == f.shape == (jobs.RADIOGRAPH_UNITS, 8)      # the rows of the full size
    np.testing.assert_allclose(r[:units], static_radiograph(model, "0")[:units].numpy(),
                               rtol=1e-5, atol=1e-7)
    assert np.isnan(r[units:]).all() and not np.isnan(f).any()
    # the output layer has 4 units: all of them at any size
    assert small["radiograph"]["2"].shape == (4, 8) and not np.isnan(small["radiograph"]["2"]).any()
    assert small[jobs.NOTES][""] == f"live: the first {units} units of each layer ({REDUCED})"
    assert jobs.NOTES not in full


def test_a_radiograph_below_its_fewest_units_takes_the_layers_in_turns():
    # a ResNet-18's run at 4 units took 0.67 s, each of its 21 layers' pull-back about the same:
    # below the size that leaves 4 units, the layers in turns, the rest of the size of them a run
    model, probe = mlp(8, 96, 64, 32, 4), torch.randn(4, 8)       # layers "0", "2", "4", "6"
    full = jobs.radiograph(job(model, probe, size=jobs.MIN_UNITS / jobs.RADIOGRAPH_UNITS))
    assert list(full["radiograph"]) == ["0", "2", "4", "6"]      # at 4 units: every layer
    half = jobs.MIN_UNITS / jobs.RADIOGRAPH_UNITS / 2
    ran = []
    for name in ("2", "6"):
        model.get_submodule(name).register_forward_hook(lambda m, a, o, name=name: ran.append(name))
    runs = []
    for _ in range(3):
        ran.clear()
        runs.append(jobs.radiograph(job(model, probe, size=half)))
        runs[-1]["ran"] = list(ran)
    assert [list(r["radiograph"]) for r in runs] == [["0", "2"], ["4", "6"], ["0", "2"]]
    # each pass ends at the deepest layer of its run (the run of every layer gave their order)
    assert [r.pop("ran") for r in runs] == [["2"], ["2", "6"], ["2"]]
    for r in runs[:2]:
        for layer, value in r["radiograph"].items():     # as the run of every layer has them
            np.testing.assert_allclose(value, full["radiograph"][layer], rtol=1e-5, atol=1e-7)
    assert runs[0][jobs.NOTES][""] == (f"live: the first {jobs.MIN_UNITS} units of each layer, "
                                       f"the layers in turns, about 1/2 of them a run ({REDUCED})")
    quarter = jobs.radiograph(job(model, probe, size=half / 2))   # one layer: "4", the next
    assert list(quarter["radiograph"]) == ["4"]
    final = jobs.radiograph(jobs.Job(model=model, probe=probe, history=None, step=1,
                                     report=lambda *a: None, size=half, final=True))
    assert list(final["radiograph"]) == ["0", "2", "4", "6"]    # the final round: every layer


def test_a_smaller_spectrum_lists_fewer_leading_values_in_a_record_of_the_same_length():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10)).eval()
    model.requires_grad_(False)
    small = jobs.spectrum(job(model, size=1 / 16))
    exact = torch.linalg.svdvals(model[0].weight.double()).numpy()
    s = small["spectrum"]["0.weight"]
    assert s.shape == (1024,)                          # the full size's length: all of them
    top = jobs.MIN_TOP
    np.testing.assert_allclose(s[:top], exact[:top], rtol=1e-3)
    assert np.isnan(s[top:]).all() and np.isnan(small["power_law"]["0.weight"][top:]).all()
    # the layers in turns: the first holds more than 1/16 of the elements, alone in its run
    assert list(small["spectrum"]) == ["0.weight"]
    assert small[jobs.NOTES][""] == ("live: the layers in turns, about 1/16 of the weights a run; "
                                     f"live: the leading {top} singular values of 0.weight "
                                     f"({REDUCED})")
    then = jobs.spectrum(job(model, size=1 / 16))
    assert list(then["spectrum"]) == ["2.weight"]      # small enough: exact at any size
    np.testing.assert_allclose(then["spectrum"]["2.weight"], torch.linalg.svdvals(
        model[2].weight.double()).numpy(), rtol=1e-5)
    full = jobs.spectrum(job(model))
    assert list(full["spectrum"]) == ["0.weight", "2.weight"]
    # a float32 SVD's values are exact to about n eps |W| in absolute terms (Weyl): MKL on an AMD
    # EPYC gave the smallest of these 1024, 0.001, 2e-5 off
    np.testing.assert_allclose(full["spectrum"]["0.weight"], exact, rtol=1e-4,
                               atol=1024 * np.finfo(np.float32).eps * exact[0])
    assert jobs.NOTES not in full


def test_spectrum_runs_of_a_smaller_size_take_the_layers_in_turns_by_their_elements():
    model = nn.Sequential(nn.Linear(100, 100), nn.Linear(100, 300), nn.Linear(300, 100),
                          nn.Linear(100, 10))          # 10k, 30k, 30k, 1k elements
    # half of the 71k elements a run: as many layers in order as hold no more (at least one)
    turns = [jobs._turn(model, 0.5) for _ in range(4)]
    assert turns == [["0.weight"], ["1.weight"], ["2.weight", "3.weight"], ["0.weight"]]
    assert jobs._turn(model, 1.0) is None             # full size: every layer, every run


def test_alignment_at_a_smaller_size_averages_over_a_fixed_sample_of_neurons():
    model = mlp(16, 1024, 4)
    small = dynamics_jobs.alignment(job(model, size=1 / 8))
    units = dynamics_jobs.ALIGNMENT_UNITS // 8
    assert small["weight_alignment"] == weight_alignment(model, units=units)
    everything = weight_alignment(model)["0"]
    assert small["weight_alignment"]["0"] != everything          # a sample of 64 of 1024 rows
    assert small["weight_alignment"]["0"] == pytest.approx(everything, rel=0.2)
    assert small["weight_alignment"]["2"] == weight_alignment(model)["2"]   # 4 rows: all
    assert str(units) in small[jobs.NOTES][""] and REDUCED in small[jobs.NOTES][""]
    assert dynamics_jobs.alignment(job(model)) == {"weight_alignment": weight_alignment(model)}


def test_weight_alignment_over_a_sample_of_units_is_the_mean_over_their_pairs():
    model = mlp(16, 300, 4)
    w = model[0].weight.detach().double()
    picked = torch.randperm(300, generator=torch.Generator().manual_seed(3))[:40].sort().values
    rows = w[picked] / w[picked].norm(dim=1, keepdim=True)
    cos = (rows @ rows.T).abs()
    expected = cos[torch.triu(torch.ones(40, 40, dtype=torch.bool), 1)].mean().item()
    assert weight_alignment(model, units=40, seed=3)["0"] == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError):
        weight_alignment(model, units=1)


def test_characteristic_maps_and_basins_take_fewer_samples_and_directions_at_a_smaller_size():
    model = mlp(8, 16, 3)
    x, y = torch.randn(64, 8), torch.arange(64) % 3
    maps = jobs.characteristic_maps(job(model, (x, y), size=0.25))
    assert maps[jobs.NOTES][""] == ("live: class averages over at most 1 probe sample of each "
                                    f"class ({REDUCED})")
    basins = dynamics_jobs.basins(job(model, (x, y), size=0.25))
    assert basins[jobs.NOTES][""].startswith(
        f"live: basins of the first {dynamics_jobs.BASIN_SAMPLES // 4} probe samples (labels), "
        f"{dynamics_jobs.SAMPLE_DIRECTIONS // 4} directions in input space and "
        f"{dynamics_jobs.WEIGHT_DIRECTIONS // 4} per layer in weight space ({REDUCED})")


def test_characteristic_maps_below_one_sample_a_class_take_the_classes_in_turns():
    # a 10M-parameter CNN's run took 1.7 s at one sample of each of its 10 classes: below that,
    # the classes in turns, the others NaN in the record (the panel shows each class's newest)
    from nnmodes_widgets.analysis import characteristic_maps

    model = mlp(8, 16, 5)
    x, y = torch.randn(60, 8), torch.arange(60) % 5
    y[y == 3] = 4                                     # no probe sample of class 3
    whole = characteristic_maps(model, x[:4], "2", y=y[:4], num_classes=5,   # the first of each
                                units=jobs.RADIOGRAPH_UNITS).flatten(2).numpy()
    taken = []
    for _ in range(3):      # size 1/16: a quarter of a sample of each class, 1 class of 4 a run,
                            # the first run too (the panel says the others wait for their turn)
        out = jobs.characteristic_maps(job(model, (x, y), size=1 / 16))
        maps = out["characteristic_maps"]["2"]
        finite = [c for c in range(5) if np.isfinite(maps[c]).any()]
        assert len(finite) == 1
        np.testing.assert_allclose(maps[finite], whole[finite], rtol=1e-5, atol=1e-7)
        taken += finite
        assert out[jobs.NOTES][""] == (
            "live: class averages over at most 1 probe sample of each class, 1 of the 4 classes "
            f"in the probe a run, in turns ({REDUCED})")
    assert taken == [0, 1, 2]
    again = jobs.characteristic_maps(job(model, (x, y), size=1 / 8))   # 2 a run: 4, then 0
    maps = again["characteristic_maps"]["2"]
    assert [c for c in range(5) if np.isfinite(maps[c]).any()] == [0, 4]
    # the final round takes every class in the probe
    final = jobs.characteristic_maps(
        jobs.Job(model=model, probe=(x, y), history=None, step=1, report=lambda *a: None,
                 size=1 / 16, final=True))
    np.testing.assert_allclose(final["characteristic_maps"]["2"], whole, rtol=1e-5, atol=1e-7)


def test_characteristic_maps_below_one_class_a_run_take_its_output_units_in_turns_too():
    # a ResNet-18's run at one sample of one class took 0.37 s, one pull-back through the
    # network for each of its 10 output units: below a class's worth, the units in turns too
    from nnmodes_widgets.analysis import characteristic_maps

    model = mlp(8, 16, 5)
    x, y = torch.randn(60, 8), torch.arange(60) % 5
    y[y == 3] = 4                                     # no probe sample of class 3
    whole = characteristic_maps(model, x[:4], "2", y=y[:4], num_classes=5,
                                units=jobs.RADIOGRAPH_UNITS).flatten(2).numpy()
    # size 1/32: 1/8 of a sample of each of 5 classes, 0.625 of a class: 3 of its 5 units a run
    taken = []
    for _ in range(9):
        out = jobs.characteristic_maps(job(model, (x, y), size=1 / 32))
        maps = out["characteristic_maps"]["2"]
        assert maps.shape == whole.shape
        cells = [(c, u) for c in range(5) for u in range(5) if np.isfinite(maps[c, u]).any()]
        for c, u in cells:
            np.testing.assert_allclose(maps[c, u], whole[c, u], rtol=1e-5, atol=1e-7)
        taken.append(cells)
        assert out[jobs.NOTES][""] == (
            "live: class averages over at most 1 probe sample of each class, 1 of the 4 classes "
            f"in the probe and {len(cells)} of its 5 output units a run, in turns ({REDUCED})")
    assert taken == [[(c, u) for u in units] for c in (0, 1, 2, 4) for units in
                     ((0, 1, 2), (3, 4))] + [[(0, 0), (0, 1), (0, 2)]]
    # the final round takes every class and unit
    final = jobs.characteristic_maps(
        jobs.Job(model=model, probe=(x, y), history=None, step=1, report=lambda *a: None,
                 size=1 / 32, final=True))
    np.testing.assert_allclose(final["characteristic_maps"]["2"], whole, rtol=1e-5, atol=1e-7)


def test_characteristic_maps_in_turns_predict_a_share_of_an_unlabelled_probe_each_run(
        monkeypatch):
    # predicting the whole probe each run was 70% of a ResNet-18's run at the smallest size, and
    # once in ten runs its first run cost 4 times a later one
    from nnmodes_widgets.analysis import characteristic_maps

    model = mlp(8, 16, 5)
    x = torch.randn(60, 8)
    classes = model(x).argmax(1)
    predicting, call_model = [], jobs.call_model

    def counting(model, inputs):                   # the probe rows each prediction takes
        predicting.append((run, [i for row in inputs.args[0] for i in range(60)
                                 if torch.equal(row, x[i])]))
        return call_model(model, inputs)
    monkeypatch.setattr(jobs, "call_model", counting)
    shown = []
    for run in range(3 * jobs.PREDICTION_RUNS):
        out = jobs.characteristic_maps(job(model, x, size=1 / 32))
        maps = out["characteristic_maps"]["2"]
        shown += [c for c in range(5) if np.isfinite(maps[c]).any()]
        known = sorted({i for r, rows in predicting for i in rows})
        # a class's map: its first sample among those predicted so far
        for c in range(5):
            if np.isfinite(maps[c]).any():
                first = next(i for i in known if classes[i] == c)
                expected = characteristic_maps(model, x[first:first + 1], "2",
                                               y=classes[first:first + 1], num_classes=5,
                                               units=jobs.RADIOGRAPH_UNITS).flatten(2).numpy()
                finite = np.isfinite(maps[c])
                np.testing.assert_allclose(maps[c][finite], expected[c][finite], rtol=1e-5,
                                           atol=1e-7)
        so_far = f" ({len(known)} of 60 probe samples so far)" if len(known) < 60 else ""
        assert out[jobs.NOTES][""].endswith(
            f"; the classes as predicted at most {jobs.PREDICTION_RUNS - 1} runs before{so_far} "
            f"({REDUCED})")
    # the first run predicts a share of the probe, not all of it; every sample is predicted
    # anew once in PREDICTION_RUNS runs
    assert 0 < len(predicting[0][1]) < 60 and predicting[0][0] == 0
    for start in range(2 * jobs.PREDICTION_RUNS + 1):
        window = [rows for r, rows in predicting if start <= r < start + jobs.PREDICTION_RUNS]
        assert sorted(sum(window, [])) == list(range(60))
    assert set(shown) == set(classes.tolist())     # every predicted class had its turn
    predicting.clear()
    run = "another probe"                         # anew: nothing kept from the other
    other = x.clone()
    out = jobs.characteristic_maps(job(model, other, size=1 / 32))
    assert f"(6 of 60 probe samples so far) ({REDUCED})" in out[jobs.NOTES][""]
    run = "not in turns"
    jobs.characteristic_maps(job(model, other, size=1))
    assert {r for r, _ in predicting} == {"another probe", "not in turns"}
    # back in turns: none kept from before (they would be older than the note says)
    out = jobs.characteristic_maps(job(model, other, size=1 / 32))
    assert f"(6 of 60 probe samples so far) ({REDUCED})" in out[jobs.NOTES][""]


# -- the scheduler's sizes ---------------------------------------------------------------------------


def scheduler(monkeypatch, rate: float):
    monitor = nm.Monitor(mlp(8, 16, 4), budget=0.05, run=False, probe=torch.randn(8, 8),
                         analyses=("spectrum", "radiograph"))
    monkeypatch.setattr(monitor.pacer, "rate", lambda e=None: rate)
    monkeypatch.setattr(monitor.pacer, "cost", lambda w, own=0.0, e=None: w + own)
    return monitor, monitor._heavy


def test_a_size_halves_until_its_run_would_fit_its_share_of_a_round_and_doubles_when_twice_would(
        monkeypatch):
    monitor, s = scheduler(monkeypatch, rate=0.04)
    s.target, s._ready_weight = 2.5, 2.0     # two analyses of weight 1
    # a round: 2.5 s x 0.04 = 0.1 training seconds, 0.05 for each of the two
    assert s._size("spectrum") == heavy.FIRST_SIZE            # the first run
    assert not s._resize("spectrum", 0.25, 0.02) and s._sizes["spectrum"] == 0.5   # 2 x fits
    assert not s._resize("spectrum", 0.5, 0.06) and s._sizes["spectrum"] == 0.25   # over
    assert s._resize("spectrum", 0.25, 0.03) and s._sizes["spectrum"] == 0.25      # settled
    # 7 x over: at once to the size at which it would have fitted (an eighth: 0.044 s)
    assert not s._resize("spectrum", 0.25, 0.35) and s._sizes["spectrum"] == 0.25 / 8
    assert not s._resize("spectrum", 0.5, 99.0) and s._sizes["spectrum"] == heavy.MIN_SIZE
    assert s._resize("spectrum", heavy.MIN_SIZE, 0.2)          # over, but already the smallest
    # 45 x under (within 0.9 of the share): up, but by two doublings at most
    assert not s._resize("spectrum", 1 / 64, 0.001) and s._sizes["spectrum"] == 1 / 16
    assert s._resize("spectrum", 1.0, 0.001)                   # cheap, and already full
    # the copy's refresh is part of the share: with 0.03 s of it, 0.02 s are left to the run
    s._copy_seconds = 0.03
    assert not s._resize("spectrum", 0.5, 0.03) and s._sizes["spectrum"] == 0.25
    # while the pace leaves nothing, halved once: that says nothing of the size that would fit;
    # and nothing grows then, not even a run that took no time
    s._copy_seconds = 0.0
    monkeypatch.setattr(monitor.pacer, "rate", lambda e=None: 0.0)
    assert not s._resize("spectrum", 0.5, 0.01) and s._sizes["spectrum"] == 0.25
    assert s._resize("spectrum", 0.25, 0.0) and s._sizes["spectrum"] == 0.25
    monitor.detach()


def test_notes_are_kept_once_the_size_has_settled(monkeypatch):
    monitor, s = scheduler(monkeypatch, rate=0.04)
    sizes = iter([0.5, 0.5])        # what each run's resize leaves: changed, then the same

    def noted(job):
        return {"spectrum": {"w": np.ones(2)}, jobs.NOTES: {"": f"live at {job.size}"}}

    monkeypatch.setattr(jobs, "spectrum", noted)
    monkeypatch.setattr(s, "_resize", lambda name, size, seconds: next(sizes) == size)
    for size in (0.25, 0.5):
        s._sizes["spectrum"] = size
        s._start("spectrum", 1)
        monitor.flush()
    assert [n.message for n in monitor.notices] == ["live at 0.5"]   # not the passing 0.25
    # the final round's notes are kept, its size settled or not (a short run's may still move)
    sizes = iter([0.125])
    s._sizes["spectrum"] = 0.25
    s._start("spectrum", 2, fresh=True)
    monitor.flush()
    assert [n.message for n in monitor.notices] == ["live at 0.5", "live at 0.25"]
    monitor.detach()


def test_without_a_pace_every_run_is_at_full_size():
    monitor = nm.Monitor(mlp(8, 16, 4), budget=1.0, run=False, analyses=("spectrum",))
    assert monitor._heavy._size("spectrum") == 1.0 and monitor._heavy._resize("spectrum", 1.0, 9.0)
    monitor.detach()


def test_the_refresh_target_grows_with_the_model_from_small_to_10m_parameters():
    assert heavy.refresh_target(10_000) == heavy.refresh_target(1_000_000) == 2.5
    assert heavy.refresh_target(10_000_000) == heavy.refresh_target(50_000_000) == 10.0
    assert heavy.refresh_target(3_162_278) == pytest.approx(5.0, rel=1e-3)


def test_a_panel_shows_the_newest_note_of_each_layer_as_a_size_changes():
    from nnmodes_widgets.runs.run_view import analysis_notes

    monitor = nm.Monitor(mlp(8, 16, 4), run=False, analyses=("neuron_modes",))
    monitor.report_notice("neuron_modes", "lstm", "not analysable: fused gates")
    monitor.report_notice("neuron_modes", None, "live from the first 4 of 64 probe samples")
    monitor.report_notice("neuron_modes", None, "live from the first 16 of 64 probe samples")
    monitor.report_notice("spectrum", None, "another analysis's")
    assert analysis_notes(monitor, "neuron_modes") == (
        "lstm: not analysable: fused gates · live from the first 16 of 64 probe samples")
    monitor.detach()


def test_the_runs_of_a_round_share_one_refresh_of_the_copy(monkeypatch):
    monitor = nm.Monitor(mlp(8, 16, 4), budget=0.05, run=False, analyses=("spectrum", "alignment"))
    s = monitor._heavy
    s.target = 100.0                          # a copy under 25 s old serves the next run
    s._start("spectrum", 5)
    monitor.flush()
    assert s._copied[1] == 5
    refreshed = []
    monkeypatch.setattr(s, "_refresh", lambda: refreshed.append(1) or (s._copy, None))
    assert s._start("alignment", 9) == 0.0 and monitor.flush()
    assert refreshed == [] and monitor.history.steps("weight_alignment").tolist() == [5]
    s._copied = (s._copied[0] - 30.0, *s._copied[1:])      # older than a quarter of the target
    s._start("alignment", 12)
    monitor.flush()
    assert refreshed == [1] and monitor.history.steps("weight_alignment").tolist() == [5, 12]
    s._start("spectrum", 20, fresh=True)      # the final round: the step's own weights
    monitor.flush()
    assert refreshed == [1, 1] and monitor.history.steps("spectrum").tolist() == [5, 20]
    monitor.detach()


def test_the_final_round_takes_every_layer_of_the_spectrum_at_once():
    model = nn.Sequential(nn.Linear(100, 100), nn.Linear(100, 300), nn.Linear(300, 100))
    turn = jobs.spectrum(job(model, size=1 / 16))
    final = jobs.spectrum(jobs.Job(model=model, probe=None, history=None, step=2,
                                   report=lambda layer, exc: None, size=1 / 16, final=True))
    assert list(turn["spectrum"]) == ["0.weight"]
    assert list(final["spectrum"]) == ["0.weight", "1.weight", "2.weight"]
