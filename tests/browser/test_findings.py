"""The findings strip in a real JupyterLab while a training cell runs (SPEC 15): a frozen layer
gives a "not learning" finding, whose sentence shows under the status header; a click on it,
while the kernel is busy training, selects its layer in every panel, brings its panel into view
and marks the steps it held on; a second click undoes it. Trained as people write it: no sleeps,
the default budget."""

import re
import time

from .conftest import (assert_no_console_errors, error_outputs, kernel_busy, open_notebook,
                       run_all_cells, wait_looking, write_notebook)

TRAIN_SECONDS = 40
CELLS = [
    """import time, torch
import nnmodes_widgets as nm
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64),
                            torch.nn.ReLU(), torch.nn.Linear(64, 4))
model[2].weight.requires_grad_(False)          # frozen: it will not learn
opt = torch.optim.SGD(model.parameters(), lr=0.05)
monitor = nm.Monitor(model, opt, analyses=("rwc", "findings"))
monitor.dashboard()""",
    f"""X, y = torch.randn(4096, 20), torch.randint(0, 4, (4096,))
start = time.time()
while time.time() - start < {TRAIN_SECONDS}:
    idx = torch.randint(0, 4096, (256,))
    opt.zero_grad(); torch.nn.functional.cross_entropy(model(X[idx]), y[idx]).backward(); opt.step()
monitor.detach()""",
]
LINKED = (".nnmodes-trend", ".nnmodes-spectrum", ".nnmodes-neurons", ".nnmodes-basins")
EVIDENCE_STROKE = "rgb(227, 160, 8)"   # widgets/phases.py EVIDENCE_COLOR
# the panel's visible band marking a finding's steps
BAND_JS = f"""root => [...root.querySelectorAll('.curve path')].some((p) =>
  p.closest('g[style*="display: none"]') === null && getComputedStyle(p).stroke === '{EVIDENCE_STROKE}')"""


# How far below the top of the notebook's scrolled area an element begins.
_TOP_JS = """e => {
  let n = e.parentElement;
  while (n && !(n.scrollHeight > n.clientHeight && /auto|scroll/.test(getComputedStyle(n).overflowY))) n = n.parentElement;
  return e.getBoundingClientRect().top - n.getBoundingClientRect().top;
}"""


def _top(locator):
    return locator.evaluate(_TOP_JS)


def test_a_finding_clicked_while_training_selects_its_layer_and_shows_its_panel(
        page, lab_server, console_errors, tmp_path):
    write_notebook(lab_server.root_dir / "findings_live.ipynb", CELLS)
    open_notebook(page, lab_server, "findings_live.ipynb")
    run_all_cells(page)
    dashboard = page.locator(".nnmodes-dashboard")
    dashboard.wait_for(timeout=180_000)
    finding = dashboard.locator('.nnmodes-finding[data-kind="not_learning"][data-layer="2.weight"]')
    # the dashboard's top looked at (the status line, the findings, the trend): a panel out of
    # sight builds no frames
    wait_looking(page, dashboard, "el => el.querySelector('.nnmodes-finding[data-kind=\"not_learning\"]"
                 "[data-layer=\"2.weight\"]') !== null", timeout=120, block="start")
    assert kernel_busy(page), "the finding must show while training runs"
    text = finding.inner_text()
    assert re.search(r"warning\s+2\.weight: weights have not changed since step \d+", text, re.I), text
    # the status header says how fresh each panel is, in plain words, while training runs
    status = dashboard.locator(".nnmodes-status")
    wait_looking(page, dashboard, r"el => /updated trend \d+(\.\d)? s ago/.test(el.textContent)",
                 element=status, timeout=30, block="start")
    assert not re.search(r"dropped|deferred", status.inner_text()), status.inner_text()
    # the only finding of a healthy rest of the network
    assert dashboard.locator(".nnmodes-finding").count() == 1, dashboard.locator(".nnmodes-findings").inner_text()

    # the strip as low on the screen as the notebook lets it be, the trend under it
    trend = dashboard.locator(".nnmodes-trend")
    dashboard.locator(".nnmodes-findings").evaluate("e => e.scrollIntoView({block: 'end'})")
    before = _top(trend)
    assert before > 100, before
    finding.click()
    panels = [dashboard.locator(selector) for selector in LINKED]
    page.wait_for_function("els => els.every((e) => e.getAttribute('data-selected') === '2')",
                           arg=[p.element_handle() for p in panels], timeout=10_000)
    # its panel brought into view: at the top of the notebook's area
    page.wait_for_function(f"el => Math.abs(({_TOP_JS})(el)) < 3", arg=trend.element_handle(), timeout=10_000)
    span = trend.get_attribute("data-evidence")
    assert span and re.fullmatch(r"\d+-\d+", span), span    # the steps it held on, marked
    first, last = map(int, span.split("-"))
    # it begins within the plotted steps (the finding may have read samples newer than the
    # trend's last frame: the panels share a tenth of the budget, a frame in 2.5 s at most)
    assert first <= last and first <= int(trend.get_attribute("data-step")), \
        (span, trend.get_attribute("data-step"))
    page.wait_for_function(BAND_JS, arg=trend.element_handle(), timeout=10_000)
    assert "nnmodes-active" in finding.get_attribute("class")
    assert kernel_busy(page), "the click must be tried while the kernel is busy"
    page.screenshot(path=str(tmp_path / "finding_clicked.png"))
    print(f"screenshot: {tmp_path / 'finding_clicked.png'}")

    finding.click()                    # again: all layers, no mark
    page.wait_for_function("els => els.every((e) => e.getAttribute('data-selected') === '')",
                           arg=[p.element_handle() for p in panels], timeout=10_000)
    assert trend.get_attribute("data-evidence") is None
    page.wait_for_function(f"root => !({BAND_JS})(root)", arg=trend.element_handle(), timeout=10_000)
    assert kernel_busy(page)

    deadline = time.monotonic() + TRAIN_SECONDS + 120
    while kernel_busy(page):
        assert time.monotonic() < deadline, "the training cell did not end"
        time.sleep(0.5)
    assert not error_outputs(page), error_outputs(page)
    assert_no_console_errors(console_errors)
