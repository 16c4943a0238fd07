"""The front end in a real JupyterLab, in headless Chromium (Debian's, the browser tests' flags).

JupyterLab is started by tests/browser/harness.py as the browser tests start it (loopback, no
Node.js on the PATH, isolated configuration). A generated notebook runs these phases in the kernel
while the page records what arrives and what is drawn:

- Radiograph, one 512 x 512 band (``max_neurons=512``), float32 and ``quantize=True`` (uint8):
  *one frame at a time* (each ``show()`` waits until the previous frame is drawn: latency);
  *paced* (``show()`` waits until all but ``WINDOW - 1`` of the frames sent are drawn, so the
  queue between kernel and canvas stays bounded and the rate is what the pipeline sustains);
  *burst* (``BURST_FRAMES`` frames as fast as ``show()`` returns: the rate the kernel sends at, and
  the rate the page draws at while the backlog lasts). The page acknowledges each drawn frame to a
  small HTTP listener in the kernel (a busy kernel cannot take comm messages).
- Trend of a Monitor whose history holds 100 layers x 10,000 RWC samples: kernel time of one
  ``trend.push_now()`` (decimation and trait updates, after one new sample), and in the page the time
  from the push's first message arriving to bqplot's SVG paths being rewritten and to the next
  animation frame.

The page is driven over the DevTools protocol by a minimal client that leaves the Network domain
off: under Playwright, whose network events carry a base64 copy of every websocket frame out of
the browser, 1 MB frames arrive about half as fast. The radiograph runs are repeated, shorter,
under Playwright (as the browser tests run), whose websocket frame events also cross-check the
page's byte count. Bytes on the wire are those of the websocket messages the page receives (the v1
kernel protocol: header, content and binary buffers), counted in the page by a wrapper around
``WebSocket``. Kernel and page timestamps are both wall-clock milliseconds of this machine
(``time.time()``, ``performance.timeOrigin + performance.now()``).

    .venv/bin/python bench/run.py frontend      # or: .venv/bin/python bench/frontend.py
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
SIZE = 512                      # radiograph payload: SIZE x SIZE
RAW_BYTES = SIZE * SIZE * 4     # float32
SINGLE_SECONDS = 2.0            # one frame at a time (also the warm-up)
PACED_SECONDS = 8.0
WINDOW = 3                      # frames sent but not yet drawn, at most (paced runs)
BURST_FRAMES = 150              # as fast as show() returns: bounds the backlog (150 MB of float32)
TREND_LAYERS = 100
TREND_SAMPLES = 10_000
TREND_PUSHES = 12
RUN_TIMEOUT = 200               # s for the whole notebook

# Runs in the kernel (written next to the notebook as frontend_kernel.py).
KERNEL_CODE = r'''
import http.server, json, threading, time
import numpy as np
import torch
from IPython.display import display
import nnmodes_widgets as nm
from nnmodes_widgets.widgets import Radiograph, Trend

SIZE, WINDOW = @SIZE@, @WINDOW@
torch.set_num_threads(1)     # nothing here is heavy in torch; leave the second core to the rest

# The page acknowledges every frame drawn: GET /<widget kind>/<step>.
_acked = {}
_cond = threading.Condition()


class _Ack(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        _, kind, step = self.path.split("/")
        with _cond:
            _acked[kind] = max(_acked.get(kind, -1), int(float(step)))
            _cond.notify_all()
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def listen(port):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Ack)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def wait_drawn(kind, step, timeout):
    with _cond:
        return _cond.wait_for(lambda: _acked.get(kind, -1) >= step, timeout)


def _save(name, data):
    with open(f"result_{name}.json", "w") as f:
        json.dump(data, f)


def radiograph(kind, single_seconds, paced_seconds, burst_frames, tag=""):
    rng = np.random.default_rng(0)
    maps = [(rng.standard_normal((SIZE, SIZE)) * (1 + 0.1 * i)).astype(np.float32) for i in range(8)]
    # max_rate unbounded: this measures what the pipeline can carry, not the 10/s default pacing
    w = Radiograph(title=f"benchmark {kind}", quantize=kind == "uint8", max_neurons=SIZE,
                   max_rate=1e6)
    display(w)
    step = {"float32": 1, "uint8": 2}[kind] * 10**6
    w.show(step, {"0": maps[0]})
    assert wait_drawn("radiograph", step, 120), "the radiograph view never drew"
    out = {"model_id": w.model_id}
    # single: one frame at a time; paced: at most WINDOW frames sent but not drawn; burst:
    # burst_frames frames as fast as show() returns
    for mode, window in (("single", 1), ("paced", WINDOW), ("burst", None)):
        sends = []
        stop = time.time() + {"single": single_seconds, "paced": paced_seconds, "burst": 1e9}[mode]
        while time.time() < stop and (mode != "burst" or len(sends) < burst_frames):
            step += 1
            if window and not wait_drawn("radiograph", step - window, 30):
                raise RuntimeError(f"frame {step - window} was not drawn within 30 s")
            t0 = time.time()
            p0 = time.perf_counter()
            w.show(step, {"0": maps[step % len(maps)]})
            sends.append((step, 1e3 * t0, 1e3 * (time.perf_counter() - p0)))
        drained = wait_drawn("radiograph", step, 120)
        out[mode] = {"sends": sends, "drained": drained, "drained_at": 1e3 * time.time()}
        time.sleep(0.5)
    w.close()
    _save(f"{tag}radiograph_{kind}", out)


def trend(layers, samples, pushes):
    model = torch.nn.Sequential(*[torch.nn.Linear(8, 8, bias=False) for _ in range(layers)])
    monitor = nm.Monitor(model, every=10, analyses=("rwc",))
    names = [n for n, p in model.named_parameters() if p.ndim >= 2]
    rng = np.random.default_rng(0)
    amp = rng.uniform(0.5, 2, (layers, 1))
    tau = rng.uniform(5e3, 5e4, (layers, 1))

    def values(steps):   # decaying RWC with noise, one row per layer
        steps = np.asarray(steps, dtype=float)[None, :]
        return 1e-3 * amp * (np.exp(-steps / tau) + 0.05) * (1 + 0.1 * rng.standard_normal((layers, steps.shape[1])))

    every = monitor.every
    now = time.time()
    for j, row in enumerate(values(np.arange(1, samples + 1) * every).T):
        monitor.history.record("rwc", (j + 1) * every, now, dict(zip(names, row.tolist())))
    step = samples * every
    p0 = time.perf_counter()
    t = Trend(monitor)             # its first push
    first_push_ms = 1e3 * (time.perf_counter() - p0)
    display(t)
    assert wait_drawn("trend", step, 120), "the trend view never drew"
    time.sleep(1.0)

    def push():   # one new sample, then the trend's update
        nonlocal step
        step += every
        monitor.history.record("rwc", step, time.time(), dict(zip(names, values([step])[:, 0].tolist())))
        t0 = time.time()
        p0 = time.perf_counter()
        t.push_now()
        return step, 1e3 * t0, 1e3 * (time.perf_counter() - p0)

    out = {"ids": {"lines": t._lines.model_id, "log_lines": t._log_lines.model_id,
                   "controls": t._controls.model_id},
           "first_push_ms": first_push_ms, "pushes": [], "points": int(t._lines.y.shape[1])}
    for _ in range(pushes):
        s, t0, ms = push()
        drawn = wait_drawn("trend", s, 30)
        out["pushes"].append((s, t0, ms, drawn))
        time.sleep(0.6)              # let the page paint and settle before the next push
    out["end"] = 1e3 * time.time()
    t.close()
    monitor.detach()
    _save("trend", out)
'''

PLAYWRIGHT = (1.0, 5.0, 100)      # its radiograph runs: single s, paced s, burst frames


def cells(ack_port: int, playwright: bool = False) -> list[str]:
    """The benchmark notebook: the radiograph runs, float32 then uint8, then the trend."""
    if playwright:
        return [f"import frontend_kernel as fk; fk.listen({ack_port})",
                *(f"fk.radiograph({kind!r}, {', '.join(map(str, PLAYWRIGHT))}, tag='playwright_')"
                  for kind in ("float32", "uint8"))]
    return [f"import frontend_kernel as fk; fk.listen({ack_port})",
            *(f"fk.radiograph({kind!r}, {SINGLE_SECONDS}, {PACED_SECONDS}, {BURST_FRAMES})"
              for kind in ("float32", "uint8")),
            f"fk.trend({TREND_LAYERS}, {TREND_SAMPLES}, {TREND_PUSHES})"]

# Runs in the page before JupyterLab: logs every websocket message (time, bytes, kernel message
# type and comm), every data-frames change of a radiograph or trend (acknowledged to the kernel),
# and the trend's SVG rewrites with the animation frame after each.
PAGE_JS = r"""(() => {
  const log = window.__bench = { ws: [], frames: [], svg: [], raf: [] };
  const now = () => performance.timeOrigin + performance.now();
  const dec = new TextDecoder();
  function describe(data) {
    if (typeof data === "string") {
      const m = /"msg_type":\s*"(\w+)"/.exec(data.slice(0, 4000));
      return { bytes: data.length, type: m ? m[1] : null, text: true };
    }
    if (!(data instanceof ArrayBuffer)) return { bytes: data.size ?? 0 };
    // v1.kernel.websocket.jupyter.org: offsets, channel, header, parent, metadata, content, buffers
    const dv = new DataView(data);
    const n = Number(dv.getBigUint64(0, true));
    const off = [];
    for (let i = 0; i < n; i++) off.push(Number(dv.getBigUint64(8 * (i + 1), true)));
    const text = (a, b) => dec.decode(new Uint8Array(data, a, b - a));
    const header = JSON.parse(text(off[1], off[2]));
    const out = { bytes: data.byteLength, channel: text(off[0], off[1]), type: header.msg_type,
                  buffers: n - 6 };
    if (header.msg_type === "comm_msg") {
      const content = JSON.parse(text(off[4], off[5]));
      out.comm = content.comm_id;
      const step = content.data?.state?.frame_meta?.step;   // a radiograph frame's step
      if (step !== undefined) out.step = step;
    }
    return out;
  }
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (e) => {
        const t = now();
        let d;
        try { d = describe(e.data); } catch (err) { d = { bytes: -1, error: String(err) }; }
        d.t = t;
        log.ws.push(d);
      });
    }
  };
  const KINDS = ["radiograph", "trend"];
  new MutationObserver((records) => {
    const t = now();
    let svg = false;
    for (const r of records) {
      const el = r.target;
      if (r.attributeName === "data-frames") {
        const kind = KINDS.find((k) => el.classList.contains(`nnmodes-${k}`));
        if (!kind) continue;
        const step = Number(el.getAttribute("data-step"));
        log.frames.push({ t, kind, step, frames: Number(el.getAttribute("data-frames")) });
        fetch(`http://127.0.0.1:@ACK_PORT@/${kind}/${step}`, { mode: "no-cors", cache: "no-store" })
          .catch(() => {});
      } else if (!svg && el.closest && el.closest(".nnmodes-trend")) {
        svg = true;
      }
    }
    if (svg) {
      log.svg.push(t);
      requestAnimationFrame(() => log.raf.push(now()));
    }
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-frames", "d"] });
})();"""


def _harness():
    """tests/browser/harness.py (JupyterLab + Chromium, without pytest), imported by path."""
    spec = importlib.util.spec_from_file_location("nnmodes_browser_harness",
                                                  REPO / "tests" / "browser" / "harness.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- CPU use of the processes


def _group(p: psutil.Process, server_pid: int) -> str | None:
    try:
        name, cmd = p.name(), " ".join(p.cmdline())
    except psutil.Error:
        return None
    if p.pid == server_pid:
        return "server"
    if "ipykernel" in cmd:
        return "kernel"
    if name.startswith("chrom"):
        return "renderer" if "--type=renderer" in cmd else "chromium other"
    if name == "node" and "playwright" in cmd:
        return "playwright"
    return None


class _CpuSampler:
    """CPU seconds per process group (kernel, server, Chromium's renderers, the rest of Chromium,
    Playwright's driver) at each sample: where the time goes during each phase."""

    def __init__(self, server_pid: int):
        self.server_pid = server_pid
        self.samples: list[tuple[float, dict]] = []

    def sample(self) -> None:
        procs = psutil.Process().children(recursive=True)
        try:
            server = psutil.Process(self.server_pid)
            procs += [server] + server.children(recursive=True)
        except psutil.Error:
            pass
        totals: dict[str, float] = {}
        for p in {p.pid: p for p in procs}.values():
            group = _group(p, self.server_pid)
            if group is None:
                continue
            try:
                c = p.cpu_times()
            except psutil.Error:
                continue
            totals[group] = totals.get(group, 0.0) + c.user + c.system
        self.samples.append((1e3 * time.time(), totals))

    def share(self, t0: float, t1: float) -> dict:
        """Each group's CPU use between t0 and t1 (ms), in cores (1.0 = one core busy)."""
        before = [s for s in self.samples if s[0] <= t0]
        after = [s for s in self.samples if s[0] >= t1]
        if not before or not after:
            return {}
        (a, ca), (b, cb) = before[-1], after[0]
        return {g: (cb.get(g, 0.0) - ca.get(g, 0.0)) / ((b - a) / 1e3) for g in cb}


# ---------------------------------------------------------------- a page without Playwright


class _CdpPage:
    """Just enough of the DevTools protocol to drive one page (Page, Runtime, Input, Emulation).

    Unlike Playwright it leaves the Network domain off: with it on, Chromium copies every
    websocket frame (base64) out to the driver, which about halves the rate at which the page
    takes in 1 MB frames. ``evaluate`` is the part of Playwright's ``page.evaluate`` the harness's
    helpers use, so ``kernel_busy`` and ``wait_kernel_idle`` work on this page too.
    """

    def __init__(self, url: str):
        import websocket   # websocket-client, a jupyter dependency

        self._ws = websocket.create_connection(url, timeout=120)
        self._ids = itertools.count(1)
        self.errors: list[str] = []

    def send(self, method: str, **params):
        i = next(self._ids)
        self._ws.send(json.dumps({"id": i, "method": method, "params": params}))
        while True:
            msg = json.loads(self._ws.recv())
            if msg.get("id") == i:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._event(msg.get("method"), msg.get("params", {}))

    def _event(self, method, params) -> None:
        if method == "Runtime.exceptionThrown":
            d = params["exceptionDetails"]
            self.errors.append(f"pageerror: {d.get('exception', {}).get('description') or d.get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.errors.append(f"console.error: {text}")

    def evaluate(self, js: str, arg=None):
        if arg is not None:
            raise NotImplementedError("evaluate with an argument")
        js = js.strip()     # a function, as Playwright takes it, is called; an expression is not
        expression = f"({js})()" if js.startswith(("() =>", "async () =>", "function")) else js
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"page error: {r['exceptionDetails']}")
        return r["result"].get("value")

    def click(self, element_js: str) -> None:
        """A real mouse click in the middle of the element ``element_js`` evaluates to."""
        x, y = self.evaluate(f"(() => {{ const r = ({element_js}).getBoundingClientRect(); "
                             "return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, clickCount=1,
                      button="none" if kind == "mouseMoved" else "left")
            time.sleep(0.1)

    def wait_for(self, js: str, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while not (value := self.evaluate(js)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: not within {timeout} s")
            time.sleep(0.2)
        return value

    def close(self) -> None:
        self._ws.close()


# Playwright's launch flags that keep a page from being throttled: the same footing for both.
NO_THROTTLING = ["--disable-background-timer-throttling", "--disable-backgrounding-occluded-windows",
                 "--disable-renderer-backgrounding", "--force-color-profile=srgb"]


def _launch_chromium(h, profile: Path):
    """Debian's Chromium, headless with the harness's flags, debugged over a local port."""
    profile.mkdir()
    proc = subprocess.Popen(
        [h.CHROMIUM, "--headless", "--remote-debugging-port=0", f"--user-data-dir={profile}",
         *h.CHROMIUM_ARGS, *NO_THROTTLING, "about:blank"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    deadline = time.monotonic() + 60
    while not (profile / "DevToolsActivePort").is_file() or not (profile / "DevToolsActivePort").read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            raise RuntimeError(f"{h.CHROMIUM} did not start (exit status {proc.poll()})")
        time.sleep(0.1)
    port = int((profile / "DevToolsActivePort").read_text().split()[0])
    pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30))
    version = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/version", timeout=30))
    page_url = next(t["webSocketDebuggerUrl"] for t in pages if t["type"] == "page")
    return proc, page_url, version["Browser"].partition("/")[2]


def _stop(proc) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)    # its own session: the browser's helper processes
    except ProcessLookupError:
        pass
    proc.wait()


# ---------------------------------------------------------------- the run


def run() -> dict:
    h = _harness()
    with tempfile.TemporaryDirectory(prefix="nnmodes-bench-frontend-") as tmp:
        tmp = Path(tmp)
        src = tmp / "notebooks"
        src.mkdir()
        (src / "frontend_kernel.py").write_text(KERNEL_CODE.replace("@SIZE@", str(SIZE))
                                                .replace("@WINDOW@", str(WINDOW)))
        ports = h._free_port(), h._free_port()
        h.write_notebook(src / "frontend.ipynb", cells(ports[0]))
        h.write_notebook(src / "frontend_playwright.ipynb", cells(ports[1], playwright=True))
        proc, server = h.start_lab(src, tmp / "lab")
        try:
            cpu = _CpuSampler(proc.pid)
            log, errors, chromium = _drive_cdp(h, server, ports[0], cpu, tmp / "chromium")
            for session in server.api("GET", "/api/sessions"):   # its kernel: done
                server.api("DELETE", f"/api/sessions/{session['id']}")
            pw_log, wire, pw_errors = _drive_playwright(h, server, ports[1])
        finally:
            h.stop_lab(proc, server)
        results = {p.stem.removeprefix("result_"): json.loads(p.read_text())
                   for p in server.root_dir.glob("result_*.json")}
    errors += [f"(under Playwright) {e}" for e in pw_errors]
    if errors:
        raise RuntimeError("the benchmark notebook failed:\n" + "\n".join(errors))
    versions = {"chromium": chromium, "jupyterlab": _version("jupyterlab")}
    return _figures(results, log, pw_log, wire, cpu, versions)


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def _wait_done(h, page, cpu: _CpuSampler | None, errors: list[str], sleep) -> None:
    """Wait until the kernel has been idle for a second (cells run), sampling CPU use."""
    deadline = time.monotonic() + RUN_TIMEOUT
    idle_since = None
    while True:
        if cpu is not None:
            cpu.sample()
        idle_since = None if h.kernel_busy(page) else (idle_since or time.monotonic())
        if idle_since and time.monotonic() - idle_since > 1.0:
            return
        if time.monotonic() > deadline:
            errors.append(f"the benchmark notebook did not finish within {RUN_TIMEOUT} s")
            return
        sleep(0.25)


def _cell_errors(h, page) -> list[str]:
    texts = page.evaluate(f"() => [...document.querySelectorAll('{h.NOTEBOOK.split(':')[0]} "
                          "[data-mime-type=\"application/vnd.jupyter.stderr\"]')].map(e => e.innerText)")
    return [f"cell error: {t}" for t in texts if h._ERROR_LINE.search(t)]


def _drive_cdp(h, server, ack_port: int, cpu: _CpuSampler, profile: Path):
    """The benchmark notebook in Chromium driven over the DevTools protocol (no Network domain)."""
    proc, url, version = _launch_chromium(h, profile)
    try:
        page = _CdpPage(url)
        page.send("Page.enable")
        page.send("Runtime.enable")
        page.send("Emulation.setDeviceMetricsOverride", width=1400, height=1000,
                  deviceScaleFactor=1, mobile=False)
        page.send("Page.addScriptToEvaluateOnNewDocument",
                  source=PAGE_JS.replace("@ACK_PORT@", str(ack_port)))
        page.send("Page.navigate", url=f"{server.url}/lab/tree/frontend.ipynb?reset&token={server.token}")
        page.wait_for("document.querySelector('.jp-NotebookPanel .jp-Notebook .jp-Cell') !== null",
                      90, "the notebook did not open")
        page.wait_for(f"(() => {{ const k = ({h._STATE_JS})().kernel; "
                      "return !!k && k !== 'No Kernel'; })()", 90, "no kernel for the notebook")
        h.wait_kernel_idle(page, 90)
        cpu.sample()
        # Run > Run All Cells, as harness.run_all_cells does with Playwright
        page.evaluate(h.WATCH_RUN_START_JS)
        run_all = "document.querySelector('#jp-mainmenu-run .lm-Menu-item[data-command=\"runmenu:run-all\"]')"
        page.click("[...document.querySelectorAll('.lm-MenuBar-item')].find(e => e.textContent.trim() === 'Run')")
        page.wait_for(f"!!{run_all}", 10, "the Run menu did not open")
        page.click(run_all)
        page.wait_for("window.__runStarted", 30, "Run All Cells did not start the cells")
        errors: list[str] = []
        _wait_done(h, page, cpu, errors, time.sleep)
        cpu.sample()
        errors += _cell_errors(h, page) + page.errors
        log = page.evaluate("window.__bench")
        page.close()
    finally:
        _stop(proc)
    return log, errors, version


def _drive_playwright(h, server, ack_port: int):
    """The radiograph part again, under Playwright as the browser tests run: its websocket frame
    events cross-check the page's byte count, and show what the instrumentation costs."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = h.launch_chromium(pw)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.set_default_timeout(30_000)
            context.set_default_navigation_timeout(90_000)
            context.add_init_script(PAGE_JS.replace("@ACK_PORT@", str(ack_port)))
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: m.type == "error" and errors.append(f"console.error: {m.text}"))
            page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
            wire: list[int] = []
            page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: wire.append(len(payload))))
            h.open_notebook(page, server, "frontend_playwright.ipynb")
            h.run_all_cells(page)
            _wait_done(h, page, None, errors, lambda s: page.wait_for_timeout(1e3 * s))
            errors += [f"cell error: {e}" for e in h.error_outputs(page)]
            log = page.evaluate("() => window.__bench")
            context.close()
        finally:
            browser.close()
    return log, wire, errors


# ---------------------------------------------------------------- figures


def _rate(times: list[float]) -> float:
    """Events per second between the first and the last of ``times`` (ms)."""
    return (len(times) - 1) / ((times[-1] - times[0]) / 1e3) if len(times) > 1 else float("nan")


def _median(values) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def _radiograph_figures(r: dict, log: dict, cpu: _CpuSampler | None = None) -> dict:
    drawn = {f["step"]: f["t"] for f in log["frames"] if f["kind"] == "radiograph"}
    # the frames' messages: comm_msg of this widget carrying its buffer
    msgs = [m for m in log["ws"] if m.get("comm") == r["model_id"] and m.get("buffers")]
    # by the step each frame message names: a burst's frames coalesce into fewer messages
    arrived = {m["step"]: m["t"] for m in msgs if "step" in m}
    out = {}
    for mode in ("single", "paced", "burst"):
        sends = r[mode]["sends"]                     # (step, sent at ms, show() ms)
        seen = [drawn[s] for s, _, _ in sends if s in drawn]
        latency = [drawn[s] - t for s, t, _ in sends if s in drawn]
        first = sends[0][1]
        out[mode] = {
            "frames_sent": len(sends),
            "frames_drawn": len(seen),
            "sent_per_s": len(sends) / ((sends[-1][1] + sends[-1][2] - first) / 1e3),
            "drawn_per_s": _rate(seen),
            "show_ms": _median(ms for _, _, ms in sends),
            "latency_ms": _median(latency),
            "max_latency_ms": max(latency, default=float("nan")),
            # show() called to the message arriving in the page, and from there to drawn
            "transport_ms": _median(arrived[s] - t for s, t, _ in sends if s in arrived),
            "page_ms": _median(drawn[s] - arrived[s] for s, _, _ in sends if s in arrived and s in drawn),
            "cpu": cpu.share(first, max(seen + [sends[-1][1]])) if cpu else {},
        }
    out["wire_bytes"] = _median(m["bytes"] for m in msgs)
    out["wire_ratio"] = out["wire_bytes"] / RAW_BYTES
    return out


def _trend_figures(r: dict, log: dict) -> dict:
    ids = set(r["ids"].values())
    drawn = {f["step"]: f["t"] for f in log["frames"] if f["kind"] == "trend"}
    pushes = []
    for i, (step, t0, ms, ok) in enumerate(r["pushes"]):
        end = r["pushes"][i + 1][1] if i + 1 < len(r["pushes"]) else r["end"]
        msgs = [m for m in log["ws"] if m.get("comm") in ids and t0 <= m["t"] < end]
        if not (ok and step in drawn and msgs):
            continue
        arrived = msgs[0]["t"]
        svg = [t for t in log["svg"] if arrived <= t < end]
        raf = [t for t in log["raf"] if svg and t >= svg[-1]]
        pushes.append({
            "kernel_ms": ms,
            "bytes": sum(m["bytes"] for m in msgs),
            "messages": len(msgs),
            "transport_ms": arrived - t0,
            "arrival_to_frame_ms": drawn[step] - arrived,
            "arrival_to_svg_ms": svg[-1] - arrived if svg else float("nan"),
            "arrival_to_paint_ms": raf[0] - arrived if raf else float("nan"),
            "push_to_paint_ms": raf[0] - t0 if raf else float("nan"),
        })
    if not pushes:
        raise RuntimeError("no trend push was seen drawn in the page")
    return {"pushes": len(pushes), "points": r["points"], "first_push_ms": r["first_push_ms"],
            **{k: _median(p[k] for p in pushes) for k in pushes[0]},
            "max_arrival_to_paint_ms": max(p["arrival_to_paint_ms"] for p in pushes)}


def _figures(results: dict, log: dict, pw_log: dict, wire: list, cpu: _CpuSampler,
             versions: dict) -> dict:
    kinds = ("float32", "uint8")
    missing = ({f"{tag}radiograph_{kind}" for tag in ("", "playwright_") for kind in kinds}
               | {"trend"}) - set(results)
    if missing:
        raise RuntimeError(f"the benchmark notebook wrote no results for {sorted(missing)}")
    figures = {kind: _radiograph_figures(results[f"radiograph_{kind}"], log, cpu) for kind in kinds}
    figures["trend"] = _trend_figures(results["trend"], log)
    figures["playwright"] = {kind: _radiograph_figures(results[f"playwright_radiograph_{kind}"], pw_log)
                             for kind in kinds}
    # Playwright's count of the websocket bytes the page received, against the page's own
    figures["wire_check"] = {"page_bytes": sum(m["bytes"] for m in pw_log["ws"]),
                             "playwright_bytes": sum(wire),
                             "page_messages": len(pw_log["ws"]), "playwright_frames": len(wire)}
    figures["cores"] = os.cpu_count()
    figures.update(versions)
    return figures


def met(target: str, *values) -> str:
    """A target cell: the target (">= 10", "<= 100"), and whether every value meets it."""
    if not target:
        return ""
    op, bound = target.split()
    ok = all(v >= float(bound) if op == ">=" else v <= float(bound) for v in values)
    return f"{target}: {'met' if ok else '**not met**'}"


def section(f: dict) -> list[str]:
    """The BENCHMARKS.md lines of these figures."""
    f32, u8, tr, pw, check = f["float32"], f["uint8"], f["trend"], f["playwright"], f["wire_check"]

    def row(label, key, fmt, target="", mode=None, of=(f32, u8)):
        a, b = ((of[0][mode][key], of[1][mode][key]) if mode else (of[0][key], of[1][key]))
        return f"| {label} | {a:{fmt}} | {b:{fmt}} | {met(target, a, b)} |"

    cpu = f32["paced"]["cpu"]
    used = ", ".join(f"{name} {cpu[key]:.2f}" for key, name in (
        ("renderer", "page renderer"), ("chromium other", "rest of Chromium"),
        ("server", "JupyterLab server"), ("kernel", "kernel")) if key in cpu)
    same = (check["page_bytes"] == check["playwright_bytes"]
            and check["page_messages"] == check["playwright_frames"])
    return [
        "## Front end in JupyterLab (headless Chromium)",
        "",
        f"JupyterLab {f['jupyterlab']} on loopback and Debian's Chromium {f['chromium']} (headless, "
        "the browser tests' flags, `--disable-gpu`: software rendering; 1400 x 1000 viewport) on "
        f"the same {f['cores']}-core machine as the kernel, running a generated notebook, the page "
        "driven over the DevTools protocol without its network instrumentation; targets other "
        "than the byte ratio follow from the widgets' default of at most 10 updates per second "
        "(SPEC 6), which the page should keep up with.",
        "",
        "| radiograph, one 512 x 512 band (`max_neurons=512`) | float32 | uint8 (`quantize=True`) | target |",
        "| --- | --- | --- | --- |",
        row(f"frames drawn per s, paced (at most {WINDOW} frames between kernel and canvas)",
            "drawn_per_s", ".1f", ">= 10", "paced"),
        row(f"frames drawn per s, burst ({BURST_FRAMES} frames sent at once)", "drawn_per_s", ".1f",
            ">= 10", "burst"),
        row("frames sent per s by the kernel, burst (`show()` returning)", "sent_per_s", ".0f", "",
            "burst"),
        f"| frames drawn / sent, burst | {f32['burst']['frames_drawn']} / {f32['burst']['frames_sent']} "
        f"| {u8['burst']['frames_drawn']} / {u8['burst']['frames_sent']} | all: "
        + ("met" if all(r["burst"]["frames_drawn"] == r["burst"]["frames_sent"] for r in (f32, u8))
           else "**not met**") + " |",
        row("one frame at a time: `show()` called to frame drawn, median ms", "latency_ms", ".0f",
            "<= 100", "single"),
        row("... of which `show()` to the message arriving in the page, median ms", "transport_ms",
            ".0f", "", "single"),
        row("... of which the message arriving to the frame drawn, median ms", "page_ms", ".0f", "",
            "single"),
        row("kernel time of one `show()`, median ms", "show_ms", ".2f", "", "paced"),
        row("bytes on the wire per frame / raw float32 payload (1 MiB)", "wire_ratio", ".3f", "<= 1.1"),
        row("under Playwright (as the browser tests run): frames drawn per s, paced", "drawn_per_s",
            ".1f", "", "paced", of=(pw["float32"], pw["uint8"])),
        row("under Playwright: one frame at a time, `show()` to drawn, median ms", "latency_ms",
            ".0f", "", "single", of=(pw["float32"], pw["uint8"])),
        "",
        f"| trend, {TREND_LAYERS} layers x {TREND_SAMPLES:,} RWC samples | value | target |",
        "| --- | --- | --- |",
        f"| kernel: one `push_now()` after a new sample (decimation to {tr['points']} points per "
        f"line, trait updates), median ms | {tr['kernel_ms']:.1f} | {met('<= 100', tr['kernel_ms'])} |",
        f"| kernel: the first push (the panel made), ms | {tr['first_push_ms']:.0f} | |",
        f"| browser: push's first message arriving to bqplot's SVG redrawn, median ms "
        f"| {tr['arrival_to_svg_ms']:.0f} | {met('<= 100', tr['arrival_to_svg_ms'])} |",
        f"| browser: push's first message arriving to the next animation frame, median (max) ms "
        f"| {tr['arrival_to_paint_ms']:.0f} ({tr['max_arrival_to_paint_ms']:.0f}) "
        f"| {met('<= 100', tr['arrival_to_paint_ms'])} |",
        f"| push started in the kernel to the next animation frame, median ms "
        f"| {tr['push_to_paint_ms']:.0f} | |",
        f"| bytes on the wire per push ({tr['messages']:.0f} messages) | {tr['bytes'] / 1e3:.0f} kB | |",
        "",
        "Measured: every change of the widgets' `data-frames` (frames drawn) and `data-step` as the "
        "page sees it, against the kernel's send times (both clocks are this machine's wall clock). "
        f"*Paced* runs {PACED_SECONDS:.0f} s, the kernel waiting before each `show()` until all but "
        f"{WINDOW - 1} frames sent are drawn (the page acknowledges each drawn frame to a listener in "
        f"the kernel); *burst* sends {BURST_FRAMES} frames as fast as `show()` returns and counts "
        "what the page draws while the backlog drains; *one frame at a time* waits for each frame "
        "to be drawn before sending the next. Bytes: the websocket messages the page receives "
        "(kernel protocol v1: header, JSON content, binary buffers), counted in the page. The "
        "radiograph runs are repeated, shorter, under Playwright, whose DevTools network events "
        "copy every websocket frame out of the browser; there its websocket frames "
        + ("match the page's count exactly" if same else
           f"do not match the page's count ({check['playwright_bytes']} bytes in "
           f"{check['playwright_frames']} frames against {check['page_bytes']} in "
           f"{check['page_messages']})")
        + f" ({check['page_bytes'] / 1e6:.0f} MB in {check['page_messages']} messages). Trend: "
        f"{tr['pushes']} pushes 0.6 s apart, each after one new sample; the page times the first "
        "of the push's messages arriving, the last rewrite of the plot's SVG paths, and the "
        f"animation frame after it. CPU use during the paced float32 run, in cores: {used}.",
        "",
    ]


if __name__ == "__main__":
    figures = run()
    print(json.dumps(figures, indent=1))
    print("\n".join(section(figures)))
