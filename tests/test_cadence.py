"""How often the monitor samples (nnmodes_widgets.live.cadence, SPEC 5 wave 3): every=None
chooses from the measured cost of a sample against the step; an explicit every is kept; the
choice is in the run's settings."""

import itertools
import math
import time

import numpy as np
import pytest
import torch

import nnmodes_widgets as nm
from nnmodes_widgets.live import cadence
from nnmodes_widgets.live.cadence import (CALIBRATION_SAMPLES, PROVISIONAL, RECORD, SAMPLE,
                                          STRIDE, Cadence, agree_largest, choose_every)

# the step whose look fixes every when the calibration ends by its count (its last timed sample
# is at the step before: the warm-up at step 1, then one in every STRIDE steps)
END = STRIDE * CALIBRATION_SAMPLES + 2


@pytest.fixture(autouse=True)
def _calibration_by_count(request, monkeypatch):
    """The steps counted here are short: the calibration ends at its count of steps (the
    seconds rule is tested on its own)."""
    if "seconds" not in request.node.name:
        monkeypatch.setattr(cadence, "CALIBRATION_SECONDS", 0.0)


def test_the_smallest_rung_whose_sampling_takes_a_quarter_of_the_budget():
    # budget 5%: sampling may take 1.25% of training time; a sample later takes LATER x its time
    # in the calibration (s): LATER x s / (every * step) <= 0.0125
    later = cadence.LATER
    assert later > 1
    assert choose_every(0.0, 1.0, 0.05) == 1
    assert choose_every(0.0125 / later, 1.0, 0.05) == 1
    assert choose_every(0.013 / later, 1.0, 0.05) == 2
    assert choose_every(0.025 / later, 1.0, 0.05) == 2
    assert choose_every(0.0251 / later, 1.0, 0.05) == 5
    assert choose_every(0.2 / later, 1.0, 0.05) == 20    # 16 -> the next rung
    assert choose_every(6.0 / later, 1.0, 0.05) == 500
    assert choose_every(0.2 / later, 1.0, 0.2) == 5      # a larger budget, a shorter interval
    assert choose_every(math.nan, 1.0, 0.05) == PROVISIONAL
    assert choose_every(0.1, 0.0, 0.05) == PROVISIONAL


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def calibrate(c: Cadence, clock: Clock, *, step: float, sample: float,
              until: int | None = None) -> list:
    """Drive ``c`` as the monitor does: steps of ``step`` seconds, the monitor's own time in a
    step (sampling) added to it, up to step ``until`` (None: the step that fixes ``every``);
    returns what each step did."""
    did, overhead = [], 0.0
    for k in itertools.count(1) if until is None else range(1, until + 1):
        if until is None and c.fixed:
            break
        clock.now += step + overhead
        due = c.due(k, overhead)
        overhead = 0.0
        if due is not None:
            c.sampled(k, sample if k > 1 else 10 * sample)   # the first sample warms up
            overhead = sample
        did.append(due)
    return did


def test_calibration_samples_among_timed_steps_then_fixes_every_and_starts_a_series():
    clock, fixed = Clock(), []
    c = Cadence(None, 0.05, clock=clock, on_fixed=lambda: fixed.append(c.every))
    assert c.every == PROVISIONAL and not c.fixed and c.chosen
    sample = 0.002 / cadence.LATER
    did = calibrate(c, clock, step=0.010, sample=sample, until=120)
    # a sample in every STRIDE steps from the first (spread over the calibration: three in a
    # row at its start caught the dashboard's first frames in one run and not in the next), the
    # steps between them timed
    assert STRIDE > 1 and CALIBRATION_SAMPLES >= 5
    assert [k + 1 for k, d in enumerate(did[:END]) if d is not None] == list(range(1, END, STRIDE))
    assert {d for d in did[:END] if d is not None} == {SAMPLE}
    # 2 ms a sample later on 10 ms steps: 0.2 / every <= 0.0125 -> every 16 -> 20
    assert c.fixed and c.every == 20 and fixed == [20]
    assert c.sample_seconds == pytest.approx(sample) and c.step_seconds == pytest.approx(0.010)
    assert c.calibrated_share == pytest.approx(sample / (20 * 0.010))
    # every 20 reaches past the calibration: its last sample (END - 1) starts the series, each
    # record spans 20 steps from it
    records = [END - 1 + 20 * k for k in range(1, 5)]
    assert [k + 1 for k, d in enumerate(did) if d is not None][CALIBRATION_SAMPLES + 1:] == records
    assert {did[k - 1] for k in records} == {RECORD}


def test_the_sample_is_the_median_of_those_spread_over_the_calibration():
    # the first timed samples slow (the dashboard's first frames sent meanwhile), the rest not
    # (the slow ones space the next samples out: the calibration takes longer)
    clock = Clock()
    c = Cadence(None, 0.05, clock=clock)
    for k in range(1, 10 * END):
        clock.now += 0.010
        if c.due(k, 0.0) is not None:
            c.sampled(k, 0.004 if k <= 1 + 3 * STRIDE else 0.0004)
    assert c.fixed and c.sample_seconds == pytest.approx(0.0004)


@pytest.mark.parametrize("sample", [0.002, 0.03])
def test_costly_samples_are_spread_out_within_their_share_of_the_budget(sample):
    # nothing is exempt from the budget, the calibration included: 2 ms samples on 10 ms steps
    # at every fourth step would take 5% of its training time, 30 ms ones 75%
    clock = Clock()
    c = Cadence(None, 0.05, clock=clock)
    did = calibrate(c, clock, step=0.010, sample=sample)
    sampled = [k + 1 for k, d in enumerate(did) if d is not None]
    assert c.fixed and c.sample_seconds == pytest.approx(sample)
    assert len(sampled) >= cadence.MIN_SAMPLES + 1 and sampled[:2] == [1, 1 + STRIDE]
    # from the first timed sample on (before it nothing says what one costs), the samples
    # take at most their share of the steps between them
    allowed = cadence.CALIBRATION_SHARE * 0.05
    for a, b in itertools.pairwise(sampled[1:]):
        assert sample <= allowed * (b - a) * 0.010 * (1 + 1e-9), (a, b)
    assert sample > allowed * (sampled[2] - sampled[1] - 1) * 0.010   # ... and no fewer
    # processes that agree sample at the same steps on each: every STRIDE-th, whatever it costs
    agreed = Cadence(None, 0.05, clock=Clock(), agree=lambda every: every)
    did = calibrate(agreed, agreed._clock, step=0.010, sample=sample, until=END)
    agreed_samples = [k + 1 for k, d in enumerate(did) if d is not None]
    assert agreed.fixed and agreed_samples[:CALIBRATION_SAMPLES + 1] == list(range(1, END, STRIDE))


def test_a_short_every_starts_its_series_with_a_sample_at_a_multiple_of_it():
    clock = Clock()
    c = Cadence(None, 0.05, clock=clock)
    # 0.05 ms a sample (0.075 ms later) on 10 ms steps: every step
    until = END + 10
    did = calibrate(c, clock, step=0.010, sample=0.00005, until=until)
    assert c.every == 1 and did[END - 1] is None
    assert did[END] == SAMPLE and did[END + 1:] == [RECORD] * (until - END - 1)


def test_the_warm_up_sample_and_the_step_after_each_sample_are_left_out():
    clock = Clock()
    c = Cadence(None, 0.05, clock=clock)
    for k in range(1, END + 1):
        # the step after each sample is slow (its memory traffic), the rest take 10 ms
        clock.now += 0.5 if k > 1 and (k - 1) % STRIDE == 1 else 0.010
        if c.due(k, 0.0) is not None:
            c.sampled(k, 1.0 if k == 1 else 0.0009)
    assert c.fixed
    assert c.step_seconds == pytest.approx(0.010) and c.sample_seconds == pytest.approx(0.0009)
    assert c.every == 20                 # 2.5 x 0.09 / 10 = 0.0225 > 0.0125 >= 0.225 / 20


def test_an_explicit_every_is_kept_and_samples_at_its_multiples():
    c = Cadence(7, 0.05)
    assert c.fixed and not c.chosen and c.every == 7
    assert [k for k in range(1, 30) if c.due(k)] == [7, 14, 21, 28]
    assert all(c.due(k) == RECORD for k in (7, 14))
    assert math.isnan(c.calibrated_share)


def test_processes_that_sample_together_take_the_largest_choice():
    sums = []

    def reduce(votes):          # two processes: this one, and one that chose 50
        other = np.zeros_like(votes)
        other[list(itertools.islice(cadence.ladder(), cadence.RUNGS)).index(50)] = 1
        sums.append(votes + other)
        return votes + other

    assert agree_largest(reduce)(20) == 50 and agree_largest(reduce)(100) == 100
    clock = Clock()
    c = Cadence(None, 0.05, clock=clock, agree=agree_largest(reduce))
    calibrate(c, clock, step=0.010, sample=0.002, until=END)
    assert c.every == 50 and len(sums) == 3


# -- in the monitor --------------------------------------------------------------------------------


def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))


def test_a_slow_sample_against_its_step_chooses_the_expected_every_and_the_run_records_it(
        tmp_path, monkeypatch):
    # a deliberately slow sample (4 ms more) on deliberately slow steps (40 ms more): about
    # 0.1 of a step, 0.25 later, so every 20 (0.25 / 20 <= 1.25% of the training time), or 50
    # when the sleeps overshoot
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "chosen.nnmodes"
    monitor = nm.Monitor(model, optimizer, run=path, analyses=("rwc",))
    real = monitor._tracker.update

    def slow_update(*args, **kwargs):
        time.sleep(0.004)
        return real(*args, **kwargs)

    monkeypatch.setattr(monitor._tracker, "update", slow_update)
    assert monitor.every == PROVISIONAL and monitor.stats()["every_chosen"] is None
    assert "every being chosen in the first steps" in monitor.summary()
    c = monitor._cadence
    for _ in range(3 * END):           # (the samples spread out to take their share: 2.5%)
        if c.fixed:
            break
        optimizer.zero_grad()
        model(torch.randn(4, 8)).sum().backward()
        optimizer.step()
        time.sleep(0.04)
    assert c.fixed and c.sample_seconds >= 0.004 and c.step_seconds >= 0.04
    assert monitor.every == choose_every(c.sample_seconds, c.step_seconds, 0.05) in (20, 50)
    assert monitor.history.count("rwc") == 0          # the calibration's samples are not recorded
    s = monitor.stats()
    assert s["every"] == monitor.every and s["every_chosen"] is True
    assert f"every {monitor.every} steps (chosen" in monitor.summary()
    monitor._writer.flush()
    with nm.open_run(path) as run:
        settings = run.info["settings"]
        assert settings["every"] == run.every == monitor.every
        assert settings["every_chosen"] is True
        assert settings["sampling_share"] == pytest.approx(c.calibrated_share)
    monitor.detach()


def test_the_calibration_times_a_sample_with_what_recording_it_costs(monkeypatch):
    # recording a sample (its values, the history's append) is part of what each later sample
    # costs: a slow record (4 ms more) must be in the calibration's sample time, though the
    # calibration's samples are not recorded in the monitor's history
    from nnmodes_widgets.runs.history import History
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = nm.Monitor(model, optimizer, run=False, analyses=("rwc",))
    real = History.record
    recorded = []

    def slow_record(self, analysis, *args):
        recorded.append((self is monitor.history, analysis))
        time.sleep(0.004)
        return real(self, analysis, *args)

    monkeypatch.setattr(History, "record", slow_record)
    c = monitor._cadence
    # (until it is fixed: its 4 ms samples against steps of a fraction of a millisecond are
    # spread out, some thousands of steps apart, to take their share of the budget)
    for _ in range(100_000):
        optimizer.zero_grad()
        model(torch.randn(4, 8)).sum().backward()
        optimizer.step()
        if c.fixed:
            break
    assert c.fixed and c.sample_seconds >= 0.004, c.sample_seconds
    assert monitor.history.count("rwc") == 0
    assert recorded and set(recorded) == {(False, "rwc")}
    # once every is fixed, the scratch history is dropped and samples are recorded for real
    assert monitor._rehearsal is None
    for _ in range(2 * monitor.every + 1):
        optimizer.zero_grad()
        model(torch.randn(4, 8)).sum().backward()
        optimizer.step()
    assert monitor.history.count("rwc") >= 1 and (False, "rwc") in recorded
    assert recorded[-1] == (True, "rwc")
    monitor.detach()


@pytest.mark.parametrize("sample", [0.0001, 0.002, 0.03])     # every 1, 20, 500
def test_next_due_is_the_first_later_step_that_samples(sample):
    """The monitor skips its per-step look until ``next_due``: it must not pass a sample."""
    clock = Clock()
    chosen = Cadence(None, 0.05, clock=clock)
    until = len(calibrate(chosen, clock, step=0.010, sample=sample))   # the step that fixed it
    assert chosen.fixed
    for c, first in ((chosen, until), (Cadence(7, 0.05), 0)):
        due = [k for k in range(first, first + 3 * c.every + 40) if c.due(k) is not None]
        for k in range(first, due[-1]):
            assert c.next_due(k) == min(d for d in due if d > k), (c.every, k)
    unfixed = Cadence(None, 0.05, clock=Clock())
    assert [unfixed.next_due(k) for k in (0, 1, 5)] == [1, 2, 6]      # measuring: every step


def test_recorded_samples_of_a_chosen_every_each_span_every_steps():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = nm.Monitor(model, optimizer, run=False, analyses=("rwc",))
    saved = {}
    k = 0
    # until two samples of the chosen every (on a loaded host it chose 200: one by step 400)
    while k < 400 or len(monitor.history.steps("rwc")) < 2 and k < 20_000:
        k += 1
        optimizer.zero_grad()
        model(torch.randn(4, 8)).square().mean().backward()    # bounded: finite weights
        optimizer.step()
        saved[k] = model[0].weight.detach().clone()
    every = monitor.every
    steps, values = monitor.history.get("rwc", "0.weight")
    assert monitor._cadence.fixed and len(steps) >= 2
    assert (np.diff(steps) == every).all()
    # the first recorded value spans the every steps before it, like every later one
    first = int(steps[0])
    expected = ((saved[first] - saved[first - every]).abs().sum()
                / saved[first - every].abs().sum()).item()
    assert values[0] == pytest.approx(expected, rel=1e-5)
    monitor.detach()


def test_an_explicit_every_is_kept_and_the_status_says_what_it_costs():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = nm.Monitor(model, optimizer, every=3, run=False, analyses=("rwc",))
    for _ in range(30):
        optimizer.zero_grad()
        model(torch.randn(4, 8)).sum().backward()
        optimizer.step()
    assert monitor.every == 3 and monitor.history.steps("rwc").tolist() == list(range(3, 31, 3))
    s = monitor.stats()
    assert s["every_chosen"] is False and s["sampling_share"] > 0
    # what the samples take (and over half the budget, the every that would not)
    share = s["sampling_share"]
    assert f"every 3 steps (sampling takes {100 * share:.1f}% of training time" in monitor.summary()
    monitor.detach()


def calibrate_until_fixed(step_seconds) -> tuple[Cadence, int, Clock]:
    """Steps of ``step_seconds(k)`` seconds (samples of 0.05 ms) until ``every`` is fixed at
    step k; the cadence, k and its clock."""
    clock = Clock()
    c = Cadence(None, 0.05, clock=clock)
    k = 0
    while not c.fixed:
        k += 1
        clock.now += step_seconds(k)
        if c.due(k, 0.0) is not None:
            c.sampled(k, 0.00005)
    return c, k, clock


def test_steps_slowed_while_calibrating_do_not_pass_for_the_bare_step():
    # In JupyterLab, while the dashboard drew its first frames, nine in ten of the
    # calibration's steps waited for the GIL: 20 ms against 1 ms (a few 1.2 ms). The bare step
    # is the median quick one, once 16 were seen: sampling 0.05 ms (0.125 ms later) on 1 ms steps
    # takes at most a quarter of the budget every 10 steps, not every step. (Quick steps at
    # 3, 13, 23, ...: none right after a sample.)
    c, k, _ = calibrate_until_fixed(
        lambda k: 0.020 if k % 10 != 3 else (0.0012 if k % 20 != 3 else 0.001))
    quick = (cadence.CALIBRATION_STEPS - 1) * 10 + 3            # the 16th quick step
    assert quick <= k < quick + 10 and c.every == 10
    assert 0.001 <= c.step_seconds <= 0.0012


def test_steps_that_never_settle_end_the_calibration_after_its_longest():
    # no 16 quick steps (one step in 40 is quick, the first timed one among them): chosen
    # after CALIBRATION_MAX_SECONDS of timed steps
    c, _, _ = calibrate_until_fixed(lambda k: 0.001 if k % 40 == 3 else 0.020)
    assert cadence.CALIBRATION_MAX_SECONDS <= c._stepped <= cadence.CALIBRATION_MAX_SECONDS + 0.03
    assert c.step_seconds == pytest.approx(0.001) and c.every == 10


def test_short_steps_calibrate_for_calibration_seconds_not_only_their_count():
    # the samples and the quick steps are there by step END; the steps fill 0.5 s later
    c, k, _ = calibrate_until_fixed(lambda k: 0.001)
    assert k > 2 * END and c.fixed and c.step_seconds == pytest.approx(0.001)
    assert cadence.CALIBRATION_SECONDS <= c._stepped <= cadence.CALIBRATION_SECONDS + 0.0015


def test_a_wait_inside_the_monitors_step_times_no_step_at_zero():
    # A wait between the monitor's step start (t0, from which its overhead is timed) and the
    # cadence's reading of the clock (the GIL, a preempted thread) was taken out of the next
    # step: timed at 0 s, it was the quickest, no other step was quick, and calibration held
    # to its 5 s of steps (the findings tour's frozen layer had no RWC sample in 2500 steps).
    clock = Clock()
    c = Cadence(None, 0.3, clock=clock)
    overhead = 0.0
    for k in range(1, 1001):
        clock.now += 0.001                       # the user's step
        t0 = clock.now
        clock.now += 0.002 if k == 30 else 0.0   # a wait before the cadence is asked
        due = c.due(k, overhead, t0)
        clock.now += 0.0001 if due is not None else 0.0
        if due is not None:
            c.sampled(k, 0.0001)
        overhead = clock.now - t0
    assert c.fixed and c.step_seconds == pytest.approx(0.001) and min(c._steps) > 0
