"""The neuron-modes and characteristic-map panels, and the dashboard's shared layer selection
(kernel side; the browser side is in tests/browser)."""

import ipywidgets
import numpy as np
import pytest
import torch

import nnmodes_widgets as nm
from nnmodes_widgets.widgets import Dashboard, LiveCharacteristicMaps, LiveRadiograph, Neurons
from nnmodes_widgets.widgets.neurons import mode_shares


def _trained(steps=24, probe=None, analyses=None):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 12), torch.nn.ReLU(),
                                torch.nn.Linear(12, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
    monitor = nm.Monitor(model, optimizer, every=2, budget=1.0, probe=probe, analyses=analyses)
    return model, optimizer, monitor


def _train(model, optimizer, monitor, steps):
    for _ in range(steps):
        optimizer.zero_grad()
        x = torch.randn(32, 4, 4)
        torch.nn.functional.cross_entropy(model(x), (x.sum((1, 2)) > 0).long()).backward()
        optimizer.step()
        monitor.flush()


def test_mode_shares_count_linear_nonlinear_and_dead_neurons():
    rng = np.random.default_rng(0)
    active = rng.choice([0.0, 0.03, 0.5, 0.96, 1.0], size=(7, 40))
    shares = mode_shares(active, eps=0.05)
    for t in range(7):
        linear = sum(a >= 0.95 for a in active[t]) / 40
        dead = sum(a <= 0.05 for a in active[t]) / 40
        np.testing.assert_allclose(shares[t], [linear, 1 - linear - dead, dead])


def test_mode_shares_follow_the_analysis_at_the_boundaries():
    # The panel counts with the analysis's own rule: 19 of 20 samples transmitting is linear
    # at eps = 0.05, 1 of 20 dead, exactly at the boundaries.
    import torch
    from nnmodes_widgets.analysis.neurons import MODES, mode_code

    active = np.array([[19 / 20, 1 / 20, 0.5, 1.0]])
    assert [MODES[c] for c in mode_code(torch.tensor(active[0])).tolist()] == \
        ["linear", "dead", "nonlinear", "linear"]
    np.testing.assert_allclose(mode_shares(active, eps=0.05), [[0.5, 0.25, 0.25]])


def test_neurons_panel_sends_shares_and_class_maps_of_every_layer():
    model, optimizer, monitor = _trained(analyses=("rwc", "neuron_modes"))
    panel = Neurons(monitor)
    try:
        _train(model, optimizer, monitor, 24)
        panel.push_now()
        meta = panel.frame_meta
        history = monitor.history
        assert history.layers("neuron_modes") == ["1", "3"] == history.layers("neuron_classes")
        assert meta["labels"] == "predicted" and meta["step"] == history.steps("neuron_modes")[-1]
        offset = 0
        data = panel.frame_data
        for array in meta["arrays"]:      # payload order = meta order, float32 each
            size = int(np.prod(array["shape"])) * 4
            got = np.frombuffer(data[offset: offset + size], np.float32).reshape(array["shape"])
            offset += size
            steps, active = history.get("neuron_modes", array["layer"])
            if array["kind"] == "steps":
                np.testing.assert_array_equal(got, steps)
            elif array["kind"] == "shares":
                np.testing.assert_allclose(got, mode_shares(active), rtol=1e-6)
            else:
                np.testing.assert_allclose(got, history.latest("neuron_classes", array["layer"])[1],
                                           rtol=1e-6)
        assert offset == len(data)
        assert [(a["layer"], a["kind"]) for a in meta["arrays"]] == [
            ("1", "steps"), ("1", "shares"), ("3", "steps"), ("3", "shares"),
            ("1", "classes"), ("3", "classes")]
        assert panel.layers == ["1", "3", "5"] and panel.shown
        panel.selected = "3"            # the export shows the selected layer's class map
        fig = panel.figure()
        assert any("layer 3" in ax.get_title(loc="left") for ax in fig.axes)
        with pytest.raises(ValueError, match="eps"):
            Neurons(monitor, eps=0.5)
    finally:
        panel.close()
        monitor.detach()


def test_characteristic_maps_panel_shows_one_band_per_class_as_tiles():
    x, y = torch.randn(30, 4, 4), torch.arange(30) % 3
    model, optimizer, monitor = _trained(probe=(x, y), analyses=("characteristic_maps",))
    panel = LiveCharacteristicMaps(monitor)
    try:
        _train(model, optimizer, monitor, 6)
        panel.push_now()
        step, maps = monitor.history.latest("characteristic_maps", "5")
        shown_step, bands, input_shape = panel._latest
        assert shown_step == step and list(bands) == ["class 0", "class 1", "class 2"]
        assert input_shape == (4, 4) and "labelled" in panel.title
        for c in range(3):
            np.testing.assert_array_equal(bands[f"class {c}"], maps[c])
        assert "nnmodes-characteristic-maps" in panel._dom_classes and panel.layers == []
    finally:
        panel.close()
        monitor.detach()


def test_radiograph_panel_shows_each_layers_newest_when_runs_take_the_layers_in_turns():
    # live, a large model's runs take the layers in turns: a record has the layers of its run
    model, optimizer, monitor = _trained(probe=torch.randn(6, 4, 4), analyses=("radiograph",))
    panel = LiveRadiograph(monitor)
    try:
        def rows(value, units):
            return np.full((units, 16), float(value))
        monitor.history.record("radiograph", 2, 0.0, {"1": rows(1, 12), "3": rows(1, 8),
                                                      "5": rows(1, 3)})
        monitor.history.record("radiograph", 4, 0.0, {"1": rows(2, 12), "3": rows(2, 8)})
        monitor.history.record("radiograph", 6, 0.0, {"5": rows(3, 3)})
        panel.push_now()
        shown_step, bands, _ = panel._latest
        assert shown_step == 6 and list(bands) == ["1", "3", "5"]
        assert {band: float(np.unique(m)[0]) for band, m in bands.items()} == {
            "1": 2.0, "3": 2.0, "5": 3.0}
    finally:
        panel.close()
        monitor.detach()


def _unbroken(x, y, labels, own):
    """Each of ``labels``' rows of a Lines mark (x, y) [L, P] runs through exactly ``own[label]``
    (steps, values), with no NaN between its first and last point: one line, not dots."""
    x, y = np.atleast_2d(x), np.atleast_2d(y)
    for row, label in enumerate(labels):
        finite = np.flatnonzero(np.isfinite(y[row]))
        assert np.isfinite(y[row, finite[0]: finite[-1] + 1]).all(), label
        steps, values = own[label]
        points = sorted(set(zip(x[row, finite].tolist(), y[row, finite].tolist())))
        assert points == sorted(zip(np.asarray(steps, float).tolist(),
                                    np.asarray(values, np.float32).astype(float).tolist())), label


def _record_ranks(monitor, step, layers):
    """Records of the layers ``layers`` (layer -> rank) at ``step``, as a run of the spectra that
    took them (their spectrum, stable and effective rank) and one of the alignment ("<layer>!",
    a tenth of the rank)."""
    history = monitor.history
    history.record("spectrum", step, 0.0, {k: np.array([v, 1.0, 0.5]) for k, v in layers.items()})
    history.record("stable_rank", step, 0.0, layers)
    history.record("effective_rank", step, 0.0, layers)
    history.record("weight_alignment", step, 0.0, {f"{k}!": v / 10 for k, v in layers.items()})


def test_rank_and_alignment_lines_join_each_layers_records_when_runs_take_turns():
    # live, a large model's spectrum runs take the layers in turns: a layer's records lie
    # between the others'. On all layers' steps together each was cut into lone points.
    from nnmodes_widgets.widgets import Basins, Spectra

    model, optimizer, monitor = _trained(analyses=("spectrum", "alignment"))
    spectra, basins = Spectra(monitor), Basins(monitor)
    try:
        own = {"a": ([2, 8, 14], [3.0, 2.5, 2.0]), "b": ([4, 10, 16], [5.0, 4.0, 4.5]),
               "c": ([6, 12], [1.5, 1.25])}
        for step in range(2, 17, 2):
            _record_ranks(monitor, step,
                          {k: v[list(s).index(step)] for k, (s, v) in own.items() if step in s})
        spectra.push_now()
        basins.push_now()
        for mark in (spectra._stable, spectra._effective):
            assert list(mark.labels) == ["a", "b", "c"]
            _unbroken(mark.x, mark.y, mark.labels, own)
        alignment = basins._marks["weight_alignment"]
        assert list(alignment.labels) == ["a!", "b!", "c!"]
        _unbroken(alignment.x, alignment.y, alignment.labels,
                  {f"{k}!": (s, np.array(v) / 10) for k, (s, v) in own.items()})
    finally:
        spectra.close()
        basins.close()
        monitor.detach()


def test_a_layer_of_one_record_among_lines_is_a_dot_until_its_second():
    # live, a GPT's spectra took its layers in turns: one layer's rank trend was a line and the
    # others, one record each, were drawn with the line's stroke, specks 1.5 px wide
    from nnmodes_widgets.widgets import Basins, Spectra
    from nnmodes_widgets.widgets.trend import POINT_WIDTH

    model, optimizer, monitor = _trained(analyses=("spectrum", "alignment"))
    spectra, basins = Spectra(monitor), Basins(monitor)
    try:
        _record_ranks(monitor, 2, {"a": 3.0})
        _record_ranks(monitor, 4, {"a": 2.5, "b": 5.0})
        _record_ranks(monitor, 6, {"c": 1.5})
        spectra.push_now()
        basins.push_now()
        alignment = basins._marks["weight_alignment"]
        pairs = ((spectra._stable, spectra._dots[spectra._stable], ""),
                 (spectra._effective, spectra._dots[spectra._effective], ""),
                 (alignment, basins._dots["weight_alignment"], "!"))
        for lines, dots, suffix in pairs:
            scale = 10 if suffix else 1
            assert list(lines.labels) == ["a" + suffix] and lines.stroke_width < POINT_WIDTH
            np.testing.assert_allclose(np.atleast_2d(lines.y)[0] * scale, [3.0, 2.5], rtol=1e-6)
            assert dots.visible and dots.stroke_width == POINT_WIDTH
            assert list(dots.labels) == ["b" + suffix, "c" + suffix]
            np.testing.assert_array_equal(dots.x, [[4, 4], [6, 6]])
            np.testing.assert_allclose(dots.y * scale, [[5.0, 5.0], [1.5, 1.5]], rtol=1e-6)
            # on the same scales, coloured and highlighted per layer as the lines
            assert dots.scales == lines.scales
        for panel in (spectra, basins):
            kinds = dict(zip(panel._header.marks, panel._header.mark_kinds))
            assert all(kinds[dots] == "layers" for _, dots, _ in pairs if dots in kinds)
            assert sum(dots in kinds for _, dots, _ in pairs) == (2 if panel is spectra else 1)
        # the y range holds the dots too (the lowest, 1.5, and the highest, 5, are dots)
        y = spectra._stable.scales["y"]
        assert y.min < 1.5 and y.max > 5.0

        _record_ranks(monitor, 8, {"b": 4.0, "c": 1.25})     # every layer has a line now: no dots
        spectra.push_now()
        basins.push_now()
        for lines, dots, suffix in pairs:
            assert list(lines.labels) == ["a" + suffix, "b" + suffix, "c" + suffix]
            assert not dots.visible
    finally:
        spectra.close()
        basins.close()
        monitor.detach()


def test_characteristic_maps_panel_shows_each_classs_newest_map_when_runs_take_turns():
    # live, a large model's runs take the classes in turns: each record has the classes of its
    # run, NaN for the others, and the panel shows each class's newest
    x, y = torch.randn(30, 4, 4), torch.arange(30) % 3
    model, optimizer, monitor = _trained(probe=(x, y), analyses=("characteristic_maps",))
    panel = LiveCharacteristicMaps(monitor)
    try:
        def maps(**classes):
            out = np.full((3, 3, 16), np.nan)
            for c, value in classes.items():
                out[int(c[1:])] = value
            return out
        monitor.history.record("characteristic_maps", 2, 0.0, {"5": maps(c0=1, c1=1, c2=1)})
        monitor.history.record("characteristic_maps", 4, 0.0, {"5": maps(c0=2)})
        monitor.history.record("characteristic_maps", 6, 0.0, {"5": maps(c1=3)})
        panel.push_now()
        shown_step, bands, _ = panel._latest
        assert shown_step == 6
        assert {band: float(np.unique(m)[0]) for band, m in bands.items()} == {
            "class 0": 2.0, "class 1": 3.0, "class 2": 1.0}
        # the panel looks back C records at most (turns of at least one class cover every class
        # in C runs, the first run takes them all): a class none of them has is empty
        monitor.history.record("characteristic_maps", 8, 0.0, {"5": maps(c0=4)})
        monitor.history.record("characteristic_maps", 10, 0.0, {"5": maps(c1=5)})
        monitor.history.record("characteristic_maps", 12, 0.0, {"5": maps(c0=6)})
        panel.push_now()
        shown_step, bands, _ = panel._latest
        assert shown_step == 12 and np.isnan(bands["class 2"]).all()
        assert float(np.unique(bands["class 1"])[0]) == 5.0
    finally:
        panel.close()
        monitor.detach()


def test_characteristic_maps_panel_fills_each_classs_units_from_the_runs_that_took_them():
    # below a class's worth a run takes one class and part of its output units: the panel
    # shows each (class, unit) from the newest record that has it, and says a class waits for
    # its turn until the records could cover every class and unit
    x, y = torch.randn(30, 4, 4), torch.arange(30) % 3
    model, optimizer, monitor = _trained(probe=(x, y), analyses=("characteristic_maps",))
    panel = LiveCharacteristicMaps(monitor)
    try:
        def maps(c, units, value):
            out = np.full((3, 3, 16), np.nan)
            out[c, units] = value
            return out
        # two parts a class: units 0-1, then unit 2
        for step, (c, units) in enumerate([(0, [0, 1]), (0, [2]), (1, [0, 1])], start=1):
            monitor.history.record("characteristic_maps", 2 * step, 0.0,
                                   {"5": maps(c, units, float(step))})
        panel.push_now()
        shown_step, bands, _ = panel._latest
        assert shown_step == 6
        np.testing.assert_array_equal(bands["class 0"][:, 0], [1.0, 1.0, 2.0])
        np.testing.assert_array_equal(bands["class 1"][:, 0], [3.0, 3.0, np.nan])
        assert np.isnan(bands["class 2"]).all()
        assert panel._empty["class 2"].startswith("class 2: its turn has not come yet")
        for step, (c, units) in enumerate([(1, [2]), (2, [0, 1]), (2, [2]), (0, [0, 1])], start=4):
            monitor.history.record("characteristic_maps", 2 * step, 0.0,
                                   {"5": maps(c, units, float(step))})
        panel.push_now()
        shown_step, bands, _ = panel._latest
        assert shown_step == 14
        np.testing.assert_array_equal(np.stack([bands[f"class {c}"][:, 0] for c in range(3)]),
                                      [[7.0, 7.0, 2.0], [3.0, 3.0, 4.0], [5.0, 5.0, 6.0]])
    finally:
        panel.close()
        monitor.detach()


def test_dashboard_links_one_layer_selection_across_panels():
    model, optimizer, monitor = _trained()
    dashboard = Dashboard(monitor)
    try:
        hub = dashboard.trend.selector
        others = [dashboard.findings, dashboard.spectra.selector, dashboard.neurons,
                  dashboard.basins.selector, dashboard.radiograph]
        links = {(link.source, link.target) for link in dashboard._links}
        assert all(isinstance(link, ipywidgets.widgets.widget_link.Link) for link in dashboard._links)
        assert links == {((hub, "selected"), (other, "selected")) for other in others}
        for panel in [hub] + others:
            assert panel.layers == ["1", "3", "5"]
        dashboard.selected = "3"
        assert dashboard.selected == "3" and all(p.selected == "3" for p in others)
        with pytest.raises(ValueError, match="unknown layer 'nope'"):
            dashboard.selected = "nope"
        assert all(p.selected == "3" for p in [hub] + others)     # unchanged
        dashboard.selected = ""
        assert all(p.selected == "" for p in [hub] + others)
    finally:
        dashboard.close()
        monitor.detach()


def test_basins_panel_draws_the_recorded_radii_alignment_and_phase_changes():
    from nnmodes_widgets.widgets import Basins

    x = torch.randn(64, 4, 4)
    y = (x.sum((1, 2)) > 0).long()
    model, optimizer, monitor = _trained(probe=(x, y), analyses=("rwc", "alignment", "basins"))
    panel = Basins(monitor)
    try:
        _train(model, optimizer, monitor, 24)
        history = monitor.history
        panel.push_now()
        assert panel.shown and "nnmodes-basins" in panel._dom_classes
        for analysis in ("sample_basins", "weight_basins", "weight_alignment"):
            mark, keys = panel._marks[analysis], history.layers(analysis)
            assert list(mark.labels) == keys and keys, analysis
            for i, key in enumerate(keys):
                _, values = history.get(analysis, key)
                if np.isfinite(values[-1]):
                    np.testing.assert_allclose(np.atleast_2d(mark.y)[i][-1], values[-1], rtol=1e-6)
        assert history.layers("weight_basins")[-1] == "*"
        assert set(history.layers("sample_basins")) <= {"class 0", "class 1"}
        assert history.layers("weight_alignment") == ["1", "3", "5"]
        assert panel._header.step == max(int(history.steps(a)[-1]) for a in
                                         ("sample_basins", "weight_basins", "weight_alignment"))
        assert not any(r.visible for r in panel._rules)           # no phase change recorded
        marks = np.full(16, np.nan)
        marks[:2] = [6, 14]
        history.record("phases", 24, 0.0, {"*": marks})
        panel.push_now()
        for rules in panel._rules:
            assert rules.visible and np.asarray(rules.x)[:, 0].tolist() == [6.0, 14.0]
        fig = panel.figure()
        assert len(fig.axes) == 3 and len(fig.axes[2].get_lines()) == 3 + 2   # layers + rules
    finally:
        panel.close()
        monitor.detach()


def test_basins_panel_sends_its_step_before_the_lines_the_browser_labels_with_it(monkeypatch):
    # the browser counts a frame when the alignment's lines get new data and labels it with the
    # step the header holds then: sent after the data, the label kept the step before (an
    # architectures GPT's panel read "step 1" under lines reaching step 1006)
    from nnmodes_widgets.widgets import Basins

    model, optimizer, monitor = _trained(analyses=("rwc", "alignment"))
    panel = Basins(monitor)
    sent = []
    send_state = ipywidgets.Widget.send_state

    def logged(widget, key=None):
        keys = [key] if isinstance(key, str) else list(key or widget.keys)
        sent.extend((widget, k) for k in keys)
        return send_state(widget, key)

    try:
        monitor.history.record("weight_alignment", 1000, 0.0,
                               {layer: 0.5 for layer in monitor.layers})
        monkeypatch.setattr(ipywidgets.Widget, "send_state", logged)
        panel.push_now()
        header, lines = panel._header, panel._marks["weight_alignment"]
        assert header.step == 1000
        order = [i for i, (w, k) in enumerate(sent)
                 if (w is header and k == "step") or (w is lines and k == "y")]
        assert [sent[i][0] for i in order] == [header, lines], [(type(w).__name__, k) for w, k in sent]
    finally:
        panel.close()
        monitor.detach()


def test_the_findings_strip_says_what_the_analyses_see_and_where_and_the_export_prints_it(tmp_path):
    model, optimizer, monitor = _trained(analyses=("rwc", "findings"))
    model[3].weight.requires_grad_(False)       # frozen: its RWC is exactly 0
    dashboard = Dashboard(monitor)
    try:
        assert dashboard.findings.findings == []
        _train(model, optimizer, monitor, 24)
        dashboard.findings.push_now()
        items = dashboard.findings.findings
        frozen = [f for f in items if f["kind"] == "not_learning"]
        assert [f["layer"] for f in frozen] == ["3.weight"]
        (item,) = frozen
        (finding,) = [f for f in monitor.findings if f.kind == "not_learning"]
        assert item["message"] == finding.message and item["severity"] == "warning"
        # the panel of its evidence (RWC: the trend), and the steps it held on
        assert item["panel"] == "trend" and item["ended"] is None
        assert item["span"] == [finding.step, max(finding.evidence["steps"])]
        assert item["span"][0] <= item["span"][1] <= monitor.current_step
        assert dashboard.findings.layers == ["1", "3", "5"]     # the choices a click maps onto
        # the export prints the findings under its title, newest first
        path = dashboard.export(tmp_path / "dashboard.svg")   # matplotlib keeps texts as comments
        assert f"warning: {finding.message}" in path.read_text()
    finally:
        dashboard.close()
        monitor.detach()


def test_an_empty_panel_says_why():
    model, optimizer, monitor = _trained(analyses=("rwc", "findings"))
    dashboard = Dashboard(monitor)
    try:
        # before the first sample: waiting; an analysis the run does not record: said so
        assert dashboard.trend.selector.empty == "RWC trends: waiting for the first result"
        assert dashboard.spectra.selector.empty.startswith("spectra: not recorded in this run")
        assert "leaves out radiograph" in dashboard.radiograph.empty
        _train(model, optimizer, monitor, 4)
        dashboard.trend.push_now()
        assert dashboard.trend.selector.empty == ""
        # an analysis switched off for the model: the run's notice says why
        monitor.analyses = (*monitor.analyses, "basins")
        monitor.report_notice("basins", None, "off by default for this model: one run would take "
                                              "about 110.0 s, so within the budget it could run once "
                                              "in 2200 s")
        dashboard.basins.push_now()
        assert dashboard.basins.selector.empty == (
            "basins off: one run would take about 110.0 s, so within the budget it could run once "
            "in 2200 s")
    finally:
        dashboard.close()
        monitor.detach()


def test_characteristic_maps_say_which_class_has_no_probe_sample():
    x, y = torch.randn(30, 4, 4), torch.zeros(30, dtype=torch.long)   # class 0 only
    y[:10] = 2
    model, optimizer, monitor = _trained(probe=(x, y), analyses=("characteristic_maps",))
    panel = LiveCharacteristicMaps(monitor)
    try:
        _train(model, optimizer, monitor, 6)
        panel.push_now()
        bands = {meta["layer"]: meta["empty"] for meta in panel.frame_meta["bands"]}
        assert bands == {"class 0": "", "class 1": "no probe sample of class 1", "class 2": ""}
    finally:
        panel.close()
        monitor.detach()


def test_characteristic_maps_say_a_class_waits_for_its_turn_until_every_class_had_one():
    # the first runs take the classes in turns: until there are as many records as classes, a
    # class with no map may be one whose turn has not come, not one the probe lacks
    x, y = torch.randn(30, 4, 4), torch.arange(30) % 3
    model, optimizer, monitor = _trained(probe=(x, y), analyses=("characteristic_maps",))
    panel = LiveCharacteristicMaps(monitor)
    try:
        def record(step, c):
            maps = np.full((3, 3, 16), np.nan)
            maps[c] = 1.0
            monitor.history.record("characteristic_maps", step, 0.0, {"5": maps})
            panel.push_now()
            return {meta["layer"]: meta["empty"] for meta in panel.frame_meta["bands"]}

        waits = "class 2: its turn has not come yet (the classes take turns)"
        assert record(2, 0) == {"class 0": "", "class 1": waits.replace("2", "1"),
                                "class 2": waits}
        assert record(4, 1)["class 2"] == waits
        assert record(6, 0) == {"class 0": "", "class 1": "", "class 2": "no probe sample of class 2"}
    finally:
        panel.close()
        monitor.detach()


def test_a_panel_notes_only_the_newest_size_of_a_live_analysis():
    from types import SimpleNamespace

    from nnmodes_widgets.widgets.notes import panel_note

    def notice(analysis, message, layer=None):
        return SimpleNamespace(analysis=analysis, layer=layer, message=message)

    run = SimpleNamespace(notices=[
        notice("neuron_modes", "live from the first 4 of 16 probe samples"),
        notice("neuron_modes", "not analysable: fused kernel", layer="lstm"),
        notice("spectrum", "live: partial spectra"),
        notice("neuron_modes", "live from the first 8 of 16 probe samples"),
    ])
    assert panel_note(run, "neuron_modes") == (
        "lstm: not analysable: fused kernel · live from the first 8 of 16 probe samples")
    assert panel_note(run, "spectrum", "neuron_modes").count("live") == 2
    assert panel_note(run, "radiograph") == ""


def test_the_basins_panel_leaves_out_a_plot_switched_off_and_says_why():
    model, optimizer, monitor = _trained(analyses=("rwc", "alignment"))
    dashboard = Dashboard(monitor)
    try:
        # asked for, and switched off for its cost (as live/heavy.py does)
        monitor.analyses = (*monitor.analyses, "basins")
        monitor.report_notice("basins", None, "off by default for this model: one run would take "
                                              "about 110.0 s, so within the budget it could run once "
                                              "in 2200 s")
        _train(model, optimizer, monitor, 4)
        dashboard.basins.push_now()
        figures = dashboard.basins._figures
        # the alignment drawn, the basins left out ...
        assert dashboard.basins._row.children == (figures["weight_alignment"],)
        assert dashboard.basins._note.value.startswith("basins off: one run would take about 110.0 s")
        assert dashboard.basins.selector.empty == ""                         # the panel has data
    finally:
        dashboard.close()
        monitor.detach()



def _basins_waiting():
    """A dashboard whose basins panel waits for a result that never comes (asked for, never run
    here), its alignment drawn."""
    model, optimizer, monitor = _trained(analyses=("rwc", "alignment"))
    dashboard = Dashboard(monitor)
    monitor.analyses = (*monitor.analyses, "basins")
    _train(model, optimizer, monitor, 4)
    dashboard.basins.push_now()
    assert dashboard.basins._note.value.startswith("basins: waiting for the first result"), \
        dashboard.basins._note.value
    return monitor, dashboard


def test_a_panels_note_follows_the_notices_and_the_runs_end_without_news_in_its_history():
    monitor, dashboard = _basins_waiting()
    basins = dashboard.basins
    try:
        frames = basins.frames
        # switched off (as live/heavy.py does): no record, a notice
        monitor.report_notice("basins", None, "off by default for this model: one run was stopped "
                                              "after 0.2 s, so within the budget it could run once in 30 s")
        basins.push_now()
        assert basins._note.value.startswith("basins off: one run was stopped after 0.2 s"), basins._note.value
        assert basins.frames == frames + 1
        basins.push_now()                          # nothing new: no frame
        assert basins.frames == frames + 1
        monitor.detach()                           # the run's end: no longer waiting
        basins.push_now()
        assert basins._note.value.startswith("basins off"), basins._note.value
    finally:
        dashboard.close()
        monitor.detach()


def test_a_panel_waiting_for_a_result_stops_waiting_when_the_run_ends():
    monitor, dashboard = _basins_waiting()
    try:
        monitor.detach()
        dashboard.basins.push_now()                # (a view on screen is updated at the end)
        assert "waiting" not in dashboard.basins._note.value, dashboard.basins._note.value
    finally:
        dashboard.close()
        monitor.detach()
