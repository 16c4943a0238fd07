"""Relative weight change (RWC) of a network's weights.

Definitions from WeightScale (Agarwal et al., arXiv 2107.07005) and its predecessor (arXiv
2011.06735); see SPEC section 4.1.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import nn

__all__ = ["RWC_KINDS", "RwcTracker", "weight_snapshot", "relative_weight_change"]

RWC_KINDS = ("l1", "elementwise", "l2")

# Each (device, dtype) keeps one flat snapshot buffer, every layer padded to whole chunks. An update
# walks it in blocks that fit in cache: gather the new values into scratch, put the change beside
# them, copy them into the snapshot, and sum |change| and |new| per chunk in one reduction; so the
# weights and the snapshot cross the memory bus once each and the rest stays in cache (a
# whole-buffer version made ~11 passes: 1.8x slower at 10M parameters, 2.3x at 100M, on CPU).
# Chunk sums run in the buffer's dtype (torch sums rows pairwise; 1024 terms lose nothing that
# matters; one reduction of a long row is both slower and less exact) and then in float64 over a
# layer's chunks: a float64 reduction of float32 data is 20-70x slower on CPU.
_CHUNK = 1024
_BLOCK = {"cpu": 2**19}     # elements per block: 2 MiB of float32, a core's L2 cache
_BLOCK_OTHER = 2**24        # on accelerators fewer, larger launches win


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
    """The layers of one (device, dtype): one flat snapshot buffer, each layer padded with zeros to
    whole chunks, walked in cache-sized blocks. A block holds whole small layers or a piece of a
    large one. ``work`` is a [2, block] scratch laid out like the snapshot (padding zero): an
    update gathers a block's new values into row 1 and puts the change into row 0."""

    def __init__(self, device: torch.device, dtype: torch.dtype, shapes: dict[str, torch.Size]):
        self.names = list(shapes)
        numels = [s.numel() for s in shapes.values()]
        sizes = [max(1, math.ceil(n / _CHUNK)) * _CHUNK for n in numels]
        chunks = torch.tensor([n // _CHUNK for n in sizes])
        self.owner = torch.repeat_interleave(torch.arange(len(sizes)), chunks).to(device)
        self.first_chunk = np.cumsum([0] + [n // _CHUNK for n in sizes[:-1]])
        self.snap = torch.zeros(sum(sizes), dtype=dtype, device=device)
        offsets = list(itertools.accumulate(sizes, initial=0))
        self.snap_views = [self.snap[o:o + n].view(s)
                           for o, n, s in zip(offsets, numels, shapes.values())]
        limit = _BLOCK.get(device.type, _BLOCK_OTHER)
        # blocks: [start, stop) in the buffer and their pieces (layer, first element, elements)
        self.blocks: list[tuple[int, int, list[tuple[int, int, int]]]] = []
        for i, (n, offset, size) in enumerate(zip(numels, offsets, sizes)):
            for lo in range(0, size, limit):
                span = min(limit, size - lo)
                if not self.blocks or self.blocks[-1][1] - self.blocks[-1][0] + span > limit:
                    self.blocks.append((offset + lo, offset + lo, []))
                start, _, pieces = self.blocks[-1]
                pieces.append((i, lo, max(0, min(limit, n - lo))))
                self.blocks[-1] = (start, offset + lo + span, pieces)
        self.work = torch.zeros(2, max(stop - start for start, stop, _ in self.blocks),
                                dtype=dtype, device=device)
        self.new_views = [[self.work[1, offsets[i] + lo - start:][:n] for i, lo, n in pieces]
                          for start, _, pieces in self.blocks]
        # A block with padding must zero its work row first if other blocks leave values there.
        self.dirty_padding = [len(self.blocks) > 1 and sum(n for *_, n in pieces) < stop - start
                              for start, stop, pieces in self.blocks]
        # One block on the CPU (a small model): the arithmetic in NumPy on views of the same
        # buffers, a microsecond a call where torch takes five to ten, single-threaded: a small
        # model sampled every few steps spent most of its RWC time in call overhead, and on a
        # loaded core torch's thread team made it wait several milliseconds.
        self.small = device.type == "cpu" and len(self.blocks) == 1
        if self.small:
            self.host_work, self.host_snap = self.work.numpy(), self.snap.numpy()
            self.host_new = [v.numpy() for v in self.new_views[0]]
            self.sources: list[tuple | None] = [None] * len(self.names)   # (data_ptr, flat array)
        self.snap_norm: np.ndarray | None = None   # per-layer norm of the snapshot, once known

    def layer_sum(self, per_chunk):
        """Chunk sums [..., chunks] (a tensor, or an array on the host) -> float64 layer sums
        [..., layers]: on the host (an array) from the CPU; on the device (a tensor) from an
        accelerator, which is not waited for (``_Sums`` brings them to the host)."""
        if isinstance(per_chunk, np.ndarray) or per_chunk.device.type == "cpu":
            per_chunk = per_chunk if isinstance(per_chunk, np.ndarray) else per_chunk.numpy()
            return np.add.reduceat(per_chunk.astype(np.float64), self.first_chunk, axis=-1)
        out = torch.zeros(*per_chunk.shape[:-1], len(self.names), dtype=torch.float64,
                          device=per_chunk.device)
        return out.index_add_(-1, self.owner, per_chunk.to(torch.float64))

    def snapshot_sums(self, ord: int) -> np.ndarray:
        """Per-layer sum of |snapshot|^ord."""
        if self.small:     # as the updates will sum them, or the first RWC differs by rounding
            return self.layer_sum(_host_chunk_sums(self.work[0].copy_(self.snap).numpy(), ord))
        return self.layer_sum(_cat([
            _chunk_sums(self.work[0, :stop - start].copy_(self.snap[start:stop]), ord)
            for start, stop, _ in self.blocks]))

    def gather(self, block: int, new: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies a block's new values (flat tensors per layer) into the work buffer; returns the
        block's [2, span] work area and its span of the snapshot."""
        start, stop, pieces = self.blocks[block]
        if self.dirty_padding[block]:
            self.work[1, :stop - start].zero_()
        torch._foreach_copy_(self.new_views[block], [new[i][lo:lo + n] for i, lo, n in pieces])
        return self.work[:, :stop - start], self.snap[start:stop]


    def host_gather(self, new: list[torch.Tensor]) -> None:
        """A small group's ``gather``: each layer's values copied into the work buffer by NumPy
        from a flat view of its memory, kept while the tensor's memory stays where it is (an
        optimizer updates weights in place), so that a sample costs no torch call per layer."""
        for i, t in enumerate(new):
            known = self.sources[i]
            if known is None or known[0] != t.data_ptr():
                flat = t.detach().reshape(-1)
                if flat.dtype == torch.bfloat16:       # NumPy has no bfloat16
                    self.new_views[0][i].copy_(flat)
                    continue
                known = (t.data_ptr(), flat.numpy())
                if t.is_contiguous():                  # else reshape copied: not a view
                    self.sources[i] = known
            np.copyto(self.host_new[i], known[1])


def _cat(per_block: list[torch.Tensor]) -> torch.Tensor:
    """Blocks' chunk sums [..., chunks] side by side (one block, the small-model case: as is)."""
    return per_block[0] if len(per_block) == 1 else torch.cat(per_block, dim=-1)


def _host_chunk_sums(x: np.ndarray, ord: int) -> np.ndarray:
    """``_chunk_sums`` in NumPy (float32 or float64 arrays; x overwritten)."""
    rows = np.abs(x, out=x).reshape(*x.shape[:-1], -1, _CHUNK)
    if ord == 1:
        return rows.sum(axis=-1)                  # pairwise, like torch's
    scale = np.maximum(rows.max(axis=-1, keepdims=True), np.finfo(rows.dtype).tiny)
    squares = np.square(np.divide(rows, scale, out=rows), out=rows).sum(axis=-1)
    return squares.astype(np.float64) * np.square(scale[..., 0].astype(np.float64))


def _chunk_sums(x: torch.Tensor, ord: int) -> torch.Tensor:
    """Sums of |x|^ord over each chunk of x's last dimension (a whole number of chunks); x is
    overwritten."""
    rows = x.abs_().view(*x.shape[:-1], -1, _CHUNK)
    if ord == 1:
        return rows.sum(dim=-1)
    # Squares of float32 values beyond ~1e19 or below ~1e-19 overflow or vanish: square each chunk
    # divided by its largest magnitude, then scale back in float64.
    scale = rows.amax(dim=-1, keepdim=True).clamp_min(torch.finfo(rows.dtype).tiny)
    squares = rows.div_(scale).square_().sum(dim=-1)
    return squares.to(torch.float64) * scale.squeeze(-1).to(torch.float64).square()


class RwcSums:
    """One ``RwcTracker.update``'s per-layer sums ([3, layers] per device group: change, before,
    after), on their way to the host: from a CUDA device copied without blocking into pinned
    memory, an event marking their arrival; from the CPU there already; from another device
    copied (that waits)."""

    def __init__(self, parts: list, names: list[str], order: list[str], started: list[str],
                 kind: str, reduce):
        self._names, self._order, self._started = names, order, started
        self._kind, self._reduce = kind, reduce
        self._host: list = []
        self._events: list = []
        for part in parts:
            if isinstance(part, np.ndarray):
                self._host.append(part)
            elif part.device.type == "cuda":
                host = torch.empty(part.shape, dtype=part.dtype, pin_memory=True)
                host.copy_(part, non_blocking=True)
                event = torch.cuda.Event()
                event.record(torch.cuda.current_stream(part.device))
                self._host.append(host)
                self._events.append(event)
            else:
                self._host.append(part.cpu())
        self._values: dict[str, float] | None = None
        self._after: np.ndarray | None = None
        if reduce is not None:          # a collective call: now, at the same point everywhere
            self.values()

    def ready(self) -> bool:
        """Whether the sums are on the host (never waits)."""
        return self._values is not None or all(e.query() for e in self._events)

    def values(self) -> dict[str, float]:
        """{name: RWC} in the order the tensors were given, those that started tracking left
        out; waits for the device if the sums are not on the host yet."""
        if self._values is not None:
            return self._values
        for event in self._events:
            event.synchronize()
        sums = [np.asarray(h, dtype=np.float64).reshape(3, -1) for h in self._host]
        num, den, after = np.concatenate(sums, axis=1) if sums else np.zeros((3, 0))
        if self._reduce is not None:
            num, den = self._reduce(np.stack([num, den]))
        if self._kind == "l2":     # norms of the (whole) weights: roots of the summed squares
            num, den = np.sqrt(num), np.sqrt(den)
        # x/0 and 0/0 both become NaN: a zero reference has no relative change.
        rwc = np.divide(num, den, out=np.full(len(num), np.nan), where=den != 0)
        values = {n: float(v) for n, v in zip(self._names, rwc.tolist()) if n not in self._started}
        self._values = {n: values[n] for n in self._order if n in values}
        self._after = dict(zip(self._names, after.tolist()))
        self._host = self._events = []
        return self._values

    def nonfinite(self, tensors: Mapping[str, torch.Tensor]) -> list[str]:
        """Of the layers whose RWC is not finite, those whose new values are not (NaN or inf
        weights, not a zero reference): told by the sums of the new values, which are
        non-finite exactly then (l1, l2); for the elementwise kind by looking at ``tensors``."""
        out = []
        for name, value in self.values().items():
            if math.isfinite(value):
                continue
            after = self._after[name]
            if math.isnan(after) and self._kind == "elementwise":
                if not torch.isfinite(tensors[name].detach()).all():
                    out.append(name)
            elif not math.isfinite(after):
                out.append(name)
        return out


class RwcTracker:
    """Relative weight change of a set of tensors between consecutive ``update`` calls.

    The layers of one device and dtype share one flat snapshot buffer, updated in place block by
    block. Memory: the tracked tensors once, plus a block of scratch. One transfer per device
    brings the per-layer sums to the host, where the ratios are taken.

    ``update(tensors)`` returns ``{name: rwc}`` for every tensor that was tracked with the same
    shape, dtype and device; a new or replaced tensor (or one named in ``restart``) starts
    tracking, is listed in ``started``, and gets its first value at the next update; a vanished
    one is dropped.

    ``reduce`` (distributed training with sharded weights: each process tracks its local shards)
    combines the float64 partial sums [2, layers] of every process, in one collective call per
    update (a sum all-reduce): the RWC is then that of the full weights. Every process must call
    ``update`` with the same names, in the same order.
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor], *, kind: str = "l1",
                 reduce: Callable[[np.ndarray], np.ndarray] | None = None):
        _check_kind(kind)
        self.kind = kind
        self.reduce = reduce
        self._groups: list[_Group] = []
        self._where: dict[str, tuple] = {}     # name -> (shape, dtype, device) tracked
        self.started: list[str] = []
        self._relayout(tensors)
        self.started = []

    def update(self, tensors: Mapping[str, torch.Tensor], *, restart=(), wait: bool = True):
        """RWC since the last update; ``restart`` names tensors to treat as new (re-created).
        With ``wait=False`` the ``RwcSums`` on their way to the host, whose ``values()`` is the
        result: on CUDA the update then never waits for the device (its sums come back through
        pinned memory, ``ready()`` once they have), elsewhere they are there at once. With
        ``reduce`` they are combined across processes now, at the same point in every process."""
        if restart or self._signature(tensors) != self._where:
            self._relayout(tensors, restart)
        else:
            self.started = []
        parts = [self._num_den(g, [tensors[n] if g.small and self.kind != "elementwise"
                                   else tensors[n].detach().reshape(-1) for n in g.names])
                 for g in self._groups]
        sums = RwcSums(parts, [n for g in self._groups for n in g.names], list(tensors),
                       list(self.started), self.kind, self.reduce)
        return sums.values() if wait else sums

    def _num_den(self, g: _Group, new: list[torch.Tensor]):
        """[3, layers] float64, an array on the host or a tensor on the group's device: the sums
        whose ratio is each layer's RWC (for l2, of squares), snapshot (before) -> ``new``
        (after: flat, or as they are for a small group's l1/l2), and the sums of the new values
        (NaN rows for the elementwise kind, which has none); leaves ``new`` in the snapshot."""
        if self.kind == "elementwise":
            sums = g.layer_sum(_cat([self._elementwise_sums(*g.gather(k, new))
                                     for k in range(len(g.blocks))]))
            if isinstance(sums, np.ndarray):
                return np.concatenate([sums, np.full((1, sums.shape[1]), np.nan)])
            return torch.cat([sums, torch.full_like(sums[:1], math.nan)])
        ord = 1 if self.kind == "l1" else 2
        if g.snap_norm is None:
            g.snap_norm = g.snapshot_sums(ord)
        if g.small:
            g.host_gather(new)
            work, snap = g.host_work, g.host_snap
            np.subtract(snap, work[1], out=work[0])     # the change; padding stays zero
            np.copyto(snap, work[1])
            num, after = g.layer_sum(_host_chunk_sums(work, ord))
            before, g.snap_norm = g.snap_norm, after
            return np.stack([num, before, after])
        sums = []
        for k in range(len(g.blocks)):
            work, snap = g.gather(k, new)
            torch.sub(snap, work[1], out=work[0])     # the change; padding stays zero
            snap.copy_(work[1])
            sums.append(_chunk_sums(work, ord))       # [2, chunks]: |change|, |new|
        num, after = g.layer_sum(_cat(sums))
        before, g.snap_norm = g.snap_norm, after
        stack = np.stack if isinstance(num, np.ndarray) else torch.stack
        return stack([num, before, after])

    @staticmethod
    def _elementwise_sums(work: torch.Tensor, snap: torch.Tensor) -> torch.Tensor:
        """[2, chunks] float64: sums of |after_i - before_i| / |before_i| and counts of the
        elements with before_i != 0; moves the new values (work row 1) into the snapshot."""
        # float64 here: |before_i| may be tiny enough that the ratio overflows float32
        before = snap.to(torch.float64)
        ratio = (before - work[1]).abs_().div_(before.abs()).masked_fill_(snap == 0, 0)
        counts = (snap != 0).view(-1, _CHUNK).sum(dim=1).to(torch.float64)
        snap.copy_(work[1])
        return torch.stack([ratio.view(-1, _CHUNK).sum(dim=1), counts])

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
