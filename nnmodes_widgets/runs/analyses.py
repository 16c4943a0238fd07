"""Every analysis the monitor records, described once (SPEC 2): what it needs, what it records,
which panel shows it, how it is paced. The scheduler (``live.heavy``), the history and the
dashboard read this registry; adding an analysis is one entry here plus its own runner.

Torch-free (a stored run is read without torch): the runner and readiness functions are
named, not imported — ``"live.jobs:spectrum"`` is the function ``spectrum`` of
``nnmodes_widgets.live.jobs`` — and resolved by the scheduler when it calls them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Analysis", "REGISTRY", "BACKGROUND", "RECORDS", "analysis", "from_background"]


@dataclass(frozen=True)
class Analysis:
    """One analysis of the monitor.

    ``name``: as ``Monitor(analyses=...)`` names it. ``records``: the history names its results
    are recorded under (its own name first). ``panel``: the Dashboard attribute of the panel
    that shows it; None when several panels show it (the phases mark every time axis).
    ``runner``: ``(Job) -> results``, run in the background on the worker; None for what the
    training step computes itself (RWC). ``needs_probe``: offered only once there is a probe.
    ``needs_model``: the job gets the model's copy, holding the weights of the step offered.
    ``labels``: uses class labels (the probe's, else the classes the model predicts).
    ``ready``: ``(monitor) -> bool``, whether it can run now (clusters need enough RWC
    samples). ``costly``: a run makes many passes (its cost grows fast with the model): on by
    default only where it fits the budget, its first run a trial (``live.heavy``).
    ``imports``: libraries imported when the worker starts (so that importing them is nobody's
    first-run cost). ``last``: it sums up what the others
    recorded: last in the round that ends a run. ``sized``: its runner scales its live work
    with ``Job.size`` (units, samples, directions); one that does not always runs at size 1,
    and is costed so."""

    name: str
    records: tuple[str, ...]
    panel: str | None
    runner: str | None = None
    needs_probe: bool = False
    needs_model: bool = False
    labels: bool = False
    ready: str | None = None
    costly: bool = False
    imports: tuple[str, ...] = ()
    last: bool = False
    sized: bool = True

    @property
    def background(self) -> bool:
        return self.runner is not None


# The background ones are offered in this order, cheapest first as a rule (a ResNet-18 on one
# CPU thread: spectrum 0.3, neuron modes 0.8, characteristic maps 3.6, radiograph 9.4 s), so
# that every panel gets its first frame before the costliest run sets a long pace.
REGISTRY: tuple[Analysis, ...] = (
    Analysis("rwc", records=("rwc",), panel="trend"),
    Analysis("spectrum", records=("spectrum", "stable_rank", "effective_rank", "power_law"),
             panel="spectra", runner="live.jobs:spectrum", needs_model=True),
    Analysis("clusters", records=("rwc_clusters",), panel="trend", runner="live.jobs:clusters",
             ready="live.jobs:clusters_ready", imports=("sklearn.cluster",)),
    Analysis("alignment", records=("weight_alignment",), panel="basins",
             runner="live.dynamics_jobs:alignment", needs_model=True),
    Analysis("phases", records=("phases",), panel=None, runner="live.dynamics_jobs:phases",
             ready="live.dynamics_jobs:phases_ready", imports=("ruptures",), last=True,
             sized=False),
    Analysis("neuron_modes", records=("neuron_modes", "neuron_classes"), panel="neurons",
             runner="live.jobs:neuron_modes", needs_probe=True, needs_model=True, labels=True),
    Analysis("characteristic_maps", records=("characteristic_maps",), panel="characteristic_maps",
             runner="live.jobs:characteristic_maps", needs_probe=True, needs_model=True,
             labels=True),
    Analysis("radiograph", records=("radiograph",), panel="radiograph",
             runner="live.jobs:radiograph", needs_probe=True, needs_model=True),
    Analysis("basins", records=("sample_basins", "weight_basins"), panel="basins",
             runner="live.dynamics_jobs:basins", needs_probe=True, needs_model=True, labels=True,
             costly=True),
    Analysis("sharpness", records=("sharpness",), panel=None, runner="live.sharpness:sharpness_run",
             needs_probe=True, needs_model=True, labels=True,
             ready="live.sharpness:sharpness_ready", costly=True, sized=False),
    Analysis("findings", records=("findings",), panel="findings", runner="live.findings:findings",
             ready="live.findings:findings_ready", last=True, sized=False),
)

_BY_NAME = {a.name: a for a in REGISTRY}
BACKGROUND: tuple[str, ...] = tuple(a.name for a in REGISTRY if a.background)
RECORDS: tuple[str, ...] = tuple(r for a in REGISTRY for r in a.records)   # the history's names
_BACKGROUND_RECORDS = frozenset(r for a in REGISTRY if a.background for r in a.records)


def from_background(records: tuple[str, ...]) -> bool:
    """Whether every one of the history's ``records`` comes from a background analysis (none
    from the training step itself: the RWC)."""
    return bool(records) and _BACKGROUND_RECORDS.issuperset(records)


def analysis(name: str) -> Analysis:
    """The entry of ``name``; ValueError naming the known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown analysis {name!r}; choose from {list(_BY_NAME)}") from None

