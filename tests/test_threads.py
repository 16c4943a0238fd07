"""What several threads share: the monitor read from other threads while training records faults,
notices and new layers; one delivery thread per Delivery; no radiograph frame lost between
show() and the sender's thread."""

import threading
import time

import numpy as np
import torch

import nnmodes_widgets as nm
from nnmodes_widgets.widgets import delivery as delivery_module
from nnmodes_widgets.widgets.delivery import Delivery, Feed
from nnmodes_widgets.widgets.radiograph import Radiograph


def test_stats_summary_errors_and_history_read_from_other_threads_while_training():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    monitor = nm.Monitor(model, optimizer, every=1, budget=1.0, analyses=("rwc", "spectrum"))
    failures = []

    def flaky(m):          # a listener that fails every 7th step: a fault on the training thread
        if m.current_step % 7 == 0:
            failures.append(m.current_step)
            raise RuntimeError("listener fault")
    monitor.subscribe(flaky)
    stop, seen, problems = threading.Event(), [], []

    def reader():
        while not stop.is_set():
            try:
                kept = len(list(monitor.errors))     # read first: the count only grows
                s = monitor.stats()
                monitor.summary()
                assert s["errors"] >= kept
                for layer in monitor.history.layers("rwc"):
                    steps, values = monitor.history.get("rwc", layer)
                    assert len(steps) == len(values)
                seen.append(s["step"])
            except Exception as exc:   # noqa: BLE001 (the test reports any)
                problems.append(repr(exc))

    def notices():          # another thread's notices, as the worker's (fewer than are kept)
        for _ in range(20):
            monitor.report_notice("spectrum", None, "from another thread")

    threads = [threading.Thread(target=reader) for _ in range(3)] + [threading.Thread(target=notices)]
    for t in threads:
        t.start()
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    for step in range(300):
        if step == 150:     # a new layer mid-training: its series starts, a notice says so
            model.append(torch.nn.Linear(3, 3))
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x)[:, :3], y).backward()
        optimizer.step()
        if step == 150:
            monitor.step()   # the optimizer does not know the new layer's parameters
    stop.set()
    for t in threads:
        t.join()
    monitor.flush()
    assert problems == []
    assert seen and max(seen) <= monitor.current_step
    assert monitor.error_count == len(failures) > 0
    assert all(e.analysis == "listener" for e in monitor.errors)
    assert "3.weight" in monitor.history.layers("rwc")
    assert any(n.layer == "3.weight" for n in monitor.notices)
    monitor.detach()


def test_one_delivery_thread_however_many_threads_request_at_once(monkeypatch):
    started = []

    class Counting(threading.Thread):
        def __init__(self, *args, **kwargs):
            time.sleep(0.01)     # widens the window between "no thread yet" and having one
            super().__init__(*args, **kwargs)

        def start(self):
            started.append(self)
            super().start()
    pushes = []
    delivery = Delivery()
    feed = delivery.add(Feed(lambda: pushes.append(1) or True, on_error=lambda exc: None,
                             max_rate=1000))
    barrier = threading.Barrier(16)

    def ask():
        barrier.wait()
        delivery.request(feed)
    askers = [threading.Thread(target=ask) for _ in range(16)]   # plain threads, made first
    monkeypatch.setattr(delivery_module.threading, "Thread", Counting)
    for t in askers:
        t.start()
    for t in askers:
        t.join()
    delivery.close()
    assert len(started) == 1


def test_no_radiograph_frame_lost_between_show_and_the_sender():
    widget = Radiograph(title="threads", max_neurons=4, max_rate=1e6)
    maps = {"0": np.ones((4, 5), dtype=np.float32)}
    last = 3000
    done = threading.Event()

    def prepare():
        for step in range(1, last + 1):
            widget._prepare(step, maps, None)
        done.set()

    def send():
        while not done.is_set():
            widget._send_frame()
    threads = [threading.Thread(target=prepare), threading.Thread(target=send)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    widget._send_frame()          # what is still pending goes now
    assert widget.frame_meta["step"] == last
    widget.close()


def test_run_state_counts_every_fault_from_many_threads_and_readers_get_whole_copies():
    from nnmodes_widgets.runs.run_state import MAX_KEPT, MonitorError, RunState

    state = RunState()
    stop, problems = threading.Event(), []

    def writer(name):
        for i in range(600):
            state.add_error(MonitorError(state.step, name, None, f"fault {i}"))
            state.add_notice(name, None, f"notice {i}")
            state.mark_nonfinite(f"{name}.weight", state.step)

    def stepper():
        for _ in range(2000):
            state.advance()

    def reader():
        while not stop.is_set():
            errors = state.errors          # first: the count only grows
            step, count, last, nonfinite = state.faults()
            if len(errors) > MAX_KEPT or count < len(errors) or (count and last is None):
                problems.append((count, len(errors), last))
            if nonfinite != sorted(nonfinite):
                problems.append(nonfinite)

    readers = [threading.Thread(target=reader) for _ in range(2)]
    writers = [threading.Thread(target=writer, args=(f"t{k}",)) for k in range(3)]
    writers.append(threading.Thread(target=stepper))
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert problems == []
    assert state.step == 2000 and state.error_count == 1800
    assert len(state.errors) == len(state.notices) == MAX_KEPT    # the newest kept
    assert sorted(state.nonfinite) == ["t0.weight", "t1.weight", "t2.weight"]
    kept = state.errors
    kept.clear()                                   # a copy: the state keeps its own
    assert len(state.errors) == MAX_KEPT
