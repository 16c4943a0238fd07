"""The whole dashboard in a real JupyterLab while a training cell runs, trained as people write it
(no sleeps) at the default budget: every panel renders and keeps updating, one layer selection
is shared by the panels in the browser, a page reloaded during training gets its dashboard back,
and figures exported from a cell are valid files."""

import json
import time

import numpy as np

from .conftest import (POLL, assert_no_console_errors, error_outputs, frame_times, kernel_busy,
                       look_at, open_notebook, record_frames, run_all_cells, wait_looking,
                       write_notebook)

TRAIN_SECONDS = 65     # the first frames took 28 s in a fresh-clone CI on a loaded host, and the
                       # reload must still come during training
WATCH_SECONDS = 16      # of the training, in which every panel's frames are timed
REFRESH_TARGET = 2.5    # s: a small model's panels move at least this often (SPEC 5)
PANELS = {  # root element class -> the panel
    "trend": ".nnmodes-trend",
    "spectra": ".nnmodes-spectrum",
    "neurons": ".nnmodes-neurons",
    "basins": ".nnmodes-basins",
    "radiographs": ".nnmodes-radiograph:not(.nnmodes-characteristic-maps)",
    "characteristic maps": ".nnmodes-characteristic-maps",
}
CELLS = [
    """import time, torch
import nnmodes_widgets as nm
from sklearn.datasets import load_digits
torch.manual_seed(0)
X, y = load_digits(return_X_y=True)
X, y = torch.tensor(X / 16.0, dtype=torch.float32).reshape(-1, 8, 8), torch.tensor(y)
model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 48), torch.nn.ReLU(),
                            torch.nn.Linear(48, 24), torch.nn.ReLU(), torch.nn.Linear(24, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.05)
monitor = nm.Monitor(model, opt, probe=(X[:200], y[:200]))   # the defaults: every, budget
dashboard = monitor.dashboard()
dashboard""",
    f"""start = time.time()
while time.time() - start < {TRAIN_SECONDS}:
    idx = torch.randint(0, len(X), (32,))
    opt.zero_grad(); torch.nn.functional.cross_entropy(model(X[idx]), y[idx]).backward(); opt.step()
monitor.detach()
open("training_done", "w").write(f"{{monitor.current_step}} {{monitor.every}}")  # a mark the test can see""",
    """for ext in ("png", "svg", "pdf"):
    dashboard.export(f"dashboard_export.{ext}")
print("exported", monitor.current_step)""",
]


def _selected(panels):
    return {name: loc.get_attribute("data-selected") for name, loc in panels.items()}


def test_dashboard_panels_selection_reload_and_export(page, lab_server, console_errors, tmp_path):
    # a window tall enough for the whole dashboard (1,900 px): a panel out of sight builds no
    # frames
    page.set_viewport_size({"width": 1400, "height": 2400})
    write_notebook(lab_server.root_dir / "dashboard_live.ipynb", CELLS)
    open_notebook(page, lab_server, "dashboard_live.ipynb")
    run_all_cells(page)

    dashboard = page.locator(".nnmodes-dashboard")
    dashboard.wait_for(timeout=180_000)
    # JupyterLab scrolls to the cell that starts running; then the dashboard is looked at
    page.wait_for_function("el => el.textContent.includes('*')", arg=page.locator(
        ".jp-NotebookPanel:visible .jp-Cell").nth(1).locator(".jp-InputPrompt").element_handle(),
        timeout=60_000)
    panels = {name: dashboard.locator(sel) for name, sel in PANELS.items()}
    started = time.monotonic()
    for loc in panels.values():
        loc.wait_for(timeout=30_000)
    while True:   # every panel draws, and again with the first data
        look_at(dashboard, "start")   # kept in view (JupyterLab moves the notebook)
        frames = {n: int(p.get_attribute("data-frames") or 0) for n, p in panels.items()}
        if min(frames.values()) >= 3:
            break
        assert time.monotonic() - started < 90, f"not every panel drew 3 frames: {frames}"
        time.sleep(POLL)
    # (the first runs wait for the cadence's calibration and their first credit)
    print(f"every panel drew 3 frames {time.monotonic() - started:.1f} s after the dashboard")
    # Then each panel moves at least every refresh target (2.5 s on a small model) while the
    # training runs at the defaults: frames counted in the page over a stretch of it.
    since = record_frames(page, panels.values())
    watched = time.monotonic() + WATCH_SECONDS
    while time.monotonic() < watched:
        assert kernel_busy(page), "training ended before the panels were watched"
        look_at(dashboard, "start")
        time.sleep(POLL)
    drawn, end = frame_times(page, since)
    gaps = {name: np.diff([0.0, *times, end]) for name, times in zip(panels, drawn)}
    for name, between in gaps.items():
        print(f"{name}: a frame every {between.mean():.2f} s (at most {between.max():.2f} s)")
    print(dashboard.locator(".nnmodes-status").inner_text())    # the slowdown, every
    # Each panel's longest gap within the target. Measured (issue 21): at most 1.1-1.6 s, every
    # 1.0-1.2 s on average, in 3 runs on two cores with Chromium drawing on the same cores (at
    # most 2.9-3.1 s while the worker's runs were priced by their wall time, which waiting for
    # the GIL or a core stretched up to tenfold; at most 2.95-3.09 s in a CI run whose
    # calibration timed its samples without their record: every=100 was chosen, and sampling
    # took more than its quarter of the budget)
    longest = {name: round(float(between.max()), 2) for name, between in gaps.items()}
    assert max(longest.values()) <= REFRESH_TARGET, longest

    # A layer chosen in one panel is selected in the others (jslink, in the browser).
    linked = {n: panels[n] for n in ("trend", "spectra", "neurons", "basins", "radiographs")}
    panels["neurons"].locator(".nnmodes-layer-select").select_option("3")
    page.wait_for_function("els => els.every(e => e.getAttribute('data-selected') === '3')",
                           arg=[loc.element_handle() for loc in linked.values()], timeout=10_000)
    for name, loc in linked.items():
        assert loc.locator(".nnmodes-layer-select").input_value() == "3", name
    # The layers' lines shown, by name (not the legend's, nor those of a hidden mark: the other
    # scale's; a phase rule, shown once a phase change is found, is not a layer's line).
    shown_lines = ("root => [...root.querySelectorAll('path.line')]"
                   ".filter(p => !p.closest('.legend') && ![...function* up(n) { for (; n; "
                   "n = n.parentElement) yield n; }(p)].some(n => getComputedStyle(n).display "
                   "=== 'none')).map(p => [p.__data__?.name, getComputedStyle(p).opacity])"
                   ".filter(([name]) => name?.endsWith('.weight'))")
    # every layer has its line and 3.weight stands out; a frame arriving meanwhile redraws the
    # lines, so the page is asked until it holds
    expected = [["1.weight", "0.15"], ["3.weight", "1"], ["5.weight", "0.15"]]
    stands_out = (f"root => JSON.stringify(({shown_lines})(root)) === "
                  f"'{json.dumps(expected, separators=(',', ':'))}'")
    try:
        page.wait_for_function(stands_out, arg=panels["trend"].element_handle(), timeout=10_000)
    except Exception as exc:
        raise AssertionError(panels["trend"].evaluate(shown_lines)) from exc
    # a click on a radiograph band selects that layer everywhere
    canvas = panels["radiographs"].locator("canvas")
    canvas.click(position={"x": 5, "y": 5})          # the first band: layer "1"
    page.wait_for_function("els => els.every(e => e.getAttribute('data-selected') === '1')",
                           arg=[loc.element_handle() for loc in linked.values()], timeout=10_000)
    assert kernel_busy(page), "the selection must be tried while the kernel is busy"

    # Reload in the middle of training. The page comes back at once, but JupyterLab (4.6) asks
    # the kernel for its widgets with a comm_info_request on the main shell channel, which the
    # kernel answers only when the training cell ends (comm messages themselves go over
    # subshells): the dashboard is restored then, with everything recorded meanwhile.
    step_before = int(panels["trend"].get_attribute("data-step"))
    page.keyboard.press("Control+s")     # keep the outputs (autosave is off in these tests)
    time.sleep(1.0)
    page.reload()
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=90_000)
    # The reloaded page does not know the running cell (nor does the server's execution_state,
    # which comm messages on subshells set to idle): the cell leaves a mark when it ends.
    done = lab_server.root_dir / "training_done"
    assert not done.exists(), "training ended before the page was reloaded"
    deadline = time.monotonic() + TRAIN_SECONDS + 120
    while not done.exists():
        assert time.monotonic() < deadline, "training cell did not end"
        time.sleep(0.5)
    dashboard = page.locator(".nnmodes-dashboard")
    dashboard.wait_for(timeout=60_000)
    panels = {name: dashboard.locator(sel) for name, sel in PANELS.items()}
    for name, loc in panels.items():     # each drawn once looked at
        loc.wait_for(timeout=30_000)
        wait_looking(page, loc, "el => Number(el.getAttribute('data-frames')) >= 1", timeout=30)
    final, every = map(int, done.read_text().split())
    # the last RWC sample: at most every - 1 steps before the end (the interval the monitor chose)
    wait_looking(page, panels["trend"], f"el => Number(el.getAttribute('data-step')) > {final - every}",
                 timeout=30)
    assert final > step_before, (final, step_before)
    status = dashboard.locator(".nnmodes-status")
    wait_looking(page, status, "el => el.textContent.includes('detached')", timeout=30)
    # the panels agree on one selection (view state: the last choice may not have reached the
    # kernel before the page went away)
    assert len(set(_selected({n: panels[n] for n in linked}).values())) == 1, _selected(panels)

    assert not error_outputs(page), error_outputs(page)
    for ext, magic in (("png", b"\x89PNG\r\n\x1a\n"), ("svg", b"<?xml"), ("pdf", b"%PDF-")):
        data = (lab_server.root_dir / f"dashboard_export.{ext}").read_bytes()
        assert data.startswith(magic) and len(data) > 5000, (ext, data[:20])
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    assert_no_console_errors(console_errors)
