"""The chain of weight layers and elementwise activations that a model's forward computes.

Shared by the weight-pathway analyses (Feng, Zhang, Wang, Zhao, "How and what to learn: the
modes of machine learning", arXiv 2202.13829; SPEC 4.2, ``pathways.py``) and the neuron
transformation modes (Lin, Feng, Zhang, Zhao, arXiv 2501.02436; SPEC 4.3, ``neurons.py``).

Both families read a network as a feedforward chain z^l = W^l h^{l-1} + b^l, h^l = s(z^l),
h^0 = x. A :class:`Chain` is the model's leaf modules in registration order (nested containers
flattened; a module registered under several names, e.g. one ReLU used twice in an
nn.Sequential, appears under each name). Every leaf gets a kind:

``weight``
    nn.Linear (output [batch, features]; a neuron is a feature) and nn.Conv1d/2d/3d (output
    [batch, channels, *spatial]; a neuron is a channel). These are the layers l = 1..L.
``activation``
    an elementwise function: torch.nn's ReLU, ReLU6, LeakyReLU, PReLU, RReLU, ELU, CELU, SELU,
    GELU, SiLU, Mish, Hardswish, Hardsigmoid, Hardtanh, Hardshrink, Softshrink, Tanhshrink,
    Threshold, Tanh, Sigmoid, LogSigmoid, Softplus, Softsign, or any other module without
    parameters or buffers that acts elementwise on the probe (checked numerically: the same
    values element by element, in any layout, order and subset).
``affine``
    BatchNorm with running statistics: in eval mode the per-channel affine map
    z -> (z - mean) / sqrt(var + eps) * gamma + beta.
``reshape``
    nn.Flatten / nn.Unflatten that keep the batch dimension.
``identity``
    Dropout of every kind (the identity in eval mode) and nn.Identity.
``opaque``
    anything else (pooling, LayerNorm, Softmax, GroupNorm, attention, a custom layer with
    parameters...). The model still runs through it, so the neuron modes of later layers are
    available, but no pathway passes through it: the pathway functions refuse the weight layers
    behind it, with an error naming it.

The chain is an assumption about the model's forward, and every analysis checks it: it runs the
model's own forward and the chain (each leaf's ``forward`` in turn) on the probe and on a
generated probe (random inputs of both signs at three scales) and refuses when the outputs differ.
That is how activations called as functions in ``forward`` (``torch.relu(...)`` with no module),
residual connections, modules called out of order or twice, and forward hooks that change
outputs are detected: none of these can be analysed exactly from the modules alone.

Every analysis runs the model in eval mode (Dropout is the identity, BatchNorm uses its running
statistics) and restores every module's training flag afterwards, also when it raises. The
model's forward hooks fire once per analysis call (the check above runs ``model(x)``); the
chain itself calls ``module.forward`` and fires no hook. Nothing else about the model changes:
no parameter, buffer, hook, ``requires_grad`` flag or ``.grad`` is touched, and the global
random state is not used.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.dropout import _DropoutNd

__all__ = [
    "WEIGHT", "ACTIVATION", "AFFINE", "RESHAPE", "IDENTITY", "OPAQUE",
    "Step", "Chain", "Trace", "discover_chain", "evaluating", "derivative", "check_labels",
    "prepare_batch",
]

WEIGHT, ACTIVATION, AFFINE, RESHAPE, IDENTITY, OPAQUE = (
    "weight", "activation", "affine", "reshape", "identity", "opaque")
_CANDIDATE = "candidate"    # parameter-free unknown module: elementwise or not, decided on the probe

ELEMENTWISE_TYPES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Hardshrink, nn.Softshrink,
    nn.Tanhshrink, nn.Threshold, nn.Tanh, nn.Sigmoid, nn.LogSigmoid, nn.Softplus, nn.Softsign,
)

# the generated probe: this many random samples, each also negated, at two scales
_PROBE_SAMPLES = 8
_PROBE_SCALES = (1.0, 30.0, 1000.0)
_PROBE_SEED = 20220228


@dataclass(frozen=True)
class Step:
    """One leaf module of the chain: its qualified name, the module, its kind (see module
    docstring) and, for ``opaque`` steps, why no pathway can pass through it."""
    name: str
    module: nn.Module
    kind: str
    reason: str = ""

    @property
    def label(self) -> str:
        return f"{self.name!r} ({type(self.module).__name__})"


@dataclass
class Trace:
    """One run of the chain on a batch: ``inputs[k]`` is the input of step k (the output of step
    k-1; ``inputs[0]`` is x) and ``output`` the output of the last step. Detached tensors."""
    inputs: list[torch.Tensor]
    output: torch.Tensor

    def output_of(self, k: int) -> torch.Tensor:
        return self.inputs[k + 1] if k + 1 < len(self.inputs) else self.output


def _classify(name: str, module: nn.Module) -> Step:
    if isinstance(module, nn.Linear):
        return Step(name, module, WEIGHT)
    if isinstance(module, _ConvNd):
        if module.transposed:
            return Step(name, module, OPAQUE, f"{type(module).__name__} is not supported")
        return Step(name, module, WEIGHT)
    if isinstance(module, ELEMENTWISE_TYPES):
        return Step(name, module, ACTIVATION)
    if isinstance(module, _BatchNorm):
        if module.track_running_stats and module.running_mean is not None:
            return Step(name, module, AFFINE)
        return Step(name, module, OPAQUE, "it normalises with batch statistics even in eval mode")
    if isinstance(module, (_DropoutNd, nn.Identity)):
        return Step(name, module, IDENTITY)
    if isinstance(module, (nn.Flatten, nn.Unflatten)):
        return Step(name, module, RESHAPE)
    # a parameter-free module of the user's own (torch.nn's own are all listed above) may be an
    # elementwise activation: decided on the probe
    if not type(module).__module__.startswith("torch.") and \
            next(module.parameters(recurse=False), None) is None and \
            next(module.buffers(recurse=False), None) is None:
        return Step(name, module, _CANDIDATE)
    return Step(name, module, OPAQUE,
                f"{type(module).__name__} is neither a weight layer (Linear, Conv1d/2d/3d) nor an "
                "elementwise activation, BatchNorm, Flatten, Dropout or Identity")


class Chain:
    """The leaf modules of a model in registration order, each with its kind.

    Built by :func:`discover_chain`; parameter-free modules of unknown type are classified
    (``activation`` or ``opaque``) by the first :meth:`trace`.
    """

    def __init__(self, model: nn.Module, steps: list[Step]):
        self.model = model
        self.steps = steps
        self.index = {s.name: k for k, s in enumerate(steps)}
        first = next(s for s in steps if s.kind == WEIGHT)
        self.weight_dtype = first.module.weight.dtype
        self.device = first.module.weight.device
        # input dims of radiographs: image shaped when the first weight layer is a convolution,
        # flattened for dense chains (see pathways.py)
        self.image_input = isinstance(first.module, _ConvNd)

    # -- structure ---------------------------------------------------------------------------------

    def weight_names(self) -> list[str]:
        return [s.name for s in self.steps if s.kind == WEIGHT]

    def describe(self, limit: int = 8) -> str:
        parts = [f"{s.name or '<model>'} ({type(s.module).__name__})" for s in self.steps]
        if len(parts) > limit:
            parts = parts[:limit - 1] + ["...", parts[-1]]
        return " -> ".join(parts)

    def weight_index(self, layer) -> int:
        """Index of the weight layer named ``layer``; ValueError naming the layer otherwise."""
        if not isinstance(layer, str):
            raise TypeError(f"layer must be a module name (str), got {type(layer).__name__}")
        if layer not in self.index:
            raise ValueError(f"no module named {layer!r} in {type(self.model).__name__}; "
                             f"its weight layers are {self.weight_names()}")
        step = self.steps[self.index[layer]]
        if step.kind != WEIGHT:
            raise ValueError(f"module {step.label} is not a weight layer (Linear, Conv1d/2d/3d); "
                             f"weight layers: {self.weight_names()}")
        return self.index[layer]

    def pathway_block(self, k: int) -> Step | None:
        """The first step at or before weight layer ``k`` that no pathway can pass, or None."""
        return next((s for s in self.steps[:k] if s.kind in (OPAQUE, _CANDIDATE)), None)

    def first_input_shape(self) -> tuple[int, ...] | None:
        """Per-sample input shape implied by a dense first layer, or None (convolutions: the
        spatial size is free)."""
        for s in self.steps:
            if s.kind == WEIGHT:
                return (s.module.in_features,) if isinstance(s.module, nn.Linear) else None
            if s.kind not in (IDENTITY, RESHAPE, ACTIVATION):
                return None
        return None

    # -- running -----------------------------------------------------------------------------------

    def prepare(self, x, *, what: str = "x") -> torch.Tensor:
        """``x`` as a tensor on the weights' device and dtype, checked to be a non-empty batch."""
        if not isinstance(x, torch.Tensor):
            try:
                x = torch.as_tensor(x)
            except (TypeError, ValueError, RuntimeError) as e:
                raise TypeError(f"{what} must be a tensor or array, got {type(x).__name__}") from e
        if x.ndim < 2:
            raise ValueError(f"{what} must be a batch [batch, ...features]; got shape {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError(f"{what} is an empty batch (shape {tuple(x.shape)})")
        if x.is_complex():
            raise ValueError(f"{what} is complex ({x.dtype}); the analyses need real inputs")
        return x.detach().to(self.device, self.weight_dtype)

    def run(self, x: torch.Tensor) -> Trace:
        """Run the chain on ``x`` (each leaf's ``forward``, no hooks), recording every step's input.

        Checks the shapes that the analyses rely on; classifies parameter-free unknown modules.
        """
        batch = x.shape[0]
        inputs, h = [], x
        with torch.no_grad():
            for k, step in enumerate(self.steps):
                inputs.append(h)
                if step.kind == _CANDIDATE:
                    step = self._settle(k, h)
                out = step.module.forward(h.clone() if step.kind == ACTIVATION else h)
                if not isinstance(out, torch.Tensor):
                    raise ValueError(f"module {step.label} returns {type(out).__name__}, not a "
                                     "tensor: the model is not a chain of modules")
                if out.ndim == 0 or out.shape[0] != batch:
                    raise ValueError(f"module {step.label} changes the batch dimension "
                                     f"({tuple(h.shape)} -> {tuple(out.shape)})")
                if step.kind == WEIGHT and isinstance(step.module, nn.Linear) and out.ndim != 2:
                    raise ValueError(
                        f"layer {step.label} gets input of shape {tuple(h.shape)}; the analyses "
                        "need [batch, features] at a Linear layer (flatten the input first, e.g. "
                        "with nn.Flatten)")
                if step.kind in (ACTIVATION, AFFINE, IDENTITY) and out.shape != h.shape:
                    raise ValueError(f"module {step.label} changes the shape {tuple(h.shape)} -> "
                                     f"{tuple(out.shape)}; it is not elementwise")
                if step.kind == RESHAPE and out[0].numel() != h[0].numel():
                    raise ValueError(f"module {step.label} changes the number of features per sample")
                h = out
        return Trace(inputs, h)

    def _settle(self, k: int, h: torch.Tensor) -> Step:
        step = self.steps[k]
        if _acts_elementwise(step.module, h):
            settled = Step(step.name, step.module, ACTIVATION)
        else:
            settled = Step(step.name, step.module, OPAQUE,
                           f"{type(step.module).__name__} does not act elementwise on the probe")
        self.steps[k] = settled
        return settled

    def trace(self, model: nn.Module, x: torch.Tensor, *, extra_probe: bool = True,
              subject: str | None = None) -> Trace:
        """Run the chain on ``x`` and check it against the model's own forward.

        With ``extra_probe`` the check also runs on a generated probe of x's per-sample shape
        (separately, so that nothing batch-dependent mixes the two). Raises ValueError when the
        model does not accept ``x`` (``subject`` names x in that error) or computes something
        else than the chain.
        """
        subject = subject or f"the probe x of shape {tuple(x.shape)}"
        if extra_probe:
            probe = make_probe(tuple(x.shape[1:]), self.device, self.weight_dtype)
            self._check(model, probe, "a generated probe", subject)
        return self._check(model, x, "the probe", subject)

    def _check(self, model: nn.Module, x: torch.Tensor, what: str, subject: str) -> Trace:
        try:
            with torch.no_grad():
                expected = model(x)
        except Exception as e:
            raise ValueError(f"{subject} does not fit the model {type(model).__name__} "
                             f"({type(e).__name__}: {e})") from e
        if not isinstance(expected, torch.Tensor):
            raise ValueError(f"{type(model).__name__}'s forward returns {type(expected).__name__}, "
                             "not a tensor: the model is not a chain of modules")
        try:
            trace = self.run(x)
        except ValueError:   # a shape the analyses cannot use, already explained
            raise
        except Exception as e:
            raise ValueError(
                "running the model's modules one after another in registration order fails "
                f"({type(e).__name__}: {e}): its forward is not the chain "
                f"{self.describe()}") from e
        if not _agree(trace.output, expected):
            diff = _max_difference(trace.output, expected)
            raise ValueError(
                f"{type(model).__name__}'s forward does not compute the chain of its modules in "
                f"registration order ({self.describe()}): the outputs differ on {what} "
                f"(largest difference {diff}). The analyses need a plain chain; activations "
                "called as functions in forward (e.g. torch.relu instead of an nn.ReLU module), "
                "residual connections, modules used out of order or twice, and forward hooks "
                "that change outputs cannot be analysed exactly")
        return trace


def discover_chain(model: nn.Module) -> Chain:
    """The chain of ``model``'s leaf modules in registration order (see the module docstring).

    Raises TypeError for a non-module, ValueError for a model with nothing to analyse (no
    Linear or convolution layer), an uninitialised lazy layer, or a container module that holds
    parameters of its own (its forward uses them outside any leaf: not a chain of modules).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
    steps = []
    for name, module in model.named_modules(remove_duplicate=False):
        has_children = next(module.children(), None) is not None
        if has_children:
            own = [n for n, _ in module.named_parameters(recurse=False)]
            if own:
                raise ValueError(
                    f"module {name or '<model>'!r} ({type(module).__name__}) holds parameters of "
                    f"its own ({', '.join(own)}) besides submodules: its forward is not a chain "
                    "of modules the analyses can follow")
            continue
        if any(isinstance(p, nn.parameter.UninitializedParameter) for p in module.parameters()):
            raise ValueError(f"module {name!r} ({type(module).__name__}) is an uninitialised lazy "
                             "layer: run the model once before analysing it")
        steps.append(_classify(name, module))
    if not any(s.kind == WEIGHT for s in steps):
        raise ValueError(f"nothing to analyse: {type(model).__name__} has no Linear or "
                         "Conv1d/2d/3d layer")
    return Chain(model, steps)


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Every module in eval mode inside; each module's own training flag restored on exit, also
    on an exception. Flags are set directly: an overridden ``train()`` is not called."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        for m, _ in flags:
            m.training = False
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def make_probe(shape: tuple[int, ...], device, dtype) -> torch.Tensor:
    """[6 * 8, *shape]: 8 standard normal samples and their negatives, at scales 1, 30, 1000.

    Both signs at large scales drive the pre-activations through zero whatever the biases, so
    that a missing nonlinearity (an activation called as a function) changes the output. Seeded
    generator: the global random state is left alone.
    """
    g = torch.Generator().manual_seed(_PROBE_SEED)
    base = torch.randn((_PROBE_SAMPLES, *shape), generator=g, dtype=torch.float64)
    probe = torch.cat([s * base for s in _PROBE_SCALES] + [-s * base for s in _PROBE_SCALES])
    return probe.to(device, dtype)


def derivative(module: nn.Module, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(s(z), s'(z)) of an elementwise activation module, s' by autograd through the module.

    For an elementwise s, d sum(s(z)) / dz_i = s'(z_i). The input is cloned before the module
    sees it, so in-place activations (``nn.ReLU(inplace=True)``) work and z is not modified; the
    gradient is taken with respect to z only (the module's own parameters, e.g. PReLU's slope,
    get no ``.grad``).
    """
    # autograd on, also when called under torch.no_grad() or torch.inference_mode()
    with torch.inference_mode(False), torch.enable_grad():
        leaf = z.detach().clone().requires_grad_(True)
        out = module.forward(leaf.clone())
        if out.requires_grad:
            (grad,) = torch.autograd.grad(out, leaf, torch.ones_like(out))
        else:   # a constant function of z
            grad = torch.zeros_like(leaf)
    return out.detach(), grad.detach()


def check_labels(y, batch: int, device, num_classes: int | None = None) -> tuple[torch.Tensor, int]:
    """Labels as a long tensor [batch] on ``device`` and the number of classes C.

    C is ``num_classes`` when given, else max(y) + 1: the classes are 0..C-1, and a class with no
    sample in y gets NaN wherever a class average is asked for.
    """
    y = torch.as_tensor(y)
    if y.ndim != 1 or y.shape[0] != batch:
        raise ValueError(f"y must hold one label per sample: shape ({batch},) expected, "
                         f"got {tuple(y.shape)}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"y must hold integer class labels 0..C-1, got dtype {y.dtype}")
    y = y.to(device, torch.long)
    if int(y.min()) < 0:
        raise ValueError(f"y must hold class labels 0..C-1; got the label {int(y.min())}")
    top = int(y.max()) + 1
    if num_classes is None:
        num_classes = top
    elif not isinstance(num_classes, int) or num_classes < top:
        raise ValueError(f"num_classes={num_classes!r} but y holds the label {top - 1}")
    return y, num_classes


# -- helpers -----------------------------------------------------------------------------------------

def _tolerance(dtype: torch.dtype) -> float:
    return max(1e-4, 100 * torch.finfo(dtype).eps) if dtype.is_floating_point else 0.0


def _agree(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape:
        return False
    if not (a.is_floating_point() and b.is_floating_point()):
        return torch.equal(a, b)
    finite = b[torch.isfinite(b)]
    scale = float(finite.abs().max()) if finite.numel() else 0.0
    rtol = _tolerance(b.dtype)
    return torch.allclose(a, b.to(a.dtype), rtol=rtol, atol=rtol * scale + 1e-30, equal_nan=True)


def _max_difference(a: torch.Tensor, b: torch.Tensor) -> str:
    if a.shape != b.shape:
        return f"shapes {tuple(a.shape)} and {tuple(b.shape)}"
    d = (a.double() - b.double()).abs()
    d = d[torch.isfinite(d)]
    return f"{float(d.max()):.3g}" if d.numel() else "non-finite values"


def _acts_elementwise(module: nn.Module, h: torch.Tensor) -> bool:
    """Whether ``module`` maps every element of h on its own: the same values when the elements
    come one per row, in another order, or only a subset of them. Never raises."""
    if not h.is_floating_point() or h.numel() == 0:
        return False
    try:
        with torch.no_grad():
            out = module.forward(h.clone())
            if not isinstance(out, torch.Tensor) or out.shape != h.shape:
                return False
            flat, ref = h.reshape(-1), out.reshape(-1)
            g = torch.Generator().manual_seed(_PROBE_SEED)
            perm = torch.randperm(flat.numel(), generator=g).to(flat.device)
            alone = module.forward(flat[perm].reshape(-1, 1).clone())
            half = max(1, flat.numel() // 2)
            subset = module.forward(flat[:half].reshape(1, -1).clone())
            return (isinstance(alone, torch.Tensor) and isinstance(subset, torch.Tensor)
                    and alone.numel() == flat.numel() and subset.numel() == half
                    and _agree(alone.reshape(-1), ref[perm]) and _agree(subset.reshape(-1), ref[:half]))
    except Exception:
        return False


def numel(shape) -> int:
    return math.prod(shape)


def prepare_batch(chain: "Chain", x, y, num_classes: int | None):
    """The probe ``x`` converted for the chain, and its labels checked: ``(x, y, n_classes)``,
    y and n_classes None without labels."""
    x = chain.prepare(x)
    if y is not None:
        y, n_classes = check_labels(y, x.shape[0], x.device, num_classes)
        return x, y, n_classes
    if num_classes is not None:
        raise ValueError("num_classes is given without labels y")
    return x, None, None
