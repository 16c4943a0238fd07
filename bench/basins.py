"""Attraction basins and sharpness (SPEC 4.6) on CPU, one torch thread.

- ``sharpness`` (power iteration on Hessian-vector products by double backward) against
  PyHessian's ``hessian(...).eigenvalues()`` (the same method, Yao et al. 2020) on the same model
  and batch, both with 20 iterations (PyHessian with ``tol=0``, so it runs all 20): seconds per
  call (its set-up, the first backward, included for both) and the eigenvalues; then both
  against the exact top eigenvalue of the dense Hessian (``torch.autograd.functional.hessian``,
  ``eigvalsh``) on a model small enough to form it.
- ``sample_basins`` throughput: 64 samples of scikit-learn's bundled ``load_digits``, 64
  directions, an MLP trained on the digits; samples per second and perturbed points per second.
- ``weight_basins`` (16 directions) and ``weight_alignment`` on the same MLP, for scale.

Medians of ``REPEATS`` interleaved repeats after a warm-up.

    .venv/bin/python bench/basins.py          (or bench/run.py basins)
"""

from __future__ import annotations

import copy
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from nnmodes_widgets.analysis import sample_basins, sharpness, weight_alignment, weight_basins

REPEATS = 5
ITERS = 20
PROBE = 64
DIRECTIONS = 64
HIDDEN = (128, 64)
SMALL_HIDDEN = 16       # the dense-Hessian model: 64-16-10, 1,210 parameters


def _digits():
    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.long)
    return x, y


def _trained(x, y, hidden, steps=300, seed=0):
    torch.manual_seed(seed)
    widths = (64, *hidden, 10)
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return model


def _pyhessian_top(model, x, y, iters, tol=0.0):
    from pyhessian import hessian
    h = hessian(copy.deepcopy(model), nn.CrossEntropyLoss(), data=(x, y), cuda=False)
    values, _ = h.eigenvalues(maxIter=iters, tol=tol, top_n=1)
    return float(values[0])


def _dense_top(model, x, y) -> float:
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss_of(v):
        params, i = {}, 0
        for n, s in zip(names, shapes):
            params[n] = v[i:i + s.numel()].reshape(s)
            i += s.numel()
        return F.cross_entropy(torch.func.functional_call(model, params, (x,)), y)

    eig = torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss_of, flat, vectorize=True).double())
    return float(eig[eig.abs().argmax()])


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def run() -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run()
    finally:
        torch.set_num_threads(threads)


def _run() -> dict:
    import pyhessian  # noqa: F401 (fails here, not in the middle, when it is missing)
    x, y = _digits()
    model = _trained(x, y, HIDDEN)
    batch = (x[:512], y[:512])
    params = sum(p.numel() for p in model.parameters())
    accuracy = float((model(x).argmax(1) == y).float().mean())

    # sharpness against PyHessian, same iterations, interleaved
    variants = {"ours": lambda: sharpness(model, F.cross_entropy, batch, iters=ITERS),
                "pyhessian": lambda: _pyhessian_top(model, *batch, ITERS)}
    for fn in variants.values():
        fn()
    seconds = {k: [] for k in variants}
    values = {k: [] for k in variants}
    for rep in range(REPEATS):
        torch.manual_seed(rep)          # PyHessian draws its start vector from the global RNG
        for k, fn in variants.items():
            t, v = _timed(fn)
            seconds[k].append(t)
            values[k].append(v)
    converged = sharpness(model, F.cross_entropy, batch, iters=300)

    # both against the dense Hessian of a small model
    small = _trained(x, y, (SMALL_HIDDEN,))
    small_batch = (x[:256], y[:256])
    dense_s, dense = _timed(lambda: _dense_top(small, *small_batch))
    small_ours = sharpness(small, F.cross_entropy, small_batch, iters=ITERS)
    small_ours_long = sharpness(small, F.cross_entropy, small_batch, iters=100)
    torch.manual_seed(0)
    small_py = _pyhessian_top(small, *small_batch, ITERS)
    torch.manual_seed(0)
    small_py_long = _pyhessian_top(small, *small_batch, 100)

    # sample basins, weight basins, alignment
    probe = (x[-PROBE:], y[-PROBE:])
    sample_basins(model, *probe, directions=DIRECTIONS)
    calls = {"sample": lambda: sample_basins(model, *probe, directions=DIRECTIONS),
             "weight": lambda: weight_basins(model, F.cross_entropy, batch, directions=16),
             "alignment": lambda: weight_alignment(model)}
    other = {k: [] for k in calls}
    results = {}
    for _ in range(3):
        for k, fn in calls.items():
            t, results[k] = _timed(fn)
            other[k].append(t)
    basins = results["sample"]
    return {
        "params": params, "accuracy": accuracy, "batch": len(batch[0]),
        "seconds": {k: statistics.median(v) for k, v in seconds.items()},
        "values": {k: statistics.median(v) for k, v in values.items()},
        "spread": {k: (min(v), max(v)) for k, v in values.items()},
        "converged": converged,
        "small": {"params": sum(p.numel() for p in small.parameters()), "dense": dense,
                  "dense_seconds": dense_s, "ours": small_ours, "ours_100": small_ours_long,
                  "pyhessian": small_py, "pyhessian_100": small_py_long},
        "sample_seconds": statistics.median(other["sample"]),
        "evaluated": basins.evaluated,
        "median_radius": float(np.median(basins.radius)),
        "misclassified": int(basins.misclassified.sum()),
        "weight_seconds": statistics.median(other["weight"]),
        "weight_radii": results["weight"],
        "alignment_seconds": statistics.median(other["alignment"]),
        "alignment": results["alignment"],
    }


def section(f: dict) -> list[str]:
    s, v, small = f["seconds"], f["values"], f["small"]

    def rel(a, b):
        return abs(a - b) / abs(b)
    widths = "-".join(str(w) for w in (64, *HIDDEN, 10))
    lines = [
        "## Sharpness against PyHessian, basin radii (CPU, one thread)",
        "",
        f"MLP {widths} ({f['params']:,} parameters, {f['accuracy']:.1%} training accuracy) on "
        f"scikit-learn's digits (pixels / 16), cross-entropy on a batch of {f['batch']}. "
        f"`sharpness(iters={ITERS})` against PyHessian 0.1's `eigenvalues(maxIter={ITERS}, "
        f"tol=0)`, both power iteration on double-backward Hessian-vector products from a random "
        f"start; medians of {REPEATS} interleaved calls (set-up included). The reference is "
        f"`sharpness(iters=300)` = {f['converged']:.6g}.",
        "",
        "| | seconds per call | top eigenvalue | rel. to 300 iterations | range over starts |",
        "| --- | --- | --- | --- | --- |",
    ]
    for k, name in (("ours", "nnmodes `sharpness`"), ("pyhessian", "PyHessian")):
        lo, hi = f["spread"][k]
        lines.append(f"| {name} | {s[k]:.3f} | {v[k]:.6g} | {rel(v[k], f['converged']):.1e} | "
                     f"{lo:.6g} .. {hi:.6g} |")
    lines += [
        "",
        f"Time ratio ours / PyHessian: {s['ours'] / s['pyhessian']:.2f}.",
        "",
        f"Against the dense Hessian: MLP 64-{SMALL_HIDDEN}-10 ({small['params']:,} parameters), "
        f"batch 256; `torch.autograd.functional.hessian` + `eigvalsh` gives {small['dense']:.6g} "
        f"in {small['dense_seconds']:.2f} s.",
        "",
        "| | 20 iterations | rel. error | 100 iterations | rel. error |",
        "| --- | --- | --- | --- | --- |",
        f"| nnmodes `sharpness` | {small['ours']:.6g} | {rel(small['ours'], small['dense']):.1e} | "
        f"{small['ours_100']:.6g} | {rel(small['ours_100'], small['dense']):.1e} |",
        f"| PyHessian | {small['pyhessian']:.6g} | {rel(small['pyhessian'], small['dense']):.1e} | "
        f"{small['pyhessian_100']:.6g} | {rel(small['pyhessian_100'], small['dense']):.1e} |",
        "",
        "| basin call (same MLP) | seconds | throughput |",
        "| --- | --- | --- |",
        f"| `sample_basins`, {PROBE} digits, {DIRECTIONS} directions | {f['sample_seconds']:.3f} | "
        f"{PROBE / f['sample_seconds']:.0f} samples/s, {f['evaluated'] / f['sample_seconds']:,.0f} "
        f"points/s ({f['evaluated'] / PROBE:.0f} points per sample; median radius "
        f"{f['median_radius']:.3g}, {f['misclassified']} misclassified) |",
        f"| `weight_basins`, 16 directions, batch {f['batch']} | {f['weight_seconds']:.3f} | "
        f"{len(f['weight_radii'])} radii: "
        + ", ".join(f"{k} {r:.3g}" for k, r in f["weight_radii"].items()) + " |",
        f"| `weight_alignment` | {f['alignment_seconds'] * 1e3:.2f} ms | "
        + ", ".join(f"{k} {a:.3f}" for k, a in f["alignment"].items()) + " |",
        "",
    ]
    return lines


if __name__ == "__main__":
    print("\n".join(section(run())))
