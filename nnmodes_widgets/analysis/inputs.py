"""What a model is given: positional and keyword inputs, kept as they are.

A batch for the analyses is whatever the model's forward takes: one tensor ``x``, a tuple of
positional arguments, a dict of keyword arguments (``{"input_ids": ..., "attention_mask": ...}``
of a Hugging Face model) or :class:`ModelInputs` holding both. Tensors keep their dtype: token
ids stay integers; only floating tensors are brought to the weights' floating dtype (what a
float32 model needs of a float64 array) and every tensor to the weights' device. The batch
dimension is the first dimension of the first tensor; every tensor with that leading size is
sliced along it, any other argument (a mask shared by all samples, a flag) is passed unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["ModelInputs", "as_inputs", "call_model", "first_tensor"]


@dataclass(frozen=True)
class ModelInputs:
    """Positional ``args`` and keyword ``kwargs`` of one call of the model's forward."""
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)

    @property
    def tensors(self) -> list[torch.Tensor]:
        return [t for t in (*self.args, *self.kwargs.values()) if isinstance(t, torch.Tensor)]

    @property
    def batch(self) -> int:
        return self.tensors[0].shape[0]

    def map(self, fn) -> "ModelInputs":
        """Apply ``fn`` to every tensor (others unchanged)."""
        conv = (lambda v: fn(v) if isinstance(v, torch.Tensor) else v)
        return ModelInputs(tuple(conv(a) for a in self.args),
                           {k: conv(v) for k, v in self.kwargs.items()})

    def rows(self, start: int, stop: int) -> "ModelInputs":
        """Samples start..stop-1: every tensor with the batch's leading size sliced."""
        batch = self.batch
        return self.map(lambda t: t[start:stop] if t.ndim and t.shape[0] == batch else t)

    def take(self, index: torch.Tensor) -> "ModelInputs":
        """The samples at ``index`` (a 1-D integer tensor), in its order."""
        batch = self.batch
        return self.map(lambda t: t[index.to(t.device)] if t.ndim and t.shape[0] == batch else t)

    def describe(self) -> str:
        def one(v):
            return (f"{tuple(v.shape)} {str(v.dtype).removeprefix('torch.')}"
                    if isinstance(v, torch.Tensor) else type(v).__name__)
        parts = [one(a) for a in self.args] + [f"{k}={one(v)}" for k, v in self.kwargs.items()]
        return ", ".join(parts)


def as_inputs(x, model: nn.Module | None = None, *, what: str = "x") -> ModelInputs:
    """``x`` (a tensor or array, a tuple of positional inputs, a dict of keyword inputs, or
    ModelInputs) as ModelInputs on the weights' device, checked to be a non-empty batch.

    TypeError when it holds no tensor, ValueError for a scalar, an empty batch or complex values.
    """
    if isinstance(x, ModelInputs):
        inputs = x
    elif isinstance(x, Mapping):
        inputs = ModelInputs((), dict(x))
    elif isinstance(x, tuple):
        inputs = ModelInputs(x, {})
    else:
        if not isinstance(x, torch.Tensor):
            try:
                x = torch.as_tensor(x)
            except (TypeError, ValueError, RuntimeError) as e:
                raise TypeError(f"{what} must be a tensor or array (or a tuple or dict of the "
                                f"model's inputs), got {type(x).__name__}") from e
        inputs = ModelInputs((x,), {})
    tensors = inputs.tensors
    if not tensors:
        raise TypeError(f"{what} holds no tensor: {inputs.describe() or 'nothing'}")
    first = tensors[0]
    if first.ndim < 1 or (first.ndim < 2 and first.is_floating_point()):
        raise ValueError(f"{what} must be a batch [batch, ...]; got shape {tuple(first.shape)}")
    if first.shape[0] == 0:
        raise ValueError(f"{what} is an empty batch (shape {tuple(first.shape)})")
    if any(t.is_complex() for t in tensors):
        raise ValueError(f"{what} is complex; the analyses need real inputs")
    if model is None:
        return inputs.map(torch.Tensor.detach)
    weight = next((p for p in model.parameters() if p.is_floating_point()), None)
    if weight is None:
        return inputs.map(torch.Tensor.detach)
    return inputs.map(lambda t: t.detach().to(
        weight.device, weight.dtype if t.is_floating_point() else None))


def call_model(model: nn.Module, inputs: ModelInputs):
    return model(*inputs.args, **inputs.kwargs)


def first_tensor(output) -> torch.Tensor | None:
    """The model's output tensor: the output itself, the ``logits`` of a dict-like output (a
    Hugging Face ModelOutput, which lists a loss first when given labels), or the first tensor of
    a tuple, list or dict-like output."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping) and isinstance(output.get("logits"), torch.Tensor):
        return output["logits"]
    values = output.values() if isinstance(output, Mapping) else (
        output if isinstance(output, (tuple, list)) else ())
    for v in values:
        if isinstance(v, torch.Tensor):
            return v
    return None
