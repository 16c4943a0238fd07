"""One forward pass of any model, watched: its activations, its weight layers, its input.

Shared by the weight-pathway analyses (``pathways.py``, SPEC 4.2) and the neuron
transformation modes (``neurons.py``, SPEC 4.3). The model's own forward runs (residual sums,
concatenations, attention, anything) while two observers record what the analyses need:

- module hooks, added for the pass and removed after it, keep the stack of modules whose
  forward is running, record the first output of every **weight layer** (a module with a
  ``weight`` parameter of two or more dimensions: ``nn.Linear``, ``nn.Conv*``, attention
  projections, Hugging Face's ``Conv1D``; embeddings are inputs, not weight layers) and, for
  token models, put a differentiable leaf in place of the output of each ``nn.Embedding`` fed by
  the model's integer inputs;
- a ``TorchFunctionMode`` sees every torch function the forward calls and records each call of
  an **elementwise activation**: ``F.relu``, ``torch.relu``, ``Tensor.relu`` (in-place forms
  too), ``gelu``, ``silu``, ``tanh``, ``sigmoid``, ``leaky_relu``, ``elu``, ``softplus``, ... (the
  names in ``ACTIVATIONS``), whether called by an activation module (``nn.ReLU`` calls
  ``F.relu``) or as a function in ``forward``. A parameter-free module of the user's own (not
  torch.nn's), such as Hugging Face's ``NewGELUActivation``, that acts elementwise on its input
  (checked on the probe) is one activation: the calls inside it are not recorded separately.

Activation keys (``Site.key``), stable between steps for a deterministic forward (SPEC 3):
- an activation module whose input is one weight layer's output, directly or through
  BatchNorm, Dropout or Identity modules: that layer's module name, unless an earlier
  activation took it (plain chains keep their wave-1 keys: ``"features.0"``);
- any other call of an activation module: ``"<module>#<i>"`` (``"layer1.0.relu#1"``: the
  second activation call of that module in the pass);
- a functional call: ``"<module>:<function>#<i>"``, the module whose forward made the call
  (``"layer1.0:relu#0"``; ``"<function>#<i>"`` in the model's own forward);
  i counts the module's activation calls in the pass from 0.

The neuron axis of an activation's input is that of the weight layer it comes from (channels,
axis 1, for convolutions; the last axis otherwise); without one: axis 1 for [B, n] and for
inputs of 3+ dimensions in a model with convolutions, else the last axis (token features).

Static mode (``static=True``) computes the model with every gate open: each elementwise
activation returns its input, so that what remains is linear in the input except for factors
that are neither weights nor gates. Those are frozen at their values on the batch and named in
``Capture.frozen``: LayerNorm / GroupNorm / RMSNorm scales (1/std, the centring stays), softmax
and attention patterns (``scaled_dot_product_attention`` computed with its weights frozen),
max-pool and other selections (autograd takes the selection on the batch), products of two
input-dependent tensors (the activation-side factor, else the first, frozen) and any other
non-linear function of the input (its output taken as a constant); ``nn.MultiheadAttention``
keeps its value path with the attention pattern frozen. With ``signed=False`` every
coefficient of the remaining linear map is replaced by its absolute value (weights, BatchNorm
scales, constant factors, subtraction as addition), so that pathway values add up unsigned.

Which input is differentiated: for a model fed integer tensors that an ``nn.Embedding``
consumes, the embedding outputs (token models); otherwise the first floating-point input.
Weights are detached for the pass (``torch.func.functional_call``), so autograd reaches the
input only and the model's parameters, flags and ``.grad`` stay as they were; every module runs
in eval mode and gets its own training flag back afterwards, also on an exception.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.dropout import _DropoutNd
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

from .errors import UnsupportedModel
from .inputs import ModelInputs, first_tensor

__all__ = ["ACTIVATIONS", "Site", "Capture", "Refusal", "UnsupportedModel", "capture",
           "weight_layers", "unit_axis", "evaluating", "derivative", "check_labels",
           "NOT_ANALYSABLE"]


class _Stop(BaseException):
    """Ends a pass early: every layer asked for has its output. A BaseException, so that no
    ``except Exception`` in a model's forward swallows it."""


# What the analyses cannot compute on this model. Raised from inside the forward pass too: told
# apart from the model's own errors there (which are reported as the input not fitting). The
# older name of ``UnsupportedModel``, kept importable.
Refusal = UnsupportedModel

ACTIVATIONS = frozenset(
    "relu relu_ relu6 gelu gelu_ silu silu_ mish mish_ elu elu_ selu selu_ celu celu_ "
    "leaky_relu leaky_relu_ prelu rrelu rrelu_ softplus hardswish hardswish_ hardsigmoid "
    "hardsigmoid_ hardtanh hardtanh_ logsigmoid softsign tanhshrink sigmoid sigmoid_ tanh tanh_ "
    "hardshrink softshrink threshold threshold_".split())

# torch.nn's activation modules: their F.* call is the activation (labelled by the module)
ACTIVATION_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Hardshrink, nn.Softshrink,
    nn.Tanhshrink, nn.Threshold, nn.Tanh, nn.Sigmoid, nn.LogSigmoid, nn.Softplus, nn.Softsign,
)

# modules whose elementwise work happens inside one fused kernel that Python never sees
NOT_ANALYSABLE = {
    nn.RNNBase: "its gates (sigmoid, tanh) run inside one fused ATen kernel that Python never "
                "sees, so no activation of it can be captured",
}

# functions linear in their input-dependent tensors, however many there are
_LINEAR = frozenset(
    "add add_ sub sub_ subtract rsub neg neg_ negative positive sum mean nansum cumsum cat concat "
    "concatenate stack hstack vstack dstack view view_as reshape reshape_as flatten unflatten "
    "permute transpose transpose_ t swapaxes swapdims movedim moveaxis contiguous clone squeeze "
    "squeeze_ unsqueeze unsqueeze_ expand expand_as repeat tile split split_with_sizes chunk unbind "
    "tensor_split narrow select __getitem__ __setitem__ index_select gather take_along_dim "
    "masked_fill masked_fill_ where flip fliplr flipud roll rot90 pad to type float double half "
    "bfloat16 type_as avg_pool1d avg_pool2d avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d "
    "adaptive_avg_pool3d interpolate upsample pixel_shuffle pixel_unshuffle unfold fold dropout "
    "dropout1d dropout2d dropout3d alpha_dropout feature_alpha_dropout diagonal diag_embed tril "
    "triu copy_ zero_ detach detach_ channel_shuffle native_channel_shuffle embedding "
    "batch_norm trace diff __get__ __rsub__".split())
# linear when at most one operand depends on the input (for division: the numerator)
_PRODUCTS = frozenset(
    "mul mul_ multiply div div_ divide true_divide matmul mm bmm mv einsum tensordot outer inner "
    "dot linear bilinear addmm addbmm baddbmm addmv conv1d conv2d conv3d conv_transpose1d "
    "conv_transpose2d conv_transpose3d".split())
# selections: autograd's Jacobian on the batch is the frozen selection
_SELECTIONS = frozenset(
    "max_pool1d max_pool2d max_pool3d adaptive_max_pool1d adaptive_max_pool2d adaptive_max_pool3d "
    "max_pool1d_with_indices max_pool2d_with_indices max_pool3d_with_indices max min amax amin "
    "topk sort kthvalue median cummax cummin".split())
_SUBTRACTIONS = frozenset({"sub", "sub_", "subtract", "rsub", "__rsub__"})


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(module name, module) of every weight layer, in registration order, each module once
    (under its first name): a ``weight`` parameter of 2+ dimensions, embeddings excluded, and
    ``nn.MultiheadAttention`` as one layer (its output projection is applied inside it, never
    called as a module)."""
    out, seen = [], set()
    for module in model.modules():
        if isinstance(module, nn.MultiheadAttention):
            seen.update(id(m) for m in module.modules() if m is not module)
    for name, module in model.named_modules():
        if id(module) in seen:
            continue
        seen.add(id(module))
        w = module._parameters.get("weight")
        if isinstance(module, nn.MultiheadAttention) or (
                w is not None and w.ndim >= 2
                and not isinstance(module, (nn.Embedding, nn.EmbeddingBag))):
            out.append((name, module))
    return out


def unit_axis(module: nn.Module) -> int:
    """The neuron axis of a weight layer's output: channels (1) of a convolution, else the last."""
    return 1 if isinstance(module, _ConvNd) else -1


@dataclass
class Site:
    """One elementwise activation call of the pass (see the module docstring for ``key``).

    ``z``: its input, detached [B, ...]; ``fn``: the activation as called (other arguments bound),
    a function of one tensor; ``axis``: the neuron axis of z; ``parametric``: fn holds tensors
    (per-neuron parameters); ``label``: the activation module's name, or ``module:function#i``;
    ``after``: how many weight layers the pass had run before it (``Capture.called``)."""
    key: str
    label: str
    z: torch.Tensor
    fn: object
    axis: int
    parametric: bool = False    # fn holds per-neuron tensors (PReLU's slopes)
    after: int = 0              # weight layers the pass had run before it


@dataclass
class Capture:
    """What one pass recorded. ``outputs``: weight layer -> its first output as the layer
    returned it (gradient modes only; a copy in the autograd graph); ``called``: weight layers in the order their forward ran;
    ``leaves``: the differentiated inputs (one floating input, or one per embedding call fed by
    tokens); ``tokens``: whether those are embedding outputs; ``frozen``: factors frozen in static
    mode; ``output``: the model's output tensor; ``not_analysable``: module -> why."""
    sites: list[Site] = field(default_factory=list)
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    called: list[str] = field(default_factory=list)
    leaves: list[torch.Tensor] = field(default_factory=list)
    tokens: bool = False
    frozen: list[str] = field(default_factory=list)
    output: torch.Tensor | None = None
    not_analysable: dict[str, str] = field(default_factory=dict)
    sample_bytes: int = 0     # per sample, all weight-layer outputs: a proxy of the pass's memory
    frozen_at: dict[str, tuple[str, ...]] = field(default_factory=dict)   # layer -> frozen before it
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)   # kept Linear layer -> its input
    signed: bool = True       # False: a static pass with absolute coefficients
    static: bool = False      # a static pass: every gate open


def capture(model: nn.Module, inputs: ModelInputs, *, grad: bool = False, static: bool = False,
            signed: bool = True, sites: bool = False, layers=None, stop: bool = False,
            what: str | None = None) -> Capture:
    """Run ``model`` on ``inputs`` in eval mode and record (see the module docstring).

    ``grad``: differentiable leaves and weight-layer outputs in the graph (the weights detached).
    ``static``: every gate open, other non-linear factors frozen (implies grad); ``signed``:
    False for absolute coefficients. ``sites``: record the activation calls. ``layers``: names
    of the weight layers whose outputs to keep (default all); with ``stop`` the pass ends once
    they have all run (nothing later can reach them; ``Capture.output`` is then None).
    ``what`` names the inputs in the ValueError raised when the model does not accept them
    (quoting the model's own error; default: their shapes).
    """
    grad = grad or static
    try:
        with torch.inference_mode(False), torch.set_grad_enabled(grad):
            watcher = _Watcher(model, inputs, grad=grad, static=static, signed=signed,
                               sites=sites, layers=layers, stop=stop)
        with evaluating(model), watcher.hooks(), torch.inference_mode(False), \
                torch.set_grad_enabled(grad), watcher.mode:
            if grad:
                state = {n: t.detach() for n, t in (*model.named_parameters(),
                                                     *model.named_buffers())}
                out = functional_call(model, state, watcher.args, watcher.kwargs)
            else:
                out = model(*watcher.args, **watcher.kwargs)
    except _Stop:
        out = None
    except UnsupportedModel:
        raise
    except Exception as e:
        raise ValueError(f"{what or f'the input ({inputs.describe()})'} does not fit the model "
                         f"{type(model).__name__} ({type(e).__name__}: {e})") from e
    cap = watcher.cap
    cap.output = first_tensor(out)
    return cap


class _Watcher:
    def __init__(self, model, inputs: ModelInputs, *, grad, static, signed, sites, layers, stop):
        self.model, self.grad, self.static, self.signed = model, grad, static, signed
        self.record_sites = sites
        self.cap = Capture(signed=signed or not static, static=static)
        self.names, self.modules = {}, {}
        for name, m in model.named_modules():
            self.names.setdefault(id(m), name)
            self.modules.setdefault(name, m)
        self.weights = {id(m): n for n, m in weight_layers(model)}
        self.keep = None if layers is None else set(layers)
        self.stop = stop
        self.complete = False           # every kept layer has its output: nothing more to note
        self.stack: list[str] = []
        self.activation_depth = 0       # inside a user's elementwise module: calls not recorded
        self.passthrough = False        # our own work inside hooks: nothing recorded
        self.counts: dict[str, int] = {}
        self.origin: dict[int, tuple[str, torch.Tensor]] = {}   # id(tensor) -> (layer, tensor)
        self.claimed: set[str] = set()
        self.gates: dict[int, torch.Tensor] = {}                # static: activation outputs
        self.elementwise: dict[int, bool] = {}
        self.has_conv = any(isinstance(m, _ConvNd) for m in model.modules())
        for name, m in model.named_modules():
            for kind, why in NOT_ANALYSABLE.items():
                if isinstance(m, kind):
                    self.cap.not_analysable[name or "<model>"] = f"{type(m).__name__}: {why}"
        token_inputs = [t for t in inputs.tensors if not t.is_floating_point()]
        embeds = any(isinstance(m, nn.Embedding) for m in model.modules())
        self.tokens = [t.untyped_storage().data_ptr() for t in token_inputs] if embeds else []
        self.cap.tokens = bool(self.tokens)
        if grad and not self.tokens:
            floats = [t for t in inputs.tensors if t.is_floating_point()]
            if not floats:
                raise UnsupportedModel(
                    f"no input to differentiate: the inputs ({inputs.describe()}) hold no "
                    "floating-point tensor and no token ids feeding an nn.Embedding")
            leaf = floats[0].detach().clone().requires_grad_(True)
            self.cap.leaves.append(leaf)
            inputs = inputs.map(lambda t: leaf if t is floats[0] else t)
        self.args, self.kwargs = inputs.args, inputs.kwargs
        self.mode = _Mode(self)

    # -- module hooks ---------------------------------------------------------------------------

    @contextmanager
    def hooks(self) -> Iterator[None]:
        handles = []
        try:
            seen = set()
            for m in self.model.modules():
                if id(m) in seen:
                    continue
                seen.add(id(m))
                handles.append(m.register_forward_pre_hook(self._enter))
                handles.append(m.register_forward_hook(self._leave, always_call=True))
            yield
        finally:
            for h in handles:
                h.remove()

    def _enter(self, module, args):
        name = self.names.get(id(module), "?")
        self.stack.append(name)
        if self.activation_depth:
            self.activation_depth += 1
        elif self._custom_activation(module, args):
            self.activation_depth = 1
        elif self.grad and isinstance(module, nn.Linear) and name not in self.cap.inputs and \
                (self.keep is None or name in self.keep) and args and \
                isinstance(args[0], torch.Tensor) and args[0].requires_grad:
            # a kept Linear layer's input, as a copy the layer consumes: a unit's gradient
            # starts there as its weight row, without a matrix product of one-hot cotangents
            copy = args[0].clone()
            self.cap.inputs[name] = copy
            return (copy, *args[1:])
        return None

    def _leave(self, module, args, output):
        name = self.stack.pop() if self.stack else "?"
        if self.activation_depth:
            self.activation_depth -= 1
            if self.activation_depth == 0 and isinstance(output, torch.Tensor):
                return self._activation(name, type(module).__name__.lower(), args[0], args[0],
                                        module.forward, output, own_module=True)
            return None
        if id(module) in self.weights and isinstance(output, (tuple, list)) and output and \
                isinstance(output[0], torch.Tensor):
            self._weight_output(name, output[0])    # attention: (output, weights)
            return None
        if not isinstance(output, torch.Tensor):
            return None
        if isinstance(module, nn.Embedding) and self.tokens and args and \
                isinstance(args[0], torch.Tensor) and \
                args[0].untyped_storage().data_ptr() in self.tokens and self.grad:
            leaf = output.detach().requires_grad_(True)
            self.cap.leaves.append(leaf)
            return leaf
        if id(module) in self.weights:
            self._weight_output(name, output)
        elif isinstance(module, (_BatchNorm, _DropoutNd, nn.Identity)) and args and \
                isinstance(args[0], torch.Tensor):
            source = self.origin.get(id(args[0]))
            if source is not None and source[1] is args[0]:
                self.origin[id(output)] = (source[0], output)
        return None

    def _weight_output(self, name: str, output: torch.Tensor) -> None:
        if output.ndim:
            self.cap.sample_bytes += output[0].numel() * output.element_size()
        if self.grad and name not in self.cap.outputs and (self.keep is None or name in self.keep):
            # a copy in the graph: the forward may change the output in place later
            # (``out += shortcut`` right after a residual block's last convolution)
            self.cap.outputs[name] = output.clone()
            self.cap.frozen_at[name] = tuple(self.cap.frozen)
        if name not in self.cap.called:
            self.cap.called.append(name)
        self.origin[id(output)] = (name, output)
        if self.keep is not None and not self.complete and self.keep <= set(self.cap.called):
            self.complete = True     # what comes later cannot reach these layers
            if self.stop:
                raise _Stop

    def _custom_activation(self, module, args) -> bool:
        """A parameter-free leaf module of the user's own that acts elementwise on its input."""
        if type(module).__module__.startswith("torch.") or next(module.children(), None) is not None \
                or next(module.parameters(recurse=False), None) is not None \
                or next(module.buffers(recurse=False), None) is not None \
                or not args or not isinstance(args[0], torch.Tensor):
            return False
        if id(module) not in self.elementwise:
            self.passthrough = True
            try:
                self.elementwise[id(module)] = _acts_elementwise(module, args[0].detach())
            finally:
                self.passthrough = False
        return self.elementwise[id(module)]

    # -- activations ----------------------------------------------------------------------------

    def _activation(self, caller: str, function: str, z: torch.Tensor, seen: torch.Tensor, fn,
                    output, *, own_module: bool, parametric: bool = False):
        """Record one activation call (``z`` its input tensor, ``seen`` its values before the
        call); in static mode return its input (the gate open)."""
        index = self.counts.get(caller, 0)
        self.counts[caller] = index + 1
        if self.record_sites:
            label = caller if own_module else f"{caller}:{function}#{index}" if caller else \
                f"{function}#{index}"
            source = self.origin.get(id(z))
            layer = source[0] if source is not None and source[1] is z else None
            if own_module and layer is not None and layer not in self.claimed:
                key = layer                 # a module after one weight layer: the wave-1 key
                self.claimed.add(layer)
            else:
                key = f"{caller}#{index}" if own_module else label
            axis = self._axis(z, layer)
            self.cap.sites.append(Site(key, label, seen.detach().clone() if seen is z else seen,
                                       fn, axis, parametric, len(self.cap.called)))
        if self.static:
            gate = z.view_as(z)
            self.gates[id(gate)] = gate
            return gate
        return output

    def _axis(self, z: torch.Tensor, layer: str | None) -> int:
        if layer is not None:
            return 1 if unit_axis(self.modules[layer]) == 1 else z.ndim - 1
        if z.ndim <= 2 or self.has_conv:
            return 1
        return z.ndim - 1

    def caller(self) -> str:
        return self.stack[-1] if self.stack else ""

    def owner_is_activation_module(self) -> bool:
        if not self.stack:
            return False
        return isinstance(self.modules.get(self.stack[-1]), ACTIVATION_MODULES)


class _Mode(TorchFunctionMode):
    """Sees every torch function call of the forward (see the module docstring)."""

    def __init__(self, watcher: _Watcher):
        super().__init__()
        self.w = watcher

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        w = self.w
        if w.passthrough or w.activation_depth:
            return func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        if name in ACTIVATIONS and args and isinstance(args[0], torch.Tensor) \
                and args[0].is_floating_point():
            z = args[0]
            inplace = name.endswith("_") or kwargs.get("inplace") or any(a is True for a in args[1:])
            seen = z.detach().clone() if inplace else z   # an in-place call overwrites its input
            rest, kw = args[1:], {k: v for k, v in kwargs.items() if k != "inplace"}
            output = None if w.static else func(*args, **kwargs)
            return w._activation(w.caller(), name.rstrip("_"), z, seen,
                                 lambda t: func(t, *rest, **kw), output,
                                 own_module=w.owner_is_activation_module(),
                                 parametric=any(isinstance(a, torch.Tensor)
                                                for a in (*rest, *kw.values())))
        if (name.endswith("_") or name == "__setitem__") and args and \
                isinstance(args[0], torch.Tensor):
            w.origin.pop(id(args[0]), None)     # changed in place: no longer a layer's output
        if name == "batch_norm" and w.grad:
            if _batch_statistics(args, kwargs):
                raise UnsupportedModel(
                    f"module {w.caller()!r} normalises with batch statistics even in eval mode "
                    "(BatchNorm without running statistics): the samples are not independent, "
                    "so a per-sample Jacobian is not defined")
            # the affine map of eval mode, written out: its backward batches under vmap
            return _affine_batch_norm(args, kwargs, w.signed or not w.static)
        if not w.static:
            return func(*args, **kwargs)
        return _static_call(w, func, name, args, kwargs)


def _batch_statistics(args, kwargs) -> bool:
    training = kwargs.get("training", args[5] if len(args) > 5 else False)
    running = kwargs.get("running_mean", args[1] if len(args) > 1 else None)
    return bool(training) or running is None


def _affine_batch_norm(args, kwargs, signed: bool) -> torch.Tensor:
    names = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
    p = dict(zip(names, args))
    p.update(kwargs)
    x, eps = p["input"], p.get("eps", 1e-5)
    shape = (1, -1, *[1] * (x.ndim - 2))
    scale = torch.rsqrt(p["running_var"] + eps)
    if p.get("weight") is not None:
        scale = scale * p["weight"]
    if not signed:
        scale = scale.abs()
    out = (x - p["running_mean"].view(shape)) * scale.view(shape)
    return out + p["bias"].view(shape) if p.get("bias") is not None else out


def _dependent(value) -> bool:
    return isinstance(value, torch.Tensor) and value.requires_grad


def _leaves(args, kwargs) -> list:
    """The leaves of a torch function's arguments: one level of tensors and scalars as they
    are (nearly every call; a radiograph spent a third of its time in pytree), else pytree's."""
    values = (*args, *kwargs.values())
    if any(isinstance(v, (list, tuple, dict)) for v in values):
        return tree_flatten((args, kwargs))[0]
    return list(values)


def _static_call(w: _Watcher, func, name: str, args, kwargs):
    """One call in static mode: linear ops run (with absolute coefficients when unsigned),
    everything else non-linear in the input is frozen and named."""
    flat = _leaves(args, kwargs)
    dependent = [v for v in flat if _dependent(v)]
    if not dependent:
        return func(*args, **kwargs)
    where = f"{w.caller() or '<model>'}:{name}"
    if name in _LINEAR:
        if w.signed:
            return func(*args, **kwargs)
        return _unsigned_linear(func, name, args, kwargs)
    if name in _PRODUCTS:
        operands = [a for a in flat if isinstance(a, torch.Tensor)]
        deps = [a for a in operands if _dependent(a)]
        divisor = name.startswith(("div", "true_div")) and _dependent(args[1])
        if len(deps) == 1 and not divisor:
            return func(*args, **kwargs) if w.signed else _with_absolute(func, args, kwargs, deps[0])
        # a product of two input-dependent factors (or a division by one): freeze the gate's
        # side, else the divisor, else the first factor
        frozen = args[1] if divisor else next((a for a in deps if id(a) in w.gates), deps[0])
        _note(w, where + (" (divisor)" if divisor else " (product of input-dependent factors)"))
        rest, kw = tree_map(lambda a: a.detach() if a is frozen else a, (args, kwargs))
        if w.signed:
            return func(*rest, **kw)
        kept = next((a for a in deps if a is not frozen), None)
        return _with_absolute(func, rest, kw, kept)
    if name in _SELECTIONS:
        _note(w, where + " (selection)")
        return func(*args, **kwargs)
    if name in ("layer_norm", "group_norm", "rms_norm"):
        _note(w, where + " (scale)")
        return _frozen_norm(name, args, kwargs, w.signed)
    if name == "scaled_dot_product_attention":
        _note(w, where + " (attention pattern)")
        return _frozen_attention(args, kwargs, w.signed)
    if name == "multi_head_attention_forward":
        out = _frozen_multi_head_attention(args, kwargs, w.signed)
        if out is not None:
            _note(w, where + " (attention pattern)")
            return out
    out = func(*args, **kwargs)
    outs, _ = tree_flatten(out)
    if not any(_dependent(o) for o in outs):
        return out
    _note(w, where + (" (attention pattern)" if "softmax" in name else ""))
    return _detach_tree(out)


def _note(w: _Watcher, what: str) -> None:
    if not w.complete and what not in w.cap.frozen:
        w.cap.frozen.append(what)


def _detach_tree(out):
    if isinstance(out, torch.Tensor):
        return out.detach()
    if isinstance(out, (tuple, list)):
        return type(out)(_detach_tree(o) for o in out) if not hasattr(out, "_fields") else \
            type(out)(*(_detach_tree(o) for o in out))
    return out


def _absolute(value):
    if isinstance(value, torch.Tensor) and not value.requires_grad and value.is_floating_point():
        return value.abs()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return abs(value)
    return value


def _with_absolute(func, args, kwargs, keep):
    """func with every constant operand replaced by its absolute value (``keep`` untouched)."""
    args, kwargs = tree_map(lambda a: a if a is keep else _absolute(a), (args, kwargs))
    return func(*args, **kwargs)


def _unsigned_linear(func, name, args, kwargs):
    if name in ("neg", "neg_", "negative"):
        return args[0].view_as(args[0])
    if name in _SUBTRACTIONS or name in ("add", "add_"):
        # every operand added: a constant only shifts, the dependent ones count with sign +
        a, b = _absolute(args[0]), _absolute(args[1])
        alpha = abs(kwargs.get("alpha", 1))
        if name.endswith("_"):
            return a.add_(b, alpha=alpha)
        return torch.add(a, b, alpha=alpha)
    return func(*args, **kwargs)


def _frozen_norm(name, args, kwargs, signed: bool):
    """LayerNorm / GroupNorm / RMSNorm with 1/std frozen: linear in x (the centring kept)."""
    x = args[0]
    params = dict(zip({"layer_norm": ("normalized_shape", "weight", "bias", "eps"),
                       "group_norm": ("num_groups", "weight", "bias", "eps"),
                       "rms_norm": ("normalized_shape", "weight", "eps")}[name], args[1:]))
    params.update(kwargs)
    weight, bias, eps = params.get("weight"), params.get("bias"), params.get("eps")
    if name == "group_norm":
        groups = params["num_groups"]
        v = x.reshape(x.shape[0], groups, -1)
        dims = (-1,)
    else:
        shape = params["normalized_shape"]
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        v, dims = x, tuple(range(-len(shape), 0))
    if eps is None:
        eps = torch.finfo(x.dtype).eps
    count = math.prod(v.shape[d] for d in dims)
    if name == "rms_norm":
        scale = torch.rsqrt(v.detach().pow(2).mean(dims, keepdim=True) + eps)
        out = v * scale
    else:
        mean = v.mean(dims, keepdim=True)
        scale = torch.rsqrt(v.detach().var(dims, unbiased=False, keepdim=True) + eps)
        # unsigned: |I - J/n| = (1 - 2/n) I + J/n, the centring's absolute coefficients
        centred = v - mean if signed else v * (1 - 2 / count) + mean
        out = centred * scale
    out = out.reshape(x.shape)
    if weight is not None:
        w = weight if signed else weight.abs()
        out = out * (w.view(1, -1, *[1] * (x.ndim - 2)) if name == "group_norm" else w)
    if bias is not None:
        out = out + (bias.view(1, -1, *[1] * (x.ndim - 2)) if name == "group_norm" else bias)
    return out


def _frozen_attention(args, kwargs, signed: bool):
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
    p = dict(zip(names, args))
    p.update(kwargs)
    q, k, v = p["query"], p["key"], p["value"]
    scale = p.get("scale") or 1 / math.sqrt(q.shape[-1])
    if p.get("enable_gqa") and k.shape[-3] != q.shape[-3]:
        rep = q.shape[-3] // k.shape[-3]
        k, v = k.repeat_interleave(rep, -3), v.repeat_interleave(rep, -3)
    with torch.no_grad():
        scores = q.detach() @ k.detach().transpose(-2, -1) * scale
        if p.get("is_causal"):
            n, m = scores.shape[-2:]
            scores = scores.masked_fill(~torch.ones(n, m, dtype=torch.bool, device=q.device).tril(),
                                        float("-inf"))
        mask = p.get("attn_mask")
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool \
                else scores + mask
        pattern = scores.softmax(-1)
    return pattern @ v


_MHA_ARGS = ("query", "key", "value", "embed_dim_to_check", "num_heads", "in_proj_weight",
             "in_proj_bias", "bias_k", "bias_v", "add_zero_attn", "dropout_p", "out_proj_weight",
             "out_proj_bias", "training", "key_padding_mask", "need_weights", "attn_mask",
             "use_separate_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight",
             "static_k", "static_v", "average_attn_weights", "is_causal")


def _frozen_multi_head_attention(args, kwargs, signed: bool):
    """``F.multi_head_attention_forward`` (sequence first, [L, B, E]) with its attention pattern
    frozen: out_proj(pattern @ v_proj(value)). None for the variants it does not cover (extra
    key/value biases, zero attention, static keys): those freeze the whole output."""
    p = dict(zip(_MHA_ARGS, args))
    p.update(kwargs)
    if any(p.get(k) is not None for k in ("bias_k", "bias_v", "static_k", "static_v")) \
            or p.get("add_zero_attn") or p["value"].ndim != 3:
        return None
    with torch.no_grad():
        detached = {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in p.items()}
        detached.update(need_weights=True, average_attn_weights=False, training=False)
        _, pattern = torch.nn.functional.multi_head_attention_forward(**detached)   # [B, H, L, S]
    value, heads = p["value"], p["num_heads"]
    s, b, e = value.shape
    if p.get("use_separate_proj_weight"):
        wv = p["v_proj_weight"]
    else:
        wv = p["in_proj_weight"][2 * e:]
    bias = p.get("in_proj_bias")
    bv = None if bias is None else bias[2 * e:]
    wo = p["out_proj_weight"]
    if not signed:
        wv, wo = wv.abs(), wo.abs()
    v = torch.nn.functional.linear(value, wv, bv).view(s, b, heads, e // heads).permute(1, 2, 0, 3)
    o = (pattern @ v).permute(2, 0, 1, 3).reshape(-1, b, e)
    out = torch.nn.functional.linear(o, wo, p.get("out_proj_bias"))
    weights = pattern.mean(1) if p.get("average_attn_weights", True) else pattern
    return out, (weights if p.get("need_weights", True) else None)


# -- helpers shared by the analyses -----------------------------------------------------------------

@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Every module in eval mode inside; each module's own training flag restored on exit, also
    on an exception. Flags are set directly: an overridden ``train()`` is not called."""
    # only those in training mode are touched: a flag set through Module.__setattr__ costs
    # microseconds, and the analyses' copy is in eval mode throughout (a millisecond a run)
    training = [m for m in model.modules() if m.training]
    try:
        for m in training:
            m.training = False
        yield
    finally:
        for m in training:
            m.training = True


def derivative(fn, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(s(z), s'(z)) of an elementwise activation ``fn`` (a module or a function of one tensor),
    s' by autograd through it: d sum(s(z)) / dz_i = s'(z_i). The input is cloned before ``fn``
    sees it, so in-place activations work and z is not modified; the gradient is taken with
    respect to z only (parameters such as PReLU's slope get no ``.grad``)."""
    call = fn.forward if isinstance(fn, nn.Module) else fn
    with torch.inference_mode(False), torch.enable_grad():
        leaf = z.detach().clone().requires_grad_(True)
        out = call(leaf.clone())
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


_PROBE_SEED = 20220228


def _agree(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape:
        return False
    tol = max(1e-4, 100 * torch.finfo(b.dtype).eps)
    finite = b[torch.isfinite(b)]
    scale = float(finite.abs().max()) if finite.numel() else 0.0
    return torch.allclose(a, b.to(a.dtype), rtol=tol, atol=tol * scale + 1e-30, equal_nan=True)


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
