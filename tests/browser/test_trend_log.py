"""The trend's log switch with a frozen layer (RWC exactly 0, which no log axis can place) draws
in a real JupyterLab without a single console error."""

from .conftest import (assert_no_console_errors, error_outputs, open_notebook, run_all_cells,
                       wait_kernel_idle, write_notebook)

CELLS = ["""import torch
from nnmodes_widgets import Monitor
from nnmodes_widgets.widgets import Trend
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
model[0].weight.requires_grad_(False)   # frozen: its RWC is exactly 0
opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
monitor = Monitor(model, opt, every=1, analyses=("rwc",))
trend = Trend(monitor, log_y=True)
trend""", """for _ in range(30):
    opt.zero_grad(); model(torch.randn(16, 8)).pow(2).mean().backward(); opt.step()
monitor.detach()"""]

def _trained_trend(page, lab_server, name, cells):
    """Run ``cells`` (30 training steps) as notebook ``name``; the trend once it shows step 30."""
    write_notebook(lab_server.root_dir / name, cells)
    open_notebook(page, lab_server, name)
    run_all_cells(page)
    wait_kernel_idle(page)
    trend = page.locator(".nnmodes-trend")
    page.wait_for_function("el => Number(el.getAttribute('data-step')) === 30",
                           arg=trend.element_handle(), timeout=30_000)
    return trend


def test_log_switch_with_a_frozen_layer(page, lab_server, console_errors):
    trend = _trained_trend(page, lab_server, "trend_log.ipynb", CELLS)
    box = trend.locator(".nnmodes-trend-header input[type=checkbox]")
    assert box.is_checked()
    for _ in range(2):        # log -> linear -> log
        box.click()
        page.wait_for_timeout(500)
    assert box.is_checked()
    assert not error_outputs(page), error_outputs(page)
    assert_no_console_errors(console_errors)


POINTS_CELLS = ["""import numpy as np, torch
from nnmodes_widgets import Monitor
from nnmodes_widgets.widgets import Trend
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
monitor = Monitor(model, opt, every=1, analyses=("rwc",))
trend = Trend(monitor)
trend""", """for _ in range(30):
    opt.zero_grad(); model(torch.randn(16, 8)).pow(2).mean().backward(); opt.step()
monitor.detach()
mark = trend._lines
print("POINTS", [int(np.isfinite(y).sum()) for y in np.atleast_2d(mark.y)])"""]


def test_the_lines_drawn_are_the_points_sent(page, lab_server, console_errors):
    """The paths on screen hold each layer's points, in order, inside the plot (bqplot's line
    redraw is replaced by one without transitions: js/bqplot_guard.js)."""
    trend = _trained_trend(page, lab_server, "trend_points.ipynb", POINTS_CELLS)
    out = next(o for o in page.locator(".jp-OutputArea-output").all_inner_texts() if "POINTS" in o)
    sent = [int(n) for n in out.split("[", 1)[1].split("]", 1)[0].split(",")]
    assert len(sent) == 2 and min(sent) >= 29, sent     # two weight layers, a sample a step
    width = trend.locator("svg").first.evaluate("el => el.getBoundingClientRect().width")
    paths = trend.locator("g.curve path.line:visible")
    page.wait_for_function(
        "([el, n]) => [...el.querySelectorAll('g.curve path.line')].filter("
        "p => p.getAttribute('d')).length >= n", arg=[trend.element_handle(), len(sent)],
        timeout=10_000)
    drawn = []
    for d in paths.evaluate_all("ps => ps.map(p => p.getAttribute('d'))"):
        assert "NaN" not in d, d
        xy = [tuple(map(float, pair.split(","))) for pair in d.replace("M", "L").split("L")[1:]]
        xs = [x for x, _ in xy]
        assert xs == sorted(xs) and 0 <= xs[0] and xs[-1] <= width, xs
        drawn.append(len(xy))
    assert drawn == sent, (drawn, sent)
    assert not error_outputs(page), error_outputs(page)
    assert_no_console_errors(console_errors)
