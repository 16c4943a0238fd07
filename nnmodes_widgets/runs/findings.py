"""Findings: what the analyses see, said in words (SPEC 15).

Each detector is a pure function of the recorded history (so a stored run gets the same findings
as the live one) and of the run's settings (the optimizer and its learning rate). A rule holds at
a sample of its analysis; a finding starts where it has held for ``SUSTAIN`` samples in a row
(dated from the first of them) and ends at the first sample where it no longer holds.

| kind | fires when | source |
| --- | --- | --- |
| ``dead_units`` | a layer's dead share >= 0.5, or risen by >= 0.25 since its first sample | ReLU dying (Lu et al. 2019, arXiv 1903.06733) |
| ``not_learning`` | a layer's RWC < 1% of the median layer's, or exactly 0 | WeightScale (arXiv 2107.07005) |
| ``diverging`` | a layer's RWC not finite, or the mean RWC of the last 3 samples > 20x its running median | — |
| ``rank_collapse`` | a layer's effective rank < half its first value | Li & Huang (arXiv 2208.09859) |
| ``edge_of_stability`` | SGD at learning rate lr (momentum b): sharpness >= (2 + 2b) / lr | Cohen et al. 2021 (arXiv 2103.00065) |
| ``heavy_tail`` | a layer's eigenvalue-tail exponent alpha outside [2, 6] (information: on small layers the fit is noisy, and healthy runs cross 2) | WeightWatcher (Martin & Mahoney, arXiv 1810.01075) |
| ``phase_change`` | a change point of the learning phases (SPEC 4.6), as information | 4.6 |

``FindingsTracker`` keeps what it computed, so that the monitor re-reads only what is new;
``detect(history, settings)`` is one pass over a whole run. NumPy only.
"""

from __future__ import annotations

import bisect

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..analysis.esd import tail_exponent
from ..analysis.modes import EPS, MODES, mode_code

__all__ = ["Finding", "FindingsTracker", "detect", "finding_record", "KINDS", "SUSTAIN",
           "SEVERITIES"]

SUSTAIN = 3                  # samples in a row a rule must hold before it is a finding
DEAD_SHARE = 0.5             # dead_units: share of a layer's units dead
DEAD_RISE = 0.25             # ... or risen by this much since the layer's first sample
STILL_SHARE = 0.01           # not_learning: RWC under this share of the median layer's
EXPLODING = 20.0             # diverging: mean RWC of the last SUSTAIN samples over the running median
EXPLODING_MIN_SAMPLES = 5    # ... once the running median has this many samples
RANK_SHARE = 0.5             # rank_collapse: effective rank under this share of its first value
ALPHA_RANGE = (2.0, 6.0)     # heavy_tail: WeightWatcher's range of well-trained layers
EVIDENCE_SAMPLES = 10        # samples of the rule's series kept as evidence
SEVERITIES = ("info", "warning")


@dataclass(frozen=True)
class Finding:
    """One finding: from ``step`` (the first sample at which its rule held) to ``ended`` (the
    first at which it no longer held; None while it holds). ``layer`` is None for a finding of
    the whole network; ``severity`` "info" or "warning"; ``message`` one plain sentence;
    ``evidence``: the analysis read (``analysis``), the rule (``rule``), its threshold, and the
    series it held on (``steps``, ``values``: the last samples up to the newest that held)."""

    step: int
    kind: str
    layer: str | None
    severity: str
    message: str
    evidence: dict = field(compare=False)
    ended: int | None = None

    @property
    def key(self) -> tuple:
        """What identifies one finding across updates: its kind, layer and start."""
        return (self.kind, self.layer, self.step)


@dataclass
class _Rule:
    """One rule's series on one layer: the steps of its analysis's samples, whether the rule
    held at each, and the value it judged."""
    steps: np.ndarray
    held: np.ndarray
    values: np.ndarray


def _runs(held: np.ndarray):
    """(first, last) index of each maximal run of True at least SUSTAIN long."""
    padded = np.concatenate(([False], held.astype(bool), [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    for start, stop in zip(edges[::2], edges[1::2]):
        if stop - start >= SUSTAIN:
            yield int(start), int(stop - 1)


def _findings(kind: str, layer: str | None, severity, rule: _Rule, analysis: str, threshold,
              describe: Callable[[float, int], str], text: str) -> list[Finding]:
    """The findings of one rule's series: one per run of SUSTAIN or more samples that held.
    ``severity`` is a string or ``(value) -> str``; ``describe(value, since)`` the sentence."""
    out = []
    for first, last in _runs(rule.held):
        since = int(rule.steps[first])
        ended = int(rule.steps[last + 1]) if last + 1 < len(rule.steps) else None
        value = float(rule.values[last])
        keep = slice(max(first, last + 1 - EVIDENCE_SAMPLES), last + 1)   # the samples that held
        evidence = {"analysis": analysis, "rule": text, "threshold": threshold,
                    "steps": [int(s) for s in rule.steps[keep]],
                    "values": [_json_number(v) for v in rule.values[keep]]}
        out.append(Finding(since, kind, layer, severity(value) if callable(severity) else severity,
                           describe(value, since), evidence, ended))
    return out


def _json_number(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


# -- the detectors: (history, settings, cache) -> findings ------------------------------------------

def dead_units(history, settings, cache) -> list[Finding]:
    out = []
    for layer in history.layers("neuron_modes"):
        steps, active = history.get("neuron_modes", layer)
        if not len(steps):
            continue
        code = mode_code(np.asarray(active, np.float64).reshape(len(steps), -1), EPS)
        dead = (code == MODES.index("dead")).mean(axis=1)
        held = (dead >= DEAD_SHARE) | (dead - dead[0] >= DEAD_RISE)
        out += _findings("dead_units", layer, "warning", _Rule(steps, held, dead), "neuron_modes",
                         {"dead_share": DEAD_SHARE, "rise": DEAD_RISE},
                         lambda v, since, layer=layer: (f"layer {layer}: {v:.0%} of units dead since "
                                                        f"step {since:,}"),
                         f"dead share >= {DEAD_SHARE} or risen by >= {DEAD_RISE} since the first sample")
    return out


def not_learning(history, settings, cache) -> list[Finding]:
    layers, steps, values = history.matrix("rwc")
    if len(layers) < 2 or not len(steps):
        return []
    with np.errstate(all="ignore"):
        median = np.nanmedian(np.where(np.isfinite(values), values, np.nan), axis=0)
    out = []
    for i, layer in enumerate(layers):
        v = values[i]
        # the value judged: the layer's RWC as a share of the median layer's (0 when it is 0)
        ratio = np.divide(v, median, out=np.where(v == 0, 0.0, np.nan), where=(median > 0) & (v != 0))
        with np.errstate(invalid="ignore"):
            held = np.isfinite(v) & ((v == 0) | (v < STILL_SHARE * median))

        def say(value, since, layer=layer):
            if value == 0:
                return f"{layer}: weights have not changed since step {since:,} (frozen?)"
            return (f"{layer}: weights barely change since step {since:,}: its RWC is {value:.2%} of "
                    "the median layer's")
        out += _findings("not_learning", layer, "warning", _Rule(steps, held, ratio), "rwc",
                         STILL_SHARE, say, f"RWC < {STILL_SHARE:g} x the median layer's RWC, or 0")
    return out


def diverging(history, settings, cache) -> list[Finding]:
    layers, steps, values = history.matrix("rwc")
    out = []
    for i, layer in enumerate(layers):
        v = values[i]
        held = _recorded_mask(history, layer, steps) & ~np.isfinite(v)
        out += _findings("diverging", layer, "warning", _Rule(steps, held, v), "rwc", None,
                         lambda value, since, layer=layer: (f"{layer}: weights not finite since step "
                                                            f"{since:,}"),
                         "RWC not finite (NaN or inf weights)")
    if len(steps) >= EXPLODING_MIN_SAMPLES + SUSTAIN:
        with np.errstate(all="ignore"):
            mean = np.nanmean(np.where(np.isfinite(values), values, np.nan), axis=0)
        recent = np.convolve(mean, np.ones(SUSTAIN) / SUSTAIN, mode="full")[: len(mean)]
        ratio = recent / _running_median(steps, mean, cache)
        with np.errstate(invalid="ignore"):
            held = ratio > EXPLODING
        out += _findings("diverging", None, "warning", _Rule(steps, held, ratio), "rwc", EXPLODING,
                         lambda value, since: (f"weight changes exploding since step {since:,}: the "
                                               f"mean RWC is {value:.0f}x its running median"),
                         f"mean RWC of the last {SUSTAIN} samples > {EXPLODING:g} x its running median")
    return out


def _recorded_mask(history, layer, steps) -> np.ndarray:
    """Which sampling events have a value of ``layer`` (NaN values included)."""
    recorded, _ = history.get("rwc", layer)
    return np.isin(steps, recorded)


def rank_collapse(history, settings, cache) -> list[Finding]:
    out = []
    for layer in history.layers("effective_rank"):
        steps, rank = history.get("effective_rank", layer)
        rank = np.asarray(rank, np.float64).ravel()
        finite = np.flatnonzero(np.isfinite(rank))
        if not len(finite):
            continue       # partial spectra: no effective rank
        first = rank[finite[0]]
        with np.errstate(invalid="ignore"):
            held = rank < RANK_SHARE * first
        out += _findings("rank_collapse", layer, "warning", _Rule(steps, held, rank), "effective_rank",
                         RANK_SHARE,
                         lambda value, since, layer=layer, first=first: (
                             f"{layer}: effective rank fell to {value:.1f}, under half its first "
                             f"value {first:.1f}, since step {since:,}"),
                         f"effective rank < {RANK_SHARE:g} x its first value")
    return out


def edge_of_stability(history, settings, cache) -> list[Finding]:
    optimizer = (settings or {}).get("optimizer") or {}
    lr = optimizer.get("lr")
    if optimizer.get("class") != "SGD" or not isinstance(lr, (int, float)) or not lr > 0 \
            or optimizer.get("nesterov"):
        return []
    momentum = float(optimizer.get("momentum") or 0.0)
    threshold = (2 + 2 * momentum) / lr
    if not _knows(history, "sharpness") or "sharpness" not in history.layers("sharpness"):
        return []
    steps, sharp = history.get("sharpness", "sharpness")
    sharp = np.asarray(sharp, np.float64).ravel()
    with np.errstate(invalid="ignore"):
        held = sharp >= threshold
    # "once measured": a single measurement past the threshold is the finding
    out = []
    for t in np.flatnonzero(held & ~np.concatenate(([False], held[:-1]))):
        stop = t
        while stop + 1 < len(held) and held[stop + 1]:
            stop += 1
        ended = int(steps[stop + 1]) if stop + 1 < len(steps) else None
        keep = slice(max(int(t), stop + 1 - EVIDENCE_SAMPLES), stop + 1)
        out.append(Finding(
            int(steps[t]), "edge_of_stability", None, "info",
            f"sharpness {sharp[stop]:.3g} >= {'2' if not momentum else f'(2 + 2 x {momentum:g})'} / lr "
            f"= {threshold:.3g} since step {int(steps[t]):,}: SGD at the edge of stability "
            "(Cohen et al. 2021); the loss may fall non-monotonically",
            {"analysis": "sharpness", "rule": "sharpness >= (2 + 2 momentum) / lr", "threshold": threshold,
             "steps": [int(s) for s in steps[keep]], "values": [_json_number(v) for v in sharp[keep]]},
            ended))
    return out


def _knows(history, analysis: str) -> bool:
    try:
        history.count(analysis)
    except ValueError:
        return False
    return True


def _running_median(steps: np.ndarray, mean: np.ndarray, cache: dict) -> np.ndarray:
    """At each sample t, the median of the finite values of ``mean`` before the last
    ``SUSTAIN`` (NaN with fewer than ``EXPLODING_MIN_SAMPLES`` of them, or not above 0).
    Incremental: the sorted values and medians so far are kept in ``cache`` while the history
    only grows (a median of every prefix, recomputed, took 0.2 s at 4k samples, quadratic)."""
    done = cache.get("medians", [])
    if len(done) > len(mean) or (done and cache["last_step"] != steps[len(done) - 1]):
        done = []                        # another history, or a rewritten one: anew
    if not done:
        cache["sorted"] = []
    ordered = cache["sorted"]
    medians = list(done)
    for t in range(len(medians), len(mean)):
        if t >= SUSTAIN:                 # mean[t - SUSTAIN] joins the values before t's last SUSTAIN
            value = float(mean[t - SUSTAIN])
            if math.isfinite(value):
                bisect.insort(ordered, value)
        n = len(ordered)
        median = (ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2) \
            if n >= EXPLODING_MIN_SAMPLES else math.nan
        medians.append(median if median > 0 else math.nan)
    cache["medians"] = medians
    cache["last_step"] = steps[len(medians) - 1] if medians else None
    return np.asarray(medians, dtype=np.float64)


def heavy_tail(history, settings, cache) -> list[Finding]:
    alphas = cache.setdefault("alpha", {})      # (layer, step) -> alpha: spectra do not change
    out = []
    low, high = ALPHA_RANGE
    for layer in history.layers("spectrum"):
        steps, spectra = history.get("spectrum", layer)
        alpha = np.array([alphas[(layer, int(s))] if (layer, int(s)) in alphas
                          else alphas.setdefault((layer, int(s)), tail_exponent(v))
                          for s, v in zip(steps, spectra)], dtype=np.float64)
        with np.errstate(invalid="ignore"):
            held = (alpha < low) | (alpha > high)

        def say(value, since, layer=layer):
            shape = ("a very heavy tail (WeightWatcher reads it as over-trained)" if value < low
                     else "a random-like spectrum (not yet trained, by WeightWatcher's reading)")
            return (f"{layer}: spectrum tail exponent alpha = {value:.2f}, outside [{low:g}, "
                    f"{high:g}] since step {since:,}: {shape}")
        out += _findings("heavy_tail", layer, "info",
                         _Rule(steps, held, alpha), "spectrum", list(ALPHA_RANGE), say,
                         "alpha of the eigenvalue tail (WeightWatcher) outside [2, 6]")
    return out


def phase_change(history, settings, cache) -> list[Finding]:
    if not history.count("phases") or "*" not in history.layers("phases"):
        return []
    _, marks = history.latest("phases", "*")
    marks = np.asarray(marks, np.float64).ravel()
    return [Finding(int(m), "phase_change", None, "info",
                    f"a new learning phase begins at step {int(m):,} (a change point of the mode "
                    "shares, weight alignment and basin radii)",
                    {"analysis": "phases", "rule": "PELT change point (SPEC 4.6)", "threshold": None,
                     "steps": [int(m)], "values": [int(m)]}, int(m))
            for m in marks if math.isfinite(m)]


KINDS: dict[str, Callable] = {
    "dead_units": dead_units, "not_learning": not_learning, "diverging": diverging,
    "rank_collapse": rank_collapse, "edge_of_stability": edge_of_stability,
    "heavy_tail": heavy_tail, "phase_change": phase_change,
}


def finding_record(finding: Finding) -> tuple[str, np.ndarray]:
    """How the history records a finding starting or ending: key ``"<kind>|<layer>"`` (layer
    "" for the whole network), value ``[step, ended (NaN while it holds), severity index]``."""
    return (f"{finding.kind}|{finding.layer or ''}",
            np.array([finding.step, math.nan if finding.ended is None else finding.ended,
                      SEVERITIES.index(finding.severity)], dtype=np.float64))


class FindingsTracker:
    """The findings of one run as its history grows. ``update(history, settings)`` returns the
    findings that started and those that ended since the last call; ``findings`` every one so
    far, in the order they started. Detectors whose analyses have not changed are not re-run."""

    def __init__(self):
        self._known: dict[tuple, Finding] = {}
        self._versions: dict[str, int] = {}
        self._cache: dict[str, dict] = {}
        self._results: dict[str, list[Finding]] = {}

    @property
    def findings(self) -> list[Finding]:
        return sorted(self._known.values(), key=lambda f: (f.step, f.kind, f.layer or ""))

    def stale(self, history) -> bool:
        """Whether an analysis a detector reads changed since the last update."""
        return any(self._versions.get(kind) != _version(history, kind) for kind in KINDS)

    def update(self, history, settings=None) -> tuple[list[Finding], list[Finding]]:
        for kind, detector in KINDS.items():
            version = _version(history, kind)
            if self._versions.get(kind) == version and kind in self._results:
                continue
            self._versions[kind] = version
            self._results[kind] = detector(history, settings, self._cache.setdefault(kind, {}))
        started, ended = [], []
        for finding in (f for found in self._results.values() for f in found):
            before = self._known.get(finding.key)
            if before is None:
                started.append(finding)
            elif before.ended is None and finding.ended is not None:
                ended.append(finding)
            self._known[finding.key] = finding
        return started, ended


# what each detector reads: it is re-run only when one of these changed
_READS = {"dead_units": ("neuron_modes",), "not_learning": ("rwc",), "diverging": ("rwc",),
          "rank_collapse": ("effective_rank",), "edge_of_stability": ("sharpness",),
          "heavy_tail": ("spectrum",), "phase_change": ("phases",)}


def _version(history, kind: str) -> int:
    reads = _READS[kind]
    return history.version_of(*reads) if all(_knows(history, a) for a in reads) else -1


def detect(history, settings=None) -> list[Finding]:
    """Every finding of a recorded history, in the order they started."""
    tracker = FindingsTracker()
    tracker.update(history, settings)
    return tracker.findings
