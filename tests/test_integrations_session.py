"""What both trainer callbacks share (integrations/session.py), without a framework: steps
counted from the trainer where no torch optimizer can be hooked, and the dashboard displayed
when training starts, once."""

import pytest
import torch
from torch import nn

from nnmodes_widgets.integrations import session as session_module
from nnmodes_widgets.integrations.session import TrainingSession


class Engine:
    """A framework's optimizer with no torch optimizer under it (DeepSpeed's, say)."""

    def step(self):
        pass


def test_without_a_torch_optimizer_the_trainers_steps_are_counted():
    session = TrainingSession(False, {"every": 2, "analyses": ("rwc",), "run": False})
    monitor = session.start(nn.Linear(3, 2), Engine(), step=10)     # resumed at step 10
    assert monitor.optimizer is None
    assert any("no torch optimizer to hook (none under Engine)" in n.message for n in monitor.notices)
    session.count(13)
    assert monitor.current_step == 3 and monitor.history.get("rwc", "weight")[0].tolist() == [2]
    session.count(13)                    # the same trainer step again: nothing more
    assert monitor.current_step == 3
    session.end()
    assert monitor.detached


def test_a_hooked_optimizer_counts_its_own_steps():
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    session = TrainingSession(False, {"analyses": ("rwc",), "run": False})
    monitor = session.start(model, optimizer)
    session.count(5)                          # the trainer's count is not used
    optimizer.step()
    assert monitor.current_step == 1
    session.end()


@pytest.mark.parametrize("taken", [False, True])
def test_show_displays_the_dashboard_when_training_starts_unless_already_taken(monkeypatch, taken):
    import IPython.display

    shown = []
    monkeypatch.setattr(session_module, "in_notebook", lambda: True)
    monkeypatch.setattr(IPython.display, "display", shown.append)
    session = TrainingSession(True, {"run": False})
    view = session.dashboard() if taken else None
    session.start(nn.Linear(3, 2), None)
    assert shown == ([] if taken else [session.dashboard()])
    assert session.dashboard().dashboard.run is session.monitor
    session.end()
    session.dashboard().close()
    assert view is None or view is session.dashboard()
