"""``NNModesCallback`` for the Hugging Face ``Trainer``::

    from nnmodes_widgets.integrations.transformers import NNModesCallback
    trainer = Trainer(model, args, train_dataset=..., callbacks=[NNModesCallback(every=10)])

When training starts it makes a ``Monitor`` on the model (keys are its own parameter names, tied
weights once) and the torch optimizer under Accelerate's wrapper; when training ends or fails it
detaches, which finishes the run on disk.
"""

from __future__ import annotations

import enum
import functools
import sys
import weakref

from .session import TrainingSession

try:
    import transformers
except ImportError as exc:
    raise ImportError("nnmodes_widgets.integrations.transformers needs transformers: "
                      "pip install 'nnmodes_widgets[transformers]'") from exc

__all__ = ["NNModesCallback"]

# TrainingArguments recorded in the run's settings (those a version lacks are left out)
ARGUMENTS = ("learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "seed",
             "world_size", "num_train_epochs", "max_steps", "weight_decay", "lr_scheduler_type",
             "warmup_steps", "optim", "max_grad_norm", "bf16", "fp16")


class NNModesCallback(transformers.TrainerCallback):
    """Watch a Hugging Face ``Trainer``: ``NNModesCallback(**monitor_options, show=True)``.

    The options are ``nm.Monitor``'s (``every``, ``budget``, ``probe``, ``analyses``, ``run``,
    ...), checked here. When training starts (``on_train_begin``) the monitor is made on the
    model and the torch optimizer under Accelerate's ``AcceleratedOptimizer``: it counts
    optimizer steps (``state.global_step``: one per ``gradient_accumulation_steps`` batches; a
    step fp16's scaler skips is not a step), names the run after ``args.run_name`` when set and
    records the learning rate, batch size, accumulation, seed and a few more arguments in the
    run's settings. Under ``torchrun`` every process makes its monitor; rank 0 alone records and
    shows. Without a ``probe`` the first training batch (every keyword input) is the probe.

    Passed to ``Trainer(callbacks=[...])``, the callback also sees a ``train()`` that raises: the
    run is finished then, with a notice naming the exception. (Added later with
    ``trainer.add_callback``, it sees that from the second ``train()`` on.)

    ``monitor`` is None until training starts. ``dashboard()`` can be shown before: it says it
    waits, then shows the monitor's dashboard. With ``show`` the dashboard is displayed when
    training starts, in a notebook, unless ``dashboard()`` was already taken.
    """

    def __init__(self, *, show: bool = True, **monitor_options):
        self._session = TrainingSession(show, monitor_options)
        self._guarded = weakref.WeakSet()     # trainers whose train() ends the monitor on failure

    @property
    def monitor(self):
        """The monitor of the current (or last) training; None before training starts."""
        return self._session.monitor

    def dashboard(self):
        """The live dashboard; shown before training starts it waits for it."""
        return self._session.dashboard()

    def on_init_end(self, args, state, control, **kwargs):
        self._guard(_calling_trainer())

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        self._guard(_calling_trainer())
        self._session.start(model, optimizer, name=args.run_name or None,
                            hparams=_arguments(args), step=state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        self._session.count(state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        self._session.end()

    def _guard(self, trainer) -> None:
        """Make ``trainer.train()`` detach the monitor when it raises: the Trainer has no
        callback event for a failure."""
        if trainer is None or trainer in self._guarded:
            return
        self._guarded.add(trainer)
        train = trainer.train
        session = self._session

        @functools.wraps(train)
        def guarded_train(*args, **kwargs):
            try:
                return train(*args, **kwargs)
            except BaseException as exc:
                session.end(exc)
                raise

        trainer.train = guarded_train


def _calling_trainer(depth: int = 8):
    """The Trainer whose callback handler called this event: ``self`` of a frame up the stack
    (the handler's ``call_event`` is called from the Trainer's own methods)."""
    frame = sys._getframe(1)
    for _ in range(depth):
        if frame is None:
            return None
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, transformers.Trainer):
            return candidate
        frame = frame.f_back
    return None


def _arguments(args) -> dict:
    """The ``TrainingArguments`` that say what a step is, as plain values."""
    values = {name: getattr(args, name) for name in ARGUMENTS if hasattr(args, name)}
    return {name: v.value if isinstance(v, enum.Enum) else v for name, v in values.items()}
