"""Training overhead of the monitor: monitored / bare wall time, interleaved in one process.

The quickstart's MLP (64-512-256-10, batch 16) on scikit-learn's digits with the monitor's
default settings (``every`` chosen in the first steps, budget 0.05): bare training; a Monitor
doing RWC only; a Monitor with its
default analyses (RWC on the training thread, spectra, radiographs, neuron modes and
characteristic maps in the background worker); and that Monitor feeding a Dashboard (the
widgets' kernel-side work: history reads, decimation, trait updates; with no front end attached
the messages go nowhere). The same for a CNN of about 10M parameters on random images.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from sklearn.datasets import load_digits

import nnmodes_widgets as nm

STEPS = 3000
REPEATS = 9
CNN_STEPS = 300   # long enough for the background analyses' pacing to reach its steady state
CNN_REPEATS = 3


def _setup():
    torch.manual_seed(0)
    X, y = load_digits(return_X_y=True)
    X = torch.from_numpy((X / 16.0).astype(np.float32))
    y = torch.from_numpy(y)
    model = torch.nn.Sequential(torch.nn.Linear(64, 512), torch.nn.ReLU(), torch.nn.Linear(512, 256),
                                torch.nn.ReLU(), torch.nn.Linear(256, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    batches = [torch.randint(0, len(X), (16,)) for _ in range(STEPS)]
    return X, y, model, optimizer, batches


def cnn():
    """About 10M parameters: strided convolutions (no pooling, so every analysis applies), then
    two dense layers; 3 x 32 x 32 inputs, 10 classes."""
    c = torch.nn
    return c.Sequential(c.Conv2d(3, 64, 3, padding=1), c.ReLU(),
                        c.Conv2d(64, 128, 3, stride=2, padding=1), c.ReLU(),
                        c.Conv2d(128, 256, 3, stride=2, padding=1), c.ReLU(),
                        c.Conv2d(256, 512, 3, stride=2, padding=1), c.ReLU(),
                        c.Flatten(), c.Linear(512 * 4 * 4, 1024), c.ReLU(), c.Linear(1024, 10))


def _cnn_setup():
    torch.manual_seed(0)
    X, y = torch.randn(512, 3, 32, 32), torch.randint(0, 10, (512,))
    model = cnn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batches = [torch.randint(0, len(X), (32,)) for _ in range(CNN_STEPS)]
    return X, y, model, optimizer, batches


def _train(X, y, model, optimizer, batches):
    loss_fn = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    for idx in batches:
        optimizer.zero_grad()
        loss_fn(model(X[idx]), y[idx]).backward()
        optimizer.step()
    return time.perf_counter() - start


def run() -> dict:
    return {"mlp": _compare(_setup(), REPEATS, warmup=200),
            "cnn": _compare(_cnn_setup(), CNN_REPEATS, warmup=5)}


def _compare(setup, repeats: int, warmup: int) -> dict:
    X, y, model, optimizer, batches = setup
    _train(X, y, model, optimizer, batches[:warmup])        # warm up allocator and threads
    times = {"bare": [], "rwc": [], "monitor": [], "dashboard": []}
    samples, every = [], []
    for _ in range(repeats):
        for variant in times:                               # interleaved: drift hits all alike
            monitor = (None if variant == "bare" else
                       nm.Monitor(model, optimizer, analyses=("rwc",)) if variant == "rwc"
                       else nm.Monitor(model, optimizer))
            dashboard = monitor.dashboard() if variant == "dashboard" else None
            times[variant].append(_train(X, y, model, optimizer, batches))
            if monitor is not None:
                samples.append(monitor.stats()["slowdown"])
                every.append(monitor.every)
                if dashboard is not None:
                    dashboard.close()
                monitor.detach()
    bare = statistics.median(times["bare"])
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "steps": len(batches),
        "repeats": repeats,
        "bare_ms_per_step": 1e3 * bare / len(batches),
        "rwc_ratio": statistics.median(times["rwc"]) / bare,
        "monitor_ratio": statistics.median(times["monitor"]) / bare,
        "dashboard_ratio": statistics.median(times["dashboard"]) / bare,
        "reported_overhead": statistics.median(samples),
        "every": sorted(set(every)),
    }


def section(f: dict) -> list[str]:
    """The BENCHMARKS.md lines of these figures."""
    m, c = f["mlp"], f["cnn"]
    lines = [
        "## Training overhead (default settings, CPU)",
        "",
        f"Quickstart MLP (64-512-256-10, {m['params']:,} parameters) on digits, batch 16, "
        f"{m['steps']} optimizer steps, {m['repeats']} repeats: bare training takes "
        f"{m['bare_ms_per_step']:.3f} ms per step. CNN ({c['params']:,} parameters: four strided "
        f"convolutions and two dense layers) on random 3x32x32 images, batch 32, {c['steps']} "
        f"steps, {c['repeats']} repeats: bare {c['bare_ms_per_step']:.0f} ms per step.",
        "",
        "| variant | MLP: wall time / bare | CNN: wall time / bare | target |",
        "| --- | --- | --- | --- |",
    ]
    for key, name in (("rwc_ratio", "Monitor, RWC only"),
                      ("monitor_ratio", "Monitor, default analyses (budget=0.05)"),
                      ("dashboard_ratio", "Monitor + Dashboard shown nowhere (kernel side)")):
        ok = m[key] <= 1.05 and c[key] <= 1.05
        lines.append(f"| {name} | {m[key]:.3f} | {c[key]:.3f} | <= 1.05: "
                     f"{'met' if ok else '**not met**'} |")
    lines += [
        "",
        f"`every` as the monitor chose it: MLP {', '.join(map(str, m['every']))}, CNN "
        f"{', '.join(map(str, c['every']))}. The slowdown the monitor measured itself (status "
        f"line): MLP {100 * m['reported_overhead']:.1f}%, CNN {100 * c['reported_overhead']:.1f}%.",
        "",
    ]
    return lines


if __name__ == "__main__":
    print("\n".join(section(run())))
