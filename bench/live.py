"""Live at the defaults: how often every panel refreshes, and how much slower training runs.

Three models, each trained as people write the loop (no sleeps), in segments of equal wall
time that alternate bare training and training with a fresh ``Monitor`` at its defaults feeding
a ``Dashboard`` (kernel side: with no browser attached the messages go nowhere):

- the quickstart MLP (64-512-256-10, SGD, batch 16, ``every=10``, the default probe: the first
  batch);
- a small digits conv net (Conv2d 1->8, ReLU, Linear 512->32, SiLU, Linear 32->10, Adam, batch
  32, ``every=5``, a probe of 256 labelled samples), the issue's example;
- a CNN of about 10M parameters (bench/overhead.py's) on random 3x32x32 images, batch 32.

Slowdown: the mean step time of the monitored segments over the bare ones, minus 1, after the
first ``STARTUP`` seconds of each (attaching, the first analyses, the first pushes: reported
too, with them), and what the monitor itself measured (its status line). Refresh: the intervals between consecutive
records of the analysis behind each panel (the panel draws each within a tenth of a second),
from the start of the segment, so the wait for the first frame counts as an interval.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from sklearn.datasets import load_digits

import nnmodes_widgets as nm

HEAVY_NAMES = ("spectrum", "clusters", "alignment", "phases", "neuron_modes", "characteristic_maps",
               "radiograph", "basins")
STARTUP = 5.0   # s of each monitored segment before its steps are timed (still in the refresh)
PANELS = {"trend": "rwc", "spectra": "spectrum", "neurons": "neuron_modes",
          "basins: alignment": "weight_alignment", "basins: radii": "weight_basins",
          "radiograph": "radiograph", "characteristic maps": "characteristic_maps"}


def _digits():
    X, y = load_digits(return_X_y=True)
    return torch.from_numpy((X / 16.0).astype(np.float32)), torch.from_numpy(y)


def mlp_setup():
    torch.manual_seed(0)
    X, y = _digits()
    model = torch.nn.Sequential(torch.nn.Linear(64, 512), torch.nn.ReLU(), torch.nn.Linear(512, 256),
                                torch.nn.ReLU(), torch.nn.Linear(256, 10))
    return dict(name="quickstart MLP", X=X, y=y, model=model, batch=16, every=10, probe=None,
                optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))


def conv_setup():
    torch.manual_seed(0)
    X, y = _digits()
    X = X.view(-1, 1, 8, 8)
    c = torch.nn
    model = c.Sequential(c.Conv2d(1, 8, 3, padding=1), c.ReLU(), c.Flatten(), c.Linear(512, 32),
                         c.SiLU(), c.Linear(32, 10))
    return dict(name="digits conv net", X=X, y=y, model=model, batch=32, every=5,
                probe=(X[:256], y[:256]), optimizer=torch.optim.Adam(model.parameters(), lr=1e-3))


def cnn_setup():
    from overhead import cnn
    torch.manual_seed(0)
    model = cnn()
    return dict(name="10M CNN", X=torch.randn(512, 3, 32, 32), y=torch.randint(0, 10, (512,)),
                model=model, batch=32, every=10, probe=None,
                optimizer=torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))


def _train(s, seconds: float) -> tuple[int, float]:
    """Steps and wall time of a loop run for about ``seconds``."""
    X, y, model, optimizer = s["X"], s["y"], s["model"], s["optimizer"]
    loss_fn = torch.nn.CrossEntropyLoss()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        idx = torch.randint(0, len(X), (s["batch"],))
        optimizer.zero_grad()
        loss_fn(model(X[idx]), y[idx]).backward()
        optimizer.step()
        steps += 1
    return steps, time.perf_counter() - start


def _intervals(monitor, analysis: str, start: float, end: float) -> list[float]:
    history = monitor.history
    layers = history.layers(analysis)
    if not layers:
        return [end - start]
    times = np.unique(np.concatenate([history.times(analysis, layer) for layer in layers]))
    times = times[(times >= start) & (times <= end)]
    marks = np.concatenate(([start], times, [end]))
    return np.diff(marks).tolist()


def measure(setup, seconds: float, repeats: int) -> dict:
    s = setup()
    _train(s, min(5.0, seconds / 4))                      # warm up allocator and threads
    bare, monitored, whole, reported, intervals = [], [], [], [], {p: [] for p in PANELS}
    frames, costs, shares, contention, own, hints = {p: 0 for p in PANELS}, {}, [], [], [], []
    for r in range(repeats):
        for variant in (("bare", "monitor") if r % 2 == 0 else ("monitor", "bare")):
            if variant == "bare":
                steps, wall = _train(s, seconds)
                bare.append(wall / steps)
                continue
            monitor = nm.Monitor(s["model"], s["optimizer"], every=s["every"], probe=s["probe"])
            dashboard = monitor.dashboard()
            start = time.time()
            first_steps, first_wall = _train(s, STARTUP)     # attaching, first runs, first pushes
            steps, wall = _train(s, seconds - STARTUP)
            end = time.time()
            monitored.append(wall / steps)
            whole.append((wall + first_wall) / (steps + first_steps))
            stats = monitor.stats()
            reported.append(stats["slowdown"])
            shares.append(stats["worker_share"])
            contention.append(stats["contention"])
            own.append(stats["own_share"])
            hints.append(stats["every_within_budget"])
            for panel, analysis in PANELS.items():
                gaps = _intervals(monitor, analysis, start, end)
                intervals[panel] += gaps
                frames[panel] += len(gaps) - 1
            for name, cost in monitor._heavy.worker.last_cost.items():
                costs.setdefault(name, []).append(cost)
            dashboard.close()
            monitor.detach()
    b = statistics.median(bare)
    return {
        "name": s["name"], "params": sum(p.numel() for p in s["model"].parameters()),
        "seconds": seconds, "repeats": repeats, "bare_ms": 1e3 * b,
        "ratio": statistics.mean(monitored) / statistics.mean(bare),
        "ratios": [m / b for m in monitored],
        "whole_ratio": statistics.mean(whole) / statistics.mean(bare),
        "reported": statistics.median(reported),
        # mean interval: the monitored time over the frames in it; and the longest wait
        "refresh": {p: (repeats * seconds / max(1, frames[p]), max(v)) for p, v in intervals.items()},
        "costs": {name: statistics.median(v) for name, v in costs.items()},
        "worker_share": statistics.median(shares), "contention": statistics.median(contention),
        "every": s["every"], "own_share": statistics.median(own), "every_within_budget": hints[-1],
    }


def run() -> dict:
    return {"models": [measure(mlp_setup, 20, 4), measure(conv_setup, 20, 4),
                       measure(cnn_setup, 60, 2)]}


def section(f: dict) -> list[str]:
    lines = [
        "## Live at the defaults: refresh of every panel and the slowdown of training (CPU)",
        "",
        "Each model trained in a plain loop (no sleeps) in segments of equal wall time, "
        "alternating bare training and a fresh `Monitor` at its defaults feeding a `Dashboard` "
        "(kernel side), timed after its first 5 s (and with them); see `bench/live.py` for the "
        "models and settings. Refresh: seconds between "
        "consecutive records of the analysis behind each panel (mean over the monitored time / "
        "longest, the wait for the first included). Targets: every panel at least every 2 s on the small models and "
        "every 10 s on the 10M CNN; monitored / bare at or under 1.05.",
        "",
        "| model | parameters | bare ms/step | segments | monitored / bare (each segment) | "
        "with the first 5 s | measured by the monitor | " + " | ".join(PANELS) + " |",
        "| --- | --- | --- | --- | --- | --- | --- | " + " | ".join("---" for _ in PANELS) + " |",
    ]
    for m in f["models"]:
        refresh = " | ".join(f"{a:.2f} / {b:.2f}" for a, b in m["refresh"].values())
        lines.append(f"| {m['name']} | {m['params']:,} | {m['bare_ms']:.2f} | "
                     f"{m['repeats']} x {m['seconds']:.0f} s | {m['ratio']:.3f} "
                     f"({', '.join(f'{r:.3f}' for r in m['ratios'])}) | {m['whole_ratio']:.3f} | "
                     f"{1 + m['reported']:.3f} | {refresh} |")
    lines += ["", "What the monitor measured and spent (medians over the monitored segments): the "
              "monitor's own share of wall time inside the training steps (RWC every `every` "
              "steps: the budget cannot pace it; the status line names the `every` that brings it "
              "to half the budget), the worker's share, the contention (training seconds lost per "
              "second of background work) and one run of each background analysis (one thread):",
              "",
              "| model | every | own share (sampling) | every within half the budget | worker share "
              "| contention | " + " | ".join(HEAVY_NAMES) + " |",
              "| --- | --- | --- | --- | --- | --- | " + " | ".join("---" for _ in HEAVY_NAMES) + " |"]
    for m in f["models"]:
        hint = m["every_within_budget"] or "(within)"
        lines.append(f"| {m['name']} | {m['every']} | {100 * m['own_share']:.2f}% | {hint} | "
                     f"{100 * m['worker_share']:.2f}% | {m['contention']:.2f} | "
                     + " | ".join(f"{1e3 * m['costs'][n]:.0f} ms" if n in m["costs"] else "-"
                                  for n in HEAVY_NAMES) + " |")
    lines.append("")
    return lines


if __name__ == "__main__":
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    which = sys.argv[1:] or ["mlp", "conv", "cnn"]
    setups = {"mlp": (mlp_setup, 20, 2), "conv": (conv_setup, 20, 2), "cnn": (cnn_setup, 60, 2)}
    print("\n".join(section({"models": [measure(*setups[w]) for w in which]})))
