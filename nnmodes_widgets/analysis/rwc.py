"""Relative weight change (RWC) of a network's weights.

Definitions from WeightScale (Agarwal et al., arXiv 2107.07005) and its predecessor (arXiv
2011.06735); see SPEC section 4.1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

__all__ = ["RWC_KINDS", "RwcTracker", "weight_snapshot", "relative_weight_change"]

RWC_KINDS = ("l1", "elementwise", "l2")

# Layers are laid out in one flat buffer per (device, dtype), each padded to whole chunks. Sums run
# over chunks in the buffer's dtype (torch sums pairwise; 1024 terms lose nothing that matters) and
# then over a layer's chunks in float64: a float64 reduction of float32 data is 20-70x slower on
# CPU, and one reduction over the whole buffer replaces a handful of kernel launches per layer.
_CHUNK = 1024


def weight_snapshot(model: nn.Module, *, include_bias: bool = False) -> dict[str, torch.Tensor]:
    """Detached copies of the model's weights, keyed by parameter name.

    Every parameter with ``ndim >= 2`` is copied; with ``include_bias=True`` the 0-D and 1-D ones
    (biases, norm scales) too. Copies stay on the parameter's own device. A parameter shared by
    several modules (tied weights) appears once, under its first name, as in
    ``model.named_parameters()``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"weight_snapshot expects a torch.nn.Module, got {type(model).__name__}")
    return {
        name: p.detach().clone()
        for name, p in model.named_parameters()
        if include_bias or p.ndim >= 2
    }


def relative_weight_change(
    before: Mapping[str, torch.Tensor],
    after: Mapping[str, torch.Tensor],
    *,
    kind: str = "l1",
) -> dict[str, float]:
    """Relative weight change of every parameter present in both snapshots.

    ``kind`` is ``"l1"`` (default; the published formula ||after - before||_1 / ||before||_1),
    ``"elementwise"`` (what the published WeightScale code computed: the mean over elements with
    before_i != 0 of |after_i - before_i| / |before_i|; zero elements are skipped, never inf) or
    ``"l2"`` (||after - before||_2 / ||before||_2). Accumulated in float64 on ``before``'s device.
    A zero-norm ``before`` gives NaN. Parameters present in only one snapshot are left out.

    Raises ValueError naming the parameter and both shapes when shapes differ.
    """
    _check_kind(kind)
    names = [n for n in before if n in after]
    for name in names:
        if tuple(before[name].shape) != tuple(after[name].shape):
            raise ValueError(
                f"parameter {name!r} changed shape: before {tuple(before[name].shape)}, "
                f"after {tuple(after[name].shape)}"
            )
    # compare like with like: after moves to before's device, both to their common dtype
    common = {n: torch.promote_types(before[n].dtype, after[n].dtype) for n in names}
    tracker = RwcTracker({n: before[n].to(common[n]) for n in names}, kind=kind)
    return tracker.update({n: after[n].to(before[n].device, common[n]) for n in names})


def _check_kind(kind: str) -> None:
    if kind not in RWC_KINDS:
        raise ValueError(f"unknown RWC kind {kind!r}; choose one of {', '.join(map(repr, RWC_KINDS))}")


def _buffer_dtype(t: torch.Tensor) -> torch.dtype:
    # half precision would round the partial sums themselves; float64 stays float64
    return torch.float64 if t.dtype == torch.float64 else torch.float32


class _Group:
    """The layers of one (device, dtype) in one [2, size] buffer: one row holds the snapshot, the
    other receives the new values, and the rows swap roles after every update."""

    def __init__(self, device: torch.device, dtype: torch.dtype, shapes: dict[str, torch.Size]):
        self.names = list(shapes)
        sizes = [max(1, math.ceil(s.numel() / _CHUNK)) * _CHUNK for s in shapes.values()]
        chunks = torch.tensor([n // _CHUNK for n in sizes], device=device)
        self.owner = torch.repeat_interleave(torch.arange(len(sizes), device=device), chunks)
        self.buf = torch.zeros(2, sum(sizes), dtype=dtype, device=device)
        offsets = [0]
        for n in sizes[:-1]:
            offsets.append(offsets[-1] + n)
        self.views = [[row[o:o + s.numel()].view(s) for o, s in zip(offsets, shapes.values())]
                      for row in self.buf]
        self.snap_row = 0
        self.snap_norm: torch.Tensor | None = None   # per-layer norm of the snapshot, once known

    @property
    def snap(self) -> torch.Tensor:
        return self.buf[self.snap_row]

    @property
    def work(self) -> torch.Tensor:
        return self.buf[1 - self.snap_row]

    @property
    def snap_views(self) -> list[torch.Tensor]:
        return self.views[self.snap_row]

    @property
    def work_views(self) -> list[torch.Tensor]:
        return self.views[1 - self.snap_row]

    def swap(self) -> None:
        self.snap_row = 1 - self.snap_row

    def layer_sum(self, per_chunk: torch.Tensor) -> torch.Tensor:
        """Chunk sums [..., chunks] -> float64 layer sums [..., layers]."""
        out = torch.zeros(*per_chunk.shape[:-1], len(self.names), dtype=torch.float64,
                          device=per_chunk.device)
        return out.index_add_(-1, self.owner, per_chunk.to(torch.float64))

    def norm_sums(self, buf: torch.Tensor, ord: int) -> torch.Tensor:
        """Per-layer sum of |x|^ord over a flat buffer (padding is zero)."""
        rows = buf.view(-1, _CHUNK)
        if ord == 1:   # abs then sum: on CPU 4x faster than linalg.vector_norm along a dimension
            return self.layer_sum(rows.abs().sum(dim=1))
        # Squares of float32 values beyond ~1e19 or below ~1e-19 overflow or vanish: square each
        # chunk divided by its largest magnitude, then scale back in float64.
        scale = rows.abs().amax(dim=1).clamp_min(torch.finfo(rows.dtype).tiny)
        squares = (rows / scale[:, None]).square().sum(dim=1)
        return self.layer_sum(squares.to(torch.float64) * scale.to(torch.float64).square())


class RwcTracker:
    """Relative weight change of a set of tensors between consecutive ``update`` calls.

    All layers of one device and dtype are handled by a few whole-buffer operations, whatever
    their number: the snapshot and the new values share one flat two-row buffer whose rows swap
    roles. Memory: twice the tracked tensors. One transfer per device brings the per-layer sums
    to the host, where the ratios are taken.

    ``update(tensors)`` returns ``{name: rwc}`` for every tensor that was tracked with the same
    shape, dtype and device; a new or replaced tensor (or one named in ``restart``) starts
    tracking, is listed in ``started``, and gets its first value at the next update; a vanished
    one is dropped.
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor], *, kind: str = "l1"):
        _check_kind(kind)
        self.kind = kind
        self._groups: list[_Group] = []
        self._where: dict[str, tuple] = {}     # name -> (shape, dtype, device) tracked
        self.started: list[str] = []
        self._relayout(tensors)
        self.started = []

    def update(self, tensors: Mapping[str, torch.Tensor], *, restart=()) -> dict[str, float]:
        """RWC since the last update; ``restart`` names tensors to treat as new (re-created)."""
        if restart or self._signature(tensors) != self._where:
            self._relayout(tensors, restart)
        else:
            self.started = []
        sums = []
        for g in self._groups:
            torch._foreach_copy_(g.work_views, [tensors[n].detach() for n in g.names])
            sums.append(self._num_den(g))
            g.swap()
        values: dict[str, float] = {}
        for g, pair in zip(self._groups, sums):
            num, den = pair.cpu().numpy()
            with np.errstate(divide="ignore", invalid="ignore"):
                # x/0 and 0/0 both become NaN: a zero reference has no relative change.
                rwc = np.where(den != 0, num / den, np.nan)
            values.update((n, float(v)) for n, v in zip(g.names, rwc) if n not in self.started)
        return {n: values[n] for n in tensors if n in values}

    def _num_den(self, g: _Group) -> torch.Tensor:
        """[2, layers] float64: numerator and denominator of each layer's RWC, snapshot (before)
        -> workspace (after). Spends the snapshot row; leaves the workspace row intact."""
        if self.kind == "elementwise":
            # float64 here: |before_i| may be tiny enough that the ratio overflows float32
            before = g.snap.to(torch.float64)
            ratio = (g.work.to(torch.float64) - before).abs_().div_(before.abs())
            ratio.masked_fill_(before == 0, 0.0)
            chunks = torch.stack([ratio.view(-1, _CHUNK).sum(dim=1),
                                  (before != 0).view(-1, _CHUNK).sum(dim=1).to(torch.float64)])
            return g.layer_sum(chunks)
        ord = 1 if self.kind == "l1" else 2
        if g.snap_norm is None:
            g.snap_norm = g.norm_sums(g.snap, ord)
        den = g.snap_norm
        spent = g.snap.sub_(g.work)             # the snapshot row now holds before - after
        if ord == 1:
            # In place, with the spent row as scratch: a fresh tensor the size of the model
            # costs page faults on every sample.
            diff = spent.abs_().view(-1, _CHUNK).sum(dim=1)
            size = torch.abs(g.work, out=spent).view(-1, _CHUNK).sum(dim=1)
            num, g.snap_norm = g.layer_sum(torch.stack([diff, size]))
        else:
            num, g.snap_norm = g.norm_sums(spent, 2).sqrt(), g.norm_sums(g.work, 2)
            den = den.sqrt()
        return torch.stack([num, den])

    @staticmethod
    def _signature(tensors: Mapping[str, torch.Tensor]) -> dict[str, tuple]:
        return {n: (t.shape, t.dtype, t.device) for n, t in tensors.items()}

    def _relayout(self, tensors: Mapping[str, torch.Tensor], restart=()) -> None:
        """Lay the tensors out anew, keeping the snapshot of every one that is unchanged."""
        old = {n: v for g in self._groups for n, v in zip(g.names, g.snap_views)}
        signature = self._signature(tensors)
        self.started = [n for n, sig in signature.items() if self._where.get(n) != sig or n in restart]
        by_key: dict[tuple, dict[str, torch.Size]] = {}
        for name, t in tensors.items():
            by_key.setdefault((t.device, _buffer_dtype(t)), {})[name] = t.shape
        self._groups = [_Group(device, dtype, shapes) for (device, dtype), shapes in by_key.items()]
        for g in self._groups:
            sources = [old[n] if n not in self.started else tensors[n].detach() for n in g.names]
            if sources:
                torch._foreach_copy_(g.snap_views, sources)
        self._where = signature
