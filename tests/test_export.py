"""Static exports rendered in the kernel: valid files of every format, bounded by step."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch

import nnmodes_widgets as nm
from nnmodes_widgets.widgets import Trend

SIGNATURES = {"png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF-"}


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 12), torch.nn.Tanh(), torch.nn.Linear(12, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = nm.Monitor(model, optimizer, every=2, budget=1.0)   # every analysis, each step
    dashboard = monitor.dashboard()
    for _ in range(60):
        optimizer.zero_grad()
        model(torch.randn(8, 5)).pow(2).mean().backward()
        optimizer.step()
        monitor.flush()     # each background analysis in turn: every panel gets data
    yield monitor, dashboard
    dashboard.close()
    monitor.detach()


def assert_valid(path, fmt):
    data = path.read_bytes()
    if fmt == "svg":
        root = ET.fromstring(data)
        assert root.tag.endswith("svg") and len(root.iter().__next__()) > 0
    else:
        assert data.startswith(SIGNATURES[fmt]), data[:16]
    assert len(data) > 1000


@pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
def test_every_widget_exports_every_format(trained, tmp_path, fmt):
    monitor, dashboard = trained
    panels = ("trend", "spectra", "neurons", "radiograph", "characteristic_maps")
    for name, widget in [("dashboard", dashboard)] + [(p, getattr(dashboard, p)) for p in panels]:
        assert getattr(widget, "shown", True), f"{name} has nothing to show"
        path = widget.export(tmp_path / f"{name}.{fmt}")
        assert path == tmp_path / f"{name}.{fmt}"
        assert_valid(path, fmt)


def test_figure_holds_full_resolution_up_to_step(trained):
    monitor, dashboard = trained
    # the layers' lines (a phase change's rule has no label)
    lines = [line for line in dashboard.trend.figure().axes[0].get_lines()
             if not line.get_label().startswith("_")]
    assert [line.get_label() for line in lines] == monitor.history.layers("rwc")
    steps, values = monitor.history.get("rwc", "2.weight")
    np.testing.assert_array_equal(lines[1].get_xdata(), steps)
    np.testing.assert_array_equal(lines[1].get_ydata(), values)
    early = dashboard.trend.figure(step=21).axes[0].get_lines()
    assert early[0].get_xdata().tolist() == list(range(2, 21, 2))


def test_log_scale_export_follows_the_switch(trained):
    monitor, dashboard = trained
    dashboard.trend.log_y = True
    try:
        assert dashboard.figure().axes[0].get_yscale() == "log"
    finally:
        dashboard.trend.log_y = False
    assert dashboard.figure().axes[0].get_yscale() == "linear"


def test_unknown_format_is_refused_by_name_and_writes_nothing(trained, tmp_path):
    monitor, dashboard = trained
    for name in ["fig.jpg", "fig", "fig.PNG.bak"]:
        with pytest.raises(ValueError, match="unknown format") as info:
            dashboard.export(tmp_path / name)
        assert name in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_snapshot_is_an_inline_display_object(trained):
    from IPython.display import SVG, Image

    monitor, dashboard = trained
    png = dashboard.snapshot()
    assert isinstance(png, Image) and png.data.startswith(SIGNATURES["png"])
    svg = dashboard.trend.snapshot("svg")
    assert isinstance(svg, SVG) and "<svg" in svg.data
    with pytest.raises(ValueError, match="pdf"):
        dashboard.snapshot("pdf")


def test_export_before_any_sample(tmp_path):
    monitor = nm.Monitor(torch.nn.Linear(3, 3), every=5)
    trend = Trend(monitor)
    assert_valid(trend.export(tmp_path / "empty.png"), "png")
    trend.close()
