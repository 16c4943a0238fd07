"""The background worker: one job at a time, drops while busy, flushes, survives faults."""

import threading
import time

import pytest

from nnmodes_widgets.live.worker import Worker


def test_runs_offered_jobs_in_the_background_and_flushes():
    errors, done = [], []
    worker = Worker(on_error=lambda name, exc: errors.append((name, exc)))
    main = threading.get_ident()
    assert worker.offer("a", lambda: done.append(threading.get_ident()))
    assert worker.flush(5)
    assert len(done) == 1 and done[0] != main
    assert worker.completed == 1 and worker.busy_seconds > 0 and "a" in worker.last_cost
    assert worker.idle and not errors
    worker.close(5)


def test_offers_while_busy_are_dropped_and_counted():
    gate = threading.Event()
    ran = []
    worker = Worker(on_error=lambda name, exc: None)
    assert worker.offer("slow", lambda: (gate.wait(5), ran.append("slow")))
    assert not worker.offer("x", lambda: ran.append("x"))
    assert not worker.offer("y", lambda: ran.append("y"))
    assert worker.dropped == 2 and not worker.idle
    gate.set()
    assert worker.flush(5)
    assert ran == ["slow"]
    assert worker.offer("z", lambda: ran.append("z")) and worker.flush(5)
    assert ran == ["slow", "z"]
    worker.close(5)


def test_a_failing_job_is_reported_and_the_worker_goes_on():
    errors, ran = [], []
    worker = Worker(on_error=lambda name, exc: errors.append((name, str(exc))))
    worker.offer("bad", lambda: 1 / 0)
    worker.flush(5)
    worker.offer("good", lambda: ran.append(1))
    worker.flush(5)
    assert errors == [("bad", "division by zero")] and ran == [1] and worker.completed == 2
    worker.close(5)


def test_flush_times_out_and_close_refuses_new_jobs():
    gate = threading.Event()
    worker = Worker(on_error=lambda name, exc: None)
    worker.offer("slow", lambda: gate.wait(5))
    start = time.monotonic()
    assert worker.flush(0.2) is False and time.monotonic() - start < 2
    gate.set()
    assert worker.close(5)
    assert worker.offer("late", lambda: None) is False


def test_begin_and_end_bracket_every_job_even_a_failing_one():
    log = []
    worker = Worker(on_error=lambda name, exc: log.append(("error", name)),
                    begin=lambda: log.append("begin") or len(log), end=lambda token: log.append(("end", token)))
    worker.offer("a", lambda: log.append("a"))
    worker.flush()
    worker.offer("b", lambda: 1 / 0)
    worker.flush()
    worker.close()
    assert log == ["begin", "a", ("end", 1), "begin", ("error", "b"), ("end", 4)]
