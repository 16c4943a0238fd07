"""Mode decomposition of weight matrices: singular-value spectra and mode truncation.

Li & Huang, "Emergence of hierarchical modes from deep learning" (arXiv 2208.09859), SPEC section
4.4. A layer's weight, reshaped to a matrix W [out, in * ...] = U S V^T, is a sum of modes
s_i u_i v_i^T. ``mode_spectrum`` reports the ranked mode strengths s_1 >= s_2 >= ... and summary
numbers of every weight; ``mode_truncation_curve`` measures how much of a model's performance the
leading (or trailing, or random) modes of one layer carry. Piecewise power-law fits of the
spectra are in ``powerlaw``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..checks import check_int
from ..mdl import ModeLinear

__all__ = ["Spectrum", "mode_spectrum", "mode_truncation_curve", "MAX_EXACT", "PARTIAL_TOP",
           "TRUNCATION_ORDERS"]

# A reshaped weight with more elements than this gets a partial spectrum: 2^22 = 4,194,304, a
# 2048 x 2048 matrix, whose exact singular values take about half a second on two CPU cores
# (the cost grows as rows * cols * min(rows, cols): a 4096 x 4096 matrix takes ~8 s).
MAX_EXACT = 1 << 22
# Values a partial spectrum lists. The randomized range finder uses twice as many directions
# (oversampling by PARTIAL_TOP), which keeps the listed values accurate down to the last one.
PARTIAL_TOP = 128
_POWER_ITERS = 4        # subspace iterations of the range finder
_S1_ITERS = 64          # single-vector power iterations that refine s_1 (cheap: O(rows * cols) each)

TRUNCATION_ORDERS = ("leading", "trailing", "random")


@dataclass(frozen=True, eq=False)
class Spectrum:
    """Singular values of one weight reshaped to a matrix [shape[0], prod(shape[1:])].

    ``singular_values``: float64 NumPy array (read-only, on the host), descending. All of them
    (min(rows, cols) values) when ``partial`` is False; the leading ``top`` (default
    ``PARTIAL_TOP`` = 128) when ``partial`` is True (see ``mode_spectrum``). ``shape``: the
    parameter's own shape.
    ``frobenius_norm`` ||W||_F, computed from the weights (exact in both cases).
    ``spectral_norm`` s_1; ``lambda_max`` = s_1^2 (the largest eigenvalue of W^T W, what
    WeightWatcher reports as lambda_max); ``stable_rank`` = ||W||_F^2 / s_1^2;
    ``effective_rank`` = exp(-sum_i p_i ln p_i) with p = s / sum(s) (Roy & Vetterli), which needs
    every singular value and is therefore NaN for a partial spectrum.

    A zero matrix has s_1 = 0: its stable and effective ranks are NaN. Weights with a NaN or inf
    entry have ``finite`` False and NaN in every value and number (no exception).
    """

    singular_values: np.ndarray = field(repr=False)
    shape: tuple[int, ...]
    partial: bool
    frobenius_norm: float
    spectral_norm: float
    finite: bool = True
    lambda_max: float = field(init=False)
    stable_rank: float = field(init=False)
    effective_rank: float = field(init=False)

    def __post_init__(self):
        s = np.array(self.singular_values, dtype=np.float64)   # a private, read-only copy
        s.setflags(write=False)
        object.__setattr__(self, "singular_values", s)
        s1, fro = self.spectral_norm, self.frobenius_norm
        object.__setattr__(self, "lambda_max", s1 * s1)
        object.__setattr__(self, "stable_rank", fro * fro / (s1 * s1) if s1 > 0 else math.nan)
        object.__setattr__(self, "effective_rank", math.nan if self.partial else _effective_rank(s))

    @property
    def matrix_shape(self) -> tuple[int, int]:
        """(rows, cols) of the matrix the spectrum is of."""
        return self.shape[0], math.prod(self.shape[1:])

    def energy_rank(self, q: float) -> int:
        """The smallest k with s_1^2 + ... + s_k^2 >= q * ||W||_F^2, for 0 <= q <= 1 (0 for q = 0
        or a zero matrix).

        For an exact spectrum ||W||_F^2 is taken as the sum of all s_i^2 (equal up to rounding),
        so that q = 1 gives the number of values with every nonzero one included. For a partial
        spectrum ||W||_F^2 comes from the weights; when the listed values do not reach q of it the
        answer is unknown and ValueError is raised (the listed values are lower bounds, so a k
        that is found is at least the exact one, and close to it for a decaying spectrum).
        Raises ValueError for weights with NaN or inf entries.
        """
        if isinstance(q, bool) or not isinstance(q, numbers.Real) or not 0 <= q <= 1:
            raise ValueError(f"energy_rank needs a fraction 0 <= q <= 1, got {q!r}")
        if not self.finite:
            raise ValueError(f"the weight of shape {self.shape} has NaN or inf entries: "
                             f"no energy rank")
        energy = np.cumsum(self.singular_values ** 2)
        total = self.frobenius_norm ** 2 if self.partial else (energy[-1] if energy.size else 0.0)
        target = q * total
        if target <= 0:
            return 0
        if energy[-1] < target:   # only possible for a partial spectrum (or by rounding at q = 1)
            if not self.partial:
                return int(energy.size)
            raise ValueError(f"partial spectrum of shape {self.shape}: its {energy.size} values "
                             f"hold {energy[-1] / total:.1%} of ||W||_F^2, less than q = {q}")
        return int(np.searchsorted(energy, target, side="left")) + 1


def _effective_rank(s: np.ndarray) -> float:
    total = s.sum()
    if not np.isfinite(total) or total <= 0:
        return math.nan
    p = s[s > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


def mode_spectrum(model: nn.Module, *, layers=None, max_exact: int | None = MAX_EXACT,
                  top: int = PARTIAL_TOP) -> dict[str, Spectrum]:
    """The mode spectrum of every weight of ``model``, keyed by parameter name.

    Every parameter with ndim >= 2 (linear and convolution weights, embeddings, ...) is reshaped
    to [shape[0], -1]; a parameter shared by several modules (tied weights) appears once, under
    its first name. ``layers`` (a parameter name or an iterable of them) selects some; the result
    keeps the model's order. A ``ModeLinear``'s parameters are its factors: its ``xi`` and
    ``xi_hat`` get spectra of their own (its modes are ranked by ``mode_importance()``).

    Exact singular values come from ``torch.linalg.svdvals`` on the weight's own device (in
    float32 for float32 and half-precision weights, float64 for float64). A matrix with more than
    ``max_exact`` elements (default 2^22, a 2048 x 2048 matrix) and min(rows, cols) > 8 * ``top``
    gets a partial spectrum instead (``partial=True``): its ``top`` leading values from a
    randomized range finder (2 * top Gaussian directions drawn from a private generator seeded
    0, so the result is deterministic and torch's global RNG is left alone; 4 subspace
    iterations), with s_1 refined by 64 power iterations from the leading Ritz vector. Every
    partial value is a lower bound of the exact one (up to rounding). Measured relative accuracy
    in float32 (top = 128 on matrices up to 4096 x 4096; the tests check smaller ones): s_1
    within 1e-3 on Gaussian random matrices (a flat spectrum, the hardest case) and 1e-6 on
    spectra decaying like rank^-0.8; the other listed values within 3% (Gaussian), 1% (decaying
    like rank^-0.3) and 1e-4 (rank^-0.8). ``frobenius_norm`` is always exact, from the weights.
    A matrix with min(rows, cols) <= 8 * top stays exact whatever its size (the randomized method
    would not be cheaper); ``max_exact=None`` makes every spectrum exact.

    Raises ValueError naming the offending entry for a ``layers`` name that is not a parameter
    (listing the valid names), one with ndim < 2, or an alias of a tied parameter; ValueError when
    the model has no weight with ndim >= 2.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"mode_spectrum expects a torch.nn.Module, got {type(model).__name__}")
    if max_exact is not None:
        max_exact = check_int(max_exact, "max_exact", minimum=0)
    top = check_int(top, "top", minimum=0)
    if top < 1:
        raise ValueError("top must be >= 1")
    params = dict(model.named_parameters())
    weights = {n: p for n, p in params.items() if p.ndim >= 2}
    if not weights:
        raise ValueError(f"{type(model).__name__} has no weight with ndim >= 2 to analyse")
    names = list(weights) if layers is None else _select(model, params, weights, layers)
    return {n: _spectrum(n, weights[n], max_exact, top) for n in names}


def _select(model, params, weights, layers) -> list[str]:
    wanted = [layers] if isinstance(layers, str) else list(layers)
    if not wanted:
        raise ValueError("layers is empty; pass None for every weight")
    first_name = {id(p): n for n, p in params.items()}
    aliases = {name: first_name[id(p)] for name, p in model.named_parameters(remove_duplicate=False)
               if name != first_name[id(p)]}
    for name in wanted:
        if not isinstance(name, str):
            raise TypeError(f"layers must be parameter names (str), got {type(name).__name__}")
        if name in weights:
            continue
        if name in aliases:
            raise ValueError(f"parameter {name!r} is the same tensor as {aliases[name]!r}; its "
                             f"spectrum is listed under {aliases[name]!r}")
        if name in params:
            raise ValueError(f"parameter {name!r} has shape {tuple(params[name].shape)}; spectra "
                             f"need ndim >= 2")
        raise ValueError(f"unknown layer {name!r}; weights with a spectrum: {', '.join(weights)}")
    chosen = set(wanted)
    return [n for n in weights if n in chosen]


def _compute_dtype(name: str, w: torch.Tensor) -> torch.dtype:
    if w.is_complex() or not w.is_floating_point():
        raise TypeError(f"parameter {name!r} has dtype {w.dtype}; spectra need real floating point")
    return torch.float64 if w.dtype == torch.float64 else torch.float32


@torch.no_grad()
def _spectrum(name: str, p: torch.Tensor, max_exact: int | None, top: int) -> Spectrum:
    shape = tuple(p.shape)
    m = p.detach().reshape(shape[0], -1).to(_compute_dtype(name, p))
    rows, cols = m.shape
    partial = max_exact is not None and rows * cols > max_exact and min(rows, cols) > 8 * top
    count = top if partial else min(rows, cols)
    if not bool(torch.isfinite(m).all()):
        return Spectrum(np.full(count, np.nan), shape, partial, math.nan, math.nan, finite=False)
    fro = float(torch.linalg.vector_norm(m, dtype=torch.float64))
    if fro == 0.0:      # also spares the randomized path a division by zero
        return Spectrum(np.zeros(count), shape, partial, 0.0, 0.0)
    if not partial:
        # LAPACK's bidiagonalisation is far slower on a wide row-major matrix than on its
        # transpose (the same singular values): 1024 x 8192 took 7.7 s, its transpose 0.26 s.
        s = torch.linalg.svdvals(m.T if rows < cols else m).cpu().to(torch.float64).numpy()
        return Spectrum(s, shape, False, fro, float(s[0]) if s.size else 0.0)
    s, s1 = _leading_singular_values(m, top)
    s[0] = max(s[0], s1)
    return Spectrum(s, shape, True, fro, float(s[0]))


def _leading_singular_values(m: torch.Tensor, k: int) -> tuple[np.ndarray, float]:
    """Lower bounds of the k largest singular values of m (descending, host float64) and a
    refined lower bound of s_1 (Halko, Martinsson & Tropp 2011, randomized subspace iteration)."""
    generator = torch.Generator(device=m.device).manual_seed(0)
    rows, cols = m.shape
    q = min(2 * k, rows, cols)
    omega = torch.randn(cols, q, generator=generator, device=m.device, dtype=m.dtype)
    basis = torch.linalg.qr(m @ omega).Q
    # re-orthonormalised after each half step: in float32 the weaker directions are lost otherwise
    for _ in range(_POWER_ITERS):
        basis = torch.linalg.qr(m @ torch.linalg.qr(m.T @ basis).Q).Q
    _, s, vh = torch.linalg.svd(basis.T @ m, full_matrices=False)
    # Rayleigh quotients ||m^T u|| of unit vectors never exceed s_1: keep the largest seen
    v, s1 = vh[0], s[0]
    for _ in range(_S1_ITERS):
        u = m @ v
        u = u / torch.linalg.vector_norm(u)
        w = m.T @ u
        norm = torch.linalg.vector_norm(w)
        s1 = torch.maximum(s1, norm)
        v = w / norm
    return s[:k].cpu().to(torch.float64).numpy().copy(), float(s1)


# -- mode truncation ------------------------------------------------------------------------------

def mode_truncation_curve(model: nn.Module, layer: str, evaluate: Callable[[nn.Module], float], *,
                          ks: Iterable[int] | None = None, order: str = "leading",
                          seed: int = 0) -> list[tuple[int, float]]:
    """Score of ``model`` with only k modes of one layer kept, for every k in ``ks``.

    ``layer`` is a module name (``"2"``, ``"features.3"``) of an ``nn.Linear``, a convolution
    or a ``ModeLinear``; its parameter name (``"2.weight"``, as ``mode_spectrum`` keys it) is
    accepted too. For a linear or convolution layer, W reshaped to [out, -1] = U S V^T (float64 SVD)
    has rank = min(rows, cols) modes, ranked by singular value; keeping the mode set K sets the
    weight to sum_{i in K} s_i u_i v_i^T. For a ModeLinear the modes are its own (rank = its
    ``modes``), ranked by ``mode_importance()``; dropping a mode sets its lam to 0.

    ``order``: ``"leading"`` keeps the k highest-ranked modes, ``"trailing"`` the k lowest,
    ``"random"`` the first k of one random permutation drawn with ``seed`` (so the kept sets are
    nested as k grows and the same seed gives the same curve). Keeping all modes (k = rank) uses
    the original weight itself, bitwise, so that score is the unmodified model's. k = 0 zeroes
    the weight (or every lam): only the bias is left.

    ``ks`` (default: 0..rank when rank <= 20, else 0, rank and ~20 geometrically spaced k) are
    ints with 0 <= k <= rank, evaluated in the order given. ``evaluate(model)`` returns a number
    (a one-element tensor is fine). Before every evaluation, and when the function returns or
    raises (also from ``evaluate``), every parameter, buffer, gradient, requires_grad flag and
    training flag of the model is put back as it was, bitwise; this keeps a copy of the model's
    parameters and buffers in memory. A weight shared with another layer is truncated there too.

    Returns [(k, score), ...]. Raises ValueError/TypeError before changing anything for an
    unknown layer (listing the truncatable ones), an unsupported layer type, non-finite weights,
    a bad ``order``, ``seed`` or k.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"mode_truncation_curve expects a torch.nn.Module, got "
                        f"{type(model).__name__}")
    if not callable(evaluate):
        raise TypeError(f"evaluate must be callable as evaluate(model), got "
                        f"{type(evaluate).__name__}")
    if order not in TRUNCATION_ORDERS:
        raise ValueError(f"unknown order {order!r}; choose one of "
                         f"{', '.join(map(repr, TRUNCATION_ORDERS))}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    name, module = _truncatable(model, layer)
    modes = _LayerModes(name, module)
    ks = _check_ks(ks, modes.rank)
    ranking = (np.random.default_rng(seed).permutation(modes.rank) if order == "random"
               else modes.ranking)
    state = _ModelState(model)
    curve = []
    try:
        for k in ks:
            state.restore()
            kept = ranking[modes.rank - k:] if order == "trailing" else ranking[:k]
            modes.keep(kept)
            curve.append((k, _score(evaluate(model))))
    finally:
        state.restore()
    return curve


def _truncatable(model: nn.Module, layer) -> tuple[str, nn.Module]:
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a module name (str), got {type(layer).__name__}")
    modules = dict(model.named_modules())
    kinds = (nn.Linear, nn.modules.conv._ConvNd, ModeLinear)
    valid = {n: m for n, m in modules.items() if isinstance(m, kinds)}
    if layer in valid:
        return layer, valid[layer]
    # a parameter name, as mode_spectrum keys it: "2.weight" -> "2" ("weight" -> the root module)
    owner = "" if layer == "weight" else layer[:-7] if layer.endswith(".weight") else None
    if owner is not None and owner in valid:
        return owner, valid[owner]
    shown = ", ".join(repr(n) for n in valid) or "none"
    if layer in modules:
        raise TypeError(f"layer {layer!r} is a {type(modules[layer]).__name__}; mode truncation "
                        f"needs nn.Linear, a convolution or ModeLinear (here: {shown})")
    raise ValueError(f"unknown layer {layer!r}; layers with modes: {shown}")


def _check_ks(ks, rank: int) -> list[int]:
    if ks is None:
        if rank <= 20:
            return list(range(rank + 1))
        spread = np.unique(np.rint(np.geomspace(1, rank, 20)).astype(int))
        return [0, *(int(k) for k in spread if 0 < k < rank), rank]
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Iterable):
        raise TypeError(f"ks must be an iterable of ints, got {type(ks).__name__}")
    out = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral):
            raise TypeError(f"ks must hold ints, got {k!r} ({type(k).__name__})")
        if not 0 <= k <= rank:
            raise ValueError(f"k = {k} is out of range: the layer has {rank} modes "
                             f"(0 <= k <= {rank})")
        out.append(int(k))
    if not out:
        raise ValueError("ks is empty")
    return out


def _score(value) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.item())
    if isinstance(value, numbers.Real):          # Python and NumPy ints and floats
        return float(value)
    raise TypeError(f"evaluate(model) must return a number, got {type(value).__name__}")


class _LayerModes:
    """The modes of one layer and how to keep a subset of them (on a model already restored)."""

    @torch.no_grad()
    def __init__(self, name: str, module: nn.Module):
        if isinstance(module, ModeLinear):
            self.param = module.lam
            self.original = module.lam.detach().clone()
            self.rank = module.modes
            self.ranking = torch.argsort(module.mode_importance().cpu(), descending=True,
                                         stable=True).numpy()
            self.factors = None
            return
        w = module.weight
        if not bool(torch.isfinite(w).all()):
            raise ValueError(f"layer {name!r} has NaN or inf weights: no mode decomposition")
        u, s, vh = torch.linalg.svd(w.detach().reshape(w.shape[0], -1).to(torch.float64),
                                    full_matrices=False)
        self.param, self.original = w, w.detach().clone()
        self.rank = s.numel()
        self.ranking = np.arange(self.rank)          # svd returns s descending
        self.factors = (u, s, vh)

    @torch.no_grad()
    def keep(self, kept: np.ndarray) -> None:
        if len(kept) == self.rank:
            return                                   # all modes: the original weight, bitwise
        index = torch.as_tensor(np.sort(kept), dtype=torch.long, device=self.param.device)
        if self.factors is None:                     # ModeLinear: lam of the dropped modes -> 0
            lam = torch.zeros_like(self.original)
            lam[index] = self.original[index]
            self.param.copy_(lam)
            return
        u, s, vh = self.factors
        rebuilt = (u[:, index] * s[index]) @ vh[index]
        self.param.copy_(rebuilt.reshape(self.param.shape))


class _ModelState:
    """Everything of a model that an evaluation might change, and a bitwise restore."""

    @torch.no_grad()
    def __init__(self, model: nn.Module):
        self.params = [(p, p.detach().clone(), p.requires_grad,
                        None if p.grad is None else p.grad.detach().clone())
                       for p in model.parameters()]
        self.buffers = [(b, b.detach().clone()) for b in model.buffers()]
        self.training = [(m, m.training) for m in model.modules()]

    @torch.no_grad()
    def restore(self) -> None:
        for p, value, requires_grad, grad in self.params:
            p.copy_(value)
            p.requires_grad_(requires_grad)
            p.grad = None if grad is None else grad.clone()
        for b, value in self.buffers:
            b.copy_(value)
        for m, training in self.training:
            m.training = training
