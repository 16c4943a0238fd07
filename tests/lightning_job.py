"""A small classifier as a LightningModule of either Lightning package, its data, and (run as a
script) a fit under ``strategy="ddp"`` on 2 CPU processes with gloo, watched by NNModesCallback:

    python tests/lightning_job.py            # Lightning launches the second process itself
"""

import sys

import torch
import torch.nn.functional as F
from torch import nn


def classifier(pl, *, fail_at=None, poison=(), call_self=True):
    """A LightningModule of package ``pl``; ``fail_at``: the batch whose training_step raises;
    ``poison``: batches whose loss is inf (their gradients too); ``call_self``: whether
    training_step calls ``self(x)`` or its network directly."""

    class Classifier(pl.LightningModule):
        def __init__(self, lr=0.01, hidden=16):
            super().__init__()
            self.save_hyperparameters()
            self.net = nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Linear(hidden, 3))

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            if batch_idx == fail_at:
                raise RuntimeError(f"bad batch {batch_idx}")
            x, y = batch
            loss = F.cross_entropy(self(x) if call_self else self.net(x), y)
            return loss * float("inf") if batch_idx in poison else loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    torch.manual_seed(0)
    return Classifier()


def loader(batches: int, size: int = 4):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batches * size, 8, generator=g)
    y = torch.randint(0, 3, (batches * size,), generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=size)


def trainer(pl, callback, **options):
    """A quiet one-epoch CPU Trainer with ``callback``."""
    defaults = dict(max_epochs=1, accelerator="cpu", devices=1, logger=False,
                    enable_progress_bar=False, enable_model_summary=False,
                    enable_checkpointing=False)
    return pl.Trainer(callbacks=[callback], **{**defaults, **options})


if __name__ == "__main__":
    import lightning.pytorch as pl

    from nnmodes_widgets.integrations.lightning import NNModesCallback

    batches, every = int(sys.argv[1]), int(sys.argv[2])
    callback = NNModesCallback(every=every, analyses=("rwc", "spectrum"))
    fit = trainer(pl, callback, strategy="ddp", devices=2)
    fit.fit(classifier(pl), loader(batches))     # each process gets half the batches
    monitor = callback.monitor
    print(f"rank {fit.global_rank}: step {monitor.current_step}, run {monitor.run_path}", flush=True)
