"""Gated radiographs of every unit of one ResNet layer: ours against a per-unit autograd loop and
against Captum's InputXGradient, on the same model, batch, dtype and threads.

The model is a CIFAR pre-activation ResNet-18 in eval mode with BatchNorm running statistics
and affine parameters set away from their defaults (so that normalisation is not the identity).
The layer is ``layer1.0.conv2`` (64 units, each unit a channel's output summed over positions);
its gated radiograph is d(unit) / d(input), [B, 64, 3, 32, 32].

- ours: ``gated_radiograph(model, x, layer)``, and ``characteristic_maps(model, x, layer)``
  (x times the radiograph: what InputXGradient computes);
- loop: one forward with a forward hook on the layer, then ``torch.autograd.grad`` of each
  unit's batch sum with ``retain_graph=True``, one backward pass per unit;
- Captum: ``InputXGradient`` of a module returning the layer's channel sums [B, 64] (the model
  runs, a hook keeps the layer's output), ``attribute(x, target=c)`` for each unit c: how a
  Captum user gets per-unit attributions; each call is one forward and one backward pass;
- Captum, stopped: the same with the forward pass ended at the layer (its hook raises), which
  a user who knows that the rest of the model is wasted work can write: a stricter rival.

Each variant runs once as a warm-up (its result is what the agreement is computed from), then
REPEATS times interleaved with the order rotated; the figures are medians.
"""

from __future__ import annotations

import os
import statistics
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from nnmodes_widgets.analysis import characteristic_maps, gated_radiograph

LAYER = "layer1.0.conv2"
BATCH = 8
REPEATS = 5
TARGET = 5.0        # the project's goal: Captum time / ours >= 5 for the same numbers


class PreActBlock(nn.Module):
    """BN-ReLU-conv twice, plus the shortcut (a 1x1 conv when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = (nn.Conv2d(cin, cout, 1, stride, bias=False)
                         if stride != 1 or cin != cout else None)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        out += shortcut     # as the common implementations write it: overwrites conv2's output
        return out


class PreActResNet18(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        stages, cin = [], 64
        for width, stride in zip((64, 128, 256, 512), (1, 2, 2, 2)):
            stages.append(nn.Sequential(PreActBlock(cin, width, stride), PreActBlock(width, width, 1)))
            cin = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.bn = nn.BatchNorm2d(512)
        self.linear = nn.Linear(512, classes)

    def forward(self, x):
        out = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        out = F.adaptive_avg_pool2d(F.relu(self.bn(out)), 1).flatten(1)
        return self.linear(out)


def _setup():
    torch.manual_seed(0)
    model = PreActResNet18()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):   # as after training: no BN is the identity
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    model.eval()
    return model, torch.randn(BATCH, 3, 32, 32)


def _channel_sums(model, layer):
    """A hook keeping the layer's output summed over positions ([B, units]) in store["z"];
    summed in the hook, before the block's `out += shortcut` overwrites that output."""
    store = {}
    module = dict(model.named_modules())[layer]
    handle = module.register_forward_hook(lambda m, i, out: store.__setitem__("z", out.sum((2, 3))))
    return store, handle


def _loop(model, x, layer):
    store, handle = _channel_sums(model, layer)
    try:
        x = x.detach().clone().requires_grad_()
        model(x)
        z = store["z"]
        grads = [torch.autograd.grad(z[:, c].sum(), x, retain_graph=True)[0] for c in range(z.shape[1])]
    finally:
        handle.remove()
    return torch.stack(grads, 1)                        # [B, units, C, H, W], like ours


class _Stop(Exception):
    pass


class _Units(nn.Module):
    """What a Captum user writes: the model, returning the layer's channel sums [B, units];
    with stop, the forward pass ends at the layer."""

    def __init__(self, model, layer, stop):
        super().__init__()
        self.model, self.module, self.stop = model, dict(model.named_modules())[layer], stop

    def forward(self, x):
        store = {}

        def hook(module, inputs, out):
            store["z"] = out.sum((2, 3))            # before `out += shortcut` (see _channel_sums)
            if self.stop:
                raise _Stop
        handle = self.module.register_forward_hook(hook)
        try:
            self.model(x)
        except _Stop:
            pass
        finally:
            handle.remove()
        return store["z"]


def _captum(model, x, layer, units, stop=False):
    from captum.attr import InputXGradient
    explainer = InputXGradient(_Units(model, layer, stop))
    x = x.detach().clone()          # Captum sets and resets requires_grad on its input
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                 # "did not already require gradients"
        return torch.stack([explainer.attribute(x, target=c) for c in range(units)], 1)


def _rel(a, b) -> float:
    """max |a - b| / max |b|."""
    return ((a - b).abs().max() / b.abs().max()).item()


def run() -> dict:
    import captum
    model, x = _setup()
    units = dict(model.named_modules())[LAYER].out_channels

    def forward():
        with torch.no_grad():
            return model(x)

    variants = {
        "ours": lambda: gated_radiograph(model, x, LAYER),
        "ours_maps": lambda: characteristic_maps(model, x, LAYER),
        "loop": lambda: _loop(model, x, LAYER),
        "captum": lambda: _captum(model, x, LAYER, units),
        "captum_stopped": lambda: _captum(model, x, LAYER, units, stop=True),
        "forward": forward,         # one plain forward pass: the unit of Captum's cost
    }
    load = os.getloadavg()[0]
    start = time.perf_counter()
    warm = {v: fn() for v, fn in variants.items()}      # warm-up, also the results compared
    agreement = {
        "ours_vs_loop": _rel(warm["ours"], warm["loop"]),
        "maps_vs_captum": _rel(warm["ours_maps"], warm["captum"]),
        "maps_vs_captum_stopped": _rel(warm["ours_maps"], warm["captum_stopped"]),
        "maps_vs_x_ours": _rel(warm["ours_maps"], x.unsqueeze(1) * warm["ours"]),
    }
    del warm
    times = {v: [] for v in variants}
    names = list(variants)
    for repeat in range(REPEATS):
        k = repeat % len(names)                         # rotated: no variant always follows another
        for v in names[k:] + names[:k]:
            t = time.perf_counter()
            result = variants[v]()
            times[v].append(time.perf_counter() - t)
            del result
    return {"layer": LAYER, "units": units, "batch": BATCH, "repeats": REPEATS,
            "threads": torch.get_num_threads(), "captum": captum.__version__,
            "params": sum(p.numel() for p in model.parameters()),
            "seconds": {v: statistics.median(t) for v, t in times.items()},
            "all_seconds": times, "agreement": agreement,
            "total_seconds": time.perf_counter() - start, "load": (load, os.getloadavg()[0])}


def section(f: dict) -> list[str]:
    s, a, spread = f["seconds"], f["agreement"], f["all_seconds"]
    n, b = f["units"], f["batch"]
    vs_captum = s["captum"] / s["ours_maps"]
    vs_stopped = s["captum_stopped"] / s["ours_maps"]
    vs_loop = s["loop"] / s["ours"]

    def met(ratio):
        return "met" if ratio >= TARGET else "not met"
    lines = [
        "## Gated radiographs of every unit against a per-unit loop and Captum (CPU)",
        "",
        f"Pre-activation ResNet-18 for CIFAR ({f['params']:,} parameters, eval mode, BatchNorm "
        f"statistics and affine parameters away from their defaults), float32, a batch of {b} "
        f"random 3 x 32 x 32 inputs; every one of the {n} units of `{f['layer']}` (a channel, "
        f"summed over positions): [{b}, {n}, 3, 32, 32] per run. {f['threads']} torch threads for "
        f"every variant; one warm-up run each, then medians of {f['repeats']} interleaved repeats "
        "(order rotated).",
        "",
        "| method | seconds per run (median) | fastest, slowest repeat | samples x units per second |",
        "| --- | --- | --- | --- |",
    ]
    for v, label in (("ours", "ours: `gated_radiograph(model, x, layer)`"),
                     ("ours_maps", "ours: `characteristic_maps(model, x, layer)`"),
                     ("loop", "per-unit autograd loop: one forward, one `autograd.grad` per unit"),
                     ("captum", f"Captum {f['captum']}: `InputXGradient.attribute(x, target=c)` per unit"),
                     ("captum_stopped", "Captum, the same with the forward pass stopped at the layer"),
                     ("forward", "(one plain forward pass of the model, `torch.no_grad`)")):
        rate = f"{b * n / s[v]:.0f}" if v != "forward" else ""
        lines.append(f"| {label} | {s[v]:.3f} | {min(spread[v]):.3f}, {max(spread[v]):.3f} | {rate} |")
    lines += [
        "",
        "| ratio of medians | value |",
        "| --- | --- |",
        f"| Captum / ours characteristic maps (the same numbers: x times the radiograph) | {vs_captum:.2f} |",
        f"| Captum, stopped at the layer / ours characteristic maps | {vs_stopped:.2f} |",
        f"| per-unit loop / ours gated radiograph | {vs_loop:.2f} |",
        "",
        f"Goal: at least {TARGET:.0f}x faster than Captum for the same numbers: **{met(vs_captum)}** "
        f"against Captum running the whole model per unit ({vs_captum:.1f}x), "
        f"**{met(vs_stopped)}** against Captum with the forward pass stopped at the layer "
        f"({vs_stopped:.1f}x).",
        "",
    ]
    if vs_loop < 1:
        lines += [f"Ours is **slower than the plain per-unit autograd loop**: the loop takes "
                  f"{vs_loop:.2f} of our time for the gated radiographs, so batching the units' "
                  "backward passes does not pay here.", ""]
    else:
        lines += [f"Ours is {vs_loop:.2f}x as fast as the plain per-unit autograd loop.", ""]
    lines += [
        f"Captum runs one forward and one backward pass per unit ({n} x the plain forward of the "
        f"whole model alone is {n * s['forward']:.2f} s: most of its time is layers the units do "
        "not depend on, which the stopped variant skips); the loop one forward for all units and one "
        "backward pass per unit; ours one forward, stopped at the layer, and the units' backward "
        "passes batched (`is_grads_batched`).",
        "",
    ]
    noisy = [v for v, t in spread.items() if max(t) > 1.5 * min(t)]
    if noisy:
        lines += [f"Busy machine: the slowest repeat of {', '.join(noisy)} took more than 1.5x its "
                  f"fastest (load average {f['load'][0]:.1f} before, {f['load'][1]:.1f} after the "
                  "run on this machine's cores); the medians and ratios above are less reliable "
                  "than usual.", ""]
    lines += [
        "| compared | max abs difference / max abs value |",
        "| --- | --- |",
        f"| ours gated radiograph vs the per-unit loop | {a['ours_vs_loop']:.1e} |",
        f"| ours characteristic maps vs Captum | {a['maps_vs_captum']:.1e} |",
        f"| ours characteristic maps vs Captum, stopped | {a['maps_vs_captum_stopped']:.1e} |",
        f"| ours characteristic maps vs x * ours gated radiograph | {a['maps_vs_x_ours']:.1e} |",
        "",
        "float32 throughout; differences of order 1e-7 are rounding (summation order).",
        "",
    ]
    off = [k for k, v in a.items() if v > 1e-5]
    if off:
        lines += [f"**Disagreement beyond float32 rounding** in {', '.join(off)}: these are not "
                  "the same numbers, and the times above do not compare like with like.", ""]
    return lines


if __name__ == "__main__":
    print("\n".join(section(run())))
