"""Train a small classifier with DistributedDataParallel (or FSDP2) on CPU, watched by a Monitor.

    torchrun --nproc-per-node 2 examples/train_ddp.py --record nnmodes_runs/ddp.nnmodes [--fsdp]

Every process makes its monitor; rank 0 records the run. A notebook on the same machine (or a
shared filesystem) watches it live while it trains:

    import nnmodes_widgets as nm
    nm.open_run("nnmodes_runs/ddp.nnmodes").dashboard()

The relative weight change recorded equals that of one process training on the whole batch:
DDP averages the gradients of the ranks' halves; under FSDP2 each rank sums its shards and the
monitor adds the sums up across ranks.
"""

import argparse
import gc

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

import nnmodes_widgets as nm


def model_and_data(seed: int = 0):
    """The model and the whole batch, the same in every process (and in a single-process run)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                          nn.Linear(64, 4))
    generator = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(256, 20, generator=generator)
    y = torch.randint(0, 4, (256,), generator=generator)
    return model, x, y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", default=None, help="run file (default: nnmodes_runs/<time>-...)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--fsdp", action="store_true", help="shard with FSDP2 instead of DDP")
    args = parser.parse_args()

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model, x, y = model_and_data()
    if args.fsdp:
        from torch.distributed.fsdp import fully_shard

        wrapped = fully_shard(model)        # shards in place: the parameters become DTensors
    else:
        wrapped = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(wrapped.parameters(), lr=0.1)
    monitor = nm.Monitor(wrapped, optimizer, every=args.every, run=args.record)
    xs, ys = x.chunk(world)[rank], y.chunk(world)[rank]      # each rank its part of the batch
    for _ in range(args.steps):
        optimizer.zero_grad()
        F.cross_entropy(wrapped(xs), ys).backward()
        optimizer.step()
    monitor.detach()
    if rank == 0:
        print(f"recorded {monitor.history.count('rwc')} samples to {monitor.run_path}")
    # the model, its wrapper and what holds them go before the process group: DDP's reducer
    # (FSDP's mesh) freed after it, at exit, aborted the process ("terminate called without an
    # active exception") in 10 of 30 runs on two busy cores, without a monitor too
    del monitor, optimizer, wrapped, model
    gc.collect()
    dist.barrier()          # rank 0 may still be finishing its analyses
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
