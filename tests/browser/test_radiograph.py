"""The radiograph canvas in a real JupyterLab: frames stream in while training runs, and every
view control (scrubbing, signed/absolute, hover) works in the browser while the kernel is busy."""

import time

from .conftest import (assert_no_console_errors, error_outputs, kernel_busy, open_notebook,
                       run_all_cells, wait_kernel_idle, write_notebook)

CELLS = [
    """import numpy as np, torch
from sklearn.datasets import load_digits
from nnmodes_widgets.widgets import Radiograph
torch.manual_seed(0)
X, y = load_digits(return_X_y=True)
X, y = torch.tensor(X / 16.0, dtype=torch.float32), torch.tensor(y)
model = torch.nn.Sequential(torch.nn.Linear(64, 24), torch.nn.ReLU(), torch.nn.Linear(24, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.05)
radiograph = Radiograph(title="static radiographs", history_size=30)
radiograph""",
    # radiographs of the two layers: W1 and W2 W1, shown as 8x8 tiles, a few per second
    """import time
start = time.time()
step = 0
while time.time() - start < 25:
    idx = torch.randint(0, len(X), (32,))
    opt.zero_grad(); torch.nn.functional.cross_entropy(model(X[idx]), y[idx]).backward(); opt.step()
    step += 1
    if step % 50 == 0:
        W1, W2 = model[0].weight.detach(), model[2].weight.detach()
        radiograph.show(step, {"0": W1, "2": W2 @ W1}, input_shape=(8, 8))
        time.sleep(0.15)""",
]


def test_radiograph_streams_and_its_views_work_while_training(page, lab_server, console_errors, tmp_path):
    write_notebook(lab_server.root_dir / "radiograph_live.ipynb", CELLS)
    open_notebook(page, lab_server, "radiograph_live.ipynb")
    run_all_cells(page)

    widget = page.locator(".nnmodes-radiograph")
    widget.wait_for(timeout=120_000)
    page.wait_for_function("el => Number(el.getAttribute('data-frames')) >= 2",
                           arg=widget.element_handle(), timeout=60_000)
    first = int(widget.get_attribute("data-frames"))
    time.sleep(1.5)
    assert kernel_busy(page), "training ended too early to see frames stream"
    later = int(widget.get_attribute("data-frames"))
    assert later > first, f"data-frames did not grow while training: {first} -> {later}"

    # scrub back: the frame shown is an older one, and stays there while new frames arrive
    scrub = widget.locator("input[type=range]")
    live_step = int(widget.get_attribute("data-step"))
    scrub.fill(str(max(0, int(scrub.get_attribute("max")) - 2)))
    old_step = int(widget.get_attribute("data-step"))
    assert old_step < live_step, (old_step, live_step)
    time.sleep(1.0)
    assert kernel_busy(page)
    assert int(widget.get_attribute("data-step")) == old_step, "scrubbed frame was replaced by live ones"
    scrub.fill(scrub.get_attribute("max"))           # back at the right end: live again
    page.wait_for_function(f"el => Number(el.getAttribute('data-step')) > {live_step}",
                           arg=widget.element_handle(), timeout=10_000)

    # the absolute view redraws in the browser; hover names layer, neuron, input and value
    frames = int(widget.get_attribute("data-frames"))
    widget.locator("select").first.select_option("absolute")
    assert int(widget.get_attribute("data-frames")) > frames
    canvas = widget.locator("canvas")
    box = canvas.bounding_box()
    canvas.hover(position={"x": 5, "y": 20})
    tip = widget.locator(".nnmodes-tooltip")
    assert tip.is_visible(), "no tooltip on hover"
    assert tip.inner_text().startswith("0 · neuron 0 · input"), tip.inner_text()
    assert kernel_busy(page), "the view checks must run while the kernel is busy"
    assert box["width"] > 100 and box["height"] > 50

    wait_kernel_idle(page, timeout=120)
    page.screenshot(path=str(tmp_path / "radiograph.png"))
    assert not error_outputs(page), error_outputs(page)
    assert_no_console_errors(console_errors)
