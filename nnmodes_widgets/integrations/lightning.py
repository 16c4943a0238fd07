"""``NNModesCallback`` for the Lightning ``Trainer`` (``lightning.pytorch`` or
``pytorch_lightning``)::

    from nnmodes_widgets.integrations.lightning import NNModesCallback
    trainer = Trainer(callbacks=[NNModesCallback(every=10)])

When training starts it makes a ``Monitor`` on the ``LightningModule`` (keys are its own
parameter names) and its optimizer (the first, when there are several); when fitting ends or
fails it detaches, which finishes the run on disk.
"""

from __future__ import annotations

import importlib

from .session import TrainingSession

__all__ = ["NNModesCallback"]


def _callback_bases() -> tuple[type, ...]:
    """Lightning's ``Callback`` of each package installed: with both, the callback is a callback
    of each, so that a Trainer of either accepts it."""
    bases = []
    for package in ("lightning.pytorch", "pytorch_lightning"):
        try:
            bases.append(importlib.import_module(package).Callback)
        except ImportError:
            pass
    if not bases:
        raise ImportError("nnmodes_widgets.integrations.lightning needs Lightning: "
                          "pip install 'nnmodes_widgets[lightning]'")
    return tuple(bases)


class NNModesCallback(*_callback_bases()):
    """Watch a Lightning fit: ``NNModesCallback(**monitor_options, show=True)``.

    The options are ``nm.Monitor``'s (``every``, ``budget``, ``probe``, ``analyses``, ``run``,
    ...), checked here. When training starts (``on_train_start``) the monitor is made on
    ``pl_module`` and the trainer's optimizer: it counts optimizer steps (one per
    ``accumulate_grad_batches`` batches; a step AMP's scaler skips is not a step), records
    ``pl_module.hparams`` and the trainer's accumulation, precision and world size in the run's
    settings, and names the run after the logger (``name-version``) when there is one. Under
    DDP every process makes its monitor; rank 0 alone records and shows. Without a ``probe``
    the first batch ``pl_module``'s forward sees is the probe (a ``training_step`` that calls
    ``self(x)``).

    ``monitor`` is None until training starts. ``dashboard()`` can be shown before: it says it
    waits, then shows the monitor's dashboard. With ``show`` the dashboard is displayed when
    training starts, in a notebook, unless ``dashboard()`` was already taken.
    """

    def __init__(self, *, show: bool = True, **monitor_options):
        super().__init__()
        self._session = TrainingSession(show, monitor_options)
        self._probe_checked = False     # whether the first batch gave the monitor its probe

    @property
    def monitor(self):
        """The monitor of the current (or last) fit; None before training starts."""
        return self._session.monitor

    def dashboard(self):
        """The live dashboard; shown before training starts it waits for it."""
        return self._session.dashboard()

    def on_train_start(self, trainer, pl_module) -> None:
        self._probe_checked = False
        optimizers = list(trainer.optimizers)
        self._session.start(pl_module, optimizers[0] if optimizers else None,
                            name=_logger_name(trainer), hparams=_hparams(trainer, pl_module),
                            step=trainer.global_step)
        if len(optimizers) > 1:
            self.monitor.report_notice("schedule", None, f"steps counted on the first of "
                                       f"{len(optimizers)} optimizers")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._session.count(trainer.global_step)
        monitor = self.monitor
        if not self._probe_checked and monitor is not None and monitor.probe is None:
            monitor.report_notice("probe", None, "no probe: training_step did not call the "
                                  "module's forward; NNModesCallback(probe=...) gives one")
        self._probe_checked = True

    def on_train_end(self, trainer, pl_module) -> None:
        self._session.end()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._session.end(exception)


def _logger_name(trainer) -> str | None:
    """``name-version`` of the trainer's logger (``lightning_logs-version_3``), None without."""
    logger = trainer.logger
    name = getattr(logger, "name", None) if logger is not None else None
    if not name:
        return None
    version = getattr(logger, "version", None)
    if version is None or version == "":
        return str(name)
    return f"{name}-{f'version_{version}' if isinstance(version, int) else version}"


def _hparams(trainer, pl_module) -> dict:
    """``pl_module.hparams``, and the trainer's settings that change what a step is."""
    return {"trainer": {"accumulate_grad_batches": trainer.accumulate_grad_batches,
                        "precision": str(trainer.precision), "world_size": trainer.world_size,
                        "max_epochs": trainer.max_epochs, "max_steps": trainer.max_steps},
            **dict(pl_module.hparams)}
