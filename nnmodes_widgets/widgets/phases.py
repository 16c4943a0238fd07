"""The learning phases on every time axis: vertical rules at the steps where the monitor's phase
detector (SPEC 4.6, recorded under "phases") found a new phase beginning; and the band that marks
the steps of a finding clicked in the dashboard's findings strip (set in the browser)."""

from __future__ import annotations

import bqplot
import numpy as np

PHASE_COLOR = "#c81e1e"      # as js/neurons.js draws them
EVIDENCE_COLOR = "#e3a008"   # a finding's steps, as js/figures.js and js/neurons.js draw them


def phase_marks(history, step: int | None = None) -> list[int]:
    """The newest recorded phase changes (as detected up to ``step``): the steps where a phase
    begins, ascending."""
    if not history.count("phases"):
        return []
    steps, marks = history.get("phases", "*")
    if step is not None:
        keep = steps <= step
        steps, marks = steps[keep], marks[keep]
    if not len(steps):
        return []
    return [int(s) for s in marks[-1] if np.isfinite(s)]


def phase_rules(x_scale) -> bqplot.Lines:
    """A mark of vertical rules over the whole height of a figure, on its step scale ``x_scale``
    (empty until ``show_phases``)."""
    return bqplot.Lines(x=np.zeros((1, 2)), y=np.array([[0.0, 1.0]]), visible=False,
                        scales={"x": x_scale, "y": bqplot.LinearScale(min=0, max=1)},
                        colors=[PHASE_COLOR], stroke_width=1.5, line_style="dashed",
                        tooltip=bqplot.Tooltip(fields=["x"], labels=["phase change at step"]))


def evidence_band(x_scale) -> bqplot.Lines:
    """A filled band over the whole height of a figure on its step scale ``x_scale``, hidden:
    the browser places it on the steps of a finding clicked (js/figures.js). It never moves the
    scale's domain."""
    return bqplot.Lines(x=np.zeros((1, 2)), y=np.array([[0.0, 1.0]]), visible=False,
                        scales={"x": x_scale, "y": bqplot.LinearScale(min=0, max=1)},
                        colors=[EVIDENCE_COLOR], fill_colors=[EVIDENCE_COLOR], fill="inside",
                        fill_opacities=[0.2], stroke_width=1, preserve_domain={"x": True},
                        labels=["finding"], display_legend=False)


def show_phases(rules: bqplot.Lines, steps: list[int]) -> None:
    """Draw ``rules`` at ``steps`` (hide them when there are none)."""
    if not steps:
        rules.visible = False
        return
    x = np.repeat(np.asarray(steps, dtype=np.float64)[:, None], 2, axis=1)
    with rules.hold_sync():
        rules.x, rules.y = x, np.tile([0.0, 1.0], (len(steps), 1))
        rules.colors = [PHASE_COLOR] * len(steps)
        rules.visible = True


def draw_phases(ax, steps: list[int]) -> None:
    """The same rules on a matplotlib axis (exports)."""
    for s in steps:
        ax.axvline(s, color=PHASE_COLOR, lw=1.0, ls="--", alpha=0.85)
