"""What every live panel shares: reading one run view, updating when its data changed and a view
shows it."""

from __future__ import annotations

from ..runs.analyses import from_background
from ..runs.run_view import RunView
from .delivery import Delivery, Feed
from .empty import empty_reason
from .presence import ShownOnDisplay, presence_of
from .scales import HEADROOM
from .tree import close_parts

# frames a second at most of a panel drawn from the samples (the trend, the status line, the
# findings): their news comes with every sample, far more often than the refresh target needs,
# and on a small MLP a trend drawn every 0.7 s took from the budget what the worker's runs needed
# for the other panels (whose gaps then reached 2.5 s)
SAMPLED_RATE = 1.0
# ... and at least every this many seconds while the budget has room (``Feed``): spaced by the
# cost of a round of every panel's frame (a fifth of the budget for all of them), a small MLP's
# trend in JupyterLab came every 2.0 s and at most 2.7 s apart in a CI run, against a refresh
# target of 2.5 s
SAMPLED_LONGEST = 1.5


def _run_feed(draw, run: RunView, *, name: str, max_rate: float, on_screen,
              prompt: bool) -> Feed:
    """A feed drawing from ``run``: counted in the run's measured cost, faults kept with its
    errors as "widget:<name>"."""
    # The panels of a delivery (a dashboard) may cost training a fifth of the budget together,
    # priced by the run's measured cost of widget work (the browser's drawing included); with a
    # tenth, a dashboard's round of frames (12 ms of CPU on a small model) went out every 2.4 s,
    # and its panels moved every 3.5-4.5 s.
    return Feed(draw, max_rate=max_rate, max_share=run.budget / 5, on_screen=on_screen,
                on_error=lambda exc: run.report(f"widget:{name}", exc),
                begin=lambda: run.begin_work("widgets"), end=run.end_work,
                training_cost=lambda seconds: run.work_cost(seconds, "widgets"), prompt=prompt,
                longest=SAMPLED_LONGEST, room=run.has_room)


class LivePanel(ShownOnDisplay):
    """Base of the live panels (mixed in before the widget class): ``run``, the run view drawn;
    ``_draw_live()`` runs on the delivery thread when any of ``analyses`` changed in the history
    (on every update when there are none: the status line) and a view shows the panel.

    A panel draws once at creation (one made after training shows the data at once), then at
    most ``max_rate`` times per second while on screen, once more when the run detaches, and at
    once when a view appears.
    """

    analyses: tuple[str, ...] = ()
    panel = ""     # the Dashboard attribute that holds it (runs/analyses.py names its analyses)
    what = ""      # how its empty state names it: "spectra off: ..."

    @property
    def front(self):
        """The front-end model (an anywidget) whose views show this panel."""
        return self.selector

    def _bind(self, run: RunView, *, name: str, max_rate: float,
              delivery: Delivery | None = None) -> None:
        """Start updating from ``run`` (the last step of ``__init__``) through ``delivery`` (a
        dashboard's; a lone panel makes its own)."""
        self.run = run
        self._version = -1
        self._own_delivery = delivery is None
        self._delivery = Delivery() if delivery is None else delivery
        presence = presence_of(self.front)
        # a panel of background analyses only is spaced by their runs: a frame waiting for the
        # delivery's gap after its run made the dashboard's MLP panels' longest gaps
        prompt = from_background(self.analyses)
        rate = max_rate if prompt else min(max_rate, SAMPLED_RATE)
        self._feed = self._delivery.add(_run_feed(
            self._update, run, name=name, max_rate=rate, on_screen=lambda: presence.on_screen,
            prompt=prompt))
        presence.watch(self._screen_changed)
        self._delivery.follow(run)
        self._feed.deliver()

    def _screen_changed(self, shown: bool) -> None:
        if shown:
            self._version = -1     # a new view: drawn anew, changed or not
        self._delivery.screen_changed(self._feed)

    def _update(self) -> bool:
        """Draw if the data changed; whether it did."""
        if self.analyses:
            # a notice (an analysis switched off, a live size reduced) and the run's end change
            # what the panel says with no news in its history: an architectures GPT's basins
            # said "basins: waiting for the first result" after the run had switched them off
            # and ended
            version = (self.run.history.version_of(*self.analyses), len(self.run.notices),
                       self.run.detached)
            if version == self._version:
                if getattr(self.front, "empty", ""):
                    self._explain(False)    # the probe comes without history news
                return False
            self._version = version
        self._draw_live()
        return True

    def _draw_live(self) -> None:
        raise NotImplementedError

    def _explain(self, has_data: bool) -> None:
        """Say on the front end why the panel is empty (nothing when it ``has_data``)."""
        self.front.empty = "" if has_data else empty_reason(self.run, self.panel, self.what)

    @property
    def _headroom(self) -> float:
        """Room left above a live plot's data (``scales.settle_range``): none once the run ended."""
        return 0.0 if self.run.detached else HEADROOM

    @property
    def frames(self) -> int:
        """Frames this panel built and sent so far."""
        return self._feed.frames

    def push_now(self) -> None:
        """Draw from the newest data now, on this thread, on screen or not (tests, scripts)."""
        self._feed.deliver()

    def refresh(self) -> None:
        """Draw again from the newest data, changed or not (as soon as the rate allows)."""
        self._version = -1
        self._delivery.request(self._feed)

    def close(self) -> None:
        if hasattr(self, "_feed"):   # also called by __del__ after a failed __init__
            if self._own_delivery:
                self._delivery.close()
            else:
                self._delivery.remove(self._feed)
        super().close()
        close_parts(self)
