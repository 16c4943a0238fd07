"""Neuron transformation modes: which neurons transmit, collapse or fold their inputs.

Definitions from Lin, Feng, Zhang, Zhao, "Network dynamics-based framework for understanding
deep neural networks" (arXiv 2501.02436); see SPEC section 4.3. For every elementwise
activation s that the model's forward calls on a probe batch, module or functional (captured as
``capture.py`` describes, with its keys), z its input:

- transmitting region: the samples where s'(z) >= delta * max s', the maximum taken over
  z in [-10, 10] on a dense grid (20001 points; 2001 per neuron for activations with parameters,
  such as PReLU); s' from autograd through the activation module itself, so any elementwise
  activation works. There the activation preserves the order of its inputs. s'(z) must also be
  > 0: where an activation decreases (the negative-slope region of GELU and SiLU, a PReLU with a
  negative slope) it reverses the order, and the sample is not transmitting.
- ``active_fraction[k]``: the share of samples in neuron k's transmitting region.
- ``mode[k]``: "linear" if active_fraction >= 1 - eps (order-preserving: the neuron acts like a
  linear unit on the data), "dead" if <= eps (collapsed), else "nonlinear" (non-order-preserving:
  it folds the data). ``fractions``: the share of each mode among the layer's neurons.
- ``order_preservation[k]``: among the sample pairs with z_a != z_b, the share whose outputs keep
  the same strict order (output ties count as not kept). 1 for an order-preserving neuron; about
  1 - q^2 for a ReLU that clips a share q of the samples (pairs with both clipped tie).
- with labels y: ``class_active_fraction[c, k]``: active_fraction over the samples of class c.

Neurons are the features of a Linear layer's output and the channels of a convolution's (the
neuron axis, ``capture.py``); every other position of every sample counts as one sample: a
probe of B images with P positions gives B * P samples per channel, B sequences of T tokens
B * T samples per feature. Activations Python never sees (inside fused kernels such as
``nn.LSTM``) are listed in the result's ``not_analysable``. Results are small and live on the
host (CPU), in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .capture import Capture, capture, check_labels, derivative
from .errors import NonFiniteValues, UnsupportedModel
from .inputs import as_inputs
from .modes import MODES, mode_code

__all__ = ["MODES", "NeuronModes", "LayerModes", "neuron_modes", "order_preservation", "mode_code"]

ORDER_BYTES = 64 * 2**20    # memory budget of order_preservation per chunk of neurons
_GRID = (-10.0, 10.0)
_GRID_POINTS = 20001        # one shared grid: step 0.001
_GRID_POINTS_PER_NEURON = 2001


@dataclass(frozen=True, eq=False)
class NeuronModes:
    """Neuron transformation modes of one activation (see the module docstring).

    ``layer``: the key (see the module docstring); ``activation``: the activation module's name,
    or ``module:function#i`` for a functional call. Tensors are float64 on the CPU, one entry per
    neuron (n = the size of the activation input's neuron axis):

    - ``active_fraction`` [n]: share of samples in the transmitting region;
    - ``mode``: tuple of n strings, "linear" / "nonlinear" / "dead";
    - ``mode_code`` [n] int64: the same as indices into ``MODES``;
    - ``fractions``: {"linear": share, "nonlinear": share, "dead": share} of the layer's neurons;
    - ``order_preservation`` [n]: share of order-kept pairs (NaN when no pair has z_a != z_b);
    - ``class_active_fraction`` [C, n] with labels, else None (NaN rows for absent classes);
    - ``threshold`` [n]: delta * max s', the slope a sample needs to count as transmitting;
    - ``n_samples``: samples per neuron (B times the positions per sample).
    """
    layer: str
    activation: str
    active_fraction: torch.Tensor
    mode: tuple[str, ...]
    mode_code: torch.Tensor
    fractions: dict[str, float]
    order_preservation: torch.Tensor
    class_active_fraction: torch.Tensor | None
    threshold: torch.Tensor
    n_samples: int


class LayerModes(dict):
    """``neuron_modes``' result: key -> NeuronModes, front to back, and ``not_analysable``:
    module name -> why its activations cannot be seen (fused kernels such as ``nn.LSTM``)."""

    def __init__(self, items=(), not_analysable=None):
        super().__init__(items)
        self.not_analysable: dict[str, str] = dict(not_analysable or {})


def neuron_modes(model: nn.Module, x, *, y=None, eps: float = 0.05,
                 delta: float = 0.05, num_classes: int | None = None,
                 with_order: bool = True) -> LayerModes:
    """Neuron modes of every elementwise activation the forward calls on the probe, front to
    back, keyed as ``capture.py`` documents (the weight layer's module name, e.g.
    ``"features.3"``, when the activation transforms one weight layer's output; else
    ``"layer1.0:relu#0"``-style keys naming the calling module and the call's position).

    x: the probe batch: a tensor, a tuple of positional or a dict of keyword inputs (token ids
    stay integers; every token position counts as a sample). y: optional integer labels [B] for
    ``class_active_fraction`` (classes 0..C-1, C = ``num_classes`` or max(y) + 1). eps in
    [0, 0.5), delta in (0, 1]. ``with_order=False`` skips ``order_preservation`` (NaN then:
    the costliest part, O(N log N) per neuron). The model is left as it was found.
    """
    for name, value, low, high in (("eps", eps, "[0", "0.5)"), ("delta", delta, "(0", "1]")):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not (0 <= value < 0.5 if name == "eps" else 0 < value <= 1):
            raise ValueError(f"{name} must be in {low}, {high}, got {value!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
    inputs = as_inputs(x, model)
    if y is not None:
        check_labels(y, inputs.batch, inputs.tensors[0].device, num_classes)
    elif num_classes is not None:
        raise ValueError("num_classes is given without labels y")
    cap = capture(model, inputs, sites=True, what=f"the probe x ({inputs.describe()})")
    return modes_from_capture(model, cap, inputs.batch, y=y, num_classes=num_classes, eps=eps,
                              delta=delta, with_order=with_order)


def modes_from_capture(model: nn.Module, cap: Capture, batch: int, *, y=None,
                       num_classes: int | None = None, eps: float = 0.05, delta: float = 0.05,
                       with_order: bool = True) -> LayerModes:
    """``neuron_modes`` from a pass already made: ``cap = capture(model, inputs, sites=True)``
    of ``batch`` samples (y, if given, one label per sample). For a caller that needs the pass
    itself too (the monitor takes the predicted classes from its output): the model is not run
    again. Arguments as ``neuron_modes`` takes them, not checked again but for the labels."""
    if y is not None:
        device = cap.sites[0].z.device if cap.sites else "cpu"
        y, num_classes = check_labels(y, batch, device, num_classes)
    if not cap.sites:
        blind = "".join(f"; {name}: {why}" for name, why in cap.not_analysable.items())
        raise UnsupportedModel(f"nothing to analyse: {type(model).__name__}'s forward calls no "
                               f"elementwise activation on the probe{blind}")
    result = LayerModes(not_analysable=cap.not_analysable)
    for site in cap.sites:
        z = site.z
        if not torch.isfinite(z).all():
            raise NonFiniteValues(f"activation {site.key!r} has non-finite inputs on the probe "
                             "(NaN or inf weights or inputs)")
        h, slope = derivative(site.fn, z)
        n = z.shape[site.axis]
        top = _max_slope(site.fn, z, site.axis, site.parametric)
        top = top.expand(n) if top.numel() == 1 else top
        threshold = delta * top
        shape = [1] * z.ndim
        shape[site.axis] = n
        transmitting = (slope >= threshold.view(shape)) & (slope > 0)
        result[site.key] = _layer_modes(
            site.key, site.label, _neuron_major(z, site.axis), _neuron_major(h, site.axis),
            _neuron_major(transmitting, site.axis), threshold, eps,
            (y, num_classes) if y is not None else None, batch, with_order)
    return result


def order_preservation(z: torch.Tensor, h: torch.Tensor, *, budget: int = ORDER_BYTES) -> torch.Tensor:
    """Share of order-kept pairs per neuron: z, h [n, N] (neurons x samples) -> float64 [n].

    For each neuron, among the pairs of samples with z_a != z_b, the share with
    sign(h_a - h_b) = sign(z_a - z_b) strictly (output ties count as not kept); NaN when there is
    no such pair. h must be a function of z per neuron (h = s(z)), as an activation's output is.

    Sort based, O(N log N) per neuron in the common cases, and no pair is materialised; no
    Python loop over neurons or samples (only over chunks of neurons and log2 N merge levels).
    Samples are sorted by z. Where the outputs along z first never rise and then never fall
    (every neuron of a monotone activation; GELU, SiLU, Mish with their single dip), the kept
    pairs are counted in closed form from the sorted outputs. Otherwise the outputs, in z order,
    are replaced by their dense ranks, and the pairs i < j with rank_i < rank_j are counted by a
    bottom-up merge sort whose merge step counts, with ``searchsorted``, how many elements of
    each left run lie below each element of the right run (O(N log^2 N)). Pairs with z_a = z_b
    have equal outputs, so they never count. Neurons are processed in chunks whose working set
    (at most 128 bytes per sample and neuron, counted generously) stays under ``budget`` bytes,
    so memory is O(N * chunk), never O(N^2).
    """
    if z.shape != h.shape or z.ndim != 2:
        raise ValueError(f"z and h must both be [neurons, samples]; got {tuple(z.shape)} and "
                         f"{tuple(h.shape)}")
    n, count = z.shape
    padded = 1 << max(0, (count - 1).bit_length())
    per_neuron = 16 * 8 * padded
    step = max(1, budget // per_neuron)
    out = torch.empty(n, dtype=torch.float64, device=z.device)
    for s in range(0, n, step):
        out[s:s + step] = _kept_share(z[s:s + step], h[s:s + step], padded)
    return out


# -- helpers -------------------------------------------------------------------------------------------

def _max_slope(fn, z: torch.Tensor, axis: int, per_neuron: bool) -> torch.Tensor:
    """max of s' over z in [-10, 10]: [1] for an activation without parameters, else [n] (the
    grid is laid out along the neuron axis, so that per-channel parameters such as PReLU's
    apply)."""
    points = _GRID_POINTS_PER_NEURON if per_neuron else _GRID_POINTS
    grid = torch.linspace(*_GRID, points, dtype=torch.float64).to(z.device, z.dtype)
    shape = [1] * z.ndim
    shape[0] = points
    if per_neuron:
        shape[axis] = z.shape[axis]
    grid = grid.view(points, *[1] * (z.ndim - 1)).expand(shape).contiguous()
    _, slope = derivative(fn, grid)
    return slope.movedim(axis, 0).reshape(slope.shape[axis], -1).amax(dim=1).to(torch.float64)


def _neuron_major(t: torch.Tensor, axis: int) -> torch.Tensor:
    """[B, ..., n (at axis), ...] -> [n, B * positions], sample index b * positions + p."""
    return t.movedim(axis, 0).reshape(t.shape[axis], -1)


def _layer_modes(layer, activation, z, h, transmitting, threshold, eps, labels, batch,
                 with_order) -> NeuronModes:
    n, count = z.shape
    active = transmitting.sum(dim=1).to(torch.float64) / count
    code = mode_code(active, eps)
    by_class = None
    if labels is not None:
        y, n_classes = labels
        per_sample = transmitting.view(n, batch, -1).sum(dim=2).to(torch.float64)   # [n, B]
        sums = torch.zeros(n_classes, n, dtype=torch.float64, device=z.device)
        sums.index_add_(0, y, per_sample.T)
        samples = torch.bincount(y, minlength=n_classes).to(torch.float64) * (count // batch)
        by_class = (sums / samples[:, None]).cpu()   # 0 / 0: NaN for an absent class
    code = code.cpu()
    share = torch.bincount(code, minlength=len(MODES)).to(torch.float64) / n
    return NeuronModes(
        layer=layer,
        activation=activation,
        active_fraction=active.cpu(),
        mode=tuple(MODES[c] for c in code.tolist()),
        mode_code=code,
        fractions={name: float(share[i]) for i, name in enumerate(MODES)},
        order_preservation=order_preservation(z, h).cpu() if with_order else
        torch.full((n,), float("nan"), dtype=torch.float64),
        class_active_fraction=by_class,
        threshold=threshold.cpu(),
        n_samples=count,
    )


def _run_starts(ordered: torch.Tensor) -> torch.Tensor:
    """For each entry of a row-sorted [m, N] tensor, the index of the first entry equal to it."""
    idx = torch.arange(ordered.shape[1], device=ordered.device)
    new = torch.ones_like(ordered, dtype=torch.bool)
    new[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    return torch.where(new, idx, 0).cummax(dim=1).values


def _kept_share(z: torch.Tensor, h: torch.Tensor, padded: int) -> torch.Tensor:
    m, count = z.shape
    if count < 2:
        return torch.full((m,), float("nan"), dtype=torch.float64, device=z.device)
    idx = torch.arange(count, device=z.device)
    zs, perm = torch.sort(z, dim=1, stable=True)
    all_pairs = count * (count - 1) // 2
    pairs = all_pairs - (idx - _run_starts(zs)).sum(dim=1)     # pairs with z_a != z_b
    hz = h.gather(1, perm)                              # outputs in z order
    del zs, perm
    # Fast exact count where the outputs, in z order, first never rise and then never fall
    # (monotone activations: the first part is empty; GELU, SiLU, Mish: a single dip). With the
    # falling part D = [0, p) and the rising part U = [p, N): no pair inside D is kept; a pair
    # inside U is kept unless its outputs tie; a pair (d, u) is kept when h_d < h_u.
    falls = hz[:, 1:] < hz[:, :-1]
    if not bool(falls.any()):     # every row already sorted: kept = pairs whose outputs differ
        kept = all_pairs - (idx - _run_starts(hz)).sum(dim=1)
        share = kept.to(torch.float64) / pairs.to(torch.float64)
        return torch.where(pairs > 0, share, torch.full_like(share, float("nan")))
    rises = hz[:, 1:] > hz[:, :-1]
    last_fall = torch.where(falls, idx[:-1], -1).amax(dim=1)
    first_rise = torch.where(rises, idx[:-1], count).amin(dim=1)
    dip = last_fall < first_rise
    p = (last_fall + 1).unsqueeze(1)
    rising = count - p.squeeze(1)
    in_u_start = torch.maximum(_run_starts(hz), p)      # ties inside U, in z order (U is sorted)
    u_ties = torch.where(idx >= p, idx - in_u_start, 0).sum(dim=1)
    hs, hp = torch.sort(hz, dim=1)
    in_d = (hp < p).long()                              # sorted outputs that belong to D
    d_before = in_d.cumsum(dim=1) - in_d                # D entries at earlier sorted positions
    d_below = d_before.gather(1, _run_starts(hs))       # ... with strictly smaller outputs
    cross = torch.where(in_d.bool(), 0, d_below).sum(dim=1)
    kept = rising * (rising - 1) // 2 - u_ties + cross
    del falls, rises, in_u_start, in_d, d_before, d_below
    rest = ~dip
    if bool(rest.any()):
        # dense ranks of the outputs (ties share a rank), in z order, for the general count
        newh = torch.ones_like(hs, dtype=torch.int32)
        newh[:, 1:] = (hs[:, 1:] != hs[:, :-1]).to(torch.int32)
        rank = torch.empty_like(newh).scatter_(1, hp, newh.cumsum(dim=1, dtype=torch.int32) - 1)
        del hs, hp, newh
        kept[rest] = _increasing_pairs(rank[rest], count, padded)
    share = kept.to(torch.float64) / pairs.to(torch.float64)
    return torch.where(pairs > 0, share, torch.full_like(share, float("nan")))


def _increasing_pairs(rank: torch.Tensor, count: int, padded: int) -> torch.Tensor:
    """Pairs i < j with rank_i < rank_j in each row of rank [m, count] (int32, values < count),
    by a bottom-up merge sort over runs of length 1, 2, 4, ...

    Each merge counts, with searchsorted, how many elements of the left run lie below each
    element of the right run, and merges the two sorted runs by scattering every element to its
    rank in the union. Padding (rank = count) sits at the end: it is larger than every real
    rank and only ever in a right run after the real ones, where it is not counted.
    """
    m = rank.shape[0]
    a = torch.full((m, padded), count, dtype=torch.int32, device=rank.device)
    a[:, :count] = rank
    kept = torch.zeros(m, dtype=torch.long, device=rank.device)
    run = 1
    while run < padded:
        runs = padded // (2 * run)
        blocks = a.view(m, runs, 2, run)
        left, right = blocks[:, :, 0].contiguous(), blocks[:, :, 1].contiguous()
        below = torch.searchsorted(left, right, side="left")     # left elements < each right one
        kept += torch.where(right < count, below, 0).sum(dim=(1, 2))
        at = torch.arange(run, device=a.device)
        # merged position: own index in the run + the other run's elements before it (equal
        # values: right ones first; they are equal, so the order among them does not matter)
        merged = torch.empty((m, runs, 2 * run), dtype=a.dtype, device=a.device)
        merged.scatter_(2, below + at, right)
        merged.scatter_(2, torch.searchsorted(right, left, side="right") + at, left)
        a = merged.view(m, padded)
        run *= 2
    return kept
