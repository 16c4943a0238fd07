"""The background worker: one job at a time, drops while busy, flushes, survives faults."""

import threading
import time

import pytest

from nnmodes_widgets.worker import Worker


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


def test_busy_time_within_a_window_counts_overlaps_and_the_running_job():
    release = threading.Event()
    worker = Worker(on_error=lambda name, exc: None)
    t0 = time.perf_counter()
    worker.offer("a", lambda: time.sleep(0.1))
    worker.flush()
    t1 = time.perf_counter()
    assert 0.09 <= worker.busy_between(t0, t1) <= t1 - t0
    assert worker.busy_between(t1, t1 + 10) == 0.0                # nothing after it
    mid = t0 + (t1 - t0) / 2
    assert worker.busy_between(t0, mid) + worker.busy_between(mid, t1) == pytest.approx(
        worker.busy_between(t0, t1))
    worker.offer("b", release.wait)                                # running now: counted so far
    time.sleep(0.05)
    assert worker.busy_between(t1, time.perf_counter()) >= 0.04
    release.set()
    worker.close()
