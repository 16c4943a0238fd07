"""The neuron-mode rule (SPEC 4.3) on active fractions: one rule for the analysis, the panels
and the findings. Needs neither torch nor NumPy (it takes tensors and arrays alike), so that a
stored run is read without torch."""

from __future__ import annotations

__all__ = ["MODES", "EPS", "mode_code"]

MODES = ("linear", "nonlinear", "dead")   # mode names; mode_code indexes this
EPS = 0.05                  # the default eps of neuron_modes
_SLACK = 1e-12              # count / N against 1 - eps: rounding must not flip a mode


def mode_code(active_fraction, eps: float = EPS):
    """The mode of each active fraction (a tensor or an array, any shape), as an index into
    ``MODES``: "linear" at >= 1 - eps, "dead" at <= eps, else "nonlinear" (SPEC 4.3), with a
    slack of 1e-12 so that rounding in count / N never flips a mode."""
    linear = active_fraction >= 1 - eps - _SLACK
    dead = active_fraction <= eps + _SLACK
    return MODES.index("nonlinear") + (dead * 1) - (linear * 1)    # linear 0, nonlinear 1, dead 2
