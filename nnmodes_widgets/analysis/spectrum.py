"""Mode decomposition of weight matrices: singular-value spectra and mode truncation.

Li & Huang, "Emergence of hierarchical modes from deep learning" (arXiv 2208.09859), SPEC section
4.4. A layer's weight, reshaped to a matrix W [out, in * ...] = U S V^T, is a sum of modes
s_i u_i v_i^T. ``mode_spectrum`` reports the ranked mode strengths s_1 >= s_2 >= ... and summary
numbers of every weight; ``SpectrumTracker`` reports the same spectra again and again while the
weights change slowly (training), reusing each call's work in the next; ``mode_truncation_curve``
measures how much of a model's performance the leading (or trailing, or random) modes of one layer
carry. Piecewise power-law fits of the spectra are in ``powerlaw``.
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
from .errors import UnsupportedModel

__all__ = ["Spectrum", "SpectrumTracker", "mode_spectrum", "mode_truncation_curve", "MAX_EXACT",
           "PARTIAL_TOP", "TRUNCATION_ORDERS"]

# A reshaped weight with more elements than this (and min(rows, cols) > 8 * top) gets a partial
# spectrum: 2^23 = 8,388,608, e.g. 2048 x 4096, whose exact values through the Gram matrix take
# less time than a partial spectrum (0.37 s against 0.5 s on two CPU cores); the exact cost
# grows as rows * cols * min(rows, cols) plus min(rows, cols)^3, the partial one as
# rows * cols * top (4096 x 4096: 2.3 s exact, 0.9 s partial).
MAX_EXACT = 1 << 23
# Values a partial spectrum lists. The randomized range finder uses twice as many directions
# (oversampling by PARTIAL_TOP), which keeps the listed values accurate down to the last one.
PARTIAL_TOP = 128
_POWER_ITERS = 4        # subspace iterations of a cold start after its first pass
_GRAM64_MAX = 128       # float32 weights with min(rows, cols) <= this: a float64 Gram matrix
_SHIFT = 1e-5           # inverse iteration refining s_1 of a Gram spectrum: shift above lambda_1,
_SHIFT_ITERS = 3        # relative, and solves
_BLOCK = 16             # block Lanczos refining the leading values of a partial spectrum: block,
_BLOCK_STEPS = 12       # at most this many blocks after the first,
_BLOCK_TOL = 3e-5       # until the leading residual ||A x - theta x|| <= this * theta
_RESTART = 2.0          # SpectrumTracker: cold start when the warm error > this * a cold start's

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

    ``error``: for a partial spectrum, an a-posteriori bound from the residuals of the computed
    singular triplets (s_i, u_i, v_i), u_i and v_i unit vectors: some singular value of W lies
    within r_i = ||(W v_i - s_i u_i, W^T u_i - s_i v_i)|| / sqrt(2) of s_i (it is an eigenvalue
    of [[0, W], [W^T, 0]] near the eigenvector (u_i, v_i) / sqrt(2)), and ``error`` is the
    largest r_i / s_i over the listed values, r_i as computed plus an allowance for the rounding
    of the products, eps sqrt(max(rows, cols)) ||W||_F (eps = 2^-24 in float32): values at the
    rounding level, e.g. the zeros of a matrix of rank < top, make it large. So every listed s_i is within ``error * s_i`` of a
    singular value of W, and it does not exceed the exact i-th one (up to rounding); once the
    iteration has captured the leading modes, the singular value within the bound is the i-th.
    The bound is first-order in the residuals, the values' errors are second-order: the leading
    values are usually far more accurate than it says. 0.0 for an exact spectrum (a direct
    solver: see ``mode_spectrum`` for its rounding errors) and for a zero matrix; NaN for weights
    with NaN or inf entries.

    A zero matrix has s_1 = 0: its stable and effective ranks are NaN. Weights with a NaN or inf
    entry have ``finite`` False and NaN in every value and number (no exception).
    """

    singular_values: np.ndarray = field(repr=False)
    shape: tuple[int, ...]
    partial: bool
    frobenius_norm: float
    spectral_norm: float
    finite: bool = True
    error: float = 0.0
    lambda_max: float = field(init=False)
    stable_rank: float = field(init=False)
    effective_rank: float = field(init=False)

    def __post_init__(self):
        s = np.array(self.singular_values, dtype=np.float64)   # a private, read-only copy
        s.setflags(write=False)
        object.__setattr__(self, "singular_values", s)
        object.__setattr__(self, "error", float(self.error) if self.finite else math.nan)
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

    Exact spectra (``partial=False``, ``error`` 0.0) are computed on the weight's own device.
    Float64 weights: ``torch.linalg.svdvals`` in float64 (LAPACK's SVD: every value to about
    1e-15 s_1). Float32 and half-precision weights: the square roots of the eigenvalues of the
    Gram matrix of the smaller side (W^T W or W W^T, ``torch.linalg.eigvalsh``; eigenvalues
    rounded below 0 count as 0). With min(rows, cols) <= 128 the Gram matrix is float64 (every
    s_i^2 within about 1e-14 s_1^2, as fast as the float32 route there). Otherwise it is float32,
    with s_1 refined: inverse iteration on the Gram matrix shifted just above its largest
    eigenvalue gives the leading singular vector v, and s_1 = ||W v|| (Rayleigh quotient: a lower
    bound, accurate to second order). This is about
    2.5x faster than a float32 SVD (2048 x 4096: 0.37 s against 0.95 s on two CPU cores), at a
    price in the small values: the float32 rounding of the Gram matrix moves every s_i^2 by up to
    c 2^-24 s_1^2 (c up to 340 measured), so the relative error of s_i is bounded by about
    c 2^-25 (s_1 / s_i)^2 ~ 1e-5 (s_1 / s_i)^2 (1e-3 at s_i = 0.1 s_1), and values below about
    3e-3 s_1 can lose every digit (the zeros of a rank-deficient matrix come out as up to
    ~1e-3 s_1, where LAPACK's float32 SVD stays within about 1e-6 s_1). Typical errors are far
    smaller: measured on 1024 x 1024, 4096 x 1024 and 2048 x 4096 matrices (Gaussian; spectra
    decaying like rank^-0.5, like rank^-1, geometrically down to 1e-6 s_1; rank-deficient),
    relative errors of s_1 below 2e-8 (lambda_max 4e-8; the Gram eigenvalue alone: up to 5e-6),
    of values >= 0.1 s_1 below 2e-5, of values >= 0.01 s_1 below 1e-4 and of values
    >= 0.001 s_1 a few 1e-3; absolute errors below 1e-3 s_1 everywhere. For the small values to
    full accuracy, analyse a float64 copy (``model.double()``): it takes LAPACK's SVD.

    A matrix with more than ``max_exact`` elements (default 2^23, e.g. 2048 x 4096) and
    min(rows, cols) > 8 * ``top`` gets a partial spectrum instead (``partial=True``): its ``top``
    leading values from randomized subspace iteration (2 * top Gaussian directions drawn from a
    private generator seeded 0, so the result is deterministic and torch's global RNG is left
    alone; 5 passes, re-orthonormalised, then Rayleigh-Ritz), the leading 16 of them refined by
    block Lanczos on W^T W (full reorthogonalisation, until the leading residual is below
    3e-5 lambda_1, at most 12 blocks). Every partial value is a lower bound of the exact one (up
    to rounding: 1e-6 relative) and ``error`` bounds them from the residuals (see ``Spectrum``).
    Measured in float32 on 3072 x 3072 matrices with top = 128, relative errors: lambda_max
    below 4e-7 (Gaussian: a flat spectrum, the hardest case, as well as spectra decaying like
    rank^-0.3 and rank^-0.8); the other listed values within 2.2% (Gaussian; ``error`` 6.7e-2),
    0.6% (rank^-0.3; ``error`` 4.3e-2) and 3e-5 (rank^-0.8; ``error`` 4e-3): the bound is
    first-order, the values' errors second-order. ``frobenius_norm`` is always exact, from the
    weights. A matrix with min(rows, cols) <= 8 * top stays exact whatever its size (the
    randomized method would not be cheaper); ``max_exact=None`` makes every spectrum exact.
    Costs on two CPU cores: the eight weights of a 14.7M-parameter MLP (six 1024 x 1024,
    4096 x 1024, 1024 x 4096) 0.52 s; a 2048 x 4096 weight 0.37 s (exact); 4096 x 4096 0.9 s
    (partial; exact 2.3 s).

    Raises ValueError naming the offending entry for a ``layers`` name that is not a parameter
    (listing the valid names), one with ndim < 2, or an alias of a tied parameter; ValueError when
    the model has no weight with ndim >= 2.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"mode_spectrum expects a torch.nn.Module, got {type(model).__name__}")
    max_exact, top = _check_policy(max_exact, top)
    weights, names = _weights(model, layers)
    return {n: _spectrum(n, weights[n], max_exact, top) for n in names}


def _check_policy(max_exact, top) -> tuple[int | None, int]:
    if max_exact is not None:
        max_exact = check_int(max_exact, "max_exact", minimum=0)
    top = check_int(top, "top", minimum=0)
    if top < 1:
        raise ValueError("top must be >= 1")
    return max_exact, top


class _UnsupportedWeight(UnsupportedModel, TypeError):
    """A weight whose dtype has no real spectrum: a TypeError, as the spectra raised before."""


def _weights(model: nn.Module, layers) -> tuple[dict[str, torch.Tensor], list[str]]:
    params = dict(model.named_parameters())
    weights = {n: p for n, p in params.items() if p.ndim >= 2}
    if not weights:
        raise UnsupportedModel(f"{type(model).__name__} has no weight with ndim >= 2 to analyse")
    return weights, list(weights) if layers is None else _select(model, params, weights, layers)


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
        raise _UnsupportedWeight(f"parameter {name!r} has dtype {w.dtype}; spectra need real "
                                 "floating point")
    return torch.float64 if w.dtype == torch.float64 else torch.float32


def _matrix(name: str, p: torch.Tensor) -> torch.Tensor:
    return p.detach().reshape(p.shape[0], -1).to(_compute_dtype(name, p))


def _is_partial(rows: int, cols: int, max_exact: int | None, top: int) -> bool:
    return max_exact is not None and rows * cols > max_exact and min(rows, cols) > 8 * top


def _trivial(m: torch.Tensor, shape, partial: bool, top: int) -> tuple[float, Spectrum | None]:
    """||m||_F, and the spectrum when it needs no solver: NaN or inf entries, or a zero matrix."""
    count = top if partial else min(m.shape)
    fro = float(torch.linalg.vector_norm(m, dtype=torch.float64))
    # a NaN or inf entry makes the sum of squares NaN or inf (float32 squares cannot overflow in
    # float64; float64 ones above 1e154 can, hence the check)
    if not math.isfinite(fro) and not bool(torch.isfinite(m).all()):
        return math.nan, Spectrum(np.full(count, np.nan), shape, partial, math.nan, math.nan,
                                  finite=False)
    if fro == 0.0:      # also spares the iterative solvers a division by zero
        return 0.0, Spectrum(np.zeros(count), shape, partial, 0.0, 0.0)
    return fro, None


@torch.no_grad()
def _spectrum(name: str, p: torch.Tensor, max_exact: int | None, top: int) -> Spectrum:
    shape = tuple(p.shape)
    m = _matrix(name, p)
    partial = _is_partial(*m.shape, max_exact, top)
    fro, done = _trivial(m, shape, partial, top)
    if done is not None:
        return done
    if not partial:
        s = _exact_values(m, fro)
        return Spectrum(s, shape, False, fro, float(s[0]) if s.size else 0.0)
    s, error, _ = _partial_values(m, fro, top)
    return Spectrum(s, shape, True, fro, float(s[0]), error=error)


# -- exact spectra --------------------------------------------------------------------------------

def _exact_values(m: torch.Tensor, fro: float) -> np.ndarray:
    """All singular values of m (descending, host float64); fro = ||m||_F > 0."""
    rows, cols = m.shape
    if min(rows, cols) == 1:
        return np.array([fro])               # a single value: the norm, exactly
    if m.dtype == torch.float64:
        # LAPACK's bidiagonalisation is far slower on a wide row-major matrix than on its
        # transpose (the same singular values): 1024 x 8192 took 7.7 s, its transpose 0.26 s.
        return torch.linalg.svdvals(m.T if rows < cols else m).cpu().numpy().copy()
    tall = m if rows >= cols else m.T
    if tall.shape[1] <= _GRAM64_MAX:        # as fast as float32 with the refinement, more accurate
        tall = tall.double()
        lam = torch.linalg.eigvalsh(tall.T @ tall).flip(0).cpu().numpy()
        return np.sqrt(np.maximum(lam, 0.0))
    if 1e-15 < fro < 1e15:                  # the Gram matrix (entries up to fro^2) fits float32
        return _gram_values(tall)
    return _gram_values(tall / fro) * fro


def _gram_values(m: torch.Tensor) -> np.ndarray:
    """Singular values of a float32 m with rows >= cols >= 2 from the eigenvalues of m^T m, s_1
    refined."""
    gram = _lower_gram(m)
    lam = torch.linalg.eigvalsh(gram, UPLO="L").flip(0).cpu().to(torch.float64).numpy()
    s = np.sqrt(np.maximum(lam, 0.0))
    s1 = _refined_s1(m, gram, float(lam[0]))
    if s1 is not None:
        s[0] = s1
        np.minimum(s, s1, out=s)            # stays descending
    return s


def _lower_gram(m: torch.Tensor) -> torch.Tensor:
    """m^T m where only its lower triangle is used (eigvalsh and cholesky read no more): halves
    down to 256 columns leave their upper right block zero, which saves 3/8 of the products for
    1024 columns (10 ms of 45 for 4096 x 1024 on two CPU cores)."""
    n = m.shape[1]
    if n < 512:
        return m.T @ m
    gram = torch.empty(n, n, device=m.device, dtype=m.dtype)
    _fill_lower_gram(m, gram)
    return gram


def _fill_lower_gram(m: torch.Tensor, out: torch.Tensor) -> None:
    n = m.shape[1]
    if n <= 256:
        torch.mm(m.T, m, out=out)
        return
    h = n // 2
    _fill_lower_gram(m[:, :h], out[:h, :h])
    torch.mm(m[:, h:].T, m[:, :h], out=out[h:, :h])
    _fill_lower_gram(m[:, h:], out[h:, h:])
    out[:h, h:] = 0


def _refined_s1(m: torch.Tensor, gram: torch.Tensor, lam1: float) -> float | None:
    """||m x|| / ||x|| for x the leading eigenvector of gram = m^T m by inverse iteration with the
    shift lam1 (1 + _SHIFT) just above the leading eigenvalue (Cholesky of shift * I - gram, which
    is positive definite then); None when lam1 is no such bound. Overwrites gram."""
    if not lam1 > 0:
        return None
    a = gram.neg_()
    diagonal = a.diagonal()
    diagonal.add_(lam1 * (1 + _SHIFT))
    factor, info = torch.linalg.cholesky_ex(a)
    iters = _SHIFT_ITERS
    if int(info) != 0:                      # lam1 was below lambda_1 by more than _SHIFT
        diagonal.add_(lam1 * 9 * _SHIFT)
        factor, info = torch.linalg.cholesky_ex(a)
        if int(info) != 0:
            return None
        iters *= 2
    generator = torch.Generator(device=m.device).manual_seed(0)
    x = torch.randn(a.shape[0], 1, generator=generator, device=m.device, dtype=m.dtype)
    for _ in range(iters):
        x = torch.linalg.solve_triangular(factor, x, upper=False)
        x = torch.linalg.solve_triangular(factor.mT, x, upper=True)
        x = x / torch.linalg.vector_norm(x)
    quotient = float((m @ x).double().square().sum() / x.double().square().sum())
    return math.sqrt(quotient) if math.isfinite(quotient) else None


# -- partial spectra ------------------------------------------------------------------------------

def _partial_values(m: torch.Tensor, fro: float, top: int, basis: torch.Tensor | None = None,
                    iters: int = _POWER_ITERS + 1) -> tuple[np.ndarray, float, torch.Tensor]:
    """The leading ``top`` singular values of m (fro = ||m||_F > 0; descending, host float64,
    lower bounds), their error (see Spectrum.error) and a basis [min(rows, cols), q] (nearly
    orthonormal) of the leading right singular subspace of the oriented matrix to warm-start the
    next call. ``basis`` None: a cold start from 2 * top Gaussian directions of a private
    generator seeded 0; ``iters`` subspace iterations (Halko, Martinsson & Tropp 2011), then the
    leading values refined by block Lanczos."""
    rows, cols = m.shape
    work = m if rows >= cols else m.T       # vectors of the smaller side are kept
    n = work.shape[1]
    if not 1e-15 < fro < 1e15:              # work^T work (entries up to fro^2) must fit float32
        s, error, basis = _partial_values(m / fro, 1.0, top, basis, iters)
        return s * fro, error, basis
    if basis is None:
        generator = torch.Generator(device=m.device).manual_seed(0)
        basis = torch.randn(n, min(2 * top, n), generator=generator, device=m.device,
                            dtype=m.dtype)
    s, right, rho, images = _subspace_iteration(work, basis, iters)
    s, rho, right = _refine_leading(work, s, rho, right, images)
    # the residuals are computed in m's precision: allow for its rounding in the products
    rounding = torch.finfo(m.dtype).eps / 2 * math.sqrt(max(rows, cols)) * fro
    s, rho = s[:top], rho[:top] + rounding
    relative = torch.where(rho > 0, rho / s, torch.zeros_like(rho))
    return (s.cpu().numpy().copy(), float(relative.max()) if relative.numel() else 0.0,
            right)


def _subspace_iteration(work, basis, iters):
    """Ritz values s (float64, descending), right Ritz vectors, residual bounds rho (float64) and
    work @ right after ``iters`` subspace iterations from ``basis``."""
    for i in range(iters):
        # re-orthonormalised after each half step: in float32 the weaker directions are lost
        # otherwise
        q = torch.linalg.qr(work @ basis).Q
        y = work.T @ q                          # (q^T work)^T
        if i + 1 < iters:
            basis = torch.linalg.qr(y).Q
    # Rayleigh-Ritz: q^T work = (right diag(s) uh)^T; u_i = q uh_i gives work^T u_i = s_i v_i,
    # so the residual is work v_i - s_i u_i = (I - q q^T) work v_i
    right, s, _ = torch.linalg.svd(y, full_matrices=False)
    images = work @ right
    residual = images - q @ (q.T @ images)
    rho = torch.linalg.vector_norm(residual, dim=0).double() / math.sqrt(2)
    return s.double(), right, rho, images


def _refine_leading(work, s, rho, right, images):
    """Block Lanczos on work^T work (full reorthogonalisation) from the leading _BLOCK Ritz
    vectors; its Ritz values replace the leading ones where larger (still lower bounds)."""
    n, k = right.shape
    b = min(_BLOCK, k)
    steps = min(_BLOCK_STEPS, n // b - 2)
    if steps < 1:
        return s, rho, right
    blocks, imgs = [right[:, :b]], [images[:, :b]]
    for step in range(steps):
        z = work.T @ imgs[-1]
        basis = torch.cat(blocks, 1)
        for _ in range(2):
            z = z - basis @ (basis.T @ z)
        nxt, r = torch.linalg.qr(z)
        h = torch.cat(imgs, 1).double()
        theta, y = torch.linalg.eigh(h.T @ h)
        theta, y = theta.flip(0)[:b], y.flip(1)[:, :b]
        # A B = B T + nxt r e_last^T: the residual of the Ritz pair (theta, B y) is ||r y_last||
        res = torch.linalg.vector_norm(r.double() @ y[-b:], dim=0)
        if res[0] <= _BLOCK_TOL * theta[0] or step + 1 == steps:
            break
        blocks.append(nxt)
        imgs.append(work @ nxt)
    lanczos = theta.clamp(min=0).sqrt()
    bound = torch.where(lanczos > 0, res / (math.sqrt(2) * lanczos), torch.full_like(res, math.inf))
    take = lanczos > s[:b]
    s, rho = s.clone(), rho.clone()
    s[:b] = torch.where(take, lanczos, s[:b])
    rho[:b] = torch.where(take, bound, rho[:b])
    # the next start: the refined leading vectors with the other Ritz vectors (nearly orthonormal;
    # the iteration orthonormalises its images anyway)
    return s, rho, torch.cat([basis @ y.to(basis.dtype), right[:, b:]], 1)


# -- spectra of changing weights ------------------------------------------------------------------

class SpectrumTracker:
    """``mode_spectrum`` for weights that change slowly between calls: ``update(model)`` again
    and again while a model trains.

    Every call returns what ``mode_spectrum(model, layers=layers, max_exact=max_exact, top=top)``
    returns - the same keys in the same order, the same ``partial`` flags, the same meaning of
    every field - but computes the partial spectra from the previous call's: a weight that had a
    partial spectrum in the previous call (same parameter name, matrix shape, dtype and device)
    starts from that call's 2 * top leading right singular vectors and runs ``iters`` subspace
    iterations (default 1, where a cold start runs 5 from random directions), then the same
    Rayleigh-Ritz and block-Lanczos refinement. On slowly changing weights the iteration goes on
    converging from call to call, so the spectra end up more accurate than a one-shot partial
    spectrum, at about a third of its cost. ``Spectrum.error`` bounds each result (see
    ``Spectrum``). When a warm result's error exceeds max(``tol``, 2 x the error of that weight's
    last cold start) - the weights moved too far since the previous call, e.g. others were
    loaded - the weight is redone from a cold start, which gives exactly ``mode_spectrum``'s
    result; so are the first call, a new or reshaped parameter, a change of dtype or device, a
    weight whose previous call had NaN or inf entries, and every weight after ``reset()``.
    ``cold_starts`` and ``warm_updates`` count the partial results of each kind.

    Exact spectra (at most ``max_exact`` elements, or min(rows, cols) <= 8 * top) are recomputed
    in every call as ``mode_spectrum`` computes them: a warm update would not be cheaper there (on
    one thread, 8192 x 1024: 0.22 s exact, 0.31 s for one warm iteration) and they are exact.
    ``max_exact`` trades exactness for speed: with the default 2^23 a 4096 x 4096 weight is
    tracked (one thread: a warm update 0.45-0.55 s, a one-shot partial spectrum 1.4-1.8 s, the
    exact spectrum 3.6 s); ``max_exact=None`` makes every spectrum exact, a smaller value tracks
    more weights partially.

    Measured on one thread (as the monitor's background worker runs it), top = 128, a
    4096 x 4096 float32 weight drifting by 1e-3 of its norm per call in a random direction, after
    5 warm updates: Gaussian (a flat spectrum, the hardest case): lambda_max within 1.1e-6, the
    128 values within 0.65% (median 0.3%, ``error`` 3.2e-2), where a one-shot partial spectrum of
    the same weight has 2.7% (median 1.7%, ``error`` 7.3e-2); a spectrum decaying like rank^-0.5:
    every value within 1.3e-6 (``error`` 7.4e-4), one-shot 7e-4 (``error`` 1.8e-2).

    One update at a time (not thread-safe). Deterministic: the same sequence of weights gives the
    same spectra; torch's global RNG is left alone. The warm starts keep a
    [min(rows, cols), 2 * top] tensor per partially tracked weight, on its device (4 MiB for a
    4096 x 4096 float32 weight).
    """

    def __init__(self, top: int = PARTIAL_TOP, *, max_exact: int | None = MAX_EXACT,
                 iters: int = 1, tol: float = 1e-3):
        self.max_exact, self.top = _check_policy(max_exact, top)
        self.iters = check_int(iters, "iters", minimum=1)
        if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not tol > 0:
            raise ValueError(f"tol must be a number > 0, got {tol!r}")
        self.tol = float(tol)
        self.cold_starts = 0
        self.warm_updates = 0
        self._warm: dict[str, _Warm] = {}

    def reset(self) -> None:
        """Forget every warm start: the next ``update`` starts cold (equals ``mode_spectrum``)."""
        self._warm.clear()

    @torch.no_grad()
    def update(self, model: nn.Module, *, layers=None) -> dict[str, Spectrum]:
        """The spectra of ``model``'s weights now, as ``mode_spectrum(model, layers=layers,
        max_exact=self.max_exact, top=self.top)`` reports them (same keys, order and meaning),
        warm-started from the previous call where that call had a partial spectrum of the same
        parameter name, shape, dtype and device."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"SpectrumTracker.update expects a torch.nn.Module, got "
                            f"{type(model).__name__}")
        weights, names = _weights(model, layers)
        out = {name: self._layer(name, weights[name]) for name in names}
        for name in [n for n in self._warm if n not in weights]:
            del self._warm[name]                # the parameter is gone
        return out

    def _layer(self, name: str, p: torch.Tensor) -> Spectrum:
        shape = tuple(p.shape)
        m = _matrix(name, p)
        partial = _is_partial(*m.shape, self.max_exact, self.top)
        fro, done = _trivial(m, shape, partial, self.top)
        if done is not None or not partial:
            self._warm.pop(name, None)
            if done is not None:
                return done
            s = _exact_values(m, fro)
            return Spectrum(s, shape, False, fro, float(s[0]) if s.size else 0.0)
        key = (tuple(m.shape), m.dtype, m.device)
        warm = self._warm.get(name)
        result = None
        if warm is not None and warm.key == key:
            result = _partial_values(m, fro, self.top, warm.basis, self.iters)
            if result[1] > max(self.tol, _RESTART * warm.cold_error):
                result = None                   # the weights moved too far: start afresh
            else:
                self.warm_updates += 1
                warm.basis = result[2]
        if result is None:
            result = _partial_values(m, fro, self.top)
            self.cold_starts += 1
            self._warm[name] = _Warm(key, result[2], result[1])
        s, error, _ = result
        return Spectrum(s, shape, True, fro, float(s[0]), error=error)


class _Warm:
    """One parameter's warm start: its matrix key, right Ritz basis, and the error its last cold
    start had."""

    __slots__ = ("key", "basis", "cold_error")

    def __init__(self, key, basis, cold_error):
        self.key, self.basis, self.cold_error = key, basis, cold_error


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
