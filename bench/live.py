"""Live at the defaults: how much slower training runs, from the first step, and how often every
panel refreshes.

Four models, each trained as people write the loop (no sleeps), in segments of equal wall
time that alternate bare training and training with a fresh ``Monitor(model, optimizer)`` at
its defaults (``every`` chosen, the first batch as the probe, budget 5%) feeding a ``Dashboard``
that nobody displays (headless: it should build no frames):

- the quickstart MLP (64-512-256-10, SGD, batch 16) on scikit-learn's digits;
- a small digits conv net (Conv2d 1->8, ReLU, Linear 512->32, SiLU, Linear 32->10, Adam,
  batch 32);
- a CNN of about 10M parameters (bench/overhead.py's) on random 3x32x32 images, batch 32;
- a CIFAR pre-activation ResNet-18 (bench/radiographs.py's, 11M parameters) on random
  3x32x32 images, batch 16.

Slowdown: each monitored segment's mean step time over that of the bare segments beside it (the
one before and the one after, averaged, over the same part of theirs), minus 1, over its first
``FIRST`` seconds (attaching, calibrating ``every``, the first runs: nothing is exempt) and over
the rest, the run as it goes on; the mean of these ratios. Every segment trains ``FIRST`` s and
then the segment's seconds: with 10 s segments the figure for the run as it goes on was the
first 10 s, whose own target is 1.10. The host's speed drifts by up to a tenth over minutes on
this machine (bare segments of the digits MLP at 0.63-1.15 ms a step in one run), and the bare
segments on either side of a monitored one cancel a steady drift, which a ratio of the means
over the whole run does not. Refresh: the intervals between consecutive records of the analyses
behind each panel (the panel draws each within a tenth of a second when on screen), from the
start of the segment, so the wait for the first frame counts as an interval: their mean (the
segment's time over the records in it) and the longest. Widget share: the panels' share of
wall time, as the monitor measured it.
"""

from __future__ import annotations

import math
import os
import statistics
import time

import numpy as np
import torch
from sklearn.datasets import load_digits

import nnmodes_widgets as nm

HEAVY_NAMES = ("spectrum", "clusters", "alignment", "phases", "neuron_modes", "characteristic_maps",
               "radiograph", "basins", "sharpness", "findings")
FIRST = 10.0    # s: the first seconds of each segment, timed on their own
# panel -> the records behind it (a panel refreshes when any of them has a new one)
PANELS = {"trend": ("rwc",), "spectra": ("spectrum",), "neurons": ("neuron_modes",),
          "basins": ("weight_alignment", "weight_basins"), "radiograph": ("radiograph",),
          "characteristic maps": ("characteristic_maps",)}
TARGET_SLOWDOWN, TARGET_FIRST, TARGET_WIDGETS = 1.05, 1.10, 0.002


def _digits():
    X, y = load_digits(return_X_y=True)
    return torch.from_numpy((X / 16.0).astype(np.float32)), torch.from_numpy(y)


def mlp_setup():
    torch.manual_seed(0)
    X, y = _digits()
    model = torch.nn.Sequential(torch.nn.Linear(64, 512), torch.nn.ReLU(), torch.nn.Linear(512, 256),
                                torch.nn.ReLU(), torch.nn.Linear(256, 10))
    return dict(name="quickstart MLP", X=X, y=y, model=model, batch=16, refresh=2.5,
                optimizer=torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))


def conv_setup():
    torch.manual_seed(0)
    X, y = _digits()
    X = X.view(-1, 1, 8, 8)
    c = torch.nn
    model = c.Sequential(c.Conv2d(1, 8, 3, padding=1), c.ReLU(), c.Flatten(), c.Linear(512, 32),
                         c.SiLU(), c.Linear(32, 10))
    return dict(name="digits conv net", X=X, y=y, model=model, batch=32, refresh=2.5,
                optimizer=torch.optim.Adam(model.parameters(), lr=1e-3))


def cnn_setup():
    from overhead import cnn
    torch.manual_seed(0)
    model = cnn()
    return dict(name="10M CNN", X=torch.randn(512, 3, 32, 32), y=torch.randint(0, 10, (512,)),
                model=model, batch=32, refresh=10.0,
                optimizer=torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))


def resnet_setup():
    from radiographs import PreActResNet18
    torch.manual_seed(0)
    model = PreActResNet18()
    return dict(name="ResNet-18", X=torch.randn(512, 3, 32, 32), y=torch.randint(0, 10, (512,)),
                model=model, batch=16, refresh=10.0,
                optimizer=torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))


def _train(s, seconds: float) -> np.ndarray:
    """Train for about ``seconds``; the time each step ended, from the start."""
    X, y, model, optimizer = s["X"], s["y"], s["model"], s["optimizer"]
    loss_fn = torch.nn.CrossEntropyLoss()
    ends, start = [], time.perf_counter()
    while not ends or ends[-1] < seconds:
        idx = torch.randint(0, len(X), (s["batch"],))
        optimizer.zero_grad()
        loss_fn(model(X[idx]), y[idx]).backward()
        optimizer.step()
        ends.append(time.perf_counter() - start)
    return np.array(ends)


def _per_step(ends: np.ndarray, until: float = math.inf, since: float = 0.0) -> float:
    """Seconds per step: of the steps that ended after ``since`` and by ``until``."""
    before = ends[ends <= since]
    ends = ends[(ends > since) & (ends <= until)]
    return (ends[-1] - (before[-1] if len(before) else 0.0)) / len(ends)


def _intervals(monitor, records: tuple[str, ...], start: float, end: float) -> list[float]:
    history = monitor.history
    times = [history.times(r, layer) for r in records for layer in history.layers(r)]
    times = np.unique(np.concatenate(times)) if times else np.zeros(0)
    times = times[(times >= start) & (times <= end)]
    return np.diff(np.concatenate(([start], times, [end]))).tolist()


def measure(setup, seconds: float, repeats: int) -> dict:
    s = setup()
    _train(s, min(5.0, seconds / 4))                      # warm up allocator and threads
    # per segment, in the order run: ("bare" or "monitor", s per step after the first FIRST
    # seconds, s per step in them)
    segments = []
    intervals, frames = {p: [] for p in PANELS}, {p: 0 for p in PANELS}
    seen = {k: [] for k in ("slowdown", "worker_share", "widget_share", "contention", "own_share",
                            "sampling_share", "every", "frames", "dropped")}
    costs, sizes, notes, load = {}, {}, set(), []
    for r in range(repeats):
        for variant in (("bare", "monitor") if r % 2 == 0 else ("monitor", "bare")):
            load.append(os.getloadavg()[0])     # what else ran: the minute before the segment
            if variant == "bare":
                ends = _train(s, FIRST + seconds)
                segments.append(("bare", _per_step(ends, since=FIRST), _per_step(ends, FIRST)))
                continue
            monitor = nm.Monitor(s["model"], s["optimizer"])   # the defaults
            dashboard = monitor.dashboard()                    # shown nowhere
            start = time.time()
            ends = _train(s, FIRST + seconds)
            end = time.time()
            segments.append(("monitor", _per_step(ends, since=FIRST), _per_step(ends, FIRST)))
            stats = monitor.stats()
            for key in seen:
                seen[key].append(stats[key] if key != "frames" else dashboard.frames)
            for panel, records in PANELS.items():
                gaps = _intervals(monitor, records, start, end)
                intervals[panel] += gaps
                frames[panel] += len(gaps) - 1
            for name, (size, cost) in monitor._heavy._last.items():
                costs.setdefault(name, []).append(cost)
                sizes.setdefault(name, []).append(size)
            notes |= {f"{n.analysis}: {n.message}" for n in monitor.notices}
            dashboard.close()
            monitor.detach()
    bare = [v for kind, v, _ in segments if kind == "bare"]
    b = statistics.mean(bare)
    monitored = [i for i, seg in enumerate(segments) if seg[0] == "monitor"]
    ratios = [_beside_bare(segments, i) for i in monitored]
    first_ratios = [_beside_bare(segments, i, 2) for i in monitored]
    return {
        "name": s["name"], "params": sum(p.numel() for p in s["model"].parameters()),
        "seconds": seconds, "repeats": repeats, "bare_ms": 1e3 * b, "refresh_target": s["refresh"],
        # how much bare training alone varied: between all its segments, and against those
        # beside each (the noise of the ratios)
        "bare_each": [1e3 * v for v in bare], "spread": (max(bare) - min(bare)) / b,
        "noise": _noise(segments),
        "ratio": statistics.mean(ratios), "ratios": ratios,
        "first_ratio": statistics.mean(first_ratios), "first_ratios": first_ratios,
        "reported": statistics.median(seen["slowdown"]),
        # mean interval: the monitored time over the records in it; and the longest wait
        "refresh": {p: (repeats * (FIRST + seconds) / max(1, frames[p]), max(v))
                    for p, v in intervals.items()},
        "costs": {name: statistics.median(v) for name, v in costs.items()},
        "sizes": {name: min(v) for name, v in sizes.items()},
        **{key: statistics.median(v) for key, v in seen.items()},
        "notes": sorted(notes),
        "load": (min(load), max(load)),
    }


def _beside_bare(segments: list[tuple], i: int, field: int = 1) -> float:
    """Segment ``i``'s figure (``field`` of its tuple) over the mean of the bare segments' beside
    it: the nearest before and the nearest after (one at either end)."""
    before = [seg for seg in segments[:i] if seg[0] == "bare"][-1:]
    after = [seg for seg in segments[i + 1:] if seg[0] == "bare"][:1]
    return segments[i][field] / statistics.mean(seg[field] for seg in before + after)


def _noise(segments: list[tuple]) -> float:
    """The noise of those ratios: each bare segment with bare ones on both sides, taken as if it
    were monitored, against them; the largest |ratio - 1|."""
    bare = [i for i, seg in enumerate(segments) if seg[0] == "bare"]
    return max((abs(_beside_bare([seg for k, seg in enumerate(segments) if k in bare], j) - 1)
                for j in range(1, len(bare) - 1)), default=math.nan)


# seconds a segment after its first FIRST, pairs of segments: shorter segments, more often
# alternated, follow the host's drift more closely. This host switches between two speeds, 0.80
# and 1.00 ms a step of the digits conv net, for 10-30 s at a time: 6 pairs of 15 s read it
# 1.116 (each monitored segment 1.04-1.17), 23 pairs of 3 s 1.015 the same hour. The slow
# models' panels need a minute in all to show their refresh: a ResNet-18 calibrates for 7-8 s,
# and its first runs (each analysis's first costs 2-4 times a later one) leave the panels'
# credit short until 25-30 s; in segments of 40 s that start was half of the refresh measured
MODELS = {"mlp": (mlp_setup, 10, 8), "conv": (conv_setup, 10, 8), "cnn": (cnn_setup, 50, 4),
          "resnet": (resnet_setup, 50, 4)}


def run() -> dict:
    return {"models": [measure(*MODELS[m]) for m in MODELS]}


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _interval(ratios: list[float]) -> tuple[float, float]:
    """The 95% confidence interval of the mean of the segments' ratios (Student's t): the host's
    noise between segments, as these segments showed it."""
    from scipy.stats import t
    mean = statistics.mean(ratios)
    if len(ratios) < 2:
        return math.nan, math.nan
    half = t.ppf(0.975, len(ratios) - 1) * statistics.stdev(ratios) / math.sqrt(len(ratios))
    return mean - half, mean + half


def _against(ratios: list[float], target: float) -> str:
    """The mean ratio, its interval, met or not (by the mean), and whether the interval holds
    the target (then these segments cannot tell the two apart)."""
    mean = statistics.mean(ratios)
    lo, hi = _interval(ratios)
    undecided = ", but not told apart from it" if lo <= target <= hi else ""
    return f"{mean:.3f} ({lo:.3f}-{hi:.3f}): {_met(mean <= target)}{undecided}"


def section(f: dict) -> list[str]:
    lines = [
        "## Live at the defaults: the slowdown of training from its first step, and the refresh "
        "of every panel (CPU)",
        "",
        "Each model trained in a plain loop (no sleeps) in segments of equal wall time, "
        "alternating bare training and a fresh `Monitor(model, optimizer)` at its defaults "
        "(`every` chosen, the first batch as the probe, budget 5%) feeding a `Dashboard` shown "
        "nowhere; see `bench/live.py` for the models. Slowdown: each monitored segment's "
        "seconds per step over those of the bare segments beside it (the one before and the one "
        "after, averaged: the host's speed drifts over minutes, and they cancel a steady drift), "
        f"over its first {FIRST:.0f} s and over the rest (the run as it goes on; each segment "
        f"trains {FIRST:.0f} s and then the seconds given), the same parts of the bare ones; "
        "the mean of these ratios. "
        "Refresh: seconds between consecutive records of the analyses behind each panel (mean over the monitored time / "
        "longest, the wait for the first included). Load average (1 min) before the segments, "
        "this process's own included: "
        + ", ".join(f"{m['name']} {m['load'][0]:.1f}-{m['load'][1]:.1f}" for m in f["models"])
        + f" on {os.cpu_count()} cores (the benchmark's own training, on 2 threads, keeps it "
        "near 2; more means something else ran).",
        "",
        "| model | parameters | bare ms/step (each segment) | segments | monitored / bare after "
        f"the first {FIRST:.0f} s (each segment) | "
        f"first {FIRST:.0f} s (each) | measured by the monitor | " + " | ".join(PANELS) + " |",
        "| --- | --- | --- | --- | --- | --- | --- | " + " | ".join("---" for _ in PANELS) + " |",
    ]
    for m in f["models"]:
        refresh = " | ".join(f"{a:.2f} / {b:.2f}" for a, b in m["refresh"].values())
        lines.append(f"| {m['name']} | {m['params']:,} | {m['bare_ms']:.2f} "
                     f"({', '.join(f'{v:.2f}' for v in m['bare_each'])}) | "
                     f"{m['repeats']} x {FIRST:.0f} + {m['seconds']:.0f} s | {m['ratio']:.3f} "
                     f"({', '.join(f'{r:.3f}' for r in m['ratios'])}) | {m['first_ratio']:.3f} "
                     f"({', '.join(f'{r:.3f}' for r in m['first_ratios'])}) | "
                     f"{1 + m['reported']:.3f} | {refresh} |")
    lines += ["", "Targets. Each ratio with the 95% confidence interval of its mean over the "
              "segments (Student's t): where the interval holds the target, these segments "
              "cannot tell the two apart, whichever side the mean fell. The noise of the "
              "slowdown ratios: each bare segment with bare ones on both sides, taken as if it "
              "were monitored, against them (the largest |ratio - 1|). The bare "
              "segments' spread, (slowest - fastest) / mean over the whole run, is the drift "
              "those ratios cancel:", "",
              f"| model | monitored / bare after the first {FIRST:.0f} s <= 1.05 | noise | "
              "bare segments' spread | "
              "first 10 s <= 1.10 | "
              "every panel refreshes (mean interval) within | headless widget share <= 0.2% |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for m in f["models"]:
        slowest = max(m["refresh"], key=lambda p: m["refresh"][p][0])
        worst = m["refresh"][slowest][0]
        lines.append(
            f"| {m['name']} | {_against(m['ratios'], TARGET_SLOWDOWN)} | "
            f"{100 * m['noise']:.1f}% | {100 * m['spread']:.0f}% | "
            f"{_against(m['first_ratios'], TARGET_FIRST)} | "
            f"{m['refresh_target']:g} s: slowest {slowest} {worst:.1f} s: "
            f"{_met(worst <= m['refresh_target'])} | {100 * m['widget_share']:.2f}% "
            f"({m['frames']:.0f} frames): {_met(m['widget_share'] <= TARGET_WIDGETS)} |")
    lines += ["", "What the monitor chose, measured and spent (medians over the monitored "
              "segments): `every` (chosen so that sampling takes at most a quarter of the "
              "budget) and the share the sampling took, the worker's share of wall time, the "
              "contention (training seconds lost per second of background work), and each "
              "background analysis's last run: seconds (one thread) at its live size (the "
              "smallest it ran at; 1 = the full live size):",
              "",
              "| model | every | sampling | worker share | contention | "
              + " | ".join(HEAVY_NAMES) + " |",
              "| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in HEAVY_NAMES) + " |"]
    for m in f["models"]:
        lines.append(f"| {m['name']} | {m['every']:.0f} | {100 * m['sampling_share']:.2f}% | "
                     f"{100 * m['worker_share']:.2f}% | {m['contention']:.2f} | "
                     + " | ".join(f"{1e3 * m['costs'][n]:.0f} ms at {_size(m['sizes'][n])}"
                                  if n in m["costs"] else "-" for n in HEAVY_NAMES) + " |")
    lines.append("")
    return lines


def _size(size: float) -> str:
    return "1" if size >= 1 else f"1/{round(1 / size)}"


if __name__ == "__main__":
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    which = [a for a in sys.argv[1:] if a in MODELS] or list(MODELS)
    # "--quick": one pair of short segments per model, for working on it
    quick = "--quick" in sys.argv
    figures = {"models": [measure(s, min(sec, 20) if quick else sec, 1 if quick else n)
                          for s, sec, n in (MODELS[w] for w in which)]}
    print("\n".join(section(figures)))
    for m in figures["models"]:
        print(m["name"], "notes:", *m["notes"], sep="\n  ")
