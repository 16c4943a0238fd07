"""Findings as a background analysis (SPEC 15): the detectors of ``runs.findings`` re-read the
history as the analyses they read arrive, on the worker, paced like any analysis; a finding is
recorded under "findings" (and so in the run file) when it starts and when it ends."""

from __future__ import annotations

import weakref

from ..runs.findings import FindingsTracker, finding_record
from .jobs import Job

# One tracker per monitor's history: what it found so far, and the tail exponents computed
_TRACKERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def tracker(history) -> FindingsTracker:
    return _TRACKERS.setdefault(history, FindingsTracker())


def findings(job: Job) -> dict:
    """The findings that started or ended since the last run: "findings", ``finding_record``
    of each."""
    started, ended = tracker(job.history).update(job.history, {"optimizer": job.optimizer})
    records = dict(finding_record(f) for f in (*started, *ended))
    return {"findings": records} if records else {}


def findings_ready(monitor) -> bool:
    """When an analysis a detector reads has news since the last run."""
    return tracker(monitor.history).stale(monitor.history)
