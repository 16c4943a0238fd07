"""What a panel says under its title about its analyses: the run's notices about them (what the
results leave out, what is frozen, how far a live analysis was reduced), one line. A live
analysis says its current size each time it changes: only the newest of those is shown. That an
analysis is off is said where its plot would be (widgets/empty.py)."""

from __future__ import annotations

from .empty import is_off


def panel_note(run, *analyses: str) -> str:
    """The notices of ``analyses``, oldest first, each "live ..." notice replaced by a newer one
    of the same analysis and layer."""
    notes: dict[tuple, object] = {}
    for notice in run.notices:
        if notice.analysis not in analyses or is_off(notice.message):
            continue
        live = notice.message.startswith("live")
        key = (notice.analysis, notice.layer, "live" if live else notice.message)
        notes.pop(key, None)      # the newest goes last
        notes[key] = notice
    return " · ".join(f"{n.layer}: {n.message}" if n.layer else n.message for n in notes.values())
