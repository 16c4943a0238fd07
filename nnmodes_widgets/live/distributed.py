"""What the monitor needs of ``torch.distributed`` (DDP, FSDP2 ``fully_shard``) and of the other
wrappers training puts around a model and its optimizer (``torch.compile``, Accelerate,
Lightning): the model and the optimizer under them, this process's rank, the local shards of
sharded weights, and one sum across processes."""

from __future__ import annotations

import sys

import numpy as np
import torch
from torch import nn

__all__ = ["unwrap", "unwrap_optimizer", "hookable", "model_class", "rank", "is_sharded", "local",
           "sum_across_processes"]


def unwrap(model: nn.Module) -> nn.Module:
    """The user's model under ``DistributedDataParallel``, ``DataParallel`` and ``torch.compile``'s
    ``OptimizedModule``, in any nesting: its parameter names are the model's own (no ``module.``
    or ``_orig_mod.`` prefix), and the background analyses copy and run it uncompiled. FSDP2
    shards the model in place: it is returned as it is."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif _is_compiled(model):
            model = model._orig_mod
        else:
            return model


def _is_compiled(model: nn.Module) -> bool:
    # No OptimizedModule exists unless dynamo was imported: importing it here would cost seconds.
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")
    return eval_frame is not None and isinstance(model, eval_frame.OptimizedModule)


def unwrap_optimizer(optimizer, depth: int = 8):
    """The torch optimizer under a framework's wrapper (Accelerate's ``AcceleratedOptimizer``,
    Lightning's ``LightningOptimizer``): the one whose ``step()`` updates the weights, so its
    step hooks fire once per real update. A wrapper calls it only when it steps: not between
    accumulated micro-batches, not when AMP's ``GradScaler`` skips a step on inf gradients. An
    object with no torch optimizer under it is returned as it is."""
    found = optimizer
    for _ in range(depth):
        if hookable(found):
            return found
        found = getattr(found, "optimizer", None) or getattr(found, "_optimizer", None)
        if found is None:
            break
    return optimizer


def hookable(optimizer) -> bool:
    """A torch optimizer with step hooks: a wrapper that subclasses ``Optimizer`` without running
    its ``__init__`` (``AcceleratedOptimizer``) has none."""
    return (isinstance(optimizer, torch.optim.Optimizer)
            and hasattr(optimizer, "_optimizer_step_post_hooks"))


def model_class(model: nn.Module) -> type:
    """The model's own class: FSDP2 swaps in a subclass of it (``FSDPSequential``)."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:
        return type(model)
    return next(c for c in type(model).__mro__ if not issubclass(c, FSDPModule))


def rank() -> int:
    """This process's rank in the default process group; 0 outside distributed training."""
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _dtensor_type():
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:        # a torch built without distributed support
        return None
    return DTensor


def is_sharded(t: torch.Tensor) -> bool:
    """A DTensor (FSDP2): each process holds a shard."""
    dtensor = _dtensor_type()
    return dtensor is not None and isinstance(t, dtensor)


def local(t: torch.Tensor) -> torch.Tensor:
    """This process's part of ``t``: its local shard for a DTensor, else ``t``."""
    return t.to_local() if is_sharded(t) else t


def sum_across_processes():
    """A function summing a float64 array over every process of the default group: one
    all-reduce, on the backend's device (CUDA for NCCL, the CPU for gloo)."""
    dist = torch.distributed
    device = (torch.device("cuda", torch.cuda.current_device())
              if dist.get_backend() == "nccl" else torch.device("cpu"))

    def reduce(values: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64)).to(device)
        torch.distributed.all_reduce(t)
        return t.cpu().numpy()

    return reduce
