"""Dashboards made again and again in a real JupyterLab: a watch cell run three times (after an
earlier one still on the page), then a training cell written as people write it (no sleeps). One
dashboard moves; the earlier one says "replaced at step N" and stays still; the kernel keeps one
delivery thread, and its thread count stays flat. Then the watch cell's output is cleared while
its monitor trains: the kernel builds no more frames for that dashboard from then on."""

import json
import re
import time

from .conftest import (NOTEBOOK, assert_no_console_errors, error_outputs, kernel_busy,
                       open_notebook, wait_kernel_idle, wait_looking, write_notebook)

TRAIN_SECONDS = 12
CLEARED_TRAIN_SECONDS = 20
HEARD_WITHIN = 2.0      # s from the output cleared to the kernel's last frame for it
CELLS = [
    """import threading, time, torch
import ipywidgets
import nnmodes_widgets as nm
from sklearn.datasets import load_digits
torch.manual_seed(0)
X, y = load_digits(return_X_y=True)
X, y = torch.tensor(X / 16.0, dtype=torch.float32).reshape(-1, 8, 8), torch.tensor(y)
model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(),
                            torch.nn.Linear(32, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.05)

def nnmodes_threads():
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("nnmodes"))

def frames_of(monitor):   # what the kernel built for the monitor's dashboards
    return [w.frames for w in ipywidgets.Widget.widgets.values()
            if isinstance(w, nm.Dashboard) and w.run is monitor]
%load_ext nnmodes_widgets""",
    "earlier = %nnmodes watch model opt",
    "monitor = %nnmodes watch model opt",
    f"""threads_before = threading.active_count()
start = time.time()
while time.time() - start < {TRAIN_SECONDS}:
    idx = torch.randint(0, len(X), (32,))
    opt.zero_grad(); torch.nn.functional.cross_entropy(model(X[idx]), y[idx]).backward(); opt.step()
print("nnmodes threads at the end of training:", nnmodes_threads())""",
    f"""import json
built = []    # (time, frames the kernel built for the dashboard), four times a second
start = time.time()
while time.time() - start < {CLEARED_TRAIN_SECONDS}:
    idx = torch.randint(0, len(X), (32,))
    opt.zero_grad(); torch.nn.functional.cross_entropy(model(X[idx]), y[idx]).backward(); opt.step()
    if not built or time.time() - built[-1][0] >= 0.25:
        built.append((time.time(), frames_of(monitor)[0]))
monitor.detach()
print("frames built:", json.dumps(built))
print("threads:", threads_before, threading.active_count(), nnmodes_threads())""",
]
SETUP, EARLIER, WATCH, TRAIN, TRAIN_AGAIN = range(len(CELLS))


def _cell(page, index):
    return page.locator(f"{NOTEBOOK} .jp-Notebook .jp-Cell").nth(index)


def _run(page, index):
    """Run one cell in place (as Ctrl+Enter does) and wait until it has started."""
    prompt = _cell(page, index).locator(".jp-InputPrompt")
    before = prompt.inner_text()
    prompt.click()
    page.keyboard.press("Control+Enter")
    deadline = time.monotonic() + 30
    while not kernel_busy(page):     # a fast cell may be done already: a new number
        now = prompt.inner_text()
        if now != before and re.search(r"\[\d+\]", now):
            break
        assert time.monotonic() < deadline, f"cell {index} did not start"
        time.sleep(0.1)


def _output(page, index):
    return _cell(page, index).locator(".jp-OutputArea").inner_text()


def _frames(locator):
    value = locator.get_attribute("data-frames")
    return int(value) if value and value.isdigit() else 0


def test_dashboards_made_again_and_cleared_cost_nothing(page, lab_server, console_errors):
    write_notebook(lab_server.root_dir / "lifecycle.ipynb", CELLS)
    open_notebook(page, lab_server, "lifecycle.ipynb")
    for index in (SETUP, EARLIER, WATCH, WATCH, WATCH):
        _run(page, index)
        wait_kernel_idle(page, timeout=180)
    assert not error_outputs(page), error_outputs(page)
    dashboards = page.locator(".nnmodes-dashboard")
    assert dashboards.count() == 2        # the earlier cell's, and the watch cell's newest
    earlier, current = dashboards.nth(0), dashboards.nth(1)
    assert _cell(page, EARLIER).locator(".nnmodes-dashboard").count() == 1
    # the earlier monitor was replaced by the first run of the watch cell, before any step
    page.wait_for_function("el => el.textContent.includes('replaced at step 0')",
                           arg=earlier.locator(".nnmodes-status").element_handle(), timeout=30_000)

    _run(page, TRAIN)
    still = _frames(earlier)
    trend = current.locator(".nnmodes-trend")
    start = {root: _frames(root) for root in (current, trend)}
    for root, first in start.items():     # the newest dashboard moves (status line and trend)
        wait_looking(page, current, f"el => Number(el.getAttribute('data-frames')) > {first + 2}",
                     element=root, block="start")
    assert kernel_busy(page), "training ended before the dashboard was seen moving"
    wait_kernel_idle(page, timeout=TRAIN_SECONDS + 120)
    assert _frames(earlier) == still, "the replaced monitor's dashboard was drawn again"
    assert "replaced at step 0" in earlier.locator(".nnmodes-status").inner_text()
    threads = re.search(r"nnmodes threads at the end of training: \[(.*)\]", _output(page, TRAIN))
    assert threads, _output(page, TRAIN)
    assert threads.group(1).count("'nnmodes-delivery'") == 1, threads.group(0)

    # clear the watch cell's output while its monitor trains: its dashboard's views go, and with
    # them its frames, at once (the page's word is heard while the cell runs, on a subshell)
    _run(page, TRAIN_AGAIN)
    moving = _frames(current)
    wait_looking(page, current, f"el => Number(el.getAttribute('data-frames')) > {moving + 2}",
                 block="start")
    _cell(page, WATCH).locator(".jp-InputPrompt").click()
    _cell(page, WATCH).locator(".jp-InputPrompt").click(button="right")
    page.locator('.lm-Menu-item[data-command="notebook:clear-cell-output"]').click()
    cleared = time.time()
    assert _cell(page, WATCH).locator(".nnmodes-dashboard").count() == 0
    assert kernel_busy(page), "training ended before the output was cleared"
    wait_kernel_idle(page, timeout=CLEARED_TRAIN_SECONDS + 120)
    out = _output(page, TRAIN_AGAIN)
    log = re.search(r"frames built: (\[.*\])", out)
    assert log, out
    built = json.loads(log.group(1))
    heard = [frames for at, frames in built if at >= cleared + HEARD_WITHIN]
    assert len(heard) >= 8, f"training ended {built[-1][0] - cleared:.1f} s after the clear"
    assert built[0][1] < heard[0] == heard[-1], f"frames built for the cleared dashboard: {built}"
    threads = re.search(r"threads: (\d+) (\d+) \[(.*)\]", out)
    assert threads, out
    before, after, names = int(threads.group(1)), int(threads.group(2)), threads.group(3)
    assert after <= before, f"threads left behind: {before} -> {after} ({names})"
    assert "nnmodes-delivery" not in names, names
    assert not error_outputs(page), error_outputs(page)
    assert_no_console_errors(console_errors)
