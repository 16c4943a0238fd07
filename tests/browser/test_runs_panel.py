"""The Runs panel (SPEC 12) in a real JupyterLab and in Jupyter Notebook 7, against the installed
wheel's prebuilt lab extension and server extension: the run files under the server's root listed
with their live status, a run opened (double-click, or the file browser) into a notebook that shows
its dashboard, two runs compared, and no console errors.

The server here serves a folder of run files recorded with ``RunWriter`` (no training), so this
module starts its own server (``lab_server`` below overrides the session one)."""

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from nnmodes_widgets.runs.run_writer import RunWriter

from .conftest import (LabError, assert_no_console_errors, error_outputs, start_lab, stderr_outputs,
                       stop_lab)
from .harness import (DISABLED_PLUGINS, SERVER_START_TIMEOUT, LabServer, _free_port, _node_free_path,
                      _write_json)

PANEL = "#nnmodes-runs"
ROW = f"{PANEL} .nnmodes-run"
LOAD_TIMEOUT = 90_000        # ms for JupyterLab's first load on a busy 2-core machine
REFRESH_TIMEOUT = 20_000     # ms for the panel to show a change (it refreshes every 3 s)
DASHBOARD_TIMEOUT = 180      # s from opening a run to its rendered dashboard (kernel start, torch import)
LIVE_SECONDS = 20            # s the live run is recorded for
INFO = {"model": "MLP", "parameters": {"0.weight": [8, 4], "2.weight": [3, 8]},
        "settings": {"every": 5, "budget": 0.1, "rwc_kind": "l2", "analyses": ["rwc"]},
        "layers": ["0", "2"],
        "probe_facts": {"labelled": True, "input_shape": [64, 1, 4, 4], "floating": True}}
RUNS = {  # path under the root -> (steps, status)
    "nnmodes_runs/alpha.nnmodes": (200, "finished"),
    "nnmodes_runs/beta.nnmodes": (100, "interrupted"),
    "experiments/gamma.nnmodes": (50, "finished"),
    # the name a Monitor gives a run: shown whole, never cut to "20261205-010610-Se..."
    "nnmodes_runs/20261205-010610-Sequential.nnmodes": (30, "finished"),
}
# Jupyter Notebook 7.6's own page errors, seen with this extension disabled as well: on each page its
# shortcuts plugin reads the settings schema of a plugin the registry does not hold; opening a
# notebook from /tree (its own file browser does the same) disposes the notebook widget made on
# that page before its execution indicator has its settings. Not ours to fix.
NOTEBOOK7_OWN_ERRORS = ("pageerror: Cannot read properties of undefined (reading 'schema')",
                        "console.error: Cannot read properties of null (reading 'updateRenderOption')")
# Records for LIVE_SECONDS, then closes the run: "running", then "finished".
LIVE_SCRIPT = textwrap.dedent("""
    import sys, time
    from nnmodes_widgets.runs.run_writer import RunWriter
    writer = RunWriter(sys.argv[1], {"model": "Live"}, commit_every=0.2)
    start, step = time.time(), 0
    while time.time() - start < float(sys.argv[2]):
        step += 1
        writer.record("rwc", step, time.time(), {"0": 1.0 / step, "2": 0.5 / step})
        time.sleep(0.1)
    writer.close("finished")
    print("closed at step", step, flush=True)
""")


def _record(path, steps, status):
    rng = np.random.default_rng(steps)
    writer = RunWriter(path, INFO)
    for step in range(5, steps + 1, 5):
        writer.record("rwc", step, 1.7e9 + step, {"0": float(rng.random()), "2": float(rng.random())})
    writer.close(status)


@pytest.fixture(scope="module")
def runs_folder(tmp_path_factory):
    src = tmp_path_factory.mktemp("runs_src")
    for path, (steps, status) in RUNS.items():
        _record(src / path, steps, status)
    # a notebook already named as beta's would be: opening beta must not overwrite it
    (src / "nnmodes_runs" / "beta.ipynb").write_text(json.dumps(
        {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}))
    return src


@pytest.fixture(scope="module")
def lab_server(runs_folder, tmp_path_factory):
    try:
        proc, server = start_lab(runs_folder, tmp_path_factory.mktemp("lab_runs"))
    except LabError as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        stop_lab(proc, server)


@pytest.fixture(scope="module")
def notebook_server(runs_folder, tmp_path_factory):
    """`jupyter notebook` (Notebook 7) serving a copy of the runs folder, set up as the harness sets
    up JupyterLab. Its own server: one that served JupyterLab first refuses some of Notebook 7's
    assets (jupyter_server's static file cache is keyed by file name only, and both front-ends ship
    a 620019ed9d1100b6.woff2), and Notebook 7 pages would read JupyterLab's saved workspace."""
    tmp = tmp_path_factory.mktemp("notebook7")
    root, config = tmp / "root", tmp / "config"
    shutil.copytree(runs_folder, root)
    _write_json(config / "labconfig" / "page_config.json", {
        "disabledExtensions": {p: True for p in DISABLED_PLUGINS}, "buildCheck": False, "buildAvailable": False})
    env = dict(os.environ, PATH=_node_free_path(tmp / "bin"), JUPYTER_CONFIG_DIR=str(config),
               JUPYTER_DATA_DIR=str(tmp / "data"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(config / "lab" / "user-settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"), IPYTHONDIR=str(tmp / "ipython"))
    port, token = _free_port(), secrets.token_hex(24)
    server = LabServer(f"http://127.0.0.1:{port}", port, token, root, tmp / "server.log")
    cmd = [sys.executable, "-m", "notebook", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    with open(server.log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            assert proc.poll() is None, f"jupyter notebook exited:\n{server.log_tail()}"
            try:
                server.api("GET", "/api/status")
                break
            except OSError:
                assert time.monotonic() < deadline, f"no jupyter notebook:\n{server.log_tail()}"
                time.sleep(0.2)
        yield server
    finally:
        stop_lab(proc, server)


def _show_panel(page, server):
    """JupyterLab with no restored tabs, the Runs panel opened from its left sidebar tab."""
    page.goto(f"{server.url}/lab?reset&token={server.token}")
    tab = page.locator('.jp-SideBar.jp-mod-left li[data-id="nnmodes-runs"]')
    tab.wait_for(timeout=LOAD_TIMEOUT)
    tab.click()
    page.locator(PANEL).wait_for(state="visible")
    page.locator(ROW).first.wait_for(timeout=REFRESH_TIMEOUT)


def _rows(page):
    return page.evaluate(f"""() => [...document.querySelectorAll('{ROW}')].map(row => ({{
        path: row.dataset.path, status: row.dataset.status, text: row.innerText}}))""")


def _row(page, path):
    return page.locator(f'{ROW}[data-path="{path}"]')


def _wait_dashboard(page, selector, timeout=DASHBOARD_TIMEOUT):
    """The opened notebook's output `selector` (.nnmodes-dashboard, .nnmodes-compare), rendered;
    fails early if the notebook's cell ran without it."""
    found = page.locator(f".jp-NotebookPanel:visible {selector}")
    deadline = time.monotonic() + timeout
    ran_at = None
    while found.count() == 0:
        prompts = page.locator(".jp-NotebookPanel:visible .jp-InputPrompt").all_inner_texts()
        if prompts and all(re.search(r"\[\d+\]", p) for p in prompts):
            ran_at = ran_at or time.monotonic()
            assert time.monotonic() - ran_at < 10, (
                f"the notebook ran without a {selector}; stderr: {stderr_outputs(page)}")
        assert time.monotonic() < deadline, (
            f"no {selector} {timeout} s after opening; prompts {prompts}; stderr: {stderr_outputs(page)}")
        time.sleep(0.5)
    return found


def _notebook_cell(server, path):
    nb = json.loads((server.root_dir / path).read_text())
    source = nb["cells"][0]["source"]
    return "".join(source) if isinstance(source, list) else source


def test_panel_lists_the_runs_under_the_root(page, lab_server, console_errors):
    _show_panel(page, lab_server)
    rows = _rows(page)
    assert {r["path"]: r["status"] for r in rows} == {p: s for p, (_, s) in RUNS.items()}, rows
    for row in rows:
        steps, status = RUNS[row["path"]]
        name = Path(row["path"]).stem
        assert name in row["text"] and status in row["text"] and f"step {steps}" in row["text"], row
        assert "ago" in row["text"], f"no last update shown: {row}"
    # every name whole, inside the panel (it wraps rather than being cut)
    names = page.locator(f"{PANEL} .nnmodes-run-name").evaluate_all("""els => els.map((e) => {
      const r = e.getBoundingClientRect(), panel = e.closest('.nnmodes-run').getBoundingClientRect();
      return [e.textContent, e.scrollWidth <= e.clientWidth, r.left >= panel.left && r.right <= panel.right];
    })""")
    assert len(names) == len(RUNS) and all(whole and inside for _, whole, inside in names), names
    # Compare needs two selected runs
    compare = page.locator(f"{PANEL} .nnmodes-runs-compare")
    assert compare.is_disabled()
    _row(page, "nnmodes_runs/alpha.nnmodes").click()
    assert compare.is_disabled()
    _row(page, "experiments/gamma.nnmodes").click(modifiers=["Control"])
    assert compare.is_enabled()
    assert page.locator(f"{ROW}.jp-mod-selected").count() == 2
    assert_no_console_errors(console_errors)


def test_live_status_of_a_script_recording_a_run(page, lab_server, console_errors):
    _show_panel(page, lab_server)
    path = "scripts_out/live.nnmodes"
    (lab_server.root_dir / "scripts_out").mkdir()
    script = subprocess.Popen([sys.executable, "-c", LIVE_SCRIPT, str(lab_server.root_dir / path),
                               str(LIVE_SECONDS)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        row = _row(page, path)
        row.wait_for(timeout=REFRESH_TIMEOUT)
        page.wait_for_function(f"""() => {{ const r = document.querySelector('{ROW}[data-path="{path}"]');
            return r && r.dataset.status === 'running'; }}""", timeout=REFRESH_TIMEOUT)
        assert script.poll() is None, "the script finished before the panel showed it running"
        first = row.inner_text()
        # the steps shown grow while it runs
        page.wait_for_function(f"""first => {{ const r = document.querySelector('{ROW}[data-path="{path}"]');
            return r && r.dataset.status === 'running' && r.innerText !== first
                   && /step [1-9]/.test(r.innerText); }}""", arg=first, timeout=REFRESH_TIMEOUT)
        out, _ = script.communicate(timeout=LIVE_SECONDS + 60)
        assert script.returncode == 0 and "closed at step" in out, out
        page.wait_for_function(f"""() => {{ const r = document.querySelector('{ROW}[data-path="{path}"]');
            return r && r.dataset.status === 'finished'; }}""", timeout=REFRESH_TIMEOUT)
        steps = int(out.split()[-1])
        assert f"step {steps}" in row.inner_text(), (row.inner_text(), out)
    finally:
        if script.poll() is None:
            script.kill()
            script.wait()
    assert_no_console_errors(console_errors)


def test_double_click_opens_a_notebook_with_the_dashboard(page, lab_server, console_errors):
    before = (lab_server.root_dir / "nnmodes_runs" / "beta.ipynb").read_bytes()
    _show_panel(page, lab_server)
    _row(page, "nnmodes_runs/beta.nnmodes").dblclick()
    # beta.ipynb exists: a new name, next to the run file
    page.locator(".lm-TabBar-tab", has_text="beta-1.ipynb").wait_for()
    dashboard = _wait_dashboard(page, ".nnmodes-dashboard")
    assert dashboard.count() == 1
    assert (lab_server.root_dir / "nnmodes_runs" / "beta.ipynb").read_bytes() == before
    assert _notebook_cell(lab_server, "nnmodes_runs/beta-1.ipynb") == (
        'import nnmodes_widgets as nm\nnm.open_run("beta.nnmodes").dashboard()')
    assert not error_outputs(page), error_outputs(page)
    assert_no_console_errors(console_errors)


def test_compare_opens_a_notebook_comparing_the_selected_runs(page, lab_server, console_errors):
    _show_panel(page, lab_server)
    _row(page, "nnmodes_runs/alpha.nnmodes").click()
    _row(page, "experiments/gamma.nnmodes").click(modifiers=["Control"])
    page.locator(f"{PANEL} .nnmodes-runs-compare").click()
    compare = _wait_dashboard(page, ".nnmodes-compare")
    assert compare.count() == 1
    # the runs in the order selected; the notebook next to the first one
    assert _notebook_cell(lab_server, "nnmodes_runs/compare-alpha-gamma.ipynb") == (
        'import nnmodes_widgets as nm\nnm.compare("alpha.nnmodes", "../experiments/gamma.nnmodes")')
    assert not error_outputs(page), error_outputs(page)
    assert_no_console_errors(console_errors)


def test_file_browser_opens_a_run_file(page, lab_server, console_errors):
    page.goto(f"{lab_server.url}/lab/tree/experiments?reset&token={lab_server.token}")
    item = page.locator(".jp-DirListing-item", has_text="gamma.nnmodes")
    item.wait_for(timeout=LOAD_TIMEOUT)
    # its own file type and icon
    assert item.locator('[data-icon="nnmodes-widgets:run"]').count() == 1, item.inner_html()
    item.dblclick()
    _wait_dashboard(page, ".nnmodes-dashboard")
    assert _notebook_cell(lab_server, "experiments/gamma.ipynb") == (
        'import nnmodes_widgets as nm\nnm.open_run("gamma.nnmodes").dashboard()')
    # the short-lived opener tab has closed itself
    assert page.locator(".nnmodes-run-opener").count() == 0
    assert not error_outputs(page), error_outputs(page)
    assert_no_console_errors(console_errors)


def test_notebook7_shows_the_runs_panel_and_opens_runs(page, notebook_server, console_errors):
    """Jupyter Notebook 7 loads the same prebuilt extension: on its /tree page the panel is in the
    left area, shown from View > Left Sidebar > Show nnmodes runs (on a notebook page too); a
    double-click opens the notebook in a new browser tab, as Notebook 7 opens every notebook, and
    it runs there."""
    page.goto(f"{notebook_server.url}/tree?token={notebook_server.token}")
    page.locator(".jp-DirListing-item").first.wait_for(timeout=LOAD_TIMEOUT)
    page.locator(".lm-MenuBar-item", has_text="View").click()
    page.locator(".lm-Menu-item", has_text="Left Sidebar").hover()
    page.locator(".lm-Menu-item", has_text="Show nnmodes runs").click()
    page.locator(PANEL).wait_for(state="visible")
    page.locator(ROW).first.wait_for(timeout=REFRESH_TIMEOUT)
    rows = {r["path"]: r["status"] for r in _rows(page)}
    assert {p: s for p, (_, s) in RUNS.items()}.items() <= rows.items(), rows
    with page.context.expect_page(timeout=30_000) as opened:
        _row(page, "nnmodes_runs/alpha.nnmodes").dblclick()
    tab = opened.value
    tab.on("console", lambda msg: msg.type == "error" and console_errors.append(
        f"notebook tab: console.error: {msg.text} ({msg.location.get('url')})"))
    tab.on("pageerror", lambda exc: console_errors.append(f"notebook tab: pageerror: {exc}"))
    tab.wait_for_load_state()
    assert "/notebooks/nnmodes_runs/alpha" in tab.url, tab.url
    tab.locator(".nnmodes-dashboard").wait_for(timeout=DASHBOARD_TIMEOUT * 1000)
    tab.close()
    assert _notebook_cell(notebook_server, "nnmodes_runs/alpha.ipynb") == (
        'import nnmodes_widgets as nm\nnm.open_run("alpha.nnmodes").dashboard()')
    assert_no_console_errors([e for e in console_errors
                              if not e.removeprefix("notebook tab: ").startswith(NOTEBOOK7_OWN_ERRORS)])


def test_a_file_that_is_not_a_run_is_listed_unreadable_with_the_reason(page, lab_server, console_errors):
    """A file named like a run that is not one (SPEC 14): its row says "unreadable" and why, the
    runs beside it stay listed."""
    bad = lab_server.root_dir / "notes.nnmodes"
    bad.write_text("not a run file")
    try:
        _show_panel(page, lab_server)
        row = _row(page, "notes.nnmodes")
        row.wait_for(timeout=REFRESH_TIMEOUT)
        assert row.get_attribute("data-status") == "unreadable"
        assert "not an SQLite database" in row.inner_text()
        assert "not an SQLite database" in row.get_attribute("title")
        assert {r["path"] for r in _rows(page)} >= set(RUNS)
        assert_no_console_errors(console_errors)
    finally:
        bad.unlink()
