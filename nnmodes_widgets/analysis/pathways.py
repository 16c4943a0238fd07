"""Weight pathway analysis: static and gated radiographs, characteristic maps, for any model.

Definitions from Feng, Zhang, Wang, Zhao, "How and what to learn: the modes of machine learning"
(arXiv 2202.13829); see SPEC section 4.2. For a chain z^l = W^l h^{l-1} + b^l, h^l = s(z^l):

- a weight pathway (i_0, ..., i_l) runs from input component i_0 to neuron i_l of layer l; its
  value is W^1[i_1, i_0] W^2[i_2, i_1] ... W^l[i_l, i_{l-1}];
- static radiograph R^l[n, i] = the sum of the values of all pathways from input i to neuron n;
  unsigned: the sum of their absolute values;
- gated radiograph R^l(x): every pathway also weighted by the gates s'(z) of the hidden neurons
  it passes. It is the Jacobian dz^l/dx;
- characteristic map C[n, i] = x_i R^l(x)[n, i]: how much input component i enhances (> 0) or
  suppresses (< 0) neuron n; for a bias-free ReLU network sum_i C[n, i] = z^l_n(x).

Any architecture (SPEC 4.2, wave 2). The model's own forward runs (``capture.py``):
- the gated radiograph is the exact Jacobian, by autograd, of a unit's pre-activation (the
  weight layer's output) with respect to the input: residual sums, concatenations, pooling,
  normalisation, attention and functional activations included;
- the static radiograph is the same Jacobian with every elementwise activation replaced by the
  identity (every gate open) and normalisation in eval mode as its affine map: the sum over every
  pathway, skip paths included. Factors that are neither weights nor gates (max-pool selection,
  LayerNorm scales, attention patterns, products of two input-dependent factors) are frozen at
  their values on the probe batch, the radiograph is averaged over its samples, and the result's
  ``frozen`` attribute (a tuple of str, empty when nothing was frozen) names them. Without
  frozen factors the static network is linear and the radiograph needs no probe.

Units and shapes. ``layer`` is the module name of a weight layer (``pathway_layers``); its units
are the channels of a convolution's output (summed over positions) and the last axis of any
other weight layer's output (summed over every other axis: token positions, for instance).
``units`` picks some of them (a count k: the first k; or a sequence of indices); default all.
Input dims (``IN``): the input's per-sample shape, image shaped (e.g. (C, H, W)) when the first
weight layer the forward runs is a convolution, flattened for dense models; for token inputs
(integer ids feeding an ``nn.Embedding``) the input is the embedding output e(x), [T, d], and a
characteristic map has one value per token position: sum_d e * dz/de, [T].
So ``static_radiograph`` gives [n, *IN], ``gated_radiograph`` and ``characteristic_maps``
[B, n, *IN], and ``characteristic_maps`` with labels [C, n, *IN].

Language models (token input [B, T], the layer's output [B, T, V] the model's output): the
characteristic map of each position's predicted next token (the logit of the argmax at t, or of
the token ``y[b, t]`` when labels [B, T] are given) over the input positions: [B, T, T].

Computation: one forward pass per chunk of samples, then the cotangents of a chunk of units
pulled back together (``torch.autograd.grad(..., is_grads_batched=True)``: vmap over the
backward pass), never one backward pass per unit; a Linear layer's units start at the layer's
input with their weight rows (no product of one-hot cotangents with the weight). Chunks keep the working set near
``CHUNK_BYTES``. Results are fresh tensors on the weights' device, in their dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd

from .capture import Capture, capture, check_labels, unit_axis, weight_layers
from .errors import UnsupportedModel
from .inputs import ModelInputs, as_inputs

__all__ = ["pathway_layers", "static_radiograph", "static_radiographs", "gated_radiograph",
           "characteristic_maps", "CHUNK_BYTES"]

CHUNK_BYTES = 64 * 2**20    # default budget for one chunk's intermediates


# -- public functions ---------------------------------------------------------------------------------

def pathway_layers(model: nn.Module, *, input_shape=None) -> list[str]:
    """Module names of every weight layer of ``model`` (``nn.Linear``, ``nn.Conv*``, attention
    projections, any module with a weight of 2+ dimensions except embeddings), in registration
    order; a module registered twice is listed once. No input is needed (``input_shape`` is
    accepted for wave-1 callers and ignored).

    TypeError for a non-module; ValueError when there is nothing to analyse or a lazy layer is
    still uninitialised.
    """
    del input_shape
    return [name for name, _ in _weight_layers(model)]


def static_radiograph(model: nn.Module, layer: str, *, signed: bool = True, x=None,
                      input_shape: tuple[int, ...] | None = None, units=None) -> torch.Tensor:
    """Static radiograph of weight layer ``layer``: [n, *IN], with ``.frozen`` (see the module
    docstring).

    ``signed=True``: the sum of all pathway values from input i to unit n; ``signed=False``: the
    sum of their absolute values. Biases and gates play no part. ``x`` is a probe batch (a
    tensor, a tuple of positional or a dict of keyword inputs); it is needed for token inputs
    and for models with frozen factors (the result is the mean over its samples). Without x the
    radiograph is taken at a zero input of per-sample shape ``input_shape`` (default: the
    in_features of a first Linear layer).
    """
    _check_layer(model, layer)
    probe = x is not None
    if probe:
        inputs = as_inputs(x, model)
    else:
        inputs = ModelInputs((_zero_input(model, input_shape),), {})
    rows, cap = _jacobian(model, inputs, layer, static=True, signed=signed, units=units,
                          chunk_size=None, what="x" if probe else
                          f"a zero input of shape {tuple(inputs.args[0].shape[1:])}")
    if cap.frozen and not probe:
        raise ValueError(
            f"the static radiograph of {type(model).__name__} freezes factors that depend on the "
            f"input ({', '.join(cap.frozen)}): pass a probe batch x to freeze them at")
    return _averaged(rows, cap.frozen)


def _averaged(rows: torch.Tensor, frozen) -> torch.Tensor:
    """A static radiograph from its per-sample rows: the mean over the samples (a fresh tensor),
    with ``frozen`` naming what was frozen at them."""
    out = rows.mean(0) if rows.shape[0] > 1 else rows[0].clone()
    out.frozen = tuple(frozen)
    return out


def static_radiographs(model: nn.Module, x, *, signed: bool = True, units=None) -> dict:
    """The static radiograph of every weight layer the forward runs on ``x``, in
    ``pathway_layers`` order, from one pass: layer -> what ``static_radiograph(model, layer,
    x=x, signed=signed, units=units)`` gives (``frozen`` naming the factors frozen before that
    layer). All of x goes through in one pass: give a few samples."""
    inputs = as_inputs(x, model)
    _weight_layers(model)
    with torch.inference_mode(False), torch.enable_grad():
        cap = capture(model, inputs, static=True, signed=signed,
                      what=f"x ({inputs.describe()})")
    return static_radiographs_from(model, cap, units=units)


def static_radiographs_from(model: nn.Module, cap: Capture, *, units=None,
                            layers=None) -> dict:
    """``static_radiographs`` from a static pass already made: ``cap = capture(model, inputs,
    static=True, signed=...)`` (every layer kept). For a caller that needs the pass itself too
    (the monitor checks on it what is frozen): the model is not run again. ``layers``: of the
    weight layers, only these (default: all)."""
    if not cap.static:
        raise ValueError("static_radiographs_from needs a static pass: capture(..., static=True)")
    modules = dict(model.named_modules())
    image = _image_input(modules, cap)
    out = {}
    with torch.inference_mode(False), torch.enable_grad():
        for layer in [name for name, _ in weight_layers(model)
                      if name in cap.outputs and (layers is None or name in layers)]:
            out[layer] = _averaged(_rows(model, cap, layer, units, False, None, modules, image),
                                   cap.frozen_at[layer])
    return out


def gated_radiograph(model: nn.Module, x, layer: str, *, chunk_size: int | None = None,
                     units=None) -> torch.Tensor:
    """Gated radiographs of weight layer ``layer`` for the samples x: [B, n, *IN], the Jacobian
    of each unit's pre-activation with respect to the input (for a convolution, of the channel
    sums). x: a tensor, a tuple of positional or a dict of keyword inputs of the model.
    ``chunk_size``: samples per forward pass (default: chunks of about ``CHUNK_BYTES``).
    """
    _check_chunk_size(chunk_size)
    _check_layer(model, layer)
    inputs = as_inputs(x, model)
    rows, _ = _jacobian(model, inputs, layer, static=False, signed=True, units=units,
                        chunk_size=chunk_size)
    return rows


def characteristic_maps(model: nn.Module, x, layer: str, *, y=None,
                        num_classes: int | None = None, chunk_size: int | None = None,
                        units=None) -> torch.Tensor:
    """Characteristic maps C[b, n, i] = x_i R(x_b)[n, i] of layer ``layer``: [B, n, *IN].

    C > 0: input component i enhances unit n; C < 0: it suppresses it. For a bias-free ReLU
    network sum_i C[b, n, i] = z_n(x_b). Token inputs: one value per position, sum_d e * dz/de.

    With integer labels ``y`` [B]: the class averages [C, n, *IN], C = ``num_classes`` or
    max(y) + 1; a class 0..C-1 with no sample in y gets NaN (there is nothing to average).
    Language models (see the module docstring): [B, T, T], y optionally the tokens [B, T].
    """
    _check_chunk_size(chunk_size)
    _check_layer(model, layer)
    inputs = as_inputs(x, model)
    batch = inputs.batch
    labels = y
    if y is not None:
        y_t = torch.as_tensor(y)
        if y_t.ndim == 2:    # next-token labels of a language model, checked there
            labels = None
        else:
            labels, num_classes = check_labels(y, batch, inputs.tensors[0].device, num_classes)
    elif num_classes is not None:
        raise ValueError("num_classes is given without labels y")
    maps, _ = _jacobian(model, inputs, layer, static=False, signed=True, units=units,
                        chunk_size=chunk_size, characteristic=True,
                        tokens_y=y if labels is None and y is not None else None)
    if labels is None:
        return maps
    out = torch.zeros((num_classes, *maps.shape[1:]), dtype=maps.dtype, device=maps.device)
    out.index_add_(0, labels.to(maps.device), maps)
    counts = torch.bincount(labels, minlength=num_classes).to(out.dtype).to(out.device)
    return out / counts.view(-1, *[1] * (out.ndim - 1))   # 0 / 0: NaN for an absent class


# -- the Jacobian ----------------------------------------------------------------------------------------

def _jacobian(model, inputs: ModelInputs, layer: str, *, static: bool, signed: bool, units,
              chunk_size, characteristic: bool = False, tokens_y=None, what: str = "x"):
    """Rows [B, U, *IN] of dz/dinput for the chosen units of ``layer`` (characteristic: times
    the input), and the last chunk's Capture (``frozen`` gathered over every chunk). Without
    ``chunk_size``, a forward pass of one sample sizes the chunks (cheaper than making that
    sample a chunk of its own: its units' pull-back would be one more batched call)."""
    batch = inputs.batch
    what = f"{what} ({inputs.describe()})"
    # the pass can end at the layer, unless a language model's output decides the units
    stop = not (characteristic and any(not t.is_floating_point() for t in inputs.tensors))
    parts, frozen = [], []
    modules, image = dict(model.named_modules()), None
    with torch.inference_mode(False), torch.enable_grad():
        if chunk_size is None:
            first = capture(model, inputs.rows(0, 1), grad=True, static=static, signed=signed,
                            layers=[layer], stop=stop, what=what)
            chunk_size = samples_per_chunk(first.sample_bytes)
        for s in range(0, batch, chunk_size):
            e = min(batch, s + chunk_size)
            cap = capture(model, inputs.rows(s, e), grad=True, static=static, signed=signed,
                          layers=[layer], stop=stop, what=what)
            frozen += [f for f in cap.frozen if f not in frozen]
            if image is None:
                image = _image_input(modules, cap)
            parts.append(_rows(model, cap, layer, units, characteristic,
                               None if tokens_y is None else tokens_y[s:e], modules, image))
    cap.frozen = frozen
    return torch.cat(parts) if len(parts) > 1 else parts[0], cap


def samples_per_chunk(sample_bytes: int) -> int:
    """Samples per forward pass of the Jacobians, for weight-layer outputs of ``sample_bytes``
    per sample (``Capture.sample_bytes``): chunks of about ``CHUNK_BYTES``."""
    return max(1, CHUNK_BYTES // max(1, 3 * sample_bytes))


def _rows(model, cap: Capture, layer: str, units, characteristic: bool, y_rows, modules,
          image: bool):
    """``modules``: the model's named modules; ``image``: whether input dims stay image shaped
    (``_image_input``); both the same for every layer and chunk of one computation."""
    z = cap.outputs.get(layer)
    if z is None:
        raise ValueError(f"layer {layer!r} does not run in {type(model).__name__}'s forward on "
                         "this input")
    leaves = cap.leaves
    if not leaves:
        raise UnsupportedModel(f"{type(model).__name__}'s forward never used its token inputs in "
                               "an nn.Embedding: there is no input to differentiate")
    module = modules[layer]
    batch = z.shape[0]
    lm = (characteristic and cap.tokens and z.ndim == 3 and cap.output is not None
          and tuple(cap.output.shape) == tuple(z.shape))
    if lm:
        # units: positions t; the unit at t is the logit of the predicted (or given) token
        if y_rows is not None:
            target = torch.as_tensor(y_rows).to(z.device, torch.long)
            if tuple(target.shape) != tuple(z.shape[:2]):
                raise ValueError(f"y for a language model must be tokens [B, T] = "
                                 f"{tuple(z.shape[:2])}, got {tuple(target.shape)}")
        else:
            target = z.detach().argmax(-1)
        values = z.gather(-1, target.unsqueeze(-1)).squeeze(-1)    # [b, T]
    else:
        axis = unit_axis(module) % z.ndim
        values = z.movedim(axis, 1)
        values = values.reshape(*values.shape[:2], -1).sum(-1) if values.ndim > 2 else values
    picked = _pick(units, values.shape[1], layer)

    def finish(grads):   # per leaf [u, b, *leaf shape] -> [b, u, *row shape]
        if characteristic:
            maps = [g * leaf.detach() for g, leaf in zip(grads, leaves)]
            part = sum(m.sum(-1) for m in maps) if cap.tokens else maps[0]
        else:
            part = torch.cat(grads, dim=-1) if len(grads) > 1 else grads[0]
        return part.transpose(0, 1)

    out = None
    if not lm and isinstance(module, nn.Linear) and layer in cap.inputs:
        # d z_u / d input = the weight row W[u] at every position: start the pull-back there
        rows = module.weight.detach()[picked]
        start_at, rows = cap.inputs[layer], rows if cap.signed else rows.abs()
    else:
        start_at, rows = values, None
    for start, stop, grads in _pull_back(start_at, leaves, picked, cap.sample_bytes, rows):
        with torch.no_grad():
            part = finish(grads)
            if out is None:   # written chunk by chunk: no concatenated copy of the whole
                out = torch.empty((batch, len(picked), *part.shape[2:]), dtype=part.dtype,
                                  device=part.device)
            out[:, start:stop] = part
    if not cap.tokens and not image:
        out = out.reshape(*out.shape[:2], -1)
    return out


def _pull_back(values, leaves, picked, sample_bytes, rows=None):
    """(start, stop, grads) for chunks of the picked units: grads per leaf [stop - start, b,
    *leaf shape], d values[:, u] / d leaf for each unit u of the chunk (zeros where the layer
    does not depend on the input). ``values`` [b, n]: the units; or, with ``rows`` [U, d], a
    Linear layer's input [b, ..., d], each unit's cotangent its weight row at every position."""
    batch = values.shape[0]
    per_unit = max(1, 4 * batch * max(sample_bytes, sum(leaf[0].numel() * leaf.element_size()
                                                         for leaf in leaves)))
    step = max(1, CHUNK_BYTES // per_unit)
    index = torch.as_tensor(picked, device=values.device)
    for s in range(0, len(picked), step):
        chosen = index[s:s + step]
        if not values.requires_grad:
            yield s, s + len(chosen), [torch.zeros((len(chosen), *leaf.shape), dtype=leaf.dtype,
                                                   device=leaf.device) for leaf in leaves]
            continue
        if rows is not None:
            part = rows[s:s + step].to(values.dtype)
            cot = part.view(len(part), *[1] * (values.ndim - 1), -1).expand(len(part), *values.shape)
        else:
            cot = torch.zeros((len(chosen), *values.shape), dtype=values.dtype, device=values.device)
            cot[torch.arange(len(chosen), device=values.device), :, chosen] = 1
        grads = torch.autograd.grad(values, leaves, cot, is_grads_batched=True, retain_graph=True,
                                    allow_unused=True)
        yield s, s + len(chosen), [
            torch.zeros((len(chosen), *leaf.shape), dtype=leaf.dtype, device=leaf.device)
            if g is None else g for g, leaf in zip(grads, leaves)]


# -- helpers -------------------------------------------------------------------------------------------

def _weight_layers(model) -> list[tuple[str, nn.Module]]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
    for name, module in model.named_modules():
        if any(isinstance(p, nn.parameter.UninitializedParameter) for p in module.parameters(recurse=False)):
            raise ValueError(f"module {name!r} ({type(module).__name__}) is an uninitialised lazy "
                             "layer: run the model once before analysing it")
    layers = weight_layers(model)
    if not layers:
        raise UnsupportedModel(f"nothing to analyse: {type(model).__name__} has no weight layer "
                               "(Linear, Conv, or any module with a weight of 2+ dimensions)")
    return layers


def _check_layer(model, layer) -> nn.Module:
    layers = _weight_layers(model)
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a module name (str), got {type(layer).__name__}")
    names = [n for n, _ in layers]
    if layer in names:
        return dict(layers)[layer]
    modules = dict(model.named_modules())
    if layer in modules:
        raise ValueError(f"module {layer!r} ({type(modules[layer]).__name__}) is not a weight layer "
                         f"(Linear, Conv, ...); weight layers: {_listed(names)}")
    raise ValueError(f"no module named {layer!r} in {type(model).__name__}; its weight layers "
                     f"are {_listed(names)}")


def _listed(names: list[str], limit: int = 12) -> str:
    return str(names) if len(names) <= limit else f"{names[:limit]} and {len(names) - limit} more"


def _pick(units, n: int, layer: str) -> list[int]:
    if units is None:
        return list(range(n))
    if isinstance(units, int) and not isinstance(units, bool):
        if units < 1:
            raise ValueError(f"units must be a positive count or a sequence of unit indices, got {units}")
        return list(range(min(units, n)))
    if isinstance(units, (Sequence, torch.Tensor)) and not isinstance(units, str):
        picked = [int(u) for u in units]
        bad = [u for u in picked if not 0 <= u < n]
        if bad or not picked:
            raise ValueError(f"units {bad or picked} out of range: layer {layer!r} has {n} units")
        return picked
    raise TypeError(f"units must be an int or a sequence of ints, got {type(units).__name__}")


def _image_input(modules: dict, cap: Capture) -> bool:
    """Input dims kept image shaped when the first weight layer the forward ran is a convolution
    (``modules``: the model's named modules)."""
    if not cap.called:
        return bool(cap.leaves) and cap.leaves[0].ndim > 2
    return isinstance(modules[cap.called[0]], _ConvNd)


def _zero_input(model, input_shape) -> torch.Tensor:
    weight = next((p for p in model.parameters() if p.is_floating_point()), None)
    if input_shape is None:
        first = _weight_layers(model)[0][1]
        if isinstance(first, nn.Linear):
            input_shape = (first.in_features,)
        else:
            raise ValueError(
                f"the first weight layer ({type(first).__name__}) leaves the input size open: pass "
                "x (a probe batch) or input_shape=(channels, *spatial), the shape of one sample")
    try:
        input_shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError) as e:
        raise TypeError(f"input_shape must be a tuple of ints, got {input_shape!r}") from e
    if not input_shape or min(input_shape) < 1:
        raise ValueError(f"input_shape must be the positive shape of one sample, got {input_shape}")
    return torch.zeros((1, *input_shape), dtype=weight.dtype, device=weight.device)


def _check_chunk_size(chunk_size) -> None:
    if chunk_size is not None and (not isinstance(chunk_size, int) or isinstance(chunk_size, bool)
                                   or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
