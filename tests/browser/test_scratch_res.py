import json, time
from .conftest import POLL, kernel_busy, open_notebook, run_all_cells, write_notebook
nb = json.load(open("notebooks/architectures.ipynb"))
code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
SETUP = code[1] + "\n" + code[2].split("print(f\"{sum(")[0]
LOGGER = '''
import threading
LOGP = []
def _logp():
    t0 = time.perf_counter()
    while not getattr(monitor, "_detached", False):
        e, age = monitor.pacer.latest()
        try: r = monitor.pacer.rate(e)
        except Exception: r = float("nan")
        LOGP.append((round(time.perf_counter()-t0, 2), e["slowdown"], e["own_share"], e["worker_share"], e["contention"], e["widget_share"], e["widget_contention"], e["job_share"], r, monitor.every, sum(monitor.history.count(a) for a in ("spectrum","radiograph","neuron_modes","characteristic_maps"))))
        time.sleep(0.5)
threading.Thread(target=_logp, daemon=True).start()
'''
CELLS = [SETUP + "\nimport nnmodes_widgets as nm\nfrom nnmodes_widgets.widgets import delivery as _dl\nDLOG = []\n_orig = _dl.Feed.deliver\ndef _deliver(self):\n    c = time.thread_time(); w = time.perf_counter(); f0 = self.frames\n    _orig(self)\n    DLOG.append((id(self), self.frames > f0, time.thread_time() - c, time.perf_counter() - w))\n_dl.Feed.deliver = _deliver\nmonitor = nm.Monitor(resnet, optimizer)\ndashboard = monitor.dashboard()\n" + LOGGER + "\ndashboard",
 """start = time.time()
while time.time() - start < 40:
    order = torch.randperm(len(X_train))
    for s in range(0, len(X_train), 64):
        batch = order[s:s + 64]
        optimizer.zero_grad()
        F.cross_entropy(resnet(X_train[batch]), y_train[batch]).backward()
        optimizer.step()
fs = [(getattr(f._draw, "__qualname__", str(f._draw))[:40], f.frames, round(f.price*1e3, 3), round(f.gap, 3), f.prompt) for f in dashboard._delivery.feeds]
monitor.detach()
print("FEEDS", fs)
print("KCOUNT", {a: monitor.history.steps(a).tolist()[-30:] for a in ("spectrum", "radiograph", "neuron_modes", "characteristic_maps")})
import collections
agg = collections.defaultdict(lambda: [0, 0.0, 0, 0.0])
names = {id(f): i for i, f in enumerate(dashboard._delivery.feeds)}
for fid, built, cpu, wall in DLOG:
    a = agg[(names.get(fid), built)]; a[0] += 1; a[1] += cpu; a[2] += 0; a[3] += wall
print("DLOG", {k: (v[0], round(v[1]*1e3, 1), round(v[3]*1e3, 1)) for k, v in sorted(agg.items(), key=str)})
print("PACER widget cpu", monitor.pacer.estimate())
print("E", {k: (round(float(v), 4) if isinstance(v, float) else v) for k, v in monitor.pacer.latest()[0].items()})
for row in LOGP:
    print("P", " ".join("%.4f" % v if isinstance(v, float) else str(v) for v in row))"""]
def test_res(page, lab_server, console_errors):
    write_notebook(lab_server.root_dir / "user.ipynb", CELLS)
    open_notebook(page, lab_server, "user.ipynb")
    run_all_cells(page)
    page.locator(".nnmodes-dashboard").first.wait_for(timeout=180_000)
    time.sleep(5)
    while kernel_busy(page):
        time.sleep(POLL)
    print("OUT", page.locator(".jp-OutputArea-output").last.inner_text()[:9000])
