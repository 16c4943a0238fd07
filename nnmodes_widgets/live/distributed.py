"""What the monitor needs of ``torch.distributed`` (DDP, FSDP2 ``fully_shard``): the model under
its wrapper, this process's rank, the local shards of sharded weights, and one sum across
processes."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["unwrap", "model_class", "rank", "is_sharded", "local", "sum_across_processes"]


def unwrap(model: nn.Module) -> nn.Module:
    """The user's model under ``DistributedDataParallel`` or ``DataParallel`` (its parameter
    names are the model's own). FSDP2 shards the model in place: it is returned as it is."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


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
