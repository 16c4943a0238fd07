"""The monitor and mode_spectrum against the tools a user would otherwise reach for.

Loggers: the quickstart setting of ``overhead`` (64-512-256-10 MLP on digits, batch 16, SGD with
momentum), every=10, variants interleaved in one process: bare training; ``nm.Monitor(model,
optimizer, every=10)`` with its default analyses; ``wandb.watch(model, log="parameters",
log_freq=10)`` in offline mode; TensorBoard's ``SummaryWriter.add_histogram`` of every parameter
every 10 steps. wandb.watch histograms every parameter in a forward hook on every 10th forward
(``run._log(..., commit=False)``); the row is written when the user next calls ``wandb.log``, which
a step hook here does every 10 steps (the least logging that records every histogram; a user who
logs the loss every step pays more). TensorBoard's histograms are written from the same kind of
step hook. wandb runs with no network and no account: ``mode="offline"``, its files in a temporary
directory, no code or git capture, no system metrics (which would only add to its cost).

Spectra: ``nm.analysis.mode_spectrum(model)`` against ``weightwatcher.WeightWatcher(model).analyze()``
(its defaults: no plots, no randomization, no MP fits, but a power-law fit of every layer's
eigenvalues, which it cannot skip) and against the same ``analyze`` with the power-law fit
replaced by a no-op (like for like: the eigenvalues and norm metrics only), on three models: the
trained quickstart MLP, a VGG-style CNN and a wide 14.7M-parameter MLP (six 1024 x 1024 layers,
then 1024 -> 4096 -> 1024), both at initialization. WeightWatcher 0.7
defines, for a dense layer W (N x M, N >= M, no normalization since 0.6.5), the eigenvalues of
W^T W: ``lambda_max`` = s_1^2 and ``stable_rank`` = sum of the eigenvalues / lambda_max =
||W||_F^2 / s_1^2, exactly the definitions of ``Spectrum.lambda_max`` and ``stable_rank``. For a
k x k convolution it takes the k^2 matrices W[:, :, i, j], pools their eigenvalues and by default
(``conv2d_norm``) scales the weights by sqrt(1/2); mode_spectrum reshapes the kernel to one
[out, in * k * k] matrix. Those are different matrices, so conv layers are not compared; that
WeightWatcher's conv figures are what this reading of its code says is checked instead.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import shutil
import statistics
import tempfile
import time
import warnings

import numpy as np
import torch
from torch import nn

import nnmodes_widgets as nm
import overhead

EVERY = 10                  # our every (given: the loggers' cadence), and theirs
LOGGER_REPEATS = 7
MLP_REPEATS = 9
CNN_REPEATS = 3
WIDE_REPEATS = 3
SETTLE = 0.2                # seconds of rest before each timed variant: the previous variant's
                            # BLAS / OpenMP threads stop spinning, wandb-core has exited


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _every_steps(optimizer, action):
    """A step hook calling action(n) after every EVERY-th optimizer step (n = steps so far)."""
    count = [0]

    def hook(opt, args, kwargs):
        count[0] += 1
        if count[0] % EVERY == 0:
            action(count[0])

    return optimizer.register_step_post_hook(hook)


# ---------------------------------------------------------------- loggers: wandb, TensorBoard

def _wandb_env(root: str) -> None:
    os.environ.update({
        "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONSOLE": "off",
        "WANDB_DISABLE_CODE": "true", "WANDB_DISABLE_GIT": "true", "WANDB_DIR": root,
        "WANDB_CACHE_DIR": os.path.join(root, "cache"), "WANDB_CONFIG_DIR": os.path.join(root, "config"),
        "WANDB_DATA_DIR": os.path.join(root, "data"), "WANDB_ARTIFACT_DIR": os.path.join(root, "artifacts"),
    })


def _wandb_start(wandb, root, model, optimizer):
    run = wandb.init(mode="offline", dir=root, project="nnmodes-bench",
                     settings=wandb.Settings(silent=True, console="off", disable_code=True,
                                             disable_git=True, save_code=False, x_disable_stats=True,
                                             x_disable_meta=True, x_save_requirements=False))
    run.watch(model, log="parameters", log_freq=EVERY)
    hook = _every_steps(optimizer, lambda n: run.log({"step": n}))   # commits the histograms

    def stop():
        hook.remove()
        run.unwatch(model)
        run.finish()
        wandb.teardown()            # stops wandb-core: nothing of it runs during the other variants
    return stop


def _tensorboard_start(root, model, optimizer):
    from torch.utils.tensorboard import SummaryWriter
    writer = SummaryWriter(tempfile.mkdtemp(dir=root))
    named = list(model.named_parameters())

    def histograms(n):
        for name, param in named:
            writer.add_histogram(name, param, n)
    hook = _every_steps(optimizer, histograms)

    def stop():
        hook.remove()
        writer.close()
    return stop


def _loggers() -> dict:
    root = tempfile.mkdtemp(prefix="nnmodes-bench-")
    errors = {}
    try:
        _wandb_env(root)
        try:
            import wandb
        except Exception as exc:                            # noqa: BLE001 - reported, not hidden
            wandb, errors["wandb"] = None, f"import wandb failed: {exc!r}"
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
            tensorboard_ok = True
        except Exception as exc:                            # noqa: BLE001
            tensorboard_ok, errors["tensorboard"] = False, f"import failed: {exc!r}"

        X, y, model, optimizer, batches = overhead._setup()
        overhead._train(X, y, model, optimizer, batches[:200])         # warm up
        variants = ["bare", "ours"] + ["wandb"] * (wandb is not None) + ["tensorboard"] * tensorboard_ok
        times = {v: [] for v in variants}
        rwc_samples = []
        for repeat in range(LOGGER_REPEATS):
            k = repeat % len(variants)                      # rotate the order: no variant always
            for variant in variants[k:] + variants[:k]:     # follows the same one
                if variant not in times:
                    continue                                # wandb failed in an earlier repeat
                monitor, stop = None, None
                try:
                    if variant == "ours":
                        monitor = nm.Monitor(model, optimizer, every=EVERY)
                    elif variant == "wandb":
                        stop = _wandb_start(wandb, root, model, optimizer)
                    elif variant == "tensorboard":
                        stop = _tensorboard_start(root, model, optimizer)
                except Exception as exc:                    # noqa: BLE001 - reported in the section
                    errors[variant] = f"could not start: {exc!r}"
                    del times[variant]
                    continue
                time.sleep(SETTLE)
                times[variant].append(overhead._train(X, y, model, optimizer, batches))
                if monitor is not None:
                    monitor.detach()
                    rwc_samples.append(len(monitor.history.get("rwc", "0.weight")[0]))
                if stop is not None:
                    try:
                        stop()
                    except Exception as exc:                # noqa: BLE001 - reported in the section
                        errors[variant] = f"could not shut down: {exc!r}"
                        del times[variant]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    bare = statistics.median(times["bare"])
    return {
        "steps": len(batches),
        "logger_repeats": LOGGER_REPEATS,
        "bare_ms_per_step": 1e3 * bare / len(batches),
        "ratios": {v: statistics.median(t) / bare for v, t in times.items() if v != "bare"},
        "rwc_samples": statistics.median(rwc_samples),
        "logger_errors": errors,
    }


# ---------------------------------------------------------------- spectra: WeightWatcher

def _cnn():
    """A ~10.4M-parameter VGG-style CNN for 32 x 32 RGB images, at its initialization."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(128, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(256 * 4 * 4, 2048), nn.ReLU(), nn.Linear(2048, 512), nn.ReLU(),
        nn.Linear(512, 10))


def _wide_mlp():
    """A 14.7M-parameter MLP at its initialization: six 1024 x 1024 layers, then 1024 -> 4096 ->
    1024 (weights 1024 x 1024 six times, 4096 x 1024 and 1024 x 4096)."""
    torch.manual_seed(0)
    layers = []
    for _ in range(6):
        layers += [nn.Linear(1024, 1024), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(1024, 4096), nn.ReLU(), nn.Linear(4096, 1024))


def _trained_mlp():
    X, y, model, optimizer, batches = overhead._setup()
    overhead._train(X, y, model, optimizer, batches)
    return model


def _weightwatcher():
    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import weightwatcher as ww
    logging.getLogger("weightwatcher").setLevel(logging.ERROR)

    class NoFits(ww.WeightWatcher):
        """analyze() with the power-law fit of each layer replaced by a no-op (alpha = NaN)."""

        def apply_powerlaw(self, ww_layer, params=None):
            ww_layer.add_column("alpha", math.nan)
            return ww_layer
    return ww.WeightWatcher, NoFits


def _quiet(fn, *args, **kwargs):
    """fn(...) with the library's prints and warnings silenced (they are not what is timed)."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def _compare(model, ours: dict, details) -> dict:
    """Agreement on the dense layers; WeightWatcher's conv figures checked against its definition."""
    modules = dict(model.named_modules())
    lam, sr, dense, per_layer = [], [], [], {}
    conv_check = []
    for _, row in details.iterrows():
        name = str(row["longname"])
        module = modules[name]
        if isinstance(module, nn.Linear):
            s = ours[f"{name}.weight"]
            lam.append(_rel(s.lambda_max, row["lambda_max"]))
            sr.append(_rel(s.stable_rank, row["stable_rank"]))
            dense.append(name)
            per_layer[name] = (s.lambda_max, float(row["lambda_max"]), s.stable_rank,
                               float(row["stable_rank"]))
        elif isinstance(module, nn.Conv2d):
            W = module.weight.detach().double()
            s1 = max(torch.linalg.svdvals(W[:, :, i, j]).max().item()
                     for i in range(W.shape[2]) for j in range(W.shape[3]))
            conv_check += [_rel(0.5 * s1 * s1, row["lambda_max"]),
                           _rel(W.square().sum().item() / (s1 * s1), row["stable_rank"])]
    weights = [n for n, p in model.named_parameters() if p.dim() >= 2]
    skipped = sorted(set(n.rsplit(".", 1)[0] for n in weights) - set(map(str, details["longname"])))
    return {"dense": dense, "lambda_max": max(lam), "stable_rank": max(sr), "per_layer": per_layer,
            "conv_check": max(conv_check) if conv_check else None, "skipped": skipped}


def _spectra_one(model, repeats: int, WW, NoFits, *, exact_variant: bool, warm_up: bool) -> dict:
    variants = {
        "ours": lambda: nm.analysis.mode_spectrum(model),
        "ww": lambda: _quiet(WW(model=model).analyze),
        "ww_nofits": lambda: _quiet(NoFits(model=model).analyze),
    }
    if exact_variant:
        variants["ours_exact"] = lambda: nm.analysis.mode_spectrum(model, max_exact=None)
    if warm_up:                                     # imports, first calls into LAPACK
        for fn in variants.values():
            fn()
    times = {v: [] for v in variants}
    results = {}
    for repeat in range(repeats):
        names = list(variants)
        k = repeat % len(names)
        for v in names[k:] + names[:k]:
            time.sleep(SETTLE)
            t, results[v] = _timed(variants[v])
            times[v].append(t)
    med = {v: statistics.median(t) for v, t in times.items()}
    out = {
        "params": sum(p.numel() for p in model.parameters()),
        "repeats": repeats,
        "seconds": med,
        "partial": [k for k, s in results["ours"].items() if s.partial],
        "agreement": _compare(model, results["ours"], results["ww"]),
        "nofits_same": bool(np.allclose(results["ww"]["lambda_max"], results["ww_nofits"]["lambda_max"])),
    }
    if exact_variant:
        out["agreement_exact"] = _compare(model, results["ours_exact"], results["ww"])
    return out


def _spectra() -> dict:
    try:
        WW, NoFits = _weightwatcher()
    except Exception as exc:                                # noqa: BLE001 - reported in the section
        return {"ww_error": f"import weightwatcher failed: {exc!r}"}
    return {
        "mlp": _spectra_one(_trained_mlp(), MLP_REPEATS, WW, NoFits, exact_variant=False, warm_up=True),
        # the MLP warmed the same code paths up; the CNN's calls are long enough not to need it
        "cnn": _spectra_one(_cnn(), CNN_REPEATS, WW, NoFits, exact_variant=True, warm_up=False),
        "wide": _spectra_one(_wide_mlp(), WIDE_REPEATS, WW, NoFits, exact_variant=False,
                             warm_up=False),
    }


def run() -> dict:
    start = time.perf_counter()
    figures = {"versions": {p: _version(p) for p in ("wandb", "tensorboard", "weightwatcher")}}
    figures.update(_loggers())
    figures["loggers_seconds"] = time.perf_counter() - start
    figures.update(_spectra())
    figures["seconds"] = time.perf_counter() - start
    return figures


# ---------------------------------------------------------------- BENCHMARKS.md

def _overhead_row(label: str, o: dict, variant: str) -> str:
    if variant not in o["ratios"]:
        return f"| {label} | not measured: {o['logger_errors'].get(variant, 'unavailable')} | | |"
    ours = o["ratios"]["ours"] - 1
    theirs = o["ratios"][variant] - 1
    if variant == "ours":
        return f"| {label} | {o['ratios'][variant]:.3f} | {100 * theirs:+.1f}% | 1 |"
    ratio = f"{ours / theirs:.2f}" if theirs > 0 else "n/a (theirs <= 0)"
    return f"| {label} | {o['ratios'][variant]:.3f} | {100 * theirs:+.1f}% | {ratio} |"


def section(o: dict) -> list[str]:
    """The BENCHMARKS.md lines of these figures."""
    v = o["versions"]
    lines = [
        "## Against wandb.watch and TensorBoard histograms (quickstart MLP, every 10 steps, CPU)",
        "",
        f"64-512-256-10 MLP on digits, batch 16, {o['steps']} optimizer steps, {o['logger_repeats']} "
        f"repeats (variants interleaved, order rotated); bare training takes "
        f"{o['bare_ms_per_step']:.3f} ms per step; wandb {v['wandb']} offline, tensorboard "
        f"{v['tensorboard']}.",
        "",
        "| variant | wall time / bare | overhead | our overhead / theirs (< 1: ours cheaper) |",
        "| --- | --- | --- | --- |",
        _overhead_row("nm.Monitor(model, optimizer, every=10), default analyses", o, "ours"),
        _overhead_row('wandb.watch(model, log="parameters", log_freq=10), offline', o, "wandb"),
        _overhead_row("TensorBoard add_histogram of every parameter every 10 steps", o, "tensorboard"),
        "",
        f"Overhead = wall time / bare - 1 of the training loop. Ours records the relative weight "
        f"change of every weight every 10 steps ({o['rwc_samples']:.0f} samples per run) plus spectra, "
        f"radiographs and neuron modes in the background within its 5% budget. wandb and TensorBoard "
        f"each record a histogram of all 6 parameters (weights and biases) every 10 steps: wandb 64 "
        f"bins, built in its forward hook, committed by a `wandb.log` every 10 steps and written by "
        f"its wandb-core process (no system metrics, code or git capture); TensorBoard its default "
        f"('tensorflow') buckets, from an optimizer step hook. Start-up and shutdown (wandb.init, "
        f"finish, closing the writer) are not timed.",
        "",
    ]
    if o["logger_errors"]:
        lines += ["Not measured: " + "; ".join(f"{k}: {e}" for k, e in o["logger_errors"].items()), ""]
    lines += [
        "## mode_spectrum against WeightWatcher (time and agreement, CPU)",
        "",
    ]
    if "ww_error" in o:
        return lines + [f"Not measured: {o['ww_error']}", ""]
    m, c, w = o["mlp"], o["cnn"], o["wide"]
    lines += [
        f"`nm.analysis.mode_spectrum(model)` against `weightwatcher.WeightWatcher(model).analyze()` "
        f"(weightwatcher {v['weightwatcher']}, defaults) on the quickstart MLP after {o['steps']} "
        f"training steps ({m['params']:,} parameters, {m['repeats']} repeats), on a VGG-style CNN "
        f"at initialization (4 conv 3x3 layers, dense 4096-2048-512-10, {c['params']:,} parameters, "
        f"{c['repeats']} repeats) and on a wide MLP at initialization (six 1024 x 1024 layers, then "
        f"1024 -> 4096 -> 1024, {w['params']:,} parameters, {w['repeats']} repeats).",
        "",
        "| model | ours (s) | WW analyze (s) | WW without power-law fits (s) | ours / WW (< 1: ours faster) | ours / WW without fits | WW / ours (speed-up) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, r, key in (("MLP", m, "ours"), ("CNN", c, "ours"),
                          ("CNN, ours all exact (max_exact=None)", c, "ours_exact"),
                          ("wide MLP (14.7M)", w, "ours")):
        s = r["seconds"]
        lines.append(f"| {label} | {s[key]:.3f} | {s['ww']:.3f} | {s['ww_nofits']:.3f} | "
                     f"{s[key] / s['ww']:.2f} | {s[key] / s['ww_nofits']:.2f} | "
                     f"{s['ww'] / s[key]:.1f} |")
    ma, ca, ce, wa = m["agreement"], c["agreement"], c["agreement_exact"], w["agreement"]
    first = next(iter(ma["per_layer"].items()))
    partial = ", ".join(c["partial"] + w["partial"]) or "no layer of these models"
    lines += [
        "",
        "| layers compared | max relative difference, lambda_max | max relative difference, stable rank |",
        "| --- | --- | --- |",
        f"| MLP, dense {', '.join(ma['dense'])} | {ma['lambda_max']:.1e} | {ma['stable_rank']:.1e} |",
        f"| CNN, dense {', '.join(ca['dense'])} (ours default) | {ca['lambda_max']:.1e} | {ca['stable_rank']:.1e} |",
        f"| CNN, dense, ours all exact | {ce['lambda_max']:.1e} | {ce['stable_rank']:.1e} |",
        f"| wide MLP, dense {', '.join(wa['dense'])} | {wa['lambda_max']:.1e} | {wa['stable_rank']:.1e} |",
        "",
        f"Both tools define lambda_max = s_1^2 and stable rank = ||W||_F^2 / s_1^2 of a dense weight "
        f"(WeightWatcher: the eigenvalues of W^T W, unnormalized; e.g. MLP layer {first[0]}: "
        f"lambda_max {first[1][0]:.6g} ours, {first[1][1]:.6g} WW). Ours computes the singular values "
        f"of float32 weights with torch as square roots of the eigenvalues (`eigvalsh`) of the Gram "
        f"matrix W^T W or W W^T of the smaller side, in float64 up to 128 columns, else in float32 "
        f"with s_1 refined by a shifted inverse iteration (see `mode_spectrum` for the rounding "
        f"errors; a randomized partial spectrum for matrices above 2^23 entries with both sides "
        f"above 1024: {partial}), "
        f"WeightWatcher with SciPy's SVD in float64 on CPU, plus a power-law fit per layer "
        f"that it always runs (timed separately with the fit replaced by a no-op). Both analyse every "
        f"weight layer (WeightWatcher's default min_evals skipped "
        f"{', '.join(ma['skipped'] + ca['skipped'] + wa['skipped']) or 'none'}); conv layers are not "
        f"compared: WeightWatcher pools the k^2 matrices W[:, :, i, j] and scales them by sqrt(1/2), "
        f"ours reshapes the kernel to [out, in*k*k] (its conv figures match that definition to "
        f"{ca['conv_check']:.1e}). The times are of whole models, conv layers included.",
        "",
    ]
    return lines


if __name__ == "__main__":
    print("\n".join(section(run())))
