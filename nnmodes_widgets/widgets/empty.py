"""Why a panel is empty (SPEC 16), in the words its front end shows in place of an empty chart:
an analysis this run does not record, one switched off (the run's notice says why: "basins off:
one run was stopped after 0.4 s ..."), one waiting for a probe or for its first result."""

from __future__ import annotations

from ..runs.analyses import REGISTRY

# how the scheduler's notices begin when they switch an analysis off (live/heavy.py)
_OFF = ("off by default for this model: ", "switched off for this model: ")


def panel_analyses(panel: str) -> list[str]:
    """The analyses (registry names) whose results ``panel`` (a Dashboard attribute) shows."""
    return [a.name for a in REGISTRY if a.panel == panel]


def empty_reason(run, panel: str, what: str) -> str:
    """One line saying why ``panel`` (named ``what`` to the reader) has nothing to show yet."""
    names = panel_analyses(panel)
    chosen = _chosen(run)
    if chosen is not None and not any(name in chosen for name in names):
        return (f"{what}: not recorded in this run (Monitor(analyses=...) leaves out "
                f"{' and '.join(names)})")
    for name in names:
        reason = off_reason(run, name)
        if reason:
            return f"{what} off: {reason}"
    if run.detached:
        return f"{what}: nothing was recorded in this run"
    needs_probe = any(a.needs_probe for a in REGISTRY if a.name in names)
    if needs_probe and run.probe_facts is None:
        return f"{what}: waiting for a probe batch (the first training batch becomes it)"
    return f"{what}: waiting for the first result"


def is_off(message: str) -> bool:
    """Whether a notice is the one that switched its analysis off."""
    return message.startswith(_OFF)


def off_reason(run, name: str) -> str:
    """Why the analysis ``name`` is off, in the run's words ("one run was stopped after 0.4 s
    ..."); "" when it is not."""
    for notice in reversed(run.notices):
        if notice.analysis == name and is_off(notice.message):
            return next(notice.message[len(p):] for p in _OFF if notice.message.startswith(p))
        if notice.analysis == "schedule" and " are off: " in notice.message:
            return notice.message.split(" are off: ", 1)[1]
    return ""


def plot_reason(run, name: str) -> str:
    """Why the analysis ``name``, one of several a panel shows, has nothing to show yet; "" when
    the run does not record it."""
    chosen = _chosen(run)
    if chosen is not None and name not in chosen:
        return ""
    off = off_reason(run, name)
    if off:
        return f"{name} off: {off}"
    return "" if run.detached else f"{name}: waiting for the first result"


def _chosen(run) -> list[str] | None:
    """The analyses the run was asked for, None when it does not say."""
    analyses = getattr(run, "analyses", None)         # a live Monitor
    if analyses is None:
        settings = (getattr(run, "info", None) or {}).get("settings") or {}
        analyses = settings.get("analyses")            # a stored run
    return list(analyses) if analyses is not None else None
