"""Rate-limited, coalescing delivery of widget updates: one thread per dashboard.

The training loop only *tells* a delivery that there is news (a flag read, microseconds); one
daemon thread per top-level widget (a dashboard, a comparison, a lone panel) builds and sends
each of its panels' updates (``Feed``) at most ``max_rate`` times per second, always from the
newest data, and only for panels on screen: a fast loop never waits for a widget, a slow widget
never sees a backlog, and a panel nobody sees costs nothing (it is brought up to date when a
view appears). Costly updates space the next ones out so that a round of every feed's update
costs training at most ``max_share`` of its time (the feeds of one widget share it: a dashboard
of eight panels may take what one panel may; each feed waits the round's cost / ``max_share``,
so a cheap panel leaves its part to the costly ones), however long that makes the gap: the
budget is a promise, the refresh target is not (SPEC 5; a gap of at most 2 s whatever the cost
let a small ResNet's trend and status line cost training 3.4% of its 5%). An update's cost is
its thread's CPU time, averaged over the last ones (in a kernel whose training loop holds the GIL
a 1 ms update took 5-8 ms of wall time, most of it waiting while training ran) times what a
second of it costs training, as the run measured it (``training_cost``): a frame is also drawn
by the browser and relayed by the server, on the same cores, which the kernel cannot time (on
two cores a status line's update took the kernel 1 ms of CPU and Chromium 17 ms, and frames
priced by their kernel time alone slowed a small ResNet's training by 8-10%). Sending comm
messages from a thread is safe: ipykernel routes them through its IOPub thread.

The thread holds its delivery weakly, and so does the run it listens to: a dashboard nobody
holds is collected. The thread ends when every run followed has detached (after their final
update), when the delivery is closed or collected, and after ``IDLE_AFTER`` seconds without
anything to do (the next news starts another).
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections.abc import Callable

THREAD_NAME = "nnmodes-delivery"
IDLE_AFTER = 2.0      # seconds without news before the thread ends
# of an update's cost in its feed's average, which spaces the updates: one costly update (a
# collection, a busy core) or a moment of high measured contention spreads over the next gaps
# instead of holding every other feed back by all of it in one (a small MLP's widget contention,
# fitted over its last 3 s of steps, read 4.75 for one frame between 1.15 and 2.45, and its
# trend waited 4.5 s where it came every second)
COST_WEIGHT = 0.2
_JOIN = 1.0           # seconds detach waits for the thread to end (it is between two updates)
# seconds at most between two looks while a prompt feed is on screen: news arriving while the
# thread waits for another feed's gap does not wake it (news comes with every sample, up to
# thousands a second), and a panel's frame waited for the trend's gap, 1.7 s
PROMPT_WAIT = 0.2


class Feed:
    """One panel's updates. ``draw()`` builds and sends a frame from the newest data and returns
    whether it did (False: nothing had changed); ``on_screen()`` says whether the panel has a
    view; ``begin``/``end`` bracket each update (the run's pacer); ``training_cost(seconds)``
    says what that many CPU seconds of updates cost training (the run's measured contention
    for widgets); a fault goes to ``on_error``. A ``prompt`` feed's news comes from the worker's
    runs, which space it already (paced, an analysis runs at most once a second): it goes out
    when it comes (at most ``max_rate``), its cost counted in the round that spaces the
    others; those wait at most ``longest`` while ``room()`` says the budget has room for it
    (what a frame costs is measured in the slowdown all the same, and the pace leaves the
    worker less), else what the round costs: no floor above what the budget leaves (SPEC 5)."""

    def __init__(self, draw: Callable[[], bool], *, on_error: Callable[[Exception], None],
                 max_rate: float = 10.0, max_share: float = 0.01,
                 on_screen: Callable[[], bool] = lambda: True,
                 begin: Callable[[], object] = lambda: None,
                 end: Callable[[object], None] = lambda token: None,
                 training_cost: Callable[[float], float] = lambda seconds: seconds,
                 prompt: bool = False, longest: float = math.inf,
                 room: Callable[[], bool] = lambda: True):
        if not max_rate > 0:
            raise ValueError(f"max_rate must be positive, got {max_rate!r}")
        if not 0 < max_share <= 1:
            raise ValueError(f"max_share must be a fraction in (0, 1], got {max_share!r}")
        self.interval = 1.0 / max_rate
        self.longest = longest         # s at most between updates while ``room()`` (due_in)
        self.room = room
        self.max_share = max_share     # of training time, shared with the other feeds of its delivery
        self.training_cost = training_cost
        self.prompt = prompt
        # training seconds an update costs (``training_cost`` of its CPU time), averaged over the
        # last ones (COST_WEIGHT)
        self.price = 0.0
        self._priced = False           # an update was built: ``price`` is measured
        # training seconds of a round of the updates that share max_share (``Delivery.add``)
        self.round_cost: Callable[[], float] = lambda: self.price
        self.gap = self.interval       # before the next update: interval, or longer if costly
        self.last = float("-inf")
        self.wanted = False            # news not delivered yet
        self.frames = 0                # frames built and sent
        self.on_screen = on_screen
        self._draw, self._on_error = draw, on_error
        self._begin, self._end = begin, end
        self._lock = threading.Lock()  # one update at a time, whichever thread asks

    def due_in(self, now: float) -> float:
        """Seconds until the rate allows the next update (<= 0: now): ``gap`` after the last,
        at most ``longest`` while ``room()`` says the budget has room for it (asked now: a gap
        priced while it had none is cut short as soon as it has)."""
        gap = self.gap
        if gap > self.longest and self.room():
            gap = self.longest
        return self.last + gap - now

    def deliver(self) -> None:
        """Update now on the calling thread, on screen or not."""
        with self._lock:
            start, cpu = time.monotonic(), time.thread_time()
            token = self._begin()
            try:
                built = self._draw()
                self.frames += bool(built)
            except Exception as exc:  # a broken update must not kill the thread
                self._on_error(exc)
                built = True           # spaced out like any other: it cost what it cost
            finally:
                self._end(token)
            if built:
                self.last = start
                price = self.training_cost(time.thread_time() - cpu)
                self.price += (COST_WEIGHT if self._priced else 1.0) * (price - self.price)
                self._priced = True
                # (``due_in`` holds it to ``longest`` while the budget has room: held to it
                # whatever the budget said, an architectures GPT's status line, trend and
                # findings, 40-90 ms of Chromium per frame on two cores, took 7.7% of training
                # in JupyterLab, and the worker nothing)
                self.gap = self.interval if self.prompt else max(
                    self.interval, self.round_cost() / self.max_share)


class Delivery:
    """The feeds of one top-level widget and the one thread that serves them."""

    def __init__(self):
        self.feeds: list[Feed] = []
        self._runs: dict[int, tuple[object, _Listener]] = {}   # id -> attached runs followed
        self._news = False             # a run had news since the thread last looked
        self._visible = False          # some feed is on screen
        self._wake = threading.Event()  # news or a request
        self._stop = threading.Event()  # closed, or every run followed detached
        self._lock = threading.Lock()   # the thread's start and end
        self._thread: threading.Thread | None = None

    @property
    def frames(self) -> int:
        """Frames built and sent so far, all feeds together."""
        return sum(feed.frames for feed in self.feeds)

    @property
    def finished(self) -> bool:
        """Closed, or every run followed has detached: no more news will come."""
        return self._stop.is_set()

    def add(self, feed: Feed) -> Feed:
        """Serve ``feed`` too (updated at once if it is on screen)."""
        self.feeds.append(feed)
        feed.round_cost = self._round_cost
        self.screen_changed(feed)
        return feed

    def remove(self, feed: Feed) -> None:
        """Stop updating ``feed`` (its panel was closed)."""
        if feed in self.feeds:
            self.feeds.remove(feed)
        self._visible = any(f.on_screen() for f in self.feeds)

    def _round_cost(self) -> float:
        """Training seconds of a round of every feed's update (a headless grokking run's eight
        panels, each spaced by its own cost, took 1.1% of wall time together)."""
        return sum(feed.price for feed in self.feeds)

    def follow(self, run) -> None:
        """Update the feeds when ``run`` has news (once per run), finally when it detaches."""
        if id(run) in self._runs or run.detached:
            return
        listener = _Listener(self)
        self._runs[id(run)] = (run, listener)
        run.subscribe(listener)

    def request(self, feed: Feed) -> None:
        """Update ``feed`` as soon as its rate allows, if it is on screen (else when it comes)."""
        feed.wanted = True
        if self.finished:          # no thread any more: the rare request after the end
            self._deliver_shown(feed)
        elif feed.on_screen():
            self._kick()

    def offer(self, feed: Feed) -> None:
        """Update ``feed`` at once on the calling thread if the rate allows, else as soon as it
        does (coalesced with whatever is offered meanwhile)."""
        if feed.due_in(time.monotonic()) <= 0:
            feed.wanted = False
            feed.deliver()
        else:
            self.request(feed)

    def screen_changed(self, feed: Feed) -> None:
        """``feed``'s panel came on screen (it is brought up to date at once) or went."""
        if feed not in self.feeds:
            return
        self._visible = any(f.on_screen() for f in self.feeds)
        self._deliver_shown(feed)
        if self._visible and self._news:
            self._kick()

    def close(self) -> None:
        """Stop following the runs and end the thread."""
        for run, listener in list(self._runs.values()):
            run.unsubscribe(listener)
        self._runs.clear()
        self._finish()

    # -- the training side -------------------------------------------------------------------

    def _on_news(self, run) -> None:
        if run.detached:
            self._run_ended(run)
            return
        self._news = True
        if self._visible and not self._wake.is_set():   # already asked: one flag read
            self._kick()

    def _run_ended(self, run) -> None:
        """Unsubscribe from ``run``, push the final state of every feed on screen (the others
        when they come), and end the thread once no run followed is attached."""
        entry = self._runs.pop(id(run), None)
        if entry is not None:
            run.unsubscribe(entry[1])
        for feed in list(self.feeds):
            self._deliver_shown(feed)
        if not self._runs:
            self._finish()

    def _deliver_shown(self, feed: Feed) -> None:
        """Update ``feed`` now if it is on screen (its draw skips what has not changed)."""
        if feed.on_screen():
            feed.wanted = False
            feed.deliver()

    # -- the thread --------------------------------------------------------------------------

    def _kick(self) -> None:
        self._wake.set()           # before reading _thread: see _retire
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._stop.is_set():
                    self._thread = threading.Thread(
                        target=_serve, args=(weakref.ref(self), self._wake, self._stop),
                        name=THREAD_NAME, daemon=True)
                    self._thread.start()

    def _serve_once(self) -> float | None:
        """Update every feed that is wanted, on screen and due; seconds until the next look (the
        next one due; at most ``PROMPT_WAIT`` while a prompt feed is on screen), None when none
        is wanted."""
        self._wake.clear()         # before reading the news: news after this wakes us again
        if self._news:
            self._news = False
            for feed in self.feeds:
                feed.wanted = True
        wait = None
        for feed in list(self.feeds):
            if not feed.wanted or not feed.on_screen():
                continue           # off screen: brought up to date when it comes
            due = feed.due_in(time.monotonic())
            if due > 0:
                wait = due if wait is None else min(wait, due)
                continue
            feed.wanted = False
            feed.deliver()
        if wait is not None and any(feed.prompt and feed.on_screen() for feed in self.feeds):
            wait = min(wait, PROMPT_WAIT)
        return wait

    def _retire(self) -> bool:
        """Whether the idle thread may end: not if news came in the meantime."""
        with self._lock:
            self._thread = None    # before reading _wake: see _kick
            if self._wake.is_set() and not self._stop.is_set():
                self._thread = threading.current_thread()
                return False
            return True

    def _finish(self) -> None:
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(_JOIN)     # between two updates, it ends at once


def _serve(ref: weakref.ref, wake: threading.Event, stop: threading.Event) -> None:
    """The delivery thread. Holds its delivery only while it works, so that a dashboard
    nobody holds is collected (the thread then ends within IDLE_AFTER)."""
    while not stop.is_set():
        delivery = ref()
        if delivery is None:
            return
        wait = delivery._serve_once()
        del delivery
        if wait is not None:
            stop.wait(wait)        # news arriving meanwhile merges into these updates
        elif not wake.wait(IDLE_AFTER):
            delivery = ref()
            if delivery is None or delivery._retire():
                return
            del delivery


class _Listener:
    """Subscribed to a run for a delivery, which it holds weakly; leaves the run at the first
    news after the delivery is gone."""

    def __init__(self, delivery: Delivery):
        self._delivery = weakref.ref(delivery)

    def __call__(self, run) -> None:
        delivery = self._delivery()
        if delivery is None:
            run.unsubscribe(self)
        else:
            delivery._on_news(run)
