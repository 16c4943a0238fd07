"""The real-browser harness without pytest: JupyterLab on loopback driven by Debian's Chromium.

tests/browser/conftest.py wraps it in fixtures; bench/frontend.py uses it directly. The server
runs with no Node.js on its PATH and an isolated configuration (no user settings, no network
features); Chromium is launched by Playwright with CHROMIUM_ARGS.
"""

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# Lab extensions the widgets need; the server must serve all of them.
REQUIRED_LABEXTENSIONS = {"anywidget", "bqplot", "@jupyter-widgets/jupyterlab-manager"}
# Frontend plugins that talk to the internet (news feed / update check, PyPI
# extension listing); offline they only produce failed requests and popups.
DISABLED_PLUGINS = [
    "@jupyterlab/apputils-extension:announcements",
    "@jupyterlab/extensionmanager-extension:plugin",
]
# User settings written into the isolated settings dir.
USER_SETTINGS = {
    # Keep the server's notebook copies pristine between tests.
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    # Keep every cell attached to the DOM so locators do not depend on scrolling.
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}
SERVER_START_TIMEOUT = 60  # s; generous for a loaded 2-core machine
POLL = 0.2  # s


class LabError(RuntimeError):
    """JupyterLab could not be started."""


# ---------------------------------------------------------------- server


@dataclass
class LabServer:
    url: str  # e.g. http://127.0.0.1:12345 (no trailing slash)
    port: int
    token: str
    root_dir: Path  # the temporary notebook copy the server serves
    log_path: Path

    def api(self, method, path, body=None):
        req = urllib.request.Request(
            f"{self.url}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            data = resp.read()
        return json.loads(data) if data else None

    def log_tail(self, n=80):
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NODE_PROGRAMS = {"node", "nodejs", "npm", "npx", "corepack"}


def _node_free_path(shadow_root):
    """PATH with the venv first and no Node.js on it.

    A directory holding `node` (often /usr/bin itself) is replaced by a folder of links to its
    other programs, so the kernel keeps the usual command-line tools.
    """
    dirs = [str(Path(sys.executable).parent)] + os.environ.get("PATH", "").split(os.pathsep)
    kept = []
    for i, d in enumerate(dict.fromkeys(dirs)):
        if not d or not os.path.isdir(d):
            continue
        if shutil.which("node", path=d) is None:
            kept.append(d)
            continue
        shadow = shadow_root / f"path{i}"
        shadow.mkdir(parents=True)
        for entry in os.scandir(d):
            if entry.name not in NODE_PROGRAMS:
                (shadow / entry.name).symlink_to(entry.path)
        kept.append(str(shadow))
    return os.pathsep.join(kept)


def _write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def _page_config(server):
    """The jupyter-config-data JSON that /lab embeds for the frontend."""
    req = urllib.request.Request(f"{server.url}/lab", headers={"Authorization": f"token {server.token}"})
    html = urllib.request.urlopen(req, timeout=10).read().decode()
    start = html.index('id="jupyter-config-data"')
    start = html.index(">", start) + 1
    return json.loads(html[start : html.index("</script>", start)])


def start_lab(src, tmp):
    """Start JupyterLab serving a copy of the notebook folder ``src`` (``tmp``: an empty scratch
    folder); returns ``(process, LabServer)`` once the server answers and serves the lab
    extensions the widgets need. Raises LabError when it does not start; ``stop_lab`` stops it."""
    src, tmp = Path(src), Path(tmp)
    assert src.is_dir(), f"notebook folder {src} does not exist"
    root = tmp / "root"
    shutil.copytree(src, root)  # JupyterLab may write to notebooks; never touch the repo
    config = tmp / "config"
    _write_json(config / "labconfig" / "page_config.json", {
        "disabledExtensions": {p: True for p in DISABLED_PLUGINS},
        # The build check asks the server to compare assets with Node.js, which we removed.
        "buildCheck": False,
        "buildAvailable": False,
    })
    for plugin, settings in USER_SETTINGS.items():
        _write_json(config / "lab" / "user-settings" / f"{plugin}.jupyterlab-settings", settings)

    env = dict(os.environ)
    env.update(
        PATH=_node_free_path(tmp / "bin"),
        JUPYTER_CONFIG_DIR=str(config),
        # sys.prefix/share/jupyter (venv lab extensions, kernelspec) stays on the path.
        JUPYTER_DATA_DIR=str(tmp / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(config / "lab" / "user-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
        IPYTHONDIR=str(tmp / "ipython"),  # no user startup scripts in the kernel
        PYTHONUNBUFFERED="1",
    )
    assert shutil.which("node", path=env["PATH"]) is None, env["PATH"]

    port, token = _free_port(), secrets.token_hex(24)
    server = LabServer(f"http://127.0.0.1:{port}", port, token, root, tmp / "server.log")
    cmd = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        # Nothing may reach for the network: no news feed, no update check, no PyPI.
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]
    if os.geteuid() == 0:  # containers / CI
        cmd.append("--allow-root")
    with open(server.log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise LabError(f"JupyterLab exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                server.api("GET", "/api/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise LabError(f"JupyterLab did not start within {SERVER_START_TIMEOUT} s:\n"
                                   f"{server.log_tail()}") from None
                time.sleep(POLL)

        cfg = _page_config(server)
        served = {ext["name"] for ext in cfg.get("federated_extensions", [])}
        missing = REQUIRED_LABEXTENSIONS - served
        assert not missing, f"lab extensions not found by the server: {missing} (served: {served})"
        assert set(DISABLED_PLUGINS) <= set(cfg.get("disabledExtensions", [])), cfg.get("disabledExtensions")
    except BaseException:
        stop_lab(proc, server)
        raise
    return proc, server


def _listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def stop_lab(proc, server):
    """Shut the server and its kernels down (kills what does not stop)."""
    import psutil  # an ipykernel dependency

    try:  # kernels run in their own sessions, so remember them by pid
        kernels = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        kernels = []
    try:
        server.api("POST", "/api/shutdown")  # shuts the kernels down, then stops listening
    except OSError:
        pass
    # The process itself may then hang in interpreter shutdown (an idle AnyIO worker
    # thread, seen with jupyter_server 2.21), so wait for the port, not for the exit.
    deadline = time.monotonic() + 30
    while proc.poll() is None and _listening(server.port) and time.monotonic() < deadline:
        time.sleep(POLL)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for p in kernels:
        try:
            p.kill()
        except psutil.Error:  # already gone: the normal case
            pass


# ---------------------------------------------------------------- browser


def launch_chromium(playwright):
    """Debian's Chromium with CHROMIUM_ARGS, from a started ``sync_playwright()``."""
    if not os.access(CHROMIUM, os.X_OK):
        raise LabError(f"{CHROMIUM} not found; install Debian's chromium package")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def _stacks(msg):
    """The stack traces of the Error objects a console.error call was given, for the report."""
    stacks = []
    for arg in msg.args:
        try:
            stack = arg.evaluate("e => e instanceof Error ? e.stack : null")
        except Exception:   # the page may be navigating away
            stack = None
        if stack:
            stacks.append(stack)
    return "".join(f"\n  {line}" for stack in stacks for line in stack.splitlines()[:12])


def assert_no_console_errors(errors):
    assert not errors, "browser console errors:\n" + "\n".join(errors)


# ---------------------------------------------------------------- notebook helpers

NOTEBOOK = ".jp-NotebookPanel:visible"
# Kernel state of the visible notebook: its toolbar indicator's status, whether a
# cell is queued or running ([*] prompt), and any open dialog (e.g. kernel died).
_STATE_JS = """() => {
  const panel = [...document.querySelectorAll('.jp-NotebookPanel')].find(p => p.offsetParent);
  const indicator = panel && panel.querySelector('.jp-Notebook-ExecutionIndicator');
  const kernelName = panel && panel.querySelector('[data-jp-item-name="kernelName"]');
  return {
    open: !!panel,
    kernel: kernelName ? kernelName.innerText.trim() : null,
    status: indicator ? indicator.getAttribute('data-status') : null,
    queued: !!panel && [...panel.querySelectorAll('.jp-InputPrompt')].some(p => p.textContent.includes('*')),
    dialogs: [...document.querySelectorAll('.jp-Dialog')].map(d => d.innerText),
  };
}"""


def kernel_busy(page):
    """Whether the open notebook's kernel is executing or has cells queued."""
    state = page.evaluate(_STATE_JS)
    assert state["open"], "no notebook is open"
    assert not state["dialogs"], f"unexpected dialog: {state['dialogs']}"
    assert state["status"] != "dead", "the kernel died"
    # Anything but "idle" (busy, starting, connecting, unknown, ...) is not ready.
    return state["queued"] or state["status"] != "idle"


def wait_kernel_idle(page, timeout=120, settle=1.0):
    """Wait until the kernel has been idle for `settle` seconds in a row."""
    deadline = time.monotonic() + timeout
    idle_since = None
    while time.monotonic() < deadline:
        if kernel_busy(page):
            idle_since = None
        elif idle_since is None:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since >= settle:
            return
        time.sleep(POLL)
    raise AssertionError(f"kernel still busy after {timeout} s: {page.evaluate(_STATE_JS)}")


def open_notebook(page, server, name, timeout=90):
    """Open `name` (relative to the server root) and wait for its kernel to be idle."""
    # `reset` starts from an empty workspace, so no other tabs are restored.
    page.goto(f"{server.url}/lab/tree/{name}?reset&token={server.token}")
    page.locator(f"{NOTEBOOK} .jp-Notebook .jp-Cell").first.wait_for(timeout=timeout * 1000)
    # The indicator reads "idle" before the session exists; wait for a kernel name.
    deadline = time.monotonic() + timeout
    while page.evaluate(_STATE_JS)["kernel"] in (None, "", "No Kernel"):
        dialogs = page.locator(".jp-Dialog").all_inner_texts()
        # e.g. "Select kernel for: ..." when the notebook lacks kernelspec metadata
        assert not dialogs, f"dialog while opening {name}: {dialogs}"
        assert time.monotonic() < deadline, f"no kernel for {name} after {timeout} s"
        time.sleep(POLL)
    wait_kernel_idle(page, timeout)


def write_notebook(path, cells) -> None:
    """A notebook of code ``cells`` at ``path``, with the kernelspec metadata JupyterLab needs to
    open it without asking for a kernel."""
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python",
                                 "name": "python3"}
    nbformat.write(nb, path)


# Sets window.__runStarted once a cell shows a [*] prompt (evaluate it before Run All).
WATCH_RUN_START_JS = """() => {
  window.__runStarted = false;
  const seen = () => [...document.querySelectorAll('.jp-InputPrompt')].some(p => p.textContent.includes('*'));
  const obs = new MutationObserver(() => { if (seen()) { window.__runStarted = true; obs.disconnect(); } });
  obs.observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def run_all_cells(page, timeout=30):
    """Run > Run All Cells; returns once execution has visibly started."""
    # Watch for a [*] prompt from before the click, so a fast notebook cannot
    # finish between two polls and leave us unsure whether anything ran.
    page.evaluate(WATCH_RUN_START_JS)
    page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
    # JupyterLab 4 menus use the generic `runmenu:run-all`, which delegates to the notebook.
    page.locator('#jp-mainmenu-run .lm-Menu-item[data-command="runmenu:run-all"]').click()
    page.wait_for_function("() => window.__runStarted", timeout=timeout * 1000)


_RECORD_FRAMES_JS = """els => {
  const times = els.map(() => []);
  els.forEach((el, i) => new MutationObserver(() => times[i].push(performance.now()))
    .observe(el, {attributes: true, attributeFilter: ['data-frames']}));
  window.__nnmodesFrameTimes = times;
  return performance.now();
}"""


def record_frames(page, locators) -> float:
    """From now on the page notes when each of the widgets ``locators`` draws a frame (its
    ``data-frames`` changes); returns the page's time now (ms, ``performance.now``)."""
    return page.evaluate(_RECORD_FRAMES_JS, [loc.element_handle() for loc in locators])


def frame_times(page, since: float) -> tuple[list[list[float]], float]:
    """For each widget ``record_frames`` watches, when it drew its frames, and the time now: in
    seconds after ``since`` (its return)."""
    times, now = page.evaluate("() => [window.__nnmodesFrameTimes, performance.now()]")
    return [[(t - since) / 1000 for t in drawn] for drawn in times], (now - since) / 1000


def look_at(locator, block: str = "nearest") -> None:
    """Scroll ``locator``'s element into view, as a person looks at it: a panel out of sight
    builds no frames (js/presence.js)."""
    locator.evaluate(f"e => e.scrollIntoView({{block: '{block}'}})")


def wait_looking(page, looked_at, condition: str, element=None, timeout: float = 60.0,
                 block: str = "nearest") -> None:
    """Wait until ``condition`` (a JavaScript function of ``element``'s DOM element, default
    ``looked_at``'s) holds, keeping ``looked_at`` in view meanwhile as a person watching it does
    (``look_at``): a panel out of sight builds no frames, and JupyterLab moves the notebook as
    cells run and outputs grow. Looks every ``POLL`` s."""
    element = looked_at if element is None else element
    deadline = time.monotonic() + timeout
    while True:
        look_at(looked_at, block)
        if element.evaluate(condition):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {condition}")
        time.sleep(POLL)


# IPython errors (tracebacks, SyntaxError, UsageError) arrive as stderr output,
# like warnings do; tell them apart by an `...Error`/`...Exception` line.
_ERROR_LINE = re.compile(r"^(\w+\.)*\w*(Error|Exception)\b|Traceback \(most recent call last\)", re.M)


def stderr_outputs(page):
    """Texts of the open notebook's stderr outputs (warnings and errors)."""
    return page.locator(f'{NOTEBOOK} [data-mime-type="application/vnd.jupyter.stderr"]').all_inner_texts()


def error_outputs(page):
    """The stderr outputs that are Python/IPython errors rather than warnings."""
    return [t for t in stderr_outputs(page) if _ERROR_LINE.search(t)]
