"""Mode decomposition learning: linear layers trained in mode space, and model conversion.

Li & Huang, "Emergence of hierarchical modes from deep learning" (arXiv 2208.09859), SPEC section
4.5. A weight matrix is written as a sum of P modes, W = sum_mu lam_mu xi_mu xi_hat_mu^T =
xi diag(lam) xi_hat^T, and the network is trained on the pattern vectors xi (output side),
xi_hat (input side) and the mode strengths lam instead of on W: P * (in + out + 1) numbers
instead of in * out.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from .checks import check_int

__all__ = ["ModeLinear", "to_mode_model", "MODE_INITS"]

MODE_INITS = ("svd", "random")


class ModeLinear(nn.Module):
    """A linear layer in mode space: y = x W^T + b with W = xi diag(lam) xi_hat^T.

    Parameters (all trained): ``xi`` [out_features, modes] (the output-side patterns, one column
    per mode), ``lam`` [modes] (mode strengths), ``xi_hat`` [in_features, modes] (input-side
    patterns) and, with ``bias=True``, ``bias`` [out_features]. Parameter count
    modes * (in_features + out_features + 1), plus out_features with a bias. ``modes`` may
    exceed min(in_features, out_features) (the weight's rank is then still at most that).

    Default init (the published code's choice, with n_in = in_features for all three factors):
    every entry of xi, lam and xi_hat is N(0, 1) * (n_in ln n_in)^(-1/6). For in_features == 1,
    where ln 1 = 0 would make that scale infinite, n_in ln n_in is taken as 1 (scale 1). A bias
    starts as in ``nn.Linear``: U(-1/sqrt(n_in), 1/sqrt(n_in)).

    ``device`` and ``dtype`` are passed to the parameters, as for ``nn.Linear``.
    """

    def __init__(self, in_features: int, out_features: int, modes: int, *, bias: bool = False,
                 device=None, dtype=None):
        super().__init__()
        self.in_features = check_int(in_features, "in_features", minimum=1)
        self.out_features = check_int(out_features, "out_features", minimum=1)
        self.modes = check_int(modes, "modes", minimum=1)
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be True or False, got {type(bias).__name__}")
        kw = {"device": device, "dtype": dtype}
        self.xi = nn.Parameter(torch.empty(self.out_features, self.modes, **kw))
        self.lam = nn.Parameter(torch.empty(self.modes, **kw))
        self.xi_hat = nn.Parameter(torch.empty(self.in_features, self.modes, **kw))
        self.bias = nn.Parameter(torch.empty(self.out_features, **kw)) if bias else None
        self.reset_parameters()

    @property
    def init_scale(self) -> float:
        """(n_in ln n_in)^(-1/6), n_in = in_features (1 when in_features == 1)."""
        n = self.in_features
        return max(1.0, n * math.log(n)) ** (-1 / 6)

    def reset_parameters(self) -> None:
        """Draw the default init (see the class docstring) from torch's global generator."""
        with torch.no_grad():
            for p in (self.xi, self.lam, self.xi_hat):
                p.normal_(0.0, self.init_scale)
            if self.bias is not None:
                bound = 1 / math.sqrt(self.in_features)
                self.bias.uniform_(-bound, bound)

    @property
    def weight(self) -> torch.Tensor:
        """The composed weight xi diag(lam) xi_hat^T, [out_features, in_features], differentiable
        (not a parameter: code that reads ``layer.weight``, as nn.Linear users do, gets W)."""
        return (self.xi * self.lam) @ self.xi_hat.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(f"ModeLinear expects inputs [..., {self.in_features}], got "
                             f"{tuple(x.shape)}")
        rows = x.numel() // self.in_features
        p, n_in, n_out = self.modes, self.in_features, self.out_features
        # Multiply-adds: through the modes rows * p * (in + out); forming W first p * in * out,
        # then rows * in * out. Take the cheaper; both compute the same function.
        if rows * p * (n_in + n_out) <= p * n_in * n_out + rows * n_in * n_out:
            return F.linear((x @ self.xi_hat) * self.lam, self.xi, self.bias)
        return F.linear(x, self.weight, self.bias)

    @torch.no_grad()
    def mode_importance(self) -> torch.Tensor:
        """Importance of every mode, [modes], detached: tau_mu = |lam_mu| + gamma * (||xi_mu|| +
        ||xi_hat_mu||), gamma = mean_mu |lam_mu| / mean_mu (||xi_mu|| + ||xi_hat_mu||), with
        xi_mu, xi_hat_mu the mu-th columns (Li & Huang). gamma is 0 when every pattern is zero."""
        norms = (torch.linalg.vector_norm(self.xi, dim=0)
                 + torch.linalg.vector_norm(self.xi_hat, dim=0))
        strength = self.lam.abs()
        denom = norms.mean()
        gamma = strength.mean() / denom if denom > 0 else torch.zeros_like(denom)
        return strength + gamma * norms

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"modes={self.modes}, bias={self.bias is not None}")


def to_mode_model(model: nn.Module, modes: int, *, init: str = "svd") -> nn.Module:
    """A deep copy of ``model`` with every ``nn.Linear`` replaced by a ``ModeLinear``.

    Each replacement has P = min(modes, in_features, out_features) modes, the linear layer's
    bias (copied), dtype, device and training flag, and its weight's requires_grad on xi, lam and
    xi_hat. ``init="svd"``: the leading P singular triplets of the existing weight W = U S V^T
    (computed in float64): xi = U_P, lam = S_P, xi_hat = V_P, so the copy computes the rank-P
    truncation of every layer (exactly W when P = rank, up to float rounding).
    ``init="random"``: ModeLinear's default init (global torch generator).

    ``model`` itself is untouched. A linear module reached under several names stays shared in
    the copy; two different linear modules sharing one weight tensor each get their own factors.
    Hooks registered on the replaced modules are not carried over. A model that is itself an
    nn.Linear gives a ModeLinear.

    Raises ValueError for ``modes < 1``, an unknown ``init``, a model without nn.Linear, or (with
    ``init="svd"``) a layer with NaN or infinite weights, naming it.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"to_mode_model expects a torch.nn.Module, got {type(model).__name__}")
    modes = check_int(modes, "modes", minimum=1)
    if init not in MODE_INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(map(repr, MODE_INITS))}")
    if not any(isinstance(m, nn.Linear) for m in model.modules()):
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer to convert")
    if isinstance(model, nn.Linear):
        return _convert(model, "", modes, init)
    copied = copy.deepcopy(model)
    replaced: dict[int, ModeLinear] = {}
    # every (parent, attribute) occurrence, so that a module shared by two parents stays shared
    for name, module in list(copied.named_modules(remove_duplicate=False)):
        # _modules, not named_children(): that lists a child held twice by one parent only once
        for child_name, child in list(module._modules.items()):
            if isinstance(child, nn.Linear):
                if id(child) not in replaced:
                    qualified = f"{name}.{child_name}" if name else child_name
                    replaced[id(child)] = _convert(child, qualified, modes, init)
                setattr(module, child_name, replaced[id(child)])
    return copied


@torch.no_grad()
def _convert(linear: nn.Linear, name: str, modes: int, init: str) -> ModeLinear:
    w = linear.weight
    if init == "svd" and not torch.isfinite(w).all():
        raise ValueError(f"layer {name or '(the model itself)'!r} has non-finite weights; "
                         f"init='svd' cannot factorise them")
    p = min(modes, linear.in_features, linear.out_features)
    layer = ModeLinear(linear.in_features, linear.out_features, p, bias=linear.bias is not None,
                       device=w.device, dtype=w.dtype)
    if init == "svd":
        u, s, vh = torch.linalg.svd(w.detach().to(torch.float64), full_matrices=False)
        layer.xi.copy_(u[:, :p])
        layer.lam.copy_(s[:p])
        layer.xi_hat.copy_(vh[:p].T)
    if linear.bias is not None:
        layer.bias.copy_(linear.bias)
        layer.bias.requires_grad_(linear.bias.requires_grad)
    for param in (layer.xi, layer.lam, layer.xi_hat):
        param.requires_grad_(w.requires_grad)
    layer.train(linear.training)
    return layer
