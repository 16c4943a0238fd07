"""Panels with exactly one sample of their analyses, in a real JupyterLab: every panel draws it
(a round dot where a line would need two points, axes ranged around the one step and value),
the switch to lines at the second sample is clean, the trend of a 14-layer model has a legend that
selects layers and names its lines on hover, and the console stays free of errors."""

import json
import re
import time

from .conftest import (assert_no_console_errors, error_outputs, kernel_busy, open_notebook,
                       run_all_cells, wait_looking, write_notebook)

EVERY = 5
CELLS = [
    f"""import json, os, time, torch
import ipywidgets as w
import nnmodes_widgets as nm
from nnmodes_widgets.widgets import LiveCharacteristicMaps, LiveRadiograph, Neurons, Trend
torch.manual_seed(0)
X, y = torch.randn(60, 6, 6), torch.arange(60) % 3
# A monitor's background analyses take turns, one per sample: one monitor per analysis, so that
# each has exactly one sample of everything it runs after {EVERY} steps; one monitor per
# training loop, so each watches its own copy of the model.
loops, monitors = {{}}, {{}}
for name in ("spectrum", "neuron_modes", "radiograph", "characteristic_maps"):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 12), torch.nn.ReLU(), torch.nn.Linear(12, 3))
    loops[name] = model, torch.optim.SGD(model.parameters(), lr=0.05)
    monitors[name] = nm.Monitor(*loops[name], every={EVERY}, budget=1.0, probe=(X, y),
                                analyses=("rwc", name))
deep = torch.nn.Sequential(*[torch.nn.Linear(8, 8) for _ in range(14)])   # 14 layers, as a GPT
deep_opt = torch.optim.SGD(deep.parameters(), lr=0.01)
deep_monitor = nm.Monitor(deep, deep_opt, every={EVERY}, analyses=("rwc",))
w.VBox([monitors["spectrum"].dashboard(), Neurons(monitors["neuron_modes"]),
        LiveRadiograph(monitors["radiograph"]), LiveCharacteristicMaps(monitors["characteristic_maps"]),
        Trend(deep_monitor)])""",
    f"""def train(steps, mark):
    for _ in range(steps):
        for model, opt in loops.values():
            opt.zero_grad(); torch.nn.functional.cross_entropy(model(X), y).backward(); opt.step()
        deep_opt.zero_grad(); deep(torch.randn(16, 8)).pow(2).mean().backward(); deep_opt.step()
    for m in (*monitors.values(), deep_monitor):
        m.flush()
    counts = {{name: {{a: m.history.count(a) for a in m.analyses}} for name, m in monitors.items()}}
    counts["deep"] = deep_monitor.history.count("rwc")
    open(mark, "w").write(json.dumps(counts))
train({EVERY}, "first_sample.json")""",
    # the kernel stays busy here until the test has looked at the first sample
    f"""while not os.path.exists("go_on"):
    time.sleep(0.2)
train({EVERY}, "second_sample.json")""",
]
DEFAULT_TICKS = {"-0.0366", "0.321", "0.679", "1.04", "-0.0044", "0.332", "0.668"}
NUMBER = r"-?\d+(\.\d+)?(e[-+]?\d+)?"
LABEL = NUMBER + r"[kMB]?"     # a tick label: 0.05, 2.5k, 1e-4

# Each bqplot figure of a panel: the paths and widths of the lines on screen (not those of the
# trend's other scale), the tick labels of the axes on screen.
FIGURES_JS = """root => [...root.querySelectorAll('.bqplot.figure')].map(fig => {
  const shown = (el) => el.closest('g[style*="display: none"]') === null;
  const lines = [...fig.querySelectorAll('.curve path.line')].filter(shown);
  return {
    lines: lines.map(p => p.getAttribute('d')),
    widths: lines.map(p => parseFloat(getComputedStyle(p).strokeWidth)),
    caps: lines.map(p => getComputedStyle(p).strokeLinecap),
    axes: [...fig.querySelectorAll('g.axis')].filter(shown)
      .map(a => [...a.querySelectorAll('.tick text')].map(t => t.textContent)),
  };
})"""
SHOWN_LINES_JS = """root => [...root.querySelectorAll('.curve path.line')]
  .filter(el => el.closest('g[style*="display: none"]') === null).length"""


def _wait_file(lab_server, name, timeout=120):
    path = lab_server.root_dir / name
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{name}: the cell did not get there"
        time.sleep(0.3)
    time.sleep(0.2)   # written in full
    return json.loads(path.read_text())


def _check_drawn(figure, what):
    """Every line a path of finite points, every axis with tick labels that are numbers and not
    bqplot's default 0..1 domain."""
    assert figure["lines"], f"{what}: nothing drawn"
    for d in figure["lines"]:
        assert re.fullmatch(rf"M{NUMBER},{NUMBER}(L{NUMBER},{NUMBER})*", d), f"{what}: path {d!r}"
    assert figure["axes"], f"{what}: no axis"
    for ticks in figure["axes"]:
        assert len(ticks) >= 2, f"{what}: ticks {ticks}"
        assert not DEFAULT_TICKS & set(ticks), f"{what}: default range ticks {ticks}"
        assert all(re.fullmatch(LABEL, t.replace("−", "-")) for t in ticks), ticks


def _dots(figure):
    """Whether every line of ``figure`` is one point drawn as a round dot."""
    return all(re.fullmatch(rf"M({NUMBER}),({NUMBER})L\1,\4", d) for d in figure["lines"]) and \
        all(w >= 6 for w in figure["widths"]) and set(figure["caps"]) == {"round"}


# The middle of a line (or its one point) of some curve that is on top there (lines cross, dots
# of close values overlap): the curve's index and the point on screen.
TOPMOST_JS = """root => {
  const shown = (el) => el.closest('g[style*="display: none"]') === null;
  for (const [i, curve] of [...root.querySelectorAll('.curve')].filter(shown).entries()) {
    const line = curve.querySelector('path.line');
    const q = line.getPointAtLength(line.getTotalLength() / 2);
    const m = line.getScreenCTM();
    const x = m.a * q.x + m.c * q.y + m.e, y = m.b * q.x + m.d * q.y + m.f;
    if (document.elementFromPoint(x, y) === line) return [i, x, y];
  }
  return null;
}"""


def _hover_and_read(page, panel):
    """Hover a line (or dot) of ``panel``'s plot: bqplot's tooltip names its layer."""
    panel.locator(".bqplot.figure").scroll_into_view_if_needed()
    found = panel.evaluate(TOPMOST_JS)
    assert found, "no line on top anywhere"
    index, x, y = found
    page.mouse.move(x, y)
    page.wait_for_function(
        "name => [...document.querySelectorAll('.bqplot_mark_tooltip')].some("
        "t => getComputedStyle(t).display !== 'none' && t.textContent.trim() === name)",
        arg=f"{index}.weight", timeout=10_000)
    page.mouse.move(0, 0)


def _canvas_painted(locator):
    return locator.locator("canvas").first.evaluate(
        """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) return true; return false; }""")


def test_one_sample_of_every_analysis_draws(page, lab_server, console_errors):
    write_notebook(lab_server.root_dir / "one_sample.ipynb", CELLS)
    open_notebook(page, lab_server, "one_sample.ipynb")
    run_all_cells(page)
    counts = _wait_file(lab_server, "first_sample.json")
    assert counts == {"spectrum": {"rwc": 1, "spectrum": 1},
                      "neuron_modes": {"rwc": 1, "neuron_modes": 1},
                      "radiograph": {"rwc": 1, "radiograph": 1},
                      "characteristic_maps": {"rwc": 1, "characteristic_maps": 1}, "deep": 1}, counts

    dashboard = page.locator(".nnmodes-dashboard")
    spectrum, trend = dashboard.locator(".nnmodes-spectrum"), dashboard.locator(".nnmodes-trend")
    # the panels after the dashboard (its own neurons and radiograph panels have no data)
    neurons = page.locator(".nnmodes-neurons").last
    radiograph = page.locator(".nnmodes-radiograph:not(.nnmodes-characteristic-maps)").last
    maps = page.locator(".nnmodes-characteristic-maps").last
    deep = page.locator(".nnmodes-trend").last
    for panel in (spectrum, trend, neurons, radiograph, maps, deep):   # each drawn once looked at
        panel.wait_for(timeout=60_000)
        wait_looking(page, panel, f"el => el.getAttribute('data-step') === '{EVERY}'")
    # the spectra: 3 lines of the one spectrum, 3 fits; the rank trends: a dot per layer
    page.wait_for_function(f"root => ({SHOWN_LINES_JS})(root) === 12",
                           arg=spectrum.element_handle(), timeout=30_000)
    figures = spectrum.evaluate(FIGURES_JS)
    assert len(figures) == 3, figures
    for figure, what in zip(figures, ("spectra", "effective rank", "stable rank")):
        _check_drawn(figure, what)
    spectra, effective, stable = figures
    assert len(spectra["lines"]) == 6 and not _dots(spectra), spectra      # 3 spectra, 3 fits
    for figure in (effective, stable):
        assert len(set(figure["lines"])) == 3 and _dots(figure), figure
        # the step, among round ticks of the step axis
        assert any(str(EVERY) in ticks for ticks in figure["axes"]), figure["axes"]
    page.wait_for_function(f"root => ({SHOWN_LINES_JS})(root) === 3",
                           arg=trend.element_handle(), timeout=30_000)
    (trend_figure,) = trend.evaluate(FIGURES_JS)
    _check_drawn(trend_figure, "trend")
    assert _dots(trend_figure), trend_figure
    assert any(str(EVERY) in ticks for ticks in trend_figure["axes"]), trend_figure["axes"]
    status = dashboard.locator(".nnmodes-status").inner_text()
    assert "· 1 sample" in status and "1 samples" not in status, status
    # the canvas panels: their one frame painted
    for panel in (neurons, radiograph, maps):
        page.wait_for_function("el => Number(el.getAttribute('data-frames')) >= 1",
                               arg=panel.element_handle(), timeout=30_000)
        assert _canvas_painted(panel), panel

    # 14 layers: a legend of several columns, one entry per line in its colour; a click selects the layer
    # in the panel (as the picker does), a second click all layers again
    legend = deep.locator(".nnmodes-legend-item")
    assert legend.count() == 14
    assert legend.nth(3).inner_text() == "3.weight"
    assert len({legend.nth(i).locator(".nnmodes-key").evaluate("k => k.style.background")
                for i in range(14)}) == 14
    columns = deep.locator(".nnmodes-legend").evaluate(
        "l => new Set([...l.children].map((item) => item.offsetLeft)).size")
    assert columns >= 3, columns
    legend.nth(3).click()
    page.wait_for_function("el => el.getAttribute('data-selected') === '3'",
                           arg=deep.element_handle(), timeout=10_000)
    assert deep.locator(".nnmodes-layer-select").input_value() == "3"
    assert deep.locator(".nnmodes-legend-item.nnmodes-dim").count() == 13
    legend.nth(3).click()
    page.wait_for_function("el => el.getAttribute('data-selected') === ''",
                           arg=deep.element_handle(), timeout=10_000)
    # hovering a dot names its line
    _hover_and_read(page, deep)
    assert kernel_busy(page), "the first sample is looked at while the kernel is busy"

    # the second sample: lines instead of dots, axes following the data
    (lab_server.root_dir / "go_on").write_text("")
    counts = _wait_file(lab_server, "second_sample.json")
    assert counts["spectrum"] == {"rwc": 2, "spectrum": 2} and counts["deep"] == 2, counts
    for panel in (spectrum, trend, deep):
        wait_looking(page, panel, f"el => el.getAttribute('data-step') === '{2 * EVERY}'")
    deadline = time.monotonic() + 30
    while True:
        figures = {what: figure for panel, names in (
            (spectrum, ("spectra", "effective rank", "stable rank")), (trend, ("trend",)),
            (deep, ("deep trend",))) for figure, what in zip(panel.evaluate(FIGURES_JS), names)}
        # two distinct points per line of a trend (the spectra have a point per rank)
        if all(len({p[1:] for p in re.findall(r"[ML][^ML]+", d)}) == 2
               for what, figure in figures.items() if what != "spectra" for d in figure["lines"]):
            break
        assert time.monotonic() < deadline, figures
        time.sleep(0.3)
    for what, figure in figures.items():
        _check_drawn(figure, what)
        assert not _dots(figure) and max(figure["widths"]) <= 2, (what, figure)
    _hover_and_read(page, deep)
    assert not error_outputs(page), error_outputs(page)
    assert_no_console_errors(console_errors)
