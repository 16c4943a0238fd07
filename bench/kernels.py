"""The analysis kernels on their own: RWC against a plain clone of the same weights (the
memory-bandwidth floor), radiograph throughput, and the monitor's memory against the model's.
"""

from __future__ import annotations

import gc
import statistics
import time

import torch

import overhead   # bench/ is on sys.path (bench/run.py)

import nnmodes_widgets as nm
from nnmodes_widgets.analysis import characteristic_maps, gated_radiograph
from nnmodes_widgets.analysis.rwc import RwcTracker

REPEATS = 7
RWC_SIZES = {"10M": (10, (1000, 1000)), "100M": (25, (2000, 2000))}   # layers, shape
PATHWAY_BATCH = 256


def _rwc_vs_clone(layers: int, shape: tuple[int, int]) -> dict:
    torch.manual_seed(0)
    weights = {f"{i}.weight": torch.randn(*shape) for i in range(layers)}
    tracker = RwcTracker(weights)
    tracker.update(weights)
    buffers = [torch.empty_like(w) for w in weights.values()]
    times = {"rwc": [], "clone": [], "copy": []}
    for _ in range(REPEATS):                 # interleaved: drift hits all alike
        with torch.no_grad():
            for w in weights.values():
                w.add_(1e-3)                 # a training step moved every weight
        start = time.perf_counter()
        tracker.update(weights)
        times["rwc"].append(time.perf_counter() - start)
        start = time.perf_counter()
        copies = [w.detach().clone() for w in weights.values()]
        times["clone"].append(time.perf_counter() - start)
        del copies
        start = time.perf_counter()
        torch._foreach_copy_(buffers, list(weights.values()))
        times["copy"].append(time.perf_counter() - start)
    params = layers * shape[0] * shape[1]
    del weights, tracker, buffers
    gc.collect()
    ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    return {"params": params, "rwc_ms": ms["rwc"], "clone_ms": ms["clone"], "copy_ms": ms["copy"],
            "ratio": ms["rwc"] / ms["clone"], "copy_ratio": ms["rwc"] / ms["copy"]}


def _pathways() -> dict:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512),
                                torch.nn.ReLU(), torch.nn.Linear(512, 10))
    x = torch.randn(PATHWAY_BATCH, 784)
    y = torch.randint(0, 10, (PATHWAY_BATCH,))
    calls = {"gated radiograph of the last hidden layer": lambda: gated_radiograph(model, x, "2"),
             "characteristic maps of the output layer": lambda: characteristic_maps(model, x, "4"),
             "class-averaged characteristic maps": lambda: characteristic_maps(model, x, "4", y=y)}
    out = {}
    for name, call in calls.items():
        call()                               # warm-up
        times = []
        for _ in range(3):
            start = time.perf_counter()
            result = call()
            times.append(time.perf_counter() - start)
            del result
        out[name] = PATHWAY_BATCH / statistics.median(times)
    return out


def _rss() -> int:
    """Resident memory of this process in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _memory(setup, warmup: int) -> dict:
    """The monitor's extra resident memory after training with its default analyses."""
    X, y, model, optimizer, batches = setup()
    overhead._train(X, y, model, optimizer, batches[:warmup])   # allocator warm before measuring
    gc.collect()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    before = _rss()
    monitor = nm.Monitor(model, optimizer, every=10)
    overhead._train(X, y, model, optimizer, batches)
    monitor.flush()
    after = _rss()
    samples = {a: monitor.history.count(a) for a in ("rwc", "spectrum", "radiograph", "neuron_modes",
                                                     "characteristic_maps")}
    monitor.detach()
    return {"weight_mb": weight_bytes / 2**20, "extra_mb": (after - before) / 2**20,
            "ratio": (after - before) / weight_bytes, "steps": len(batches), "samples": samples}


def run() -> dict:
    return {"rwc": {name: _rwc_vs_clone(*spec) for name, spec in RWC_SIZES.items()},
            "pathways": _pathways(),
            "memory": {"quickstart MLP": _memory(overhead._setup, 200),
                       "10M CNN": _memory(overhead._cnn_setup, 5)}}


def section(f: dict) -> list[str]:
    lines = [
        "## RWC of every weight against a plain clone (CPU)",
        "",
        "One `RwcTracker.update` (what the monitor runs every `every` steps: the change and the "
        "new values in cache-sized blocks, l1 norms, float64 layer sums) against "
        "`[w.clone() for w in weights]`, the memory-bandwidth floor the issue names, and against "
        "a copy into buffers allocated beforehand (`torch._foreach_copy_`), a stricter floor: a "
        "clone's time swings with the allocator (fresh pages fault, reused ones do not). "
        f"float32 weights, medians of {REPEATS} interleaved repeats.",
        "",
        "| weights | RWC | clone | copy | RWC / clone | RWC / copy | target |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in f["rwc"].items():
        lines.append(f"| {name} ({r['params']:,} parameters) | {r['rwc_ms']:.1f} ms | "
                     f"{r['clone_ms']:.1f} ms | {r['copy_ms']:.1f} ms | {r['ratio']:.2f} | "
                     f"{r['copy_ratio']:.2f} | <= 2.0 (RWC / clone): "
                     f"{'met' if r['ratio'] <= 2.0 else '**not met**'} |")
    lines += [
        "",
        "## Weight pathways (784-512-512-10 MLP, CPU)",
        "",
        f"A batch of {PATHWAY_BATCH} samples; median of 3 calls after a warm-up.",
        "",
        "| call | samples per second |",
        "| --- | --- |",
    ]
    lines += [f"| {name} | {rate:.0f} |" for name, rate in f["pathways"].items()]
    lines += [
        "",
        "## The monitor's memory",
        "",
        "Resident memory added by a Monitor with its default analyses over a training run, "
        "against the model's weight memory. The RWC snapshot holds one copy of the weights (plus "
        "a block of scratch) and the background worker one copy of the model; the rest is the history and the analyses' "
        "working memory (and, for a small model, fixed costs such as the worker thread).",
        "",
        "| model | steps | samples recorded | weights | monitor | monitor / weights |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in f["memory"].items():
        counted = ", ".join(f"{a} {n}" for a, n in m["samples"].items())
        lines.append(f"| {name} | {m['steps']} | {counted} | {m['weight_mb']:.2f} MiB | "
                     f"{m['extra_mb']:.1f} MiB | {m['ratio']:.1f} |")
    lines.append("")
    return lines


if __name__ == "__main__":
    print("\n".join(section(run())))
