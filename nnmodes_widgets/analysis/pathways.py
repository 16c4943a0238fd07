"""Weight pathway analysis: static and gated radiographs, characteristic maps.

Definitions from Feng, Zhang, Wang, Zhao, "How and what to learn: the modes of machine learning"
(arXiv 2202.13829); see SPEC section 4.2. For a chain z^l = W^l h^{l-1} + b^l, h^l = s(z^l),
h^0 = x (how a model is read as a chain, and what is refused, is in ``chain.py``):

- a weight pathway (i_0, ..., i_l) runs from input component i_0 to neuron i_l of layer l; its
  value is W^1[i_1, i_0] W^2[i_2, i_1] ... W^l[i_l, i_{l-1}];
- static radiograph R^l[n, i] = sum of the values of all pathways from input i to neuron n
  = (W^l ... W^1)[n, i]; unsigned: the sum of |values| = (|W^l| ... |W^1|)[n, i];
- gated radiograph R^l(x) = W^l G^{l-1}(x) W^{l-1} ... G^1(x) W^1 with G^k = diag(s'(z^k(x))):
  every pathway weighted by the gates of the hidden neurons it passes. It is the Jacobian
  dz^l/dx (exact, by the chain rule; s' from autograd through each activation module);
- characteristic map C[n, i] = x_i R^l(x)[n, i]: how much input component i enhances (> 0) or
  suppresses (< 0) neuron n; for a bias-free ReLU network sum_i C[n, i] = z^l_n(x).

Neurons and shapes. ``layer`` is the module name of a weight layer; R^l is taken of its output
z^l, before any activation or BatchNorm that follows it.
- nn.Linear layer: n_layer = out_features neurons.
- nn.Conv1d/2d/3d layer: a neuron is an output channel, and its radiograph is that of the
  channel's spatially summed pre-activation, sum_p z^l[c, p] (SPEC 4.2): n_layer = out_channels.
- Input dims (``IN`` below): the flattened input, n_in = prod(x.shape[1:]), for a dense chain
  (first weight layer a Linear; x may be [B, ...] with a Flatten in front); image shaped,
  x.shape[1:] (e.g. (C, H, W)), when the first weight layer is a convolution.
So ``static_radiograph`` gives [n_layer, *IN], ``gated_radiograph`` and ``characteristic_maps``
[B, n_layer, *IN], and ``characteristic_maps`` with labels [C, n_layer, *IN].

Pathways pass through Linear and convolution layers (bias-free part), elementwise activations
(gates; the static radiograph ignores them, as in the paper), BatchNorm with running
statistics (in eval mode a per-channel scale a = gamma / sqrt(var + eps): a diagonal weight
layer; |a| in unsigned static radiographs), Flatten/Unflatten, Dropout and Identity. A weight
layer behind anything else (pooling, LayerNorm, ...) is refused with an error naming the
blocking module.

Computation: cotangents are pulled back from layer l towards the input (the reverse-mode product
W^l G^{l-1} W^{l-1} ..., cheapest when n_layer < n_in), as batched matrix products and
convolution transposes on the weights' device; the part before the first gate is shared by all
samples. Samples are processed in chunks (``chunk_size``; default: the largest chunk whose
intermediates stay under 64 MiB), so the peak memory beyond the returned tensor is one chunk's
intermediates. Results are on the weights' device, in their dtype.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import grad as nn_grad

from .chain import (ACTIVATION, AFFINE, IDENTITY, RESHAPE, WEIGHT, Chain, Trace, derivative,
                    discover_chain, evaluating, make_probe, numel, prepare_batch)

__all__ = ["pathway_layers", "static_radiograph", "gated_radiograph", "characteristic_maps",
           "CHUNK_BYTES"]

CHUNK_BYTES = 64 * 2**20    # default budget for one chunk's intermediates

_CONV_INPUT_GRAD = {1: nn_grad.conv1d_input, 2: nn_grad.conv2d_input, 3: nn_grad.conv3d_input}


# -- public functions ---------------------------------------------------------------------------------

def pathway_layers(model: nn.Module, *, input_shape: tuple[int, ...] | None = None) -> list[str]:
    """Module names of the weight layers that the pathway functions accept, front to back.

    These are the Linear and Conv1d/2d/3d layers with nothing but weight layers, elementwise
    activations, BatchNorm (running statistics), Flatten, Dropout and Identity before them. The
    chain is checked against the model's forward on a generated probe of per-sample shape
    ``input_shape`` (default: (in_features,) of a dense first layer; required when the first
    weight layer is a convolution, whose spatial size is free).

    Raises ValueError when the model cannot be analysed at all (nothing to analyse, forward is
    not the chain of its modules, e.g. functional activations or residual connections).
    """
    chain = discover_chain(model)
    with evaluating(model):
        _static_probe(chain, model, input_shape)
    return [s.name for k, s in enumerate(chain.steps)
            if s.kind == WEIGHT and chain.pathway_block(k) is None]


def static_radiograph(model: nn.Module, layer: str, *, signed: bool = True,
                      input_shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """Static radiograph of weight layer ``layer``: [n_layer, *IN] (see the module docstring).

    ``signed=True``: R[n, i] = (W^l ... W^1)[n, i], the sum of all pathway values from input i
    to neuron n. ``signed=False``: (|W^l| ... |W^1|)[n, i], pathway strength regardless of
    sign. Biases and activations play no part; for a convolution layer the pathways of every
    position of the channel are summed. ``input_shape`` (per sample, without the batch
    dimension) is needed when the first weight layer is a convolution: it fixes the image size
    and the radiograph's shape [n_layer, *input_shape]; dense chains give [n_layer, n_in].

    The model is first checked on a generated probe: a model whose forward is not the chain of
    its modules (activations called as functions, residual connections) is refused, never
    computed as if it were linear.
    """
    chain = discover_chain(model)
    with evaluating(model):
        trace = _static_probe(chain, model, input_shape)
        k = _pathway_index(chain, layer)
        plan = _Pullback(chain, trace, k, gates=None, absolute=not signed)
        rows = plan.rows(0, 1)
        out = torch.empty(rows.shape[1:], dtype=rows.dtype, device=rows.device)
        out.copy_(rows[0])   # a fresh tensor: never a view of a weight
    return _input_dims(chain, trace, out, batch_dims=1)


def gated_radiograph(model: nn.Module, x: torch.Tensor, layer: str, *,
                     chunk_size: int | None = None) -> torch.Tensor:
    """Gated radiographs of weight layer ``layer`` for the samples x: [B, n_layer, *IN].

    R^l(x) = W^l G^{l-1}(x) W^{l-1} ... G^1(x) W^1 with G^k = diag(s'(z^k(x))) from autograd
    through each activation module: the Jacobian dz^l/dx (for a convolution layer, of the
    channel sums). x: [B, ...], converted to the weights' device and dtype. ``chunk_size``:
    samples per chunk (default: chunks whose intermediates stay under ``CHUNK_BYTES``).
    """
    _check_chunk_size(chunk_size)
    chain = discover_chain(model)
    chain.weight_index(layer)   # a name that does not exist fails before any computation
    with evaluating(model):
        x = chain.prepare(x)
        trace = chain.trace(model, x)
        k = _pathway_index(chain, layer)
        plan = _Pullback(chain, trace, k, gates=_gates(chain, trace, k), absolute=False)
        out = torch.empty((x.shape[0], *plan.row_shape), dtype=plan.dtype, device=plan.device)
        for s, e in _chunks(x.shape[0], chunk_size, plan.bytes_per_sample):
            out[s:e] = plan.rows(s, e)
    return _input_dims(chain, trace, out, batch_dims=2)


def characteristic_maps(model: nn.Module, x: torch.Tensor, layer: str, *, y=None,
                        num_classes: int | None = None,
                        chunk_size: int | None = None) -> torch.Tensor:
    """Characteristic maps C[b, n, i] = x_i R^l(x_b)[n, i] of layer ``layer``: [B, n_layer, *IN].

    C > 0: input component i enhances neuron n; C < 0: it suppresses it. For a bias-free ReLU
    network sum_i C[b, n, i] = z^l_n(x_b).

    With integer labels ``y`` [B]: the class averages [C, n_layer, *IN], C = ``num_classes`` or
    max(y) + 1; a class 0..C-1 with no sample in y gets NaN (there is nothing to average). The
    per-sample maps are then never held all at once: memory is one chunk plus the C averages.
    """
    _check_chunk_size(chunk_size)
    chain = discover_chain(model)
    chain.weight_index(layer)
    with evaluating(model):
        x, y, n_classes = prepare_batch(chain, x, y, num_classes)
        batch = x.shape[0]
        trace = chain.trace(model, x)
        k = _pathway_index(chain, layer)
        plan = _Pullback(chain, trace, k, gates=_gates(chain, trace, k), absolute=False)
        # x laid out like the radiograph's input dims, with a neuron axis to broadcast over
        xs = x.reshape(batch, 1, *plan.row_shape[1:])
        if y is None:
            out = torch.empty((batch, *plan.row_shape), dtype=plan.dtype, device=plan.device)
        else:
            out = torch.zeros((n_classes, *plan.row_shape), dtype=plan.dtype, device=plan.device)
        for s, e in _chunks(batch, chunk_size, plan.bytes_per_sample):
            if y is None:
                torch.mul(plan.rows(s, e), xs[s:e], out=out[s:e])
            else:   # class sums; the chunk's maps are never all kept
                rows = plan.rows(s, e)
                out.index_add_(0, y[s:e], rows * xs[s:e] if plan.broadcast else rows.mul_(xs[s:e]))
        if y is not None:
            counts = torch.bincount(y, minlength=n_classes).to(out.dtype)
            out /= counts.view(-1, *[1] * (out.ndim - 1))   # 0 / 0: NaN for an absent class
    return _input_dims(chain, trace, out, batch_dims=2)


# -- the pullback --------------------------------------------------------------------------------------

class _Pullback:
    """Rows of the radiograph of weight layer k: cotangents pulled back from z^k to the input.

    ``gates[j]`` ([B, *shape] for activation step j) weights the pathways through step j; with
    ``gates=None`` activations are skipped (static radiograph). ``absolute`` takes |W| (and |a|
    of BatchNorm) everywhere. ``rows(s, e)`` gives [e - s, n_layer, *input shape] for samples
    s..e-1 (a broadcast view when no gate lies between the layer and the input: copy it).
    ``bytes_per_sample`` estimates the working set of ``rows`` per sample.
    """

    def __init__(self, chain: Chain, trace: Trace, k: int, *, gates, absolute: bool):
        self.steps, self.trace, self.gates, self.absolute = chain.steps, trace, gates, absolute
        target = self.steps[k].module
        weight = self._weight(target)
        self.dtype, self.device = weight.dtype, weight.device
        out_shape = tuple(trace.output_of(k).shape[1:])
        in_shape = tuple(trace.inputs[k].shape[1:])
        if isinstance(target, nn.Linear):
            v = weight.unsqueeze(0)                              # [1, n, in]
        else:
            # the channel sum's cotangent: ones over the positions of one channel per row
            n = out_shape[0]
            eye = torch.eye(n, dtype=self.dtype, device=self.device)
            cot = eye.view(n, n, *[1] * (len(out_shape) - 1)).expand(n, *out_shape).contiguous()
            v = _conv_pullback(target, weight, cot, in_shape).unsqueeze(0)
        self.n = v.shape[1]
        j = k - 1
        # everything up to the first gate is the same for every sample: computed once
        while j >= 0 and not (gates is not None and self.steps[j].kind == ACTIVATION):
            v = self._pull(j, v, None)
            j -= 1
        self.shared, self.first_gate = v, j
        self.broadcast = j < 0     # rows() is then a view of `shared`, else a fresh tensor
        self.row_shape = (self.n, *trace.inputs[0].shape[1:])
        # per-sample working set of the per-chunk steps: a step's input and output cotangents,
        # doubled for convolution workspaces and the characteristic maps
        sizes = [numel(trace.inputs[i].shape[1:]) + numel(trace.output_of(i).shape[1:])
                 for i in range(j + 1)] or [numel(self.row_shape[1:])]
        self.bytes_per_sample = 2 * self.n * max(sizes) * weight.element_size()

    def _weight(self, module: nn.Module) -> torch.Tensor:
        w = module.weight.detach()
        return w.abs() if self.absolute else w

    def rows(self, s: int, e: int) -> torch.Tensor:
        v = self.shared
        for j in range(self.first_gate, -1, -1):
            v = self._pull(j, v, slice(s, e))
        v = v.reshape(v.shape[0], *self.row_shape)
        return v if v.shape[0] == e - s else v.expand(e - s, *self.row_shape)

    def _pull(self, j: int, v: torch.Tensor, rows: slice | None) -> torch.Tensor:
        """Cotangent v [b, n, *output shape of step j] -> [b', n, *input shape of step j]."""
        step = self.steps[j]
        in_shape = tuple(self.trace.inputs[j].shape[1:])
        if step.kind == WEIGHT:
            w = self._weight(step.module)
            if isinstance(step.module, nn.Linear):
                return v @ w
            b, n = v.shape[:2]
            flat = v.reshape(b * n, *v.shape[2:])
            return _conv_pullback(step.module, w, flat, in_shape).reshape(b, n, *in_shape)
        if step.kind == ACTIVATION:
            return v if self.gates is None else v * self.gates[j][rows].unsqueeze(1)
        if step.kind == AFFINE:
            m = step.module
            a = torch.rsqrt(m.running_var.detach() + m.eps)
            if m.weight is not None:
                a = a * m.weight.detach()
            if self.absolute:
                a = a.abs()
            return v * a.to(v.dtype).view(1, 1, -1, *[1] * (len(in_shape) - 1))
        if step.kind == RESHAPE:
            return v.reshape(*v.shape[:2], *in_shape)
        if step.kind == IDENTITY:
            return v
        raise AssertionError(f"no pathway through {step.label}")   # excluded by _pathway_index


def _conv_pullback(module: nn.Module, weight: torch.Tensor, cot: torch.Tensor,
                   in_shape: tuple[int, ...]) -> torch.Tensor:
    """The transpose of the (bias-free) convolution applied to cotangents [N, C_out, *S_out]:
    [N, C_in, *S_in]."""
    size = (cot.shape[0], *in_shape)
    padding = 0 if module.padding == "valid" else module.padding
    if module.padding_mode == "zeros" and not isinstance(padding, str):
        fn = _CONV_INPUT_GRAD[len(in_shape) - 1]
        return fn(size, weight, cot, module.stride, padding, module.dilation, module.groups)
    # padding="same" (possibly asymmetric) or reflect/replicate/circular padding: differentiate
    # the module's own convolution (exact, at the price of one extra convolution)
    with torch.inference_mode(False), torch.enable_grad():
        z = torch.zeros(size, dtype=cot.dtype, device=cot.device, requires_grad=True)
        (g,) = torch.autograd.grad(module._conv_forward(z, weight.clone(), None), z, cot.clone())
    return g


# -- helpers -------------------------------------------------------------------------------------------

def _pathway_index(chain: Chain, layer: str) -> int:
    k = chain.weight_index(layer)
    block = chain.pathway_block(k)
    if block is not None:
        why = f": {block.reason}" if block.reason else ""
        accepted = [s.name for j, s in enumerate(chain.steps)
                    if s.kind == WEIGHT and chain.pathway_block(j) is None]
        raise ValueError(f"layer {layer!r} lies behind {block.label}, which no weight pathway "
                         f"can pass{why}; pathway layers: {accepted}")
    return k


def _static_probe(chain: Chain, model: nn.Module, input_shape) -> Trace:
    """Trace of the chain on a generated probe of per-sample shape ``input_shape``."""
    if input_shape is None:
        input_shape = chain.first_input_shape()
        if input_shape is None:
            first = next(s for s in chain.steps if s.kind == WEIGHT)
            raise ValueError(
                f"the first weight layer {first.label} leaves the input size open: pass "
                "input_shape=(channels, *spatial), the shape of one sample")
    try:
        input_shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError) as e:
        raise TypeError(f"input_shape must be a tuple of ints, got {input_shape!r}") from e
    if not input_shape or min(input_shape) < 1:
        raise ValueError(f"input_shape must be the positive shape of one sample, got {input_shape}")
    probe = make_probe(input_shape, chain.device, chain.weight_dtype)
    return chain.trace(model, probe, extra_probe=False,
                       subject=f"a probe of input_shape {input_shape}")


def _gates(chain: Chain, trace: Trace, k: int) -> dict[int, torch.Tensor]:
    """s'(z) at the input of every activation before step k, for all samples of the trace."""
    return {j: derivative(s.module, trace.inputs[j])[1]
            for j, s in enumerate(chain.steps[:k]) if s.kind == ACTIVATION}


def _check_chunk_size(chunk_size) -> None:
    if chunk_size is not None and (not isinstance(chunk_size, int) or isinstance(chunk_size, bool)
                                   or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")


def _chunks(batch: int, chunk_size: int | None, bytes_per_sample: int):
    if chunk_size is None:
        chunk_size = max(1, CHUNK_BYTES // max(1, bytes_per_sample))
    for s in range(0, batch, chunk_size):
        yield s, min(batch, s + chunk_size)


def _input_dims(chain: Chain, trace: Trace, out: torch.Tensor, *, batch_dims: int) -> torch.Tensor:
    """Flatten the input dims of a dense chain's result; keep them for a convolutional chain."""
    if chain.image_input:
        return out
    return out.reshape(*out.shape[:batch_dims], -1)
