"""The findings strip (SPEC 15): what the analyses see, one sentence each, under the status line;
a click selects the finding's layer in every panel and brings its panel, with the evidence
marked, into view — in the browser (js/findings.js), so it works while a training cell runs."""

from __future__ import annotations

import textwrap

import anywidget
import traitlets

from ..runs.run_view import RunView, check_view
from ._bundle import bundle
from .delivery import Delivery
from .live import LivePanel

# the analysis a finding's evidence reads -> the Dashboard panel that shows it
PANEL_OF = {"neuron_modes": "neurons", "rwc": "trend", "effective_rank": "spectra",
            "spectrum": "spectra", "sharpness": "basins", "phases": "trend"}
# what the detectors read (runs/findings.py): a stored run's findings change with them
_READS = ("findings", "rwc", "neuron_modes", "effective_rank", "spectrum", "sharpness", "phases")


def finding_item(finding) -> dict:
    """What the browser gets of one finding: JSON, the panel its evidence is on, and the span
    of steps it held on (from its start to its end, or to its newest sample that held)."""
    evidence = finding.evidence or {}
    steps = [int(s) for s in evidence.get("steps") or ()]
    last = finding.ended if finding.ended is not None else max(steps, default=finding.step)
    return {"step": int(finding.step), "kind": finding.kind, "layer": finding.layer or "",
            "severity": finding.severity, "message": finding.message,
            "ended": None if finding.ended is None else int(finding.ended),
            "panel": PANEL_OF.get(evidence.get("analysis"), "trend"),
            "span": [int(finding.step), int(last)]}


def finding_lines(findings, width: int = 110) -> list[str]:
    """The findings as the exports print them: newest first, one wrapped sentence each."""
    lines = []
    for f in reversed(findings):
        ended = f" (ended at step {f.ended:,})" if f.ended not in (None, f.step) else ""
        lines += textwrap.wrap(f"{f.severity}: {f.message}{ended}", width,
                               subsequent_indent="    ") or [""]
    return lines


class Findings(LivePanel, anywidget.AnyWidget):
    """The findings of the run view (``view.findings``) as a strip of sentences, newest first
    (root element class ``nnmodes-findings``): each with its severity and, once it ended, the
    step it ended at. A click on one selects its layer (``selected``, linked by the dashboard to
    every panel) and scrolls to its panel, where the steps it held on are marked."""

    _esm = bundle("findings.js")
    _css = bundle("widgets.css")
    findings = traitlets.List(traitlets.Dict()).tag(sync=True)
    layers = traitlets.List(traitlets.Unicode()).tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)

    analyses = _READS
    panel = "findings"

    def __init__(self, run: RunView, *, max_rate: float = 10.0, delivery: Delivery | None = None,
                 **kwargs):
        check_view(run, "Findings")
        super().__init__(layers=run.layers, **kwargs)
        self._bind(run, name="findings", max_rate=max_rate, delivery=delivery)

    @property
    def selector(self) -> Findings:
        """The front-end model holding the layer selection (``selected``): this widget."""
        return self

    def _draw_live(self) -> None:
        self.findings = [finding_item(f) for f in self.run.findings]
