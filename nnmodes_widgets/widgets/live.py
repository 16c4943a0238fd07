"""What every live panel shares: reading one run view, updating when its data changed."""

from __future__ import annotations

from collections.abc import Callable

from ..runs.run_view import RunView
from .throttle import Throttle


class LiveBinding:
    """Calls ``push()`` with the run's newest state, at most ``max_rate`` times per second.

    Pushes once at creation so a widget made after training shows the data at once, and once more
    when the run detaches so the final state is on screen.
    """

    def __init__(self, run: RunView, push: Callable[[], None], *, name: str,
                 max_rate: float = 10.0):
        self.run = run
        # Each panel's updates may take a tenth of the budget: their cost on a busy core shows
        # in the measured slowdown like the worker's, and a trend of many long series (18 ms a
        # push) would otherwise take 1% of wall time per panel whatever the budget.
        self.throttle = Throttle(push, max_rate=max_rate, max_share=run.budget / 10,
                                 on_error=lambda exc: run.report(f"widget:{name}", exc),
                                 begin=lambda: run.begin_work("widgets"), end=run.end_work)
        self.throttle.push_now()
        run.subscribe(self._on_news)

    def _on_news(self, run: RunView) -> None:
        if run.detached:
            self.throttle.push_now()
        else:
            self.throttle.request()

    def close(self) -> None:
        self.run.unsubscribe(self._on_news)
        self.throttle.close()


class LivePanel:
    """Base of the live panels (mixed in before the widget class): ``run``, the run view drawn;
    ``_draw_live()`` runs on the panel's delivery thread when any of ``analyses`` changed in the
    history (on every update when there are none: the status line)."""

    analyses: tuple[str, ...] = ()

    def _bind(self, run: RunView, *, name: str, max_rate: float) -> None:
        """Start updating from ``run`` (the last step of ``__init__``)."""
        self.run = run
        self._version = -1
        self._live = LiveBinding(run, self._update, name=name, max_rate=max_rate)

    def _update(self) -> None:
        if self.analyses:
            version = self.run.history.version_of(*self.analyses)
            if version == self._version:
                return
            self._version = version
        self._draw_live()

    def _draw_live(self) -> None:
        raise NotImplementedError

    def refresh(self) -> None:
        """Draw again from the newest data, changed or not (as soon as the rate allows)."""
        self._version = -1
        self._live.throttle.request()

    def close(self) -> None:
        if hasattr(self, "_live"):   # also called by __del__ after a failed __init__
            self._live.close()
        super().close()
