"""The measured slowdown and the pace it allows (nnmodes_widgets.live.pacing), on synthetic logs of
training steps and background work: exact answers, no timing."""

import math
import threading
import time

import numpy as np
import pytest

from nnmodes_widgets.live import pacing
from nnmodes_widgets.live.pacing import AIM, MIN_WINDOW_STEPS, Pacer, _overlap


def brute_overlap(busy, start, end):
    out = []
    for a, b in zip(start, end):
        grid = np.linspace(a, b, 20001)[:-1] + (b - a) / 40002
        covered = np.zeros(len(grid), bool)
        for lo, hi, _ in busy:
            covered |= (grid >= lo) & (grid < hi)
        out.append(covered.mean() * (b - a))
    return np.array(out)


def test_overlap_with_the_union_of_busy_stretches_matches_brute_force():
    rng = np.random.default_rng(0)
    lo = rng.uniform(0, 10, 30)
    busy = np.stack([lo, lo + rng.uniform(0, 1.5, 30), rng.integers(0, 2, 30)], axis=1)
    # steps as training makes them: in order, each ending where the next begins, but for a
    # few gaps (breaks left out); from before the first stretch to after the last
    bounds = np.sort(rng.uniform(-1, 12, 41))
    start, end = bounds[:-1], bounds[1:]
    kept = rng.random(40) > 0.15
    start, end = start[kept], end[kept]
    np.testing.assert_allclose(_overlap(busy, start, end), brute_overlap(busy, start, end), atol=2e-4)
    assert (_overlap(busy[:0], start, end) == 0).all()
    # one stretch over every step, and one inside a single step
    whole = np.array([[-5.0, 20.0, 1]])
    np.testing.assert_allclose(_overlap(whole, start, end), end - start)
    inside = np.array([[start[3] + 0.25 * (end[3] - start[3]), start[3] + 0.5 * (end[3] - start[3]), 0]])
    np.testing.assert_allclose(_overlap(inside, start, end),
                               np.where(np.arange(len(start)) == 3, 0.25 * (end[3] - start[3]), 0))
    # a clock that did not tick: an empty stretch at an empty step's instant covers nothing
    instant = np.array([[start[3], start[3], 1]])
    np.testing.assert_array_equal(_overlap(instant, np.r_[start[3], start[3]], np.r_[start[3], end[3]]),
                                  [0, 0])


@pytest.fixture(autouse=True)
def every_step_in_the_window(monkeypatch):
    """The synthetic loops end seconds before their estimates: their window is all of their
    steps (within WINDOW_SECONDS), not only the newest MIN_WINDOW_STEPS."""
    monkeypatch.setattr(pacing, "MIN_WINDOW_STEPS", 1 << 30)


def synthetic(pacer, *, bare, contention, jobs, steps=4000, every=10, rwc=0.0, base=None,
              widgets=(), widget_contention=None, job_cpu=1.0, widget_cpu=1.0):
    """Feed ``pacer`` a loop of ``steps`` steps of ``bare`` seconds, slowed by ``contention``
    while background jobs (``jobs``: (start offset, length) pairs) run, and by
    ``widget_contention`` while widget updates (``widgets``, likewise) do, plus ``rwc`` seconds
    on every ``every``-th step; the jobs take ``job_cpu`` of their time on the CPU, the updates
    ``widget_cpu`` (an update given as (start offset, length, contention, CPU seconds) has its
    own); returns the wall time."""
    t = base = time.perf_counter() - 30 if base is None else base
    slowed = {(base + a, base + a + n): contention for a, n in jobs}
    for lo, hi in slowed:
        pacer.record(lo, hi, "worker", cpu=job_cpu * (hi - lo))
    for a, n, *own in widgets:
        k, cpu = own or (widget_contention, widget_cpu * n)
        slowed[(base + a, base + a + n)] = k
        pacer.record(base + a, base + a + n, "widgets", cpu=cpu)
    busy = list(slowed)
    previous = (0.0, False)          # the monitor's time in the step that ends, and sampled
    for i in range(steps):
        pacer.step(t, *previous)
        own = rwc if i % every == 0 else 0.0
        previous = (own, i % every == 0)
        # the step's work (bare + own) progresses at rate 1 when no job runs, 1 / (1 + k) while
        # one does
        work = bare + own
        while work > 1e-15:
            inside = [(lo, hi) for lo, hi in busy if lo <= t < hi]
            if inside:
                k = max(slowed[stretch] for stretch in inside)
                span = min(hi for _, hi in inside) - t
                done = min(work, span / (1 + k))
                t += done * (1 + k)
            else:
                span = min([lo - t for lo, _ in busy if lo > t], default=math.inf)
                done = min(work, span)
                t += done
            work -= done
    pacer.step(t, *previous)
    return t - base


def test_the_slowdown_and_the_contention_are_measured_from_the_steps(monkeypatch):
    monkeypatch.setattr(pacing, "WINDOW_SECONDS", 1e9)
    pacer = Pacer(0.05, prior_contention=2)
    # a 1 ms step; a 20 ms job every 0.5 s, each slowing the steps it overlaps by 1.5x its time
    jobs = [(0.05 + 0.5 * j, 0.02) for j in range(9)]
    # from time 1 (the window is unbounded): at perf_counter's hours of uptime, the steps' times
    # carry rounding errors of 1e-11 s each, and the slowdown drifted by a part in 1e6
    wall = synthetic(pacer, bare=1e-3, contention=1.5, jobs=jobs, steps=4000, base=1.0)
    pacer._estimated_at = -math.inf
    e = pacer.estimate()
    assert e["bare"] == pytest.approx(1e-3, rel=1e-5)   # quiet: under 1% overlapped
    assert e["slowdown"] == pytest.approx(wall / (4000 * 1e-3) - 1, rel=1e-6)
    # a step's work progresses 2.5 times slower while a job runs: each job second costs
    # training 1.5 / 2.5 = 0.6 s; measured over 9 x 20 ms of jobs, pulled a little towards the
    # prior of 2, which counts as 5 bare steps (5 ms) of background time
    assert 0.6 < e["contention"] < 0.6 + 1.4 * 0.005 / 0.15   # sampled steps are left out
    assert e["worker_share"] == pytest.approx(9 * 0.02 / wall, rel=1e-6)


def test_the_first_slow_steps_of_a_run_are_not_the_monitors():
    # the first steps of a run are slow whatever the monitor does (5 x here, 200 of them), and
    # the calibration samples every fourth of them: measured against the window's mean quiet
    # step, their slowness was the sampling's (3.7% read for the 0.9% the samples took), and
    # that of the ten frames sent among them, which slowed no step, the frames' (a contention
    # of 25 where they cost nothing)
    pacer = Pacer(0.05, prior_contention=2)
    t, previous, own_total, bare_total = time.perf_counter() - 30, (0.0, False), 0.0, 0.0
    for i in range(4000):
        pacer.step(t, *previous)
        bare = 5e-3 if i < 200 else 1e-3
        if i in range(10, 200, 20):
            pacer.record(t + 1e-3, t + 1.5e-3, "widgets", cpu=1e-4)
        sampled = i % (4 if i < 200 else 10) == 0
        own = 1e-4 if sampled else 0.0
        t += bare + own
        own_total, bare_total = own_total + own, bare_total + bare
        previous = (own, sampled)
    pacer.step(t, *previous)
    e = pacer.estimate()
    assert e["slowdown"] == pytest.approx(own_total / bare_total, abs=0.002)
    # (the frames near the warm-up's end meet steps measured against quiet steps on both sides)
    assert e["widget_contention"] < 5


def test_while_training_pauses_the_reading_is_that_of_its_last_seconds(monkeypatch):
    # a pause (an evaluation, the cells after the loop) must not shrink the window to a tail of
    # the last steps: a quickstart's status line went from 4.9% to 6.4% in the 4 s between its
    # last step and the detach
    monkeypatch.setattr(pacing, "MIN_WINDOW_STEPS", 64)
    jobs = [(7.0 + 0.5 * j, 0.1) for j in range(8)]       # 7-11 s into 16 s of 2 ms steps

    def read(paused: float) -> dict:
        pacer = Pacer(0.05, prior_contention=2)
        wall = synthetic(Pacer(0.05, prior_contention=2), bare=2e-3, contention=1.0, jobs=jobs,
                         steps=8000, base=0.0)
        # the same loop, ending ``paused`` seconds before the estimate
        synthetic(pacer, bare=2e-3, contention=1.0, jobs=jobs, steps=8000,
                  base=time.perf_counter() - wall - paused)
        return pacer.estimate()

    at_once, paused = read(0.0), read(5.0)
    assert at_once["slowdown"] > 0.02               # the jobs are within the last 10 s
    assert paused["slowdown"] == pytest.approx(at_once["slowdown"], rel=1e-6)
    assert paused["steps"] == at_once["steps"]


def test_the_status_reads_the_last_minute_while_the_pace_follows_the_last_seconds(monkeypatch):
    # the budget is kept over any minute (SPEC 5); over 10 s the quickstart's status line read
    # over its budget in a fifth of its readings while the minute ran under it
    monkeypatch.setattr(pacing, "MIN_WINDOW_STEPS", 64)
    pacer = Pacer(0.05, prior_contention=2)
    # 40 s of 5 ms steps (all in the ring): jobs slow the first 25 s, none the last 15
    jobs = [(0.5 * j, 0.1) for j in range(50)]
    wall = synthetic(pacer, bare=5e-3, contention=1.0, jobs=jobs, steps=8000,
                     base=time.perf_counter() - 45)
    e = pacer.estimate()
    assert e["slowdown"] == pytest.approx(0.0, abs=1e-9)     # the last 10 s: no job
    assert e["minute_slowdown"] == pytest.approx(wall / (8000 * 5e-3) - 1, rel=1e-6)
    assert e["minute_slowdown"] > 0.05


def test_the_worker_is_counted_by_its_cpu_time_not_its_wall_time(monkeypatch):
    # the same jobs as above, slowing training as much, but spending half their time waiting
    # (for the GIL, for a core): the training lost 0.6 s per second of a job, so 1.2 s per
    # second of its CPU time; a run that waited 30 ms for 3 ms of work was charged for 30 and
    # held the panels for 2.5 s
    monkeypatch.setattr(pacing, "WINDOW_SECONDS", 1e9)
    pacer = Pacer(0.05, prior_contention=2)
    jobs = [(0.05 + 0.5 * j, 0.02) for j in range(9)]
    wall = synthetic(pacer, bare=1e-3, contention=1.5, jobs=jobs, steps=4000, base=1.0,
                     job_cpu=0.5)
    pacer._estimated_at = -math.inf
    e = pacer.estimate()
    assert e["worker_share"] == pytest.approx(9 * 0.01 / wall, rel=1e-6)
    assert 1.2 < e["contention"] < 1.2 + 0.8 * 0.005 / 0.075
    # so what a job costs is the same, priced by its CPU seconds
    assert pacer.cost(0.01) == pytest.approx(e["contention"] * 0.01)


def test_a_stretch_of_work_keeps_its_threads_cpu_time():
    pacer = Pacer(0.05, prior_contention=1)
    token = pacer.begin("worker")
    threading.Event().wait(0.05)            # the work waited: 50 ms, next to no CPU time
    pacer.end(token)
    token = pacer.begin("worker")
    spun = time.thread_time() + 0.03
    while time.thread_time() < spun:        # the work ran: 30 ms of CPU (more wall time on a
        pass                                # loaded host)
    pacer.end(token)
    (start, end, _, waited), (start2, end2, _, ran) = pacer._busy[:2]
    assert end - start >= 0.05 and waited < 0.01
    assert 0.03 <= ran <= end2 - start2 + 0.001


def test_the_widgets_contention_is_measured_apart_from_the_workers():
    # a widget update also costs the browser's drawing on the same cores, which the kernel does
    # not time: its second costs training more than a worker second does, and one contention for
    # both charged the worker for the frames (a small ResNet's panels then barely moved)
    pacer = Pacer(0.05, prior_contention=2)
    jobs = [(0.05 + 0.5 * j, 0.02) for j in range(8)]
    widgets = [(0.2 + 0.25 * j, 0.008) for j in range(16)]
    widgets += [(0.06 + 0.5 * j, 0.004) for j in range(4)]   # inside jobs (shared, as it costs)
    wall = synthetic(pacer, bare=1e-3, contention=0.5, jobs=jobs, widgets=widgets,
              widget_contention=4.0, steps=4500)
    pacer._estimated_at = -math.inf
    e = pacer.estimate()
    # a step progresses 1 + k times slower while one runs: a second of it costs k / (1 + k),
    # here pulled up a little by the prior of 2 (as 5 bare steps' worth of background time,
    # against the 160 ms of the worker's and 128 ms of the widgets' alone, less the sampled
    # steps'; the widgets' share counts every update, those inside jobs too: CPU seconds add up)
    assert 0.5 / 1.5 < e["contention"] < 0.5 / 1.5 + (2 - 0.5 / 1.5) * 0.005 / 0.1
    # (a little under 4 / 5 at the least: the updates inside jobs slow their steps by 4 as those
    # alone do, and the worker is charged its part there)
    assert 0.95 * 4 / 5 < e["widget_contention"] < 4 / 5 + (2 - 4 / 5) * 0.005 / 0.08
    assert e["worker_share"] == pytest.approx(0.16 / wall, rel=1e-6)
    assert e["widget_share"] == pytest.approx(0.144 / wall, rel=1e-6)


def test_the_widgets_are_counted_by_their_cpu_time_as_the_delivery_prices_them():
    # the updates of the test above slowing training as much, but spending a fifth of their time
    # on the CPU (the rest waiting for the GIL while training runs): a second of their CPU time
    # costs training five times what a second of their wall time does. The delivery prices an
    # update by its CPU time; fitted per wall second, the contention priced a digits ResNet's
    # frames in JupyterLab at a fifth of their cost, and they took 3% of training, not 1%
    pacer = Pacer(0.05, prior_contention=2)
    widgets = [(0.2 + 0.25 * j, 0.008) for j in range(16)]
    wall = synthetic(pacer, bare=1e-3, contention=0.5, jobs=[], widgets=widgets,
                     widget_contention=4.0, steps=4500, widget_cpu=0.2)
    pacer._estimated_at = -math.inf
    e = pacer.estimate()
    # (pulled towards the prior of 2, as 5 bare steps' worth against their 26 ms of CPU)
    assert 4 - (4 - 2) * 0.005 / 0.02 < e["widget_contention"] < 4
    assert e["widget_share"] == pytest.approx(0.2 * 0.128 / wall, rel=1e-6)
    # an update, priced as the delivery prices it (its CPU seconds x the contention), costs what
    # it cost training: 8 ms of wall time at 0.8 (per wall second fitted: a fifth of that)
    assert 0.2 * 0.008 * e["widget_contention"] == pytest.approx(0.008 * 0.8, rel=0.1)


def test_frames_light_on_the_kernel_but_costly_to_training_are_priced_within_seconds():
    # an architectures GPT in JupyterLab: 13 ms steps, frames of 1-2 ms of the kernel's CPU that
    # cost the step they landed in 40-55 ms. Weighed as 5 bare steps' worth of background time,
    # the prior of 2 outweighed its 10 s of frames (41 steps at about 12): the frames were priced
    # at a fifth of their cost and took 7.7% of training
    pacer = Pacer(0.05, prior_contention=2)
    frames = [(0.1 + 0.25 * j, 0.002) for j in range(40)]
    synthetic(pacer, bare=13e-3, contention=1.0, jobs=[], widgets=frames,
              widget_contention=20.0, steps=800, widget_cpu=0.1)
    pacer._estimated_at = -math.inf
    e = pacer.estimate()
    # each 2 ms frame takes its step's work 20 / 21 of its time: per second of its CPU (a tenth
    # of its time), training loses 9.5 s; pulled towards 2 as by 5 more such steps to the 35 or
    # more it alone overlapped (a tenth of the frames meet a sampled step, left out)
    measured = 20 / 21 / 0.1
    assert measured - (measured - 2) * 5 / (5 + 35) < e["widget_contention"] < measured


def test_frames_drawn_from_a_run_in_the_steps_it_overlapped_are_charged_to_someone():
    # an architectures GPT in JupyterLab: a panel's frame drawn from a run goes out as the run
    # ends, and the browser's drawing of it (150 ms on two cores, for 1.5 ms of the kernel's CPU)
    # stalls the step the run overlapped; the status lines alone cost their steps 10 ms each.
    # Left out of both contentions, the stalls were nobody's: the runs and frames were priced
    # at half of what they cost, and the first rounds took 3% of its 11 s of training
    runs = [(0.5 + 1.2 * j, 0.1) for j in range(8)]
    drawn = [(a + n - 0.002, 0.15, 20.0, 1.5e-3) for a, n in runs]
    status = [(0.1 + 0.25 * j, 0.01, 20.0, 6e-4) for j in range(40)]
    status = [f for f in status if not any(a - 0.05 < f[0] < a + 0.3 for a, _, _, _ in drawn)]

    def estimate(frames):
        pacer = Pacer(0.05, prior_contention=2)
        wall = synthetic(pacer, bare=13e-3, contention=0.7, jobs=runs, widgets=frames, steps=800,
                         every=10 ** 9)
        pacer._estimated_at = -math.inf
        return pacer.estimate(), wall

    e, wall = estimate(status + drawn)
    # what the worker's and the widgets' CPU seconds are priced at covers the time training
    # lost (1.7 s; 0.6 s of it in the 9 steps both overlapped)
    priced = (e["contention"] * e["worker_share"] + e["widget_contention"] * e["widget_share"]) * wall
    assert priced == pytest.approx(wall - 801 * 13e-3, rel=0.1)
    # ... each kind by what it cost: the runs as their steps without the frames say, the frames
    # drawn from them three times dearer a CPU second than the status lines
    without, _ = estimate(status)
    assert e["contention"] == pytest.approx(without["contention"], rel=0.1)
    assert e["widget_contention"] > 1.5 * without["widget_contention"]


def allowed(budget, c, slowdown, worker_share, job_share=0.0):
    """The training seconds per wall second the worker's runs may cost: what the rest of the
    slowdown leaves of the ``budget`` aimed at, c W (1 + S) + J (1 + S) being theirs at slowdown
    S; nothing when the rest takes it all."""
    others = slowdown - (c * worker_share + job_share) * (1 + slowdown)
    return max(0.0, budget - others) / (1 + budget), others


def test_the_worker_gets_what_the_rest_of_the_slowdown_leaves():
    pacer = Pacer(0.05, prior_contention=2)
    # RWC: 0.3 ms every 10 steps of 1 ms, 3% of the bare time: the worker may slow training by
    # the remaining 2%
    synthetic(pacer, bare=1e-3, contention=1.0, jobs=[(0.5 + 0.5 * j, 0.01) for j in range(8)],
              steps=4000, rwc=3e-4)
    pacer._estimated_at = -math.inf
    e = pacer.estimate()
    rate, others = allowed(AIM * 0.05, e["contention"], e["slowdown"], e["worker_share"])
    assert others == pytest.approx(0.03, abs=0.003)   # c a little towards its prior
    assert pacer.rate() == pytest.approx(rate, rel=1e-9)
    assert pacer.rate(e) == pacer.rate()
    assert pacer.cost(0.01, 0.002) == pytest.approx(e["contention"] * 0.01 + 0.002)


def test_over_budget_without_the_worker_leaves_it_nothing():
    # no floor (SPEC 5): sampling alone over the budget leaves the worker no time at all
    pacer = Pacer(0.05, prior_contention=2)
    synthetic(pacer, bare=1e-3, contention=1.0, jobs=[(1.0, 0.01)], steps=3000, rwc=1e-3)
    pacer._estimated_at = -math.inf
    assert pacer.estimate()["slowdown"] > 0.05
    assert pacer.rate() == 0.0


def test_the_training_threads_time_for_the_runs_is_theirs_not_the_rest():
    # every 10th step refreshes the copy for a run (0.1 ms, on the training thread): that part
    # of the slowdown is the runs', not what the rest leaves them
    pacer = Pacer(0.05, prior_contention=1)
    base = time.perf_counter() - 30
    t, copied = base, 0.0
    for i in range(4000):
        pacer.step(t, copied, copied > 0, copied)    # the step that ends at t
        copied = 1e-4 if i % 10 == 5 else 0.0
        t += 1e-3 + copied
    pacer.step(t, copied, copied > 0, copied)
    e = pacer.estimate()
    assert e["job_share"] == pytest.approx(400 * 1e-4 / (t - base), rel=1e-6)
    assert e["own_share"] == pytest.approx(e["job_share"])
    rate, others = allowed(AIM * 0.05, e["contention"], e["slowdown"], 0.0, e["job_share"])
    assert others == pytest.approx(0.0, abs=1e-9)
    assert pacer.rate() == pytest.approx(AIM * 0.05 / (1 + AIM * 0.05))


def test_before_enough_steps_the_prior_sets_the_pace_and_a_budget_of_one_sets_none():
    pacer = Pacer(0.1, prior_contention=2)
    assert math.isnan(pacer.estimate()["slowdown"])
    assert pacer.rate() == pytest.approx(AIM * 0.1 / (1 + AIM * 0.1))   # nothing measured: all
    e, age = Pacer(0.1, prior_contention=2).latest()       # before any estimate: the prior
    assert e["contention"] == 2 and age == math.inf
    assert Pacer(1.0, prior_contention=2).rate() == math.inf


class Clock:
    def __init__(self):
        self.now = 1000.0

    def perf_counter(self):
        return self.now


def test_the_credit_starts_at_zero_accrues_at_the_rate_up_to_its_cap_and_pays_for_runs(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(pacing, "time", clock)
    pacer = Pacer(0.05, prior_contention=1)
    assert pacer.credit(cap=1.0, rate=0.02) == 0.0          # nothing earned before the start
    clock.now += 10
    assert pacer.credit(cap=1.0, rate=0.02) == pytest.approx(0.2)
    pacer.spend(0.5)                                        # a run cost more than was earned
    assert pacer.credit(cap=1.0, rate=0.02) == pytest.approx(-0.3)
    clock.now += 20
    assert pacer.credit(cap=1.0, rate=0.02) == pytest.approx(0.1)
    clock.now += 1000                                       # long idle: no more than the cap
    assert pacer.credit(cap=1.0, rate=0.02) == pytest.approx(1.0)
    clock.now += 1000
    assert pacer.credit(cap=1.0, rate=0.0) == pytest.approx(1.0)   # no rate: no more


def test_pauses_between_cells_are_breaks_not_steps():
    pacer = Pacer(0.05, prior_contention=1)
    base = time.perf_counter() - 40
    t = base
    for i in range(2000):
        pacer.step(t, 0.0, False)
        t += 1e-3 if i != 1000 else 10.0     # the user waited 10 s before the next cell
    pacer.step(t)
    e = pacer.estimate()
    assert e["steps"] == 1999 and e["slowdown"] == pytest.approx(0.0, abs=1e-9)
    # the rate counts the last 200 steps: 1 ms each
    assert pacer.steps_per_second() == pytest.approx(1000)


def test_work_under_way_counts_up_to_now():
    pacer = Pacer(0.05, prior_contention=1)
    token = pacer.begin("worker")
    begun = time.perf_counter()
    time.sleep(0.02)                     # the job runs a while; steps go on meanwhile
    now = time.perf_counter()
    for t in np.arange(begun - 0.3, now, 1e-3):
        pacer.step(t)
    e = pacer.estimate()
    assert 0 < e["worker_share"] < 0.2   # the steps since it began overlap the running job
    pacer.end(token)
    assert not pacer._running and pacer._busy_count == 1


def test_every_within_budget_brings_sampling_to_half_the_budget():
    # 0.048 / 0.025 = 1.92 -> twice every; own time scales with 1/every
    assert pacing.every_within(10, 0.048, 0.05) == 20
    assert pacing.every_within(10, 0.026, 0.05) == 20
    assert pacing.every_within(5, 0.08, 0.05) == 20
    assert pacing.every_within(1, 0.5, 0.05) == 20
    assert pacing.every_within(10, 0.025, 0.05) is None      # exactly half: within
    assert pacing.every_within(10, 0.01, 0.05) is None
    assert pacing.every_within(10, math.nan, 0.05) is None   # not measured yet


def test_steps_nobody_reads_for_a_whole_window_keep_the_newest_window():
    pacer = Pacer(0.05, prior_contention=1)
    base = time.perf_counter() - 50
    n = pacing.WINDOW_STEPS + 500
    for i in range(n + 1):       # 1 ms steps, the last 300 of them 2 ms
        pacer.step(base + 1e-3 * i + 1e-3 * max(0, i - (n - 300)))
    assert pacer.steps_per_second(200) == pytest.approx(500)
    assert pacer.estimate()["steps"] == pacing.WINDOW_STEPS


def test_slow_steps_are_read_over_their_last_min_window_steps_not_the_whole_minute(monkeypatch):
    # 10 ms steps filled a minute's window: the first round's cost (its warm-up) held the
    # reading over the aim for that minute, and a small ResNet's panels stood still in JupyterLab
    monkeypatch.setattr(pacing, "MIN_WINDOW_STEPS", MIN_WINDOW_STEPS)
    pacer = Pacer(0.05, prior_contention=2)
    wall = synthetic(pacer, bare=1e-2, contention=2.0, jobs=[(3.0, 0.3)], steps=4000,
                     base=time.perf_counter() - 45)
    assert 40 < wall < 45                     # the steps ended seconds ago: SPAN holds fewer
    e = pacer.estimate()
    assert e["steps"] == MIN_WINDOW_STEPS and e["worker_share"] == 0.0
    assert e["slowdown"] == pytest.approx(0.0, abs=1e-9)
    # ... where the whole minute held the job
    monkeypatch.setattr(pacing, "MIN_WINDOW_STEPS", 1 << 30)
    pacer._estimated_at = -math.inf
    e = pacer.estimate()
    assert e["steps"] == 4000 and e["worker_share"] == pytest.approx(0.3 / wall, rel=1e-6)


class _ReadNowAndThen(Pacer):
    """A pacer whose estimates are read every 100 steps, as the worker and the widgets do (the
    ring takes the new steps in, and those it overwrites leave it, at a read)."""

    def step(self, *args):
        super().step(*args)
        self.stepped = getattr(self, "stepped", 0) + 1
        if self.stepped % 100 == 0:
            self.steps_per_second()


def test_steps_that_left_the_ring_count_by_their_sums_for_span_seconds(monkeypatch):
    # A small MLP's 0.27 ms steps fill the ring in 2.3 s, over which the slowdown read 3.5-5.1%
    # from one estimate to the next at a steady pace: the window holds at least SPAN seconds,
    # the steps that left the ring counted by their sums, as if the ring had held them
    monkeypatch.setattr(pacing, "WINDOW_SECONDS", 1e9)
    run = dict(bare=1e-3, contention=1.5, steps=4000, base=1.0, rwc=3e-4, every=7,
               jobs=[(0.05 + 0.5 * j, 0.02) for j in range(9)],
               widgets=[(0.3 + 0.5 * j, 0.01) for j in range(9)], widget_contention=3.0)
    whole = Pacer(0.05, prior_contention=2)           # a ring that holds every step
    synthetic(whole, **run)
    expected = whole.estimate()
    monkeypatch.setattr(pacing, "WINDOW_STEPS", 512)
    monkeypatch.setattr(pacing, "SPAN", 1e9)
    ring = _ReadNowAndThen(0.05, prior_contention=2)
    synthetic(ring, **run)
    got = ring.estimate()
    assert got["steps"] == expected["steps"] == 4000
    assert 0 < expected["widget_share"] and 0 < expected["worker_share"]
    assert expected["widget_contention"] != expected["contention"]
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-9), key
    # steps that left the ring longer ago than SPAN do not count: here the ring alone
    monkeypatch.setattr(pacing, "SPAN", 0.0)
    ring._estimated_at = -math.inf
    assert ring.estimate()["steps"] == 512
    # ... and kept for a window that ends at the last step, however long ago it ran (a pause:
    # here the steps are read, and leave the ring, over a minute and a half after they ran)
    monkeypatch.setattr(pacing, "SPAN", 10.0)
    paused = _ReadNowAndThen(0.05, prior_contention=2)
    synthetic(paused, **dict(run, base=time.perf_counter() - 100))
    assert paused.estimate()["steps"] == 4000
    # ... and from the last SPAN seconds of training only: a cut half way through the steps
    # keeps about half
    monkeypatch.setattr(pacing, "SPAN", 1e9)
    recent = _ReadNowAndThen(0.05, prior_contention=2)
    base = time.perf_counter() - 20
    wall = synthetic(recent, **dict(run, base=base))
    monkeypatch.setattr(pacing, "SPAN", wall / 2)
    assert 1500 < recent.estimate()["steps"] < 2500
