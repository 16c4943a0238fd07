"""Panels and exports read a run only through the run view (nnmodes_widgets.runs.run_view): a view
that holds nothing but what was recorded (no model, no probe tensors, no torch) shows exactly
what the live monitor's dashboard shows."""

import numpy as np
import pytest
import torch

import nnmodes_widgets as nm
from nnmodes_widgets.runs.findings import detect
from nnmodes_widgets.runs.history import ANALYSES, History
from nnmodes_widgets.runs.run_state import RunState
from nnmodes_widgets.runs.run_view import RunView
from nnmodes_widgets.widgets import Dashboard, Trend


class RecordedRun:
    """A run view made of records only: a copy of a monitor's history, its settings, probe facts
    and notices. What a run read from disk holds."""

    def __init__(self, monitor):
        self.history = History()
        for analysis in ANALYSES:
            steps = monitor.history.steps(analysis)
            per_step = {int(s): {} for s in steps}
            for layer in monitor.history.layers(analysis):
                layer_steps, values = monitor.history.get(analysis, layer)
                for s, v in zip(layer_steps, values):
                    per_step[int(s)][layer] = v
            for s, values in per_step.items():
                self.history.record(analysis, s, 0.0, values)
        self.every, self.rwc_kind, self.budget = monitor.every, monitor.rwc_kind, monitor.budget
        self.layers, self.probe_facts = monitor.layers, monitor.probe_facts
        self.notices, self.errors = monitor.notices, []
        self.findings = detect(self.history, {"optimizer": monitor.optimizer_settings})
        self.detached = True
        self._state = RunState()
        self.listeners = []

    def stats(self):
        return {"step": int(self.history.steps("rwc")[-1]), "steps_per_second": float("nan"),
                "slowdown": float("nan"), "own_share": float("nan"), "every_within_budget": None,
                "samples": self.history.count("rwc"), "dropped": 0, "errors": 0,
                "last_error": None, "nonfinite": [], "detached": True}

    def summary(self):
        return f"recorded run, {self.history.count('rwc')} samples"

    def subscribe(self, listener):
        self.listeners.append(listener)

    def unsubscribe(self, listener):
        if listener in self.listeners:
            self.listeners.remove(listener)

    def report(self, analysis, exc, layer=None, *, step=None):
        self.errors.append((analysis, exc))

    def begin_work(self, kind):
        return None

    def end_work(self, token):
        pass

    def work_cost(self, seconds, kind):
        return seconds

    def has_room(self):
        return True


def _trained_monitor():
    torch.manual_seed(0)
    x = torch.rand(64, 1, 4, 4)
    y = torch.randint(0, 3, (64,))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 12), torch.nn.ReLU(),
                                torch.nn.Linear(12, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = nm.Monitor(model, optimizer, probe=(x, y), every=2, budget=1.0)
    for _ in range(60):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        if monitor.current_step % 10 == 0:
            monitor.flush()      # every analysis gets its turns
    monitor.detach()
    return monitor


@pytest.fixture(scope="module")
def monitor():
    return _trained_monitor()


def test_the_monitor_is_a_run_view(monitor):
    assert isinstance(monitor, RunView)
    assert monitor.layers == ["1", "3", "5"]
    facts = monitor.probe_facts
    assert facts.labelled and facts.input_shape == (64, 1, 4, 4) and facts.image_shape == (1, 4, 4)


def test_a_dashboard_of_records_only_shows_what_the_live_one_shows(monitor):
    recorded = RecordedRun(monitor)
    assert isinstance(recorded, RunView)
    for analysis in ("rwc", "spectrum", "power_law", "rwc_clusters", "neuron_modes",
                     "radiograph", "characteristic_maps"):
        assert recorded.history.layers(analysis), f"nothing recorded under {analysis!r}"
    live, stored = Dashboard(monitor), Dashboard(recorded)
    try:
        for a, b in ((live.trend._lines, stored.trend._lines),
                     (live.spectra._spectra, stored.spectra._spectra),
                     (live.spectra._fits, stored.spectra._fits),
                     (live.spectra._stable, stored.spectra._stable)):
            assert list(a.labels) == list(b.labels) and list(a.colors) == list(b.colors)
            np.testing.assert_array_equal(a.x, b.x)
            np.testing.assert_array_equal(a.y, b.y)
        assert live.trend.clusters == stored.trend.clusters is not None
        assert live.trend._controls.title == stored.trend._controls.title
        assert live.neurons.frame_meta == stored.neurons.frame_meta
        assert live.neurons.frame_data == stored.neurons.frame_data
        for a, b in ((live.radiograph, stored.radiograph),
                     (live.characteristic_maps, stored.characteristic_maps)):
            assert a.frame_meta == b.frame_meta and a.frame_data == b.frame_data
            assert a.title == b.title and a.layers == b.layers
        assert stored.status.step == live.status.step
        png = stored.snapshot(fmt="png").data
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert recorded.errors == []
    finally:
        live.close()
        stored.close()


def test_a_panel_refuses_what_is_not_a_run_view():
    with pytest.raises(TypeError, match="expects a run view .* got dict"):
        Trend({"history": History()})
    with pytest.raises(TypeError, match="Dashboard expects a run view"):
        Dashboard(History())
