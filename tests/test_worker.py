"""The background worker: one job at a time, drops while busy, flushes, survives faults."""

import sys
import threading
import time
import weakref

import pytest

from nnmodes_widgets.live.worker import START, Worker


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


def test_a_start_hook_that_raises_is_reported_and_the_jobs_run_all_the_same():
    errors, ran = [], []

    def start():
        raise RuntimeError("can't register atexit after shutdown")
    worker = Worker(on_error=lambda name, exc: errors.append((name, str(exc))), on_start=start)
    assert worker.offer("a", lambda: ran.append("a")) and worker.flush(5)
    assert ran == ["a"] and errors == [(START, "can't register atexit after shutdown")]
    assert worker.close(5)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_worker_whose_thread_died_never_makes_a_wait_hang():
    def dies():
        raise SystemExit      # not an Exception: nothing in the worker catches it
    worker = Worker(on_error=lambda name, exc: None, on_start=dies)
    assert worker.offer("queued", lambda: None)
    results = []
    waiter = threading.Thread(target=lambda: results.append((worker.flush(), worker.close())),
                              daemon=True)
    waiter.start()
    waiter.join(30)           # a hang fails here, not by the clock
    assert not waiter.is_alive()
    assert results == [(False, True)]        # the job was not done; the thread has ended
    assert worker.dropped == 1 and worker.offer("late", lambda: None) is False


def test_close_abandons_a_job_still_running_and_names_it_then_the_thread_ends():
    gate = threading.Event()
    worker = Worker(on_error=lambda name, exc: None)
    worker.offer("hangs", gate.wait)
    assert worker.close(0.2) is False and worker.running == "hangs"
    thread = worker._thread
    assert thread.is_alive()
    gate.set()
    thread.join(30)
    assert not thread.is_alive() and worker.running is None


def test_close_ends_the_thread():
    worker = Worker(on_error=lambda name, exc: None)
    worker.offer("a", lambda: None)
    thread = worker._thread
    assert worker.close(5) and not thread.is_alive()


class _Thing:
    pass


def swallow_a_cut(events: list) -> None:
    """Drop an object whose weakref callback spins until a cut arrives: the cut dies with the
    callback, as Python drops any exception raised in one (printing it)."""
    def callback(_):
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                pass
        finally:
            events.append("callback")
    thing = _Thing()
    ref = weakref.ref(thing, callback)        # noqa: F841 (its callback runs at the del)
    del thing


@pytest.fixture
def swallowing(monkeypatch):
    """A worker, the events its jobs append to, and what Python would print as unraisable."""
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    worker = Worker(on_error=lambda name, exc: None)
    yield worker, [], unraisable
    worker.close(5)


def test_a_cut_that_a_weakref_callback_swallows_is_sent_again_and_nothing_is_printed(
        swallowing):
    # Python prints an exception raised in a weakref callback (or a __del__) and drops it: a cut
    # landing there put "Exception ignored ... Abandoned" on stderr, and a basins trial ran on
    # past its limit
    worker, events, unraisable = swallowing

    def job():
        with worker.cuttable(limit=0.05):
            swallow_a_cut(events)
            events.append("after the callback")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                pass
            events.append("ran to its end")

    worker.offer("trial", job)
    assert worker.flush(20), "the job was not cut a second time"
    assert events == ["callback", "after the callback"]
    assert unraisable == []          # nothing printed ("Exception ignored in ...")
    assert worker.offer("next", lambda: events.append("next")) and worker.flush(5)
    assert events[-1] == "next"      # the worker goes on


def test_a_cut_swallowed_as_its_job_leaves_cuttable_never_reaches_the_next_job(swallowing):
    # the cut is sent again only while the job is inside the cuttable() entry it was meant for:
    # a job that left it, swallowing the cut on its way out, must not pass it to the next job
    worker, events, unraisable = swallowing

    def swallows_then_leaves():
        with worker.cuttable(limit=0.05):
            swallow_a_cut(events)
        events.append("left")

    def next_job():
        with worker.cuttable():
            deadline = time.monotonic() + 0.3
            while time.monotonic() < deadline:
                pass
        events.append("next ran to its end")

    worker.offer("trial", swallows_then_leaves)
    assert worker.flush(20)
    assert worker.offer("next", next_job) and worker.flush(20)
    assert events == ["callback", "left", "next ran to its end"] and unraisable == []
