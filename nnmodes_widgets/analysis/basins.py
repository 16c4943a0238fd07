"""Attraction basins, sharpness and weight alignment (SPEC 4.6, network dynamics after Lin et
al., arXiv 2501.02436). The paper's full text is not available: the quantities below are the
basin radii *as defined here*.

- ``sample_basins``: the sample-space basin of each probe sample x (of its label y, or of the
  model's prediction at x): the largest L2 radius r such that at least a share 1 - alpha of
  ``directions`` random unit directions u keep the prediction at x + r u.
- ``weight_basins``: the weight-space basin of each weight layer (and of all of them together,
  key ``"*"``): the largest relative perturbation size r such that, for at least a share
  1 - alpha of random filter-normalised directions D (Li et al. 2018), the loss at W + r D stays
  within (1 + tolerance) of the loss at W.
- ``sharpness``: the top eigenvalue of the loss Hessian (in magnitude) by power iteration on
  Hessian-vector products.
- ``weight_alignment``: per weight layer, the mean |cosine| between the incoming weight vectors
  of its neurons (condensation of weight vectors).

Both basins share one search (``_search``): per item (a sample, a layer) a radius is accepted
when at most m = floor(alpha * K + 1e-9) of the K directions fail at it (the share kept is then
>= 1 - alpha). Starting from a scale of the item, the radius is doubled while accepted (or halved
while refused) until a bracket lo < r* <= hi with hi = 2 lo is found, then the bracket is bisected
geometrically (at sqrt(lo * hi)) until hi <= 1.02 lo; the radius reported is lo, the largest
radius checked to be accepted, so it lies within 2% below the crossing. The search assumes the
share kept decreases with r (it does not have to: it finds *a* crossing, the one bracketed first).
A radius still accepted after ``_UP`` doublings is reported as ``inf``; one refused after
``_DOWN`` halvings as 0. All items still searching are evaluated together in each round: for
``sample_basins`` one round is every (sample, direction) pair at the samples' current radii,
run through the model in chunks of ``max_batch`` points per forward call.

Every function leaves the model as it found it: its parameters (bitwise), buffers, training
flags, ``requires_grad`` flags and ``.grad``. The model is evaluated in eval mode (flags restored
afterwards, also on an exception), under ``torch.no_grad`` for the basins, with weights passed
through ``torch.func.functional_call`` (never written into the model).

Layer keys are module names (``"features.3"``), the weight layers of ``capture.weight_layers``:
every module with a ``weight`` parameter of 2+ dimensions (embeddings excluded), and
``nn.MultiheadAttention`` as one layer.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.modules.conv import _ConvNd, _ConvTransposeNd

from ..checks import check_int
from .capture import check_labels, evaluating, weight_layers
from .errors import NonFiniteValues, UnsupportedModel
from .inputs import ModelInputs, as_inputs, first_tensor

__all__ = ["SampleBasins", "sample_basins", "weight_basins", "sharpness", "weight_alignment",
           "sample_directions", "PRECISION"]

PRECISION = 0.02          # relative precision of a basin radius: the search stops at hi <= 1.02 lo
_UP = 20                  # doublings past the start before a radius counts as unbounded (inf)
_DOWN = 40                # halvings below the start before a radius counts as 0
_WEIGHT_START = 0.1       # first relative perturbation size tried by weight_basins
_POINT_BYTES = 16 << 20   # sample_basins: perturbed inputs per forward call, default bound
_MAX_POINTS = 1024        #   ... and at most this many points per forward call
_STACK_BYTES = 256 << 20  # weight_basins: perturbed weights (and a proxy of activations) per call
_CACHE_BYTES = 256 << 20  # weight_basins: filter-normalised directions kept between rounds
_ALIGN_BYTES = 32 << 20   # weight_alignment: a block of cosines [chunk, n]


# -- sample-space basins ---------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class SampleBasins:
    """Sample-space basin radii of a probe batch (basin radius as defined here, SPEC 4.6).

    ``radius``: float64 NumPy array [B] (read-only): per sample, the L2 radius in input space
    (0 for a misclassified sample, ``inf`` for one whose prediction survives every radius tried,
    up to 2^20 times its own norm). ``labels``: int64 [B], the class each radius is about: y when
    given (``from_labels`` True), else the model's prediction at x. ``predicted``: int64 [B], the
    prediction at x. ``directions``, ``alpha``, ``seed``: as passed. ``evaluated``: perturbed
    points the model was run on.
    """
    radius: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    predicted: np.ndarray = field(repr=False)
    from_labels: bool
    directions: int
    alpha: float
    seed: int
    evaluated: int

    def __post_init__(self):
        for name, dtype in (("radius", np.float64), ("labels", np.int64), ("predicted", np.int64)):
            a = np.array(getattr(self, name), dtype=dtype)
            a.setflags(write=False)
            object.__setattr__(self, name, a)

    @property
    def classes(self) -> tuple[int, ...]:
        """The classes the radii are about (distinct ``labels``), ascending."""
        return tuple(int(c) for c in np.unique(self.labels))

    @property
    def class_median(self) -> dict[int, float]:
        """Class -> median radius of its samples (misclassified ones count with radius 0; inf
        radii count as the largest)."""
        return {c: float(np.median(self.radius[self.labels == c])) for c in self.classes}

    @property
    def misclassified(self) -> np.ndarray:
        """Bool [B]: y given and the prediction at x differs from it (radius 0)."""
        return self.predicted != self.labels


def sample_directions(shape, directions: int, seed: int = 0, *, dtype=torch.float32,
                      device=None) -> torch.Tensor:
    """The unit directions ``sample_basins`` uses: [directions, *shape], each of L2 norm 1.

    Drawn from N(0, I) by a CPU generator seeded with ``seed`` (in float32, then normalised in
    float64), so they depend on the seed and the sample shape only, not on the device, the dtype
    or the other samples of the batch: every sample of a batch is probed along the same set."""
    directions = check_int(directions, "directions", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    g = torch.Generator().manual_seed(seed)
    u = torch.randn((directions, *shape), generator=g, dtype=torch.float32).double()
    norms = u.reshape(directions, -1).norm(dim=1).clamp_min(1e-300)
    u = u / norms.view(-1, *([1] * len(shape)))
    return u.to(device=device, dtype=dtype)


def sample_basins(model: nn.Module, x, y=None, *, directions: int = 64, alpha: float = 0.1,
                  seed: int = 0, max_batch: int | None = None) -> SampleBasins:
    """Sample-space basin radius of every sample of the probe ``x`` (SPEC 4.6).

    For a sample x with class c (``y[i]`` when labels are given, else the model's prediction at
    x), the radius is the largest L2 distance r such that the prediction at x + r u is still c for
    at least a share 1 - alpha of the unit directions u (``sample_directions(x.shape[1:],
    directions, seed)``, shared by all samples): at most floor(alpha * directions) of them may
    change it. Found by bracketing and bisection (module docstring) to 2% relative precision: the
    reported radius was checked to keep the prediction, and the crossing lies within 2% above it.
    A sample whose prediction at x already differs from y has radius 0.

    x: one float tensor or array, [B, d] or [B, C, H, W] (any [B, ...] the model takes), brought
    to the weights' device and dtype; the model's output (or its first tensor / ``logits``) is
    class scores [B, C], the prediction their argmax (C = 1: a single logit, class 1 where it is
    > 0). A point whose scores are not finite counts as not keeping the prediction. y: optional
    integer labels [B] in 0..C-1.

    ``max_batch``: perturbed points per forward call (default: as many as fit 16 MiB of inputs,
    at most 1024); memory is O(max_batch) inputs and activations, whatever B and ``directions``.
    Run in eval mode under ``torch.no_grad``; the model is left as it was found. Any classifier
    works, with or without parameters: only its predictions are used.

    Raises TypeError / ValueError naming the option for bad ``directions`` (< 1), ``alpha``
    (outside [0, 1)), ``seed``, ``max_batch``, labels y of the wrong length or dtype, and
    ``UnsupportedModel`` for integer inputs (token ids: an L2 ball in their space means nothing)
    or outputs that are not class scores [B, C].
    """
    directions = check_int(directions, "directions", minimum=1)
    alpha = _check_alpha(alpha)
    seed = check_int(seed, "seed", minimum=0)
    if max_batch is not None:
        max_batch = check_int(max_batch, "max_batch", minimum=1)
    _check_model(model)
    if isinstance(x, (tuple, list, dict, ModelInputs)):
        raise TypeError("sample_basins perturbs one input tensor: x must be a float tensor or "
                        f"array [B, ...], got {type(x).__name__}")
    inputs = as_inputs(x, model, what="x")
    x = inputs.args[0]
    if not x.is_floating_point():
        raise UnsupportedModel(
            f"sample_basins needs float inputs (it moves x along L2 directions); x holds "
            f"{str(x.dtype).removeprefix('torch.')} values of shape {tuple(x.shape)} (token ids?)")
    if not torch.isfinite(x).all():
        raise NonFiniteValues(f"x (shape {tuple(x.shape)}) has NaN or inf entries")
    batch, sample_shape = x.shape[0], tuple(x.shape[1:])
    if y is not None:
        y, _ = check_labels(y, batch, x.device)
    if max_batch is None:
        sample_bytes = max(1, math.prod(sample_shape) * x.element_size())
        max_batch = max(1, min(_MAX_POINTS, _POINT_BYTES // sample_bytes))
    allowed = _allowed_failures(alpha, directions)

    with evaluating(model), torch.no_grad():
        try:
            scores = torch.cat([_class_scores(model, x[i:i + max_batch], what="x")
                                for i in range(0, batch, max_batch)])
        except UnsupportedModel:
            raise
        except Exception as e:
            raise ValueError(f"x of shape {tuple(x.shape)} does not fit the model "
                             f"{type(model).__name__} ({type(e).__name__}: {e})") from e
        if not torch.isfinite(scores).all():
            raise NonFiniteValues(f"the model's class scores at x are NaN or inf "
                                  f"(output shape {tuple(scores.shape)})")
        classes = max(2, scores.shape[1])
        predicted = _predict(scores)
        if y is not None and int(y.max()) >= classes:
            raise ValueError(f"y holds the label {int(y.max())} but the model scores {classes} "
                             f"classes (output shape {tuple(scores.shape)})")
        labels = y if y is not None else predicted
        u = sample_directions(sample_shape, directions, seed, dtype=x.dtype, device=x.device)
        correct = (predicted == labels).cpu().numpy()
        start = x.reshape(batch, -1).double().norm(dim=1).cpu().numpy()
        fallback = float(start[start > 0].mean()) if (start > 0).any() else 1.0
        start = np.where(start > 0, start, fallback)
        evaluated = 0

        def accepted(items: np.ndarray, radii: np.ndarray) -> np.ndarray:
            nonlocal evaluated
            idx = torch.as_tensor(items, device=x.device)
            r = torch.as_tensor(radii, device=x.device, dtype=x.dtype)
            fails = torch.zeros(len(items), device=x.device, dtype=torch.long)
            points = len(items) * directions
            view = (-1, *([1] * len(sample_shape)))
            for first in range(0, points, max_batch):
                p = torch.arange(first, min(points, first + max_batch), device=x.device)
                i, k = p // directions, p % directions
                s = _class_scores(model, x[idx[i]] + r[i].view(view) * u[k], what="x")
                kept = (_predict(s) == labels[idx[i]]) & torch.isfinite(s).all(dim=1)
                fails.index_add_(0, i, (~kept).long())
                evaluated += len(p)
            return (fails <= allowed).cpu().numpy()

        radius = np.zeros(batch)
        todo = np.flatnonzero(correct)
        if len(todo):
            radius[todo] = _search(start[todo], lambda i, r: accepted(todo[i], r))
    return SampleBasins(radius=radius, labels=labels.cpu().numpy(),
                        predicted=predicted.cpu().numpy(),
                        from_labels=y is not None, directions=directions, alpha=alpha, seed=seed,
                        evaluated=evaluated)


def _class_scores(model, x, *, what) -> torch.Tensor:
    out = first_tensor(model(x))
    if out is None or out.ndim != 2 or out.shape[0] != x.shape[0] or not out.is_floating_point():
        got = "no tensor" if out is None else f"{tuple(out.shape)} {out.dtype}"
        raise UnsupportedModel(f"sample_basins needs class scores [B, C] from the model; for "
                               f"{what} of shape {tuple(x.shape)} it returned {got}")
    return out


def _predict(scores: torch.Tensor) -> torch.Tensor:
    if scores.shape[1] == 1:
        return (scores[:, 0] > 0).long()
    return scores.argmax(dim=1)


# -- weight-space basins ---------------------------------------------------------------------------

@dataclass
class _Weight:
    """One perturbed weight: its parameter name, the tensor, and how its output units lie."""
    name: str
    tensor: torch.Tensor
    rshape: tuple[int, ...]     # the weight reshaped so that units and fan-in are separate axes
    keep: tuple[int, ...]       # axes of rshape that index an output unit
    index: int                  # position among all perturbed weights (seeds its directions)


def weight_basins(model: nn.Module, loss_fn: Callable, batch, *, directions: int = 16,
                  alpha: float = 0.1, tolerance: float = 0.1, seed: int = 0) -> dict[str, float]:
    """Weight-space basin radius of every weight layer, and of all together (SPEC 4.6).

    For a layer with weights W (``weight``; all 2+-dimensional weights of an
    ``nn.MultiheadAttention``; biases and normalisation parameters are never perturbed), the
    radius is the largest relative size r such that for at least a share 1 - alpha of
    ``directions`` random directions D (at most floor(alpha * directions) may fail) the loss at
    W + r D is at most L0 + tolerance * |L0| ((1 + tolerance) L0 for the usual non-negative
    loss), L0 the loss at W. D is drawn from N(0, I) and filter-normalised (Li et al. 2018): each
    output unit's slice (a row of a Linear weight, an output channel of a convolution, a column of
    Hugging Face's Conv1D) is scaled to the norm of that unit's weights, so ||r D_i|| = r ||W_i||
    and rescaling a ReLU layer by c and the next by 1/c leaves the radius unchanged. A unit with
    zero weights gets a zero slice. Each weight's directions are seeded by (seed, its position,
    the direction's number): a layer's directions do not depend on the other layers, and key
    ``"*"`` perturbs every layer at once along the same directions, concatenated.

    Radii are found by bracketing from r = 0.1 and bisection (module docstring) to 2% relative
    precision; ``inf`` when the loss stays within tolerance up to 0.1 * 2^20, 0 when it leaves it
    at every size tried (e.g. L0 = 0 and any increase). A non-finite perturbed loss counts as a
    failure.

    batch: ``(x, y)``; the loss is ``loss_fn(model(x), y)``, a scalar tensor (x may be a tuple
    or dict of inputs, as ``ModelInputs`` takes them). Evaluated in eval mode under
    ``torch.no_grad``, the directions of a round batched through ``torch.func.vmap`` over
    ``functional_call`` when the model allows it (else one call per direction). The model is
    left as it was found. Keys: module names of the weight layers, then ``"*"``.
    """
    directions = check_int(directions, "directions", minimum=1)
    alpha = _check_alpha(alpha)
    tolerance = _check_real(tolerance, "tolerance")
    if not tolerance > 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance!r}")
    seed = check_int(seed, "seed", minimum=0)
    _check_model(model)
    _check_loss_fn(loss_fn)
    inputs, y = _check_batch(model, batch)
    layers = _perturbed_layers(model)
    allowed = _allowed_failures(alpha, directions)

    with evaluating(model), torch.no_grad():
        loss0 = _checked_loss(model, loss_fn, inputs, y, {})
        if not math.isfinite(loss0):
            raise NonFiniteValues(f"the loss at the model's weights is {loss0}")
        threshold = loss0 + tolerance * abs(loss0)
        losses = _Losses(model, loss_fn, inputs, y)
        source = _Directions(directions, seed)
        items = [ws for _, ws in layers] + [[w for _, ws in layers for w in ws]]
        keys = [name for name, _ in layers] + ["*"]

        def accepted(chosen: np.ndarray, radii: np.ndarray) -> np.ndarray:
            out = np.zeros(len(chosen), dtype=bool)
            for j, (item, r) in enumerate(zip(chosen, radii)):
                fails = 0
                for ks in losses.chunks(items[item], directions):
                    perturbed = {w.name: w.tensor.detach() + float(r) * source.get(w, ks)
                                 for w in items[item]}
                    values = losses(perturbed, len(ks))
                    fails += int((~(values <= threshold)).sum())
                    if fails > allowed:
                        break
                out[j] = fails <= allowed
            return out

        radii = _search(np.full(len(items), _WEIGHT_START), accepted)
    return {k: float(r) for k, r in zip(keys, radii)}


class _Directions:
    """Filter-normalised random directions per weight, seeded per (seed, weight, direction), kept
    between rounds while they fit ``_CACHE_BYTES``, else drawn again."""

    def __init__(self, count: int, seed: int):
        self.count, self.seed = count, seed
        self.cache: dict[int, torch.Tensor] = {}
        self.cached = 0

    def get(self, w: _Weight, ks: list[int]) -> torch.Tensor:
        """[len(ks), *w.shape]: directions ks of weight w."""
        full = self.cache.get(w.index)
        if full is None:
            size = self.count * w.tensor.numel() * w.tensor.element_size()
            if self.cached + size <= _CACHE_BYTES:
                full = self._draw(w, list(range(self.count)))
                self.cache[w.index] = full
                self.cached += size
            else:
                return self._draw(w, ks)
        return full[ks[0]:ks[-1] + 1] if ks == list(range(ks[0], ks[-1] + 1)) else full[ks]

    def _draw(self, w: _Weight, ks: list[int]) -> torch.Tensor:
        weight = w.tensor.detach()
        wr = weight.double().reshape(w.rshape)
        reduce = tuple(a for a in range(len(w.rshape)) if a not in w.keep)
        unit_norm = wr.norm(dim=reduce, keepdim=True) if reduce else wr.abs()
        out = []
        for k in ks:
            state = np.random.SeedSequence([self.seed, w.index, k]).generate_state(2)
            g = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
            d = torch.randn(weight.shape, generator=g, dtype=torch.float32).double()
            d = d.to(weight.device).reshape(w.rshape)
            d_norm = d.norm(dim=reduce, keepdim=True) if reduce else d.abs()
            d = d * (unit_norm / d_norm.clamp_min(1e-300))
            out.append(d.reshape(weight.shape).to(weight.dtype))
        return torch.stack(out)


_NO_BATCHING_RULE = "There is a performance drop because we have not yet implemented the batching rule"


class _Losses:
    """The loss under perturbed weights, for a stack of k perturbations at once."""

    def __init__(self, model, loss_fn, inputs: ModelInputs, y):
        self.model, self.loss_fn, self.inputs, self.y = model, loss_fn, inputs, y
        self.vmap = True
        self.input_bytes = sum(t.numel() * t.element_size() for t in inputs.tensors)

    def chunks(self, weights: list[_Weight], count: int):
        """Direction numbers in groups whose perturbed weights (and ~4x the input batch, a proxy
        of the activations) fit ``_STACK_BYTES``."""
        per = sum(w.tensor.numel() * w.tensor.element_size() for w in weights)
        per += 4 * self.input_bytes
        size = max(1, min(count, _STACK_BYTES // max(1, per)))
        return [list(range(i, min(count, i + size))) for i in range(0, count, size)]

    def one(self, params: dict) -> torch.Tensor:
        out = functional_call(self.model, params, self.inputs.args, self.inputs.kwargs)
        return self.loss_fn(out, self.y).reshape(())

    def __call__(self, perturbed: dict, k: int) -> torch.Tensor:
        if self.vmap:
            try:
                # an op with no batching rule (an attention's SDPA on the CPU) runs one by one
                # inside vmap, and PyTorch warned of it in the user's notebook: raised here
                # instead, the loop below does the same without it (each batched call while
                # vmap works; after one falls back, the rest of the run loops)
                with warnings.catch_warnings():
                    warnings.filterwarnings("error", message=_NO_BATCHING_RULE,
                                            category=UserWarning)
                    return torch.func.vmap(self.one)(perturbed).reshape(k)
            except Exception:   # a forward vmap cannot batch (.item(), data-dependent flow, ...)
                self.vmap = False
        return torch.stack([self.one({n: t[j] for n, t in perturbed.items()}) for j in range(k)])


def _perturbed_layers(model: nn.Module) -> list[tuple[str, list[_Weight]]]:
    """(module name, its weights) of every weight layer; each parameter once (tied weights under
    their first name)."""
    layers = weight_layers(model)
    if not layers:
        raise UnsupportedModel(f"nothing to analyse: {type(model).__name__} has no weight layer "
                               "(a module with a weight of 2+ dimensions)")
    names = {id(p): n for n, p in model.named_parameters()}
    out, seen, index = [], set(), 0
    for name, module in layers:
        if isinstance(module, nn.MultiheadAttention):
            params = [(n, p) for n, p in module.named_parameters() if p.ndim >= 2]
        else:
            params = [("weight", module.weight)]
        weights = []
        for pname, p in params:
            full = names.get(id(p), f"{name}.{pname}" if name else pname)
            if id(p) in seen:
                continue
            seen.add(id(p))
            rshape, keep = _unit_layout(module, pname, p)
            weights.append(_Weight(full, p, rshape, keep, index))
            index += 1
        if weights:
            out.append((name, weights))
    return out


def _unit_layout(module: nn.Module, pname: str,
                 w: torch.Tensor) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """How weight ``w`` of ``module`` splits into output units: (a shape to reshape it to, the
    axes of that shape indexing a unit). Rows (axis 0) but for transposed convolutions (weight
    [in, out / groups, *kernel]: unit = (group, output channel)) and Hugging Face's Conv1D
    (weight [in, out]: columns)."""
    if pname == "weight" and isinstance(module, _ConvTransposeNd):
        groups = module.groups
        return (groups, w.shape[0] // groups, w.shape[1], -1), (0, 2)
    if pname == "weight" and type(module).__name__ == "Conv1D" and not isinstance(module, _ConvNd):
        return (w.shape[0], w.shape[1]), (1,)
    return (w.shape[0], -1), (0,)


def _unit_matrix(module: nn.Module, pname: str, w: torch.Tensor) -> torch.Tensor:
    """``w`` as [units, fan_in]: row i holds the incoming weights of output unit i."""
    rshape, keep = _unit_layout(module, pname, w)
    wr = w.reshape(rshape)
    rest = tuple(a for a in range(wr.ndim) if a not in keep)
    units = math.prod(wr.shape[a] for a in keep)
    return wr.permute(*keep, *rest).reshape(units, -1)


# -- sharpness -------------------------------------------------------------------------------------

def sharpness(model: nn.Module, loss_fn: Callable, batch, *, iters: int = 20,
              seed: int = 0) -> float:
    """The top eigenvalue of the Hessian of ``loss_fn(model(x), y)`` with respect to every
    parameter that requires grad, on ``batch = (x, y)``.

    Power iteration on Hessian-vector products (double backward through
    ``torch.autograd.grad``; the Hessian is never formed): from a random unit vector v0 (seeded,
    drawn on the CPU), ``iters`` products v <- Hv / ||Hv||, and the Rayleigh quotient v^T H v of
    the last vector is returned. Power iteration converges to the eigenvalue of largest
    *magnitude*: it is the top eigenvalue when that one dominates (the usual case near a
    minimum), and a negative number when the most negative eigenvalue is larger in magnitude.
    Convergence is geometric in |lambda_2 / lambda_1|; raise ``iters`` when the gap is small.
    0.0 when the Hessian-vector products vanish (a loss linear in the parameters).

    The loss is computed in eval mode through ``torch.func.functional_call`` on detached copies of
    the parameters: the model's parameters, flags and ``.grad`` are left as they were.
    """
    iters = check_int(iters, "iters", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    _check_model(model)
    _check_loss_fn(loss_fn)
    inputs, y = _check_batch(model, batch)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise UnsupportedModel(f"nothing to analyse: {type(model).__name__} has no parameter "
                               "that requires grad")
    leaves = {n: p.detach().requires_grad_(True) for n, p in named}
    with evaluating(model), torch.inference_mode(False), torch.enable_grad():
        loss = _call_loss(model, loss_fn, inputs, y, leaves)
        if not torch.isfinite(loss).all():
            raise NonFiniteValues(f"the loss at the model's weights is {float(loss.detach())}")
        if not loss.requires_grad:
            return 0.0
        tensors = list(leaves.values())
        grads = torch.autograd.grad(loss, tensors, create_graph=True, allow_unused=True)
        used = [(t, g) for t, g in zip(tensors, grads) if g is not None and g.requires_grad]
        if not used:
            return 0.0
        g = torch.Generator().manual_seed(seed)
        v = [torch.randn(t.shape, generator=g, dtype=torch.float32).to(t.device, t.dtype)
             for t, _ in used]
        v = _normalised(v)
        value = 0.0
        for _ in range(iters):
            hv = torch.autograd.grad([gr for _, gr in used], [t for t, _ in used], v,
                                     retain_graph=True, allow_unused=True)
            hv = [torch.zeros_like(t) if h is None else h.detach() for (t, _), h in zip(used, hv)]
            value = float(sum((a.double() * b.double()).sum() for a, b in zip(v, hv)))
            norm = math.sqrt(float(sum((h.double() ** 2).sum() for h in hv)))
            if norm == 0 or not math.isfinite(norm):
                return value if math.isfinite(norm) else math.nan
            v = [h / norm for h in hv]
    return value


def _normalised(v: list[torch.Tensor]) -> list[torch.Tensor]:
    norm = math.sqrt(float(sum((t.double() ** 2).sum() for t in v)))
    return [t / norm for t in v]


# -- weight alignment ------------------------------------------------------------------------------

def weight_alignment(model: nn.Module, *, chunk: int | None = None, units: int | None = None,
                     seed: int = 0) -> dict[str, float]:
    """Mean |cosine| between the incoming weight vectors of each weight layer's neurons.

    Per weight layer (module name key): the rows of a Linear weight, the output channels of a
    convolution flattened (per group and output channel for a transposed one), the columns of
    Hugging Face's Conv1D; for ``nn.MultiheadAttention`` its output projection's rows. The mean of
    |cos(w_i, w_j)| over all pairs i < j of rows with nonzero norm: zero rows are excluded (their
    cosine is undefined), so a layer with fewer than two nonzero rows (one neuron) gets NaN, and
    so does a layer with NaN or inf weights. Values in [0, 1]: 1 when all incoming vectors are
    parallel or antiparallel (condensed).

    Computed in blocks of ``chunk`` rows against the rows after them (default: blocks of about 32
    MiB of cosines): memory O(chunk * n), time O(n^2 d). The model is not modified. ``units``
    (an estimate for a live view): the mean over the pairs of at most that many rows of each
    layer, drawn at random (``seed``; the same rows every call for the same shape), an unbiased
    estimate of the mean over all pairs at (units / n)^2 of the time.
    """
    _check_model(model)
    if chunk is not None:
        chunk = check_int(chunk, "chunk", minimum=1)
    if units is not None:
        units = check_int(units, "units", minimum=2)
    layers = weight_layers(model)
    if not layers:
        raise UnsupportedModel(f"nothing to analyse: {type(model).__name__} has no weight layer "
                               "(a module with a weight of 2+ dimensions)")
    out = {}
    with torch.no_grad():
        for name, module in layers:
            if isinstance(module, nn.MultiheadAttention):
                pname, w = "out_proj.weight", module.out_proj.weight
            else:
                pname, w = "weight", module.weight
            rows = _unit_matrix(module, pname, w.detach())
            if units is not None and rows.shape[0] > units:
                picked = torch.randperm(rows.shape[0], generator=torch.Generator().manual_seed(seed))
                rows = rows[picked[:units].sort().values.to(rows.device)]
            out[name] = _mean_abs_cosine(rows, chunk)
    return out


def _mean_abs_cosine(m: torch.Tensor, chunk: int | None) -> float:
    if not torch.isfinite(m).all():
        return math.nan
    norms = m.double().norm(dim=1)
    rows = m[norms > 0]
    n = rows.shape[0]
    if n < 2:
        return math.nan
    rows = rows / norms[norms > 0].to(rows.dtype).unsqueeze(1)
    if chunk is None:
        chunk = max(1, _ALIGN_BYTES // (8 * n))
    total = torch.zeros((), dtype=torch.float64, device=m.device)
    for a in range(0, n - 1, chunk):
        b = min(n, a + chunk)
        c = (rows[a:b] @ rows[a:].T).abs()                     # [b - a, n - a]
        upper = torch.ones(c.shape, dtype=torch.bool, device=m.device).triu(1)   # column j > row i
        total += c.double()[upper].sum()
    return float(total) / (n * (n - 1) / 2)


# -- shared ----------------------------------------------------------------------------------------

def _search(start: np.ndarray, accepted: Callable[[np.ndarray, np.ndarray], np.ndarray], *,
            rel: float = PRECISION, up: int = _UP, down: int = _DOWN) -> np.ndarray:
    """Per item, the largest radius ``accepted`` says yes to (module docstring): doubling or
    halving from ``start`` to a bracket lo < r* <= hi, then geometric bisection until
    hi <= (1 + rel) lo. ``accepted(items, radii)`` answers for every item still searching at
    once. Returns lo per item (inf: accepted up to start * 2^up; 0: refused down to
    start * 2^-down)."""
    start = np.asarray(start, dtype=np.float64)
    n = len(start)
    lo, hi = np.zeros(n), np.full(n, np.inf)
    result = np.full(n, np.nan)
    active = np.ones(n, dtype=bool)
    while active.any():
        items = np.flatnonzero(active)
        l, h, s = lo[items], hi[items], start[items]
        with np.errstate(invalid="ignore"):    # 0 * inf in the branches not taken
            r = np.where(np.isinf(h), np.where(l == 0, s, 2 * l),
                         np.where(l == 0, h / 2, np.sqrt(l * h)))
        ok = np.asarray(accepted(items, r), dtype=bool)
        lo[items] = np.where(ok, r, l)
        hi[items] = np.where(ok, h, r)
        l, h = lo[items], hi[items]
        bracketed = (l > 0) & np.isfinite(h) & (h <= (1 + rel) * l)
        unbounded = np.isinf(h) & (l >= s * 2.0 ** up)
        vanished = (l == 0) & (h <= s * 2.0 ** -down)
        result[items[bracketed]] = l[bracketed]
        result[items[unbounded]] = np.inf
        result[items[vanished]] = 0.0
        active[items[bracketed | unbounded | vanished]] = False
    return result


def _allowed_failures(alpha: float, directions: int) -> int:
    """m = floor(alpha K): the most directions that may fail, so that the share kept >= 1 - alpha
    (1e-9 absorbs the rounding of alpha K, e.g. 0.29 * 100)."""
    return int(math.floor(alpha * directions + 1e-9))


def _check_real(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return value


def _check_alpha(alpha) -> float:
    alpha = _check_real(alpha, "alpha")
    if not 0 <= alpha < 1:
        raise ValueError(f"alpha must be in [0, 1) (the share of directions allowed to fail), "
                         f"got {alpha!r}")
    return alpha


def _check_model(model) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")


def _check_loss_fn(loss_fn) -> None:
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(model(x), y), got "
                        f"{type(loss_fn).__name__}")


def _check_batch(model: nn.Module, batch) -> tuple[ModelInputs, object]:
    """``batch = (x, y)`` as (ModelInputs on the weights' device, y there too: floating targets
    in the weights' dtype, others as they are); x and y of the same length."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        size = f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else ""
        raise TypeError(f"batch must be a pair (x, y), got {type(batch).__name__}{size}")
    x, y = batch
    inputs = as_inputs(x, model, what="batch x")
    if not isinstance(y, torch.Tensor) and y is not None:
        try:
            y = torch.as_tensor(np.asarray(y))
        except (TypeError, ValueError, RuntimeError):
            pass        # whatever loss_fn takes
    if isinstance(y, torch.Tensor):
        if y.ndim >= 1 and y.shape[0] != inputs.batch:
            raise ValueError(f"batch x and y differ in length: x has {inputs.batch} samples "
                             f"({inputs.describe()}), y has shape {tuple(y.shape)}")
        weight = next((p for p in model.parameters() if p.is_floating_point()), None)
        if weight is not None:
            y = y.detach().to(weight.device, weight.dtype if y.is_floating_point() else None)
    return inputs, y


def _call_loss(model, loss_fn, inputs: ModelInputs, y, params: dict) -> torch.Tensor:
    try:
        out = functional_call(model, params, inputs.args, inputs.kwargs)
    except UnsupportedModel:
        raise
    except Exception as e:
        raise ValueError(f"batch x ({inputs.describe()}) does not fit the model "
                         f"{type(model).__name__} ({type(e).__name__}: {e})") from e
    loss = loss_fn(out, y)
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"loss_fn(model(x), y) must return a scalar tensor, got "
                        f"{type(loss).__name__}")
    if loss.numel() != 1:
        raise ValueError(f"loss_fn(model(x), y) must return a scalar, got a tensor of shape "
                         f"{tuple(loss.shape)} (reduce it, e.g. reduction='mean')")
    if not loss.is_floating_point():
        raise ValueError(f"loss_fn(model(x), y) must return a floating scalar, got {loss.dtype}")
    return loss.reshape(())


def _checked_loss(model, loss_fn, inputs, y, params) -> float:
    return float(_call_loss(model, loss_fn, inputs, y, params))
