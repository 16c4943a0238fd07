"""Training overhead of the monitor: monitored / bare wall time, interleaved in one process.

The quickstart's MLP (64-512-256-10, batch 16) on scikit-learn's digits with its default
settings (every=10, budget=0.05): bare training; a Monitor doing RWC only; a Monitor with its
default analyses (RWC on the training thread, spectra, radiographs and neuron modes in the
background worker); and that Monitor feeding a Dashboard (the widgets' kernel-side work: history
reads, decimation, trait updates; with no front end attached the messages go nowhere).
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


def _train(X, y, model, optimizer, batches):
    loss_fn = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    for idx in batches:
        optimizer.zero_grad()
        loss_fn(model(X[idx]), y[idx]).backward()
        optimizer.step()
    return time.perf_counter() - start


def run() -> dict:
    X, y, model, optimizer, batches = _setup()
    _train(X, y, model, optimizer, batches[:200])           # warm up allocator and threads
    times = {"bare": [], "rwc": [], "monitor": [], "dashboard": []}
    samples = []
    for _ in range(REPEATS):
        for variant in times:                               # interleaved: drift hits all alike
            monitor = (None if variant == "bare" else
                       nm.Monitor(model, optimizer, every=10, analyses=("rwc",)) if variant == "rwc"
                       else nm.Monitor(model, optimizer, every=10))
            dashboard = monitor.dashboard() if variant == "dashboard" else None
            times[variant].append(_train(X, y, model, optimizer, batches))
            if monitor is not None:
                samples.append(monitor.stats()["overhead"])
                if dashboard is not None:
                    dashboard.close()
                monitor.detach()
    bare = statistics.median(times["bare"])
    return {
        "steps": STEPS,
        "repeats": REPEATS,
        "bare_ms_per_step": 1e3 * bare / STEPS,
        "rwc_ratio": statistics.median(times["rwc"]) / bare,
        "monitor_ratio": statistics.median(times["monitor"]) / bare,
        "dashboard_ratio": statistics.median(times["dashboard"]) / bare,
        "reported_overhead": statistics.median(samples),
    }


def section(o: dict) -> list[str]:
    """The BENCHMARKS.md lines of these figures."""
    return [
        "## Training overhead (quickstart MLP, default settings, CPU)",
        "",
        f"64-512-256-10 MLP on digits, batch 16, {o['steps']} optimizer steps, {o['repeats']} repeats; "
        f"bare training takes {o['bare_ms_per_step']:.3f} ms per step.",
        "",
        "| variant | wall time / bare | target |",
        "| --- | --- | --- |",
        f"| Monitor, RWC only (every=10) | {o['rwc_ratio']:.3f} | <= 1.05 |",
        f"| Monitor, default analyses (every=10, budget=0.05) | {o['monitor_ratio']:.3f} | <= 1.05 |",
        f"| Monitor + Dashboard (kernel side) | {o['dashboard_ratio']:.3f} | <= 1.05 |",
        "",
        f"The monitor's own estimate of its share of wall time (status line): "
        f"{100 * o['reported_overhead']:.1f}%.",
        "",
    ]


if __name__ == "__main__":
    print("\n".join(section(run())))
