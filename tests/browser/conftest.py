"""Real-browser test harness: JupyterLab on loopback driven by Debian's Chromium.

Run: .venv/bin/pytest tests/browser -m browser -v
NNMODES_BROWSER_NOTEBOOKS=/some/dir points the server at another notebook
folder (used to develop the harness itself); default is the repo's notebooks/.
NNMODES_CAUGHT="some text" reports the stack of every exception the page throws *and catches*
whose description contains the text (a widget manager logs only the message of an error in a
change handler: "Error setting state: ..."); the page pauses on each caught exception, so the
tests run slower under it.

The fixtures are here; the server, browser and notebook helpers themselves are in harness.py
(also used by bench/frontend.py), and the helpers the tests use are importable from here too.
"""

import os
from pathlib import Path

import pytest

from .harness import (  # noqa: F401  (re-exported for the tests)
    CHROMIUM, CHROMIUM_ARGS, NOTEBOOK, POLL, REPO, LabError, LabServer, _stacks,
    assert_no_console_errors, error_outputs, frame_times, kernel_busy, launch_chromium,
    open_notebook, record_frames, run_all_cells, start_lab, stderr_outputs, stop_lab,
    look_at, wait_kernel_idle, wait_looking, write_notebook)


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: real-browser tests (JupyterLab + Chromium)")


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    # Remember the call outcome so the page fixture can screenshot failures.
    report = yield
    if report.when == "call":
        item.browser_call_failed = report.failed
    return report


# ---------------------------------------------------------------- server


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory):
    src = Path(os.environ.get("NNMODES_BROWSER_NOTEBOOKS", REPO / "notebooks"))
    assert src.is_dir(), f"notebook folder {src} does not exist"
    try:
        proc, server = start_lab(src, tmp_path_factory.mktemp("lab"))
    except LabError as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        stop_lab(proc, server)


# ---------------------------------------------------------------- browser


@pytest.fixture(scope="session")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        # Fail, never skip: a skipped browser test would pass unnoticed.
        pytest.fail(f"{CHROMIUM} not found; install Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = launch_chromium(pw)
        yield b
        b.close()


@pytest.fixture
def console_errors():
    """Browser console errors and uncaught page errors seen by `page`."""
    return []


@pytest.fixture
def page(browser, lab_server, console_errors, request, tmp_path):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    context.set_default_navigation_timeout(90_000)  # first JupyterLab load on a busy 2-core box
    pg = context.new_page()

    def on_console(msg):
        # the package's own warnings count too (a bqplot guard that could not be installed)
        if msg.type == "error" or (msg.type == "warning" and msg.text.startswith("nnmodes_widgets:")):
            where = f"{msg.location.get('url')}:{msg.location.get('lineNumber')}"
            console_errors.append(f"console.{msg.type}: {msg.text} (at {where}){_stacks(msg)}")

    pg.on("console", on_console)
    pg.on("pageerror", lambda exc: console_errors.append(f"pageerror: {exc}"))
    pattern = os.environ.get("NNMODES_CAUGHT")
    if pattern:    # a diagnostic: see the module docstring
        cdp = context.new_cdp_session(pg)
        cdp.send("Debugger.enable")
        cdp.send("Debugger.setPauseOnExceptions", {"state": "caught"})

        def on_paused(params):
            desc = str((params.get("data") or {}).get("description", ""))
            if pattern in desc:
                frames = [f"{f['functionName']} {f['url'].rsplit('/', 1)[-1]}:"
                          f"{f['location']['lineNumber']}:{f['location'].get('columnNumber')}"
                          for f in params["callFrames"][:25]]
                console_errors.append("CAUGHT " + desc[:300] + "\n    " + "\n    ".join(frames))
            cdp.send("Debugger.resume")
        cdp.on("Debugger.paused", on_paused)
    yield pg
    if getattr(request.node, "browser_call_failed", False):
        try:
            pg.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            print(f"failure screenshot: {tmp_path / 'failure.png'}")
        except Exception as exc:
            print(f"could not take failure screenshot: {exc}")
    context.close()
    # Fresh kernel for the next test; also stops a training loop left running.
    for session in lab_server.api("GET", "/api/sessions"):
        lab_server.api("DELETE", f"/api/sessions/{session['id']}")
