"""Phase changes (nm.analysis.phase_changes): change points of the monitor's dynamics series,
checked on series with known change points."""

import numpy as np
import pytest

from nnmodes_widgets.analysis.phases import phase_changes


def _steps_series(steps, changes, levels, noise, rng):
    values = np.full(len(steps), levels[0], dtype=float)
    for change, level in zip(changes, levels[1:]):
        values[steps >= change] = level
    return steps, values + noise * rng.standard_normal(len(steps))


def test_known_change_points_are_found_where_they_are():
    rng = np.random.default_rng(0)
    steps = np.arange(10, 1001, 10)
    series = {
        "linear share": _steps_series(steps, [400, 700], [0.2, 0.6, 0.9], 0.05, rng),
        "alignment": _steps_series(steps, [400, 700], [0.1, 0.1, 0.5], 0.05, rng),
        "radius": _steps_series(steps, [400], [2.0, 1.0], 0.2, rng),
    }
    found = phase_changes(series)
    assert len(found) == 2
    assert abs(found[0] - 400) <= 20 and abs(found[1] - 700) <= 20


def test_noise_alone_has_no_phase_change():
    rng = np.random.default_rng(1)
    steps = np.arange(5, 2001, 5)
    series = {f"s{i}": (steps, rng.standard_normal(len(steps))) for i in range(4)}
    assert phase_changes(series) == []


def test_series_sampled_at_different_steps_share_one_grid():
    rng = np.random.default_rng(2)
    a = _steps_series(np.arange(10, 1001, 10), [500], [0.0, 1.0], 0.05, rng)
    b = _steps_series(np.arange(25, 1001, 25), [500], [1.0, 3.0], 0.1, rng)
    found = phase_changes({"a": a, "b": b, "constant": (np.arange(10, 1001, 10), np.ones(100))})
    assert len(found) == 1 and abs(found[0] - 500) <= 25


def test_too_short_or_empty_series_have_none_and_bad_input_is_refused():
    assert phase_changes({}) == []
    assert phase_changes({"a": (np.arange(6), np.r_[0, 0, 0, 1, 1, 1.0])}, min_size=4) == []
    assert phase_changes({"nan": (np.arange(3), np.full(3, np.nan))}) == []
    with pytest.raises(ValueError, match="penalty must be a positive number"):
        phase_changes({}, penalty=0)
    with pytest.raises(ValueError, match="min_size must be a positive integer"):
        phase_changes({}, min_size=0)
    with pytest.raises(ValueError, match="series 'x': steps and values must be 1-D"):
        phase_changes({"x": (np.arange(4), np.zeros((4, 2)))})
