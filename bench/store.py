"""The run store (SPEC 11): bytes on disk and time on the caller's thread, against TensorBoard.

One run of 60 layers: 2000 RWC samples (a float per layer) and 40 spectrum samples (64 values per
layer), recorded through ``RunWriter`` as the monitor does (Python floats and float64 arrays; the
store keeps float32). Measured side by side in one process:

- bytes of the closed run file against the raw float32 payload (values only: 4 bytes a value):
  all samples in one commit (here every sample is queued within the writer's first second),
  20 samples a commit (a fast loop: a commit a second, 20 samples a second), and the worst case
  for size, one commit per sample (a loop so slow that each commit holds one sample);
- seconds per ``record()`` call on the caller's thread (it only queues), and the CPU seconds of
  the whole recording, all threads (the writer thread packs and commits);
- TensorBoard's ``SummaryWriter.add_scalar`` for the same RWC scalars (one call per layer and
  step, as a TensorBoard user logs them): its event file's bytes and its time on the caller's
  thread.

Then a large run, as a long training job leaves it: a model of 200 weight matrices (50 blocks of
qkv, proj, fc1, fc2 at width 768, hidden 3072), 1,000,000 steps at 20 steps a second; RWC every
10 steps (100,000 samples, 200 floats each), and every 1250 steps (800 samples) the spectra (768
values per matrix), stable and effective ranks, and the neuron modes' active fractions of the 50
fc1 activations (3072 each): about 1.06 GB of float32 values. Measured: the seconds to write it
(the writer thread's pace; it is cut short at ``WRITE_LIMIT`` s and the rest extrapolated), then,
in a fresh process, ``open_run(path)`` (the whole history loaded) and ``Dashboard(run)`` (its
panels push their first frames in the constructor: its return is the kernel-side first draw),
with the peak RSS after each, and the peak RSS growth in ``open_run`` per value stored (the
history holds the float32 values, 4 bytes each, and a few bytes per sample beside them).

Last, the RWC sample's time on the training thread with the store and without: a Monitor (RWC
only, ``every=10``) on a 200-layer chain of 64 x 64 linear layers, ``run=False`` against
``run=path``, interleaved; the monitor's own seconds (``stats()["overhead_seconds"]``) per
sample, and the loop's wall time per step.

    .venv/bin/python bench/store.py
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from nnmodes_widgets.runs.run_writer import RunWriter

LAYERS = 60
RWC_SAMPLES = 2000
SPECTRA = 40
SPECTRUM_LENGTH = 64
EVERY = 10


def _payload() -> tuple[list, list]:
    rng = np.random.default_rng(0)
    names = [f"blocks.{i}.weight" for i in range(LAYERS)]
    t0 = time.time()
    rwc = [((i + 1) * EVERY, t0 + 0.01 * i, {n: float(v) for n, v in zip(names, rng.random(LAYERS) * 1e-3)})
           for i in range(RWC_SAMPLES)]
    spectra = [((i + 1) * EVERY * RWC_SAMPLES // SPECTRA, t0 + i,
                {n: np.sort(rng.random(SPECTRUM_LENGTH))[::-1].copy() for n in names})
               for i in range(SPECTRA)]
    return rwc, spectra


def _write(path: Path, rwc: list, spectra: list, *, commit_each: int = 0) -> dict:
    """Record through a RunWriter; the caller's seconds per record() call (median, mean) and
    the closed file's bytes."""
    cpu = time.process_time()
    writer = RunWriter(path, {"model": "Bench", "settings": {"every": EVERY}})
    calls = []
    per_spectrum = max(1, len(rwc) // max(1, len(spectra)))
    spectra = list(spectra)
    for i, (step, when, values) in enumerate(rwc):
        start = time.perf_counter()
        writer.record("rwc", step, when, values)
        calls.append(time.perf_counter() - start)
        if spectra and i % per_spectrum == per_spectrum - 1:
            step, when, values = spectra.pop(0)
            start = time.perf_counter()
            writer.record("spectrum", step, when, values)
            calls.append(time.perf_counter() - start)
        if commit_each and i % commit_each == commit_each - 1:
            writer.flush()
    for step, when, values in spectra:     # (none left when there are rwc samples)
        start = time.perf_counter()
        writer.record("spectrum", step, when, values)
        calls.append(time.perf_counter() - start)
    writer.close()
    cpu = time.process_time() - cpu
    side = [p for p in path.parent.iterdir() if p.name.startswith(path.name + "-")]
    return {"bytes": path.stat().st_size + sum(p.stat().st_size for p in side), "cpu": cpu,
            "call_median": statistics.median(calls) if calls else float("nan"),
            "call_mean": statistics.fmean(calls) if calls else float("nan")}


def _tensorboard(folder: Path, rwc: list) -> dict:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception as exc:   # noqa: BLE001 - reported, not fatal
        return {"why_not": f"torch.utils.tensorboard not importable: {type(exc).__name__}: {exc}"}
    cpu = time.process_time()
    writer = SummaryWriter(log_dir=str(folder))
    calls = []
    for step, when, values in rwc:
        start = time.perf_counter()
        for name, value in values.items():
            writer.add_scalar(f"rwc/{name}", value, step, walltime=when)
        calls.append(time.perf_counter() - start)
    writer.close()
    cpu = time.process_time() - cpu
    files = [p for p in folder.rglob("*") if p.is_file()]
    return {"bytes": sum(p.stat().st_size for p in files), "cpu": cpu,
            "call_median": statistics.median(calls), "call_mean": statistics.fmean(calls)}


# -- a large run: writing it, opening it, its first dashboard -----------------------------------------

BIG_BLOCKS = 50                 # 4 weight matrices each: 200 layers
BIG_WIDTH, BIG_HIDDEN = 768, 3072
BIG_STEPS = 1_000_000
BIG_EVERY = 10                  # RWC
BIG_HEAVY_EVERY = 1250          # spectra, ranks, neuron modes
STEPS_PER_SECOND = 20.0
WRITE_LIMIT = 180.0             # seconds of writing, after which the run is cut short
ROOT = Path(__file__).resolve().parents[1]


def _big_payloads(rng) -> tuple[list, list, list, list, list]:
    """Pools of values (cycled: the store copies what it writes, so reuse costs no accuracy)."""
    weights = [f"blocks.{b}.{part}.weight" for b in range(BIG_BLOCKS)
               for part in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")]
    rwc = [dict(zip(weights, (rng.random(len(weights)) * 1e-3).tolist())) for _ in range(64)]
    spectra = [{w: np.sort(rng.random(BIG_WIDTH))[::-1].copy() for w in weights} for _ in range(4)]
    ranks = [{w: float(v) for w, v in zip(weights, rng.random(len(weights)) * BIG_WIDTH)} for _ in range(16)]
    # active fractions: mostly transmitting, some dead, some in between (float64, as recorded)
    modes = [{f"blocks.{b}.mlp.act": np.clip(rng.beta(2.0, 0.6, BIG_HIDDEN) + rng.normal(0, 0.02, BIG_HIDDEN),
                                             0, 1)
              for b in range(BIG_BLOCKS)} for _ in range(4)]
    return weights, rwc, spectra, ranks, modes


def _write_big(path: Path) -> dict:
    rng = np.random.default_rng(1)
    weights, rwc, spectra, ranks, modes = _big_payloads(rng)
    info = {"model": "Bench200", "layers": [w.removesuffix(".weight") for w in weights],
            "settings": {"every": BIG_EVERY, "budget": 0.05, "rwc_kind": "l1",
                         "analyses": ["rwc", "spectrum", "neuron_modes"]}}
    t0 = time.time()
    start = time.perf_counter()
    cut = None
    raw = 0
    with RunWriter(path, info) as writer:
        for step in range(BIG_EVERY, BIG_STEPS + 1, BIG_EVERY):
            when = t0 + step / STEPS_PER_SECOND
            k = step // BIG_EVERY
            writer.record("rwc", step, when, rwc[k % len(rwc)])
            raw += 4 * len(weights)
            if step % BIG_HEAVY_EVERY == 0:
                h = step // BIG_HEAVY_EVERY
                writer.record("spectrum", step, when + 1, spectra[h % len(spectra)])
                writer.record("stable_rank", step, when + 1, ranks[h % len(ranks)])
                writer.record("effective_rank", step, when + 1, ranks[(h + 1) % len(ranks)])
                writer.record("neuron_modes", step, when + 2, modes[h % len(modes)])
                raw += 4 * (len(weights) * (BIG_WIDTH + 2) + BIG_BLOCKS * BIG_HIDDEN)
            if step % 10_000 == 0:        # a commit's worth of a fast job, about 12 MB
                writer.flush()
                if time.perf_counter() - start > WRITE_LIMIT:
                    cut = step
                    break
    seconds = time.perf_counter() - start
    size = path.stat().st_size
    return {"seconds": seconds, "bytes": size, "raw": raw, "steps": cut or BIG_STEPS,
            "fraction": (cut or BIG_STEPS) / BIG_STEPS}


_OPEN = """
import json, resource, sys, time
t = time.perf_counter()
from nnmodes_widgets.runs.run_reader import open_run
from nnmodes_widgets.widgets import Dashboard
imports = time.perf_counter() - t

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

base = peak()
t = time.perf_counter()
run = open_run(sys.argv[1])
opened = time.perf_counter() - t
open_peak = peak()
t = time.perf_counter()
dashboard = Dashboard(run)
drawn = time.perf_counter() - t
print(json.dumps({"imports": imports, "open": opened, "dashboard": drawn, "base": base,
                  "open_peak": open_peak, "peak": peak(), "errors": [str(e) for e in run.errors],
                  "samples": run.history.count("rwc"), "status": run.info["status"]}))
"""


def _open_big(path: Path) -> dict:
    """``open_run`` and ``Dashboard`` in a fresh process (its peak RSS is theirs alone)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", _OPEN, str(path)], env=env, capture_output=True,
                         text=True, timeout=1800)
    if out.returncode:
        why = out.stderr.strip().splitlines()
        return {"why_not": why[-1] if why else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- RWC on the training thread, with the store and without ---------------------------------------------

MONITOR_LAYERS = 200
MONITOR_STEPS = 1000
MONITOR_REPEATS = 5


def _rwc_with_store(folder: Path) -> dict:
    import torch

    import nnmodes_widgets as nm

    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(64, 64) for _ in range(MONITOR_LAYERS)])
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    x, y = torch.randn(32, 64), torch.randn(32, 64)

    def train(run) -> tuple[float, float]:
        monitor = nm.Monitor(model, optimizer, analyses=("rwc",), every=10, run=run)
        start = time.perf_counter()
        for _ in range(MONITOR_STEPS):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
        wall = time.perf_counter() - start
        stats = monitor.stats()
        monitor.detach()
        return stats["overhead_seconds"] / stats["samples"], wall / MONITOR_STEPS

    train(False)      # warm-up
    without, with_store = [], []
    for r in range(MONITOR_REPEATS):
        without.append(train(False))
        with_store.append(train(str(folder / f"monitor-{r}.nnmodes")))
    med = lambda pairs, i: statistics.median(p[i] for p in pairs)   # noqa: E731
    return {"without": med(without, 0), "with": med(with_store, 0),
            "step_without": med(without, 1), "step_with": med(with_store, 1)}



def run() -> dict:
    rwc, spectra = _payload()
    raw_rwc = RWC_SAMPLES * LAYERS * 4
    raw_spectra = SPECTRA * LAYERS * SPECTRUM_LENGTH * 4
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        empty = _write(tmp / "empty.nnmodes", [], [])["bytes"]
        return {
            "empty": empty,
            "raw_rwc": raw_rwc,
            "raw_spectra": raw_spectra,
            "both": _write(tmp / "both.nnmodes", rwc, spectra),
            "rwc": _write(tmp / "rwc.nnmodes", rwc, []),
            "spectra": _write(tmp / "spectra.nnmodes", [], spectra),
            "rwc_20": _write(tmp / "twenty.nnmodes", rwc, [], commit_each=20),
            "rwc_each": _write(tmp / "each.nnmodes", rwc, [], commit_each=1),
            "tensorboard": _tensorboard(tmp / "tb", rwc),
            "big_write": _write_big(tmp / "big.nnmodes"),
            "big_open": _open_big(tmp / "big.nnmodes"),
            "monitor": _rwc_with_store(tmp),
        }


def section(f: dict) -> list[str]:
    def ratio(written: int, raw: int) -> str:
        return f"{written / raw:.3f} ({(written - f['empty']) / raw:.3f})"

    us = 1e6
    rows = [
        ("RWC + spectra, one commit", f["both"], f["raw_rwc"] + f["raw_spectra"]),
        ("RWC only, one commit", f["rwc"], f["raw_rwc"]),
        ("RWC only, 20 samples a commit", f["rwc_20"], f["raw_rwc"]),
        ("RWC only, one commit per sample (worst case)", f["rwc_each"], f["raw_rwc"]),
        ("spectra only, one commit", f["spectra"], f["raw_spectra"]),
    ]
    lines = [
        "## Run store (SQLite file per run)",
        "",
        f"One run of {LAYERS} layers: {RWC_SAMPLES} RWC samples (a float per layer) and {SPECTRA} "
        f"spectrum samples ({SPECTRUM_LENGTH} values per layer), recorded through `RunWriter` "
        f"(float32 on disk). Raw float32 payload: RWC {f['raw_rwc']:,} B, spectra "
        f"{f['raw_spectra']:,} B. An empty run file is {f['empty']:,} B; the ratio in parentheses "
        "leaves it out. `record()` is the caller's (training thread's) time per call: it only "
        "queues; a writer thread packs and commits.",
        "",
        "| what | bytes on disk | / raw float32 (without the empty file) | record() median "
        "| record() mean | target |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, m, raw in rows:
        lines.append(f"| {label} | {m['bytes']:,} | {ratio(m['bytes'], raw)} | "
                     f"{m['call_median'] * us:.2f} µs | {m['call_mean'] * us:.2f} µs | <= 1.1: "
                     f"{'met' if m['bytes'] / raw <= 1.1 else '**not met**'} |")
    tb = f["tensorboard"]
    if "why_not" in tb:
        lines += ["", f"TensorBoard not measured: {tb['why_not']}."]
    else:
        lines += [
            "",
            f"The same {RWC_SAMPLES} x {LAYERS} RWC scalars:",
            "",
            "| writer | bytes on disk | caller's time per sample (60 scalars) | CPU seconds, all threads |",
            "| --- | --- | --- | --- |",
            "| run store (`RunWriter.record`, one call per sample, 20 a commit) | "
            f"{f['rwc_20']['bytes']:,} | "
            f"{f['rwc_20']['call_median'] * us:.2f} µs | {f['rwc_20']['cpu']:.2f} |",
            f"| TensorBoard (`SummaryWriter.add_scalar`, one call per layer) | {tb['bytes']:,} | "
            f"{tb['call_median'] * us:.0f} µs | {tb['cpu']:.2f} |",
            f"| TensorBoard / run store | {tb['bytes'] / f['rwc_20']['bytes']:.1f}x | "
            f"{tb['call_median'] / f['rwc_20']['call_median']:.0f}x | "
            f"{tb['cpu'] / f['rwc_20']['cpu']:.1f}x |",
        ]
    return lines + _big_lines(f["big_write"], f["big_open"]) + _monitor_lines(f["monitor"]) + [""]


def _big_lines(w: dict, o: dict) -> list[str]:
    mb = 2**20
    lines = [
        "",
        f"A large run ({len(range(BIG_EVERY, BIG_STEPS + 1, BIG_EVERY)):,} RWC samples of "
        f"{4 * BIG_BLOCKS} layers; {BIG_STEPS // BIG_HEAVY_EVERY} samples of spectra ({BIG_WIDTH} "
        f"values a layer), stable and effective ranks, and neuron modes ({BIG_BLOCKS} x "
        f"{BIG_HIDDEN} active fractions)), opened in a fresh process:",
    ]
    if w["fraction"] < 1:
        lines += ["", f"Cut short after {WRITE_LIMIT:.0f} s of writing, at step {w['steps']:,} "
                      f"({w['fraction']:.0%} of the run); the last column extrapolates linearly to "
                      "the whole run (the measured figures grow about linearly with the samples)."]
    scale = 1 / w["fraction"]
    lines += ["", "| what | measured | whole run (1,000,000 steps) |", "| --- | --- | --- |",
              f"| file | {w['bytes'] / mb:,.0f} MiB ({w['raw'] / mb:,.0f} MiB of float32 values) | "
              f"{w['bytes'] * scale / mb:,.0f} MiB |",
              f"| writing it (`RunWriter`, a flush every 10,000 steps) | {w['seconds']:.1f} s | "
              f"{w['seconds'] * scale:.1f} s |"]
    if "why_not" in o:
        return lines + ["", f"Opening not measured: {o['why_not']}."]
    grown = o["open_peak"] - o["base"]
    lines += [
        f"| imports (`run_reader`, `widgets`: torch, ipywidgets) | {o['imports']:.2f} s | same |",
        f"| `open_run(path)`, the whole history loaded | {o['open']:.2f} s | {o['open'] * scale:.2f} s |",
        f"| `Dashboard(run)` to constructor return (first frames pushed) | {o['dashboard']:.2f} s | "
        f"{o['dashboard'] * scale:.2f} s |",
        f"| open + first dashboard | {o['open'] + o['dashboard']:.2f} s | "
        f"{(o['open'] + o['dashboard']) * scale:.2f} s |",
        f"| peak RSS: after imports / after `open_run` / after `Dashboard` | {o['base'] / mb:,.0f} / "
        f"{o['open_peak'] / mb:,.0f} / {o['peak'] / mb:,.0f} MiB | {o['base'] / mb:,.0f} / "
        f"{(o['base'] + grown * scale) / mb:,.0f} / "
        f"{(o['base'] + (o['peak'] - o['base']) * scale) / mb:,.0f} MiB |",
        f"| peak RSS growth in `open_run` per stored value (4 bytes of float32 on disk) | "
        f"{grown / (w['raw'] / 4):.2f} B | same |",
    ]
    if o["errors"]:
        lines += ["", f"Panel faults while drawing: {'; '.join(o['errors'][:3])}."]
    return lines


def _monitor_lines(m: dict) -> list[str]:
    if "why_not" in m:
        return ["", f"RWC with the store: not measured: {m['why_not']}."]
    ms = 1e3
    return [
        "",
        f"RWC on the training thread, {MONITOR_LAYERS} linear layers of 64 x 64, `every=10`, RWC only, "
        f"{MONITOR_STEPS} steps, median of {MONITOR_REPEATS} interleaved repeats:",
        "",
        "| Monitor | monitor's time per RWC sample | loop time per step |",
        "| --- | --- | --- |",
        f"| `run=False` | {m['without'] * ms:.2f} ms | {m['step_without'] * ms:.2f} ms |",
        f"| `run=path` | {m['with'] * ms:.2f} ms | {m['step_with'] * ms:.2f} ms |",
        f"| with / without | {m['with'] / m['without']:.2f}x | {m['step_with'] / m['step_without']:.2f}x |",
    ]


if __name__ == "__main__":
    print("\n".join(section(run())))
