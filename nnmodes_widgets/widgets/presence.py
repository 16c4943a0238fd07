"""Whether a widget has a view on screen, so that a panel nobody sees builds no frames.

The front end reports each view of a model as it comes into sight (rendered, scrolled into the
viewport, its tab shown) and as it goes out of it (scrolled away, its tab hidden, its cleanup:
output cleared, cell run again, notebook closed; js/presence.js). A widget counts as on screen
from the moment the kernel displays it — itself, or a container holding it — until its front
end reports a view of its own; from then on the front end's count decides. A widget never
displayed is never on screen.

The reports are heard while a training cell runs. JupyterLab (4.4 and later) sends comm messages
on a subshell, but ipykernel (7) routes a comm's incoming messages to the shell its kernel side
last sent from: the main shell, busy with the training cell, for a panel made and drawn there
(JupyterLab 4.6.6, ipykernel 7.4.0: no message from a dashboard's views reached the kernel in
20 s of training, and a dashboard whose output was cleared kept its frames until the cell
ended). The reports alone go to the subshell the front end chose
(``_hear_reports_on_subshells``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import ipywidgets

from .tree import parts_of

EVENT = "nnmodes-views"    # js/presence.js sends {"event": EVENT, "change": +1 or -1}


class Presence:
    """The views of one front-end model (``presence_of(model)``): ``on_screen``, and callbacks
    (``watch``) called with the new value whenever it changes."""

    def __init__(self, model: ipywidgets.Widget):
        self.views = 0              # as the front end counts them
        self.displayed = False      # displayed by the kernel, no view reported since
        self._lock = threading.Lock()   # a message handler and a display may race
        self._watchers: list[Callable[[bool], None]] = []
        model.on_msg(self._on_msg)
        _hear_reports_on_subshells(model.comm)

    @property
    def on_screen(self) -> bool:
        return self.displayed or self.views > 0

    def watch(self, callback: Callable[[bool], None]) -> None:
        """Call ``callback(on_screen)`` when it changes, and when a view comes while another is
        counted (a page reloaded during training never reported its old views gone; the new one
        has only what the model's state holds, not the frames sent before it)."""
        self._watchers.append(callback)

    def mark_displayed(self) -> None:
        """The kernel is displaying the widget now (its front end has not rendered it yet)."""
        self._change(displayed=True)

    def _on_msg(self, widget, content, buffers) -> None:
        if not _is_report(content):
            return
        change = content.get("change")
        if change in (1, -1):
            self._change(views=change)

    def _change(self, *, views: int = 0, displayed: bool | None = None) -> None:
        with self._lock:
            before = self.on_screen
            self.views = max(0, self.views + views)
            if views > 0:
                displayed = False      # a view came: from now on the front end counts
            if displayed is not None:
                self.displayed = displayed
            after = self.on_screen
        if after != before or views > 0:
            for callback in list(self._watchers):
                callback(after)


def _hear_reports_on_subshells(comm) -> None:
    """Let the views' reports on ``comm`` reach the kernel on the subshell the front end sent
    them on (heard while a cell runs); its other messages go where ipykernel routes them (its
    private ``_reply_subshell_for``; without it, or without a comm, nothing changes)."""
    route = getattr(comm, "_reply_subshell_for", None)
    if route is None:
        return

    def reply_subshell_for(data, default):
        if isinstance(data, dict) and data.get("method") == "custom" and \
                _is_report(data.get("content")):
            return default
        return route(data, default)

    comm._reply_subshell_for = reply_subshell_for


def _is_report(content) -> bool:
    """Whether a custom message's ``content`` is a view's report (js/presence.js)."""
    return isinstance(content, dict) and content.get("event") == EVENT


def presence_of(model: ipywidgets.Widget) -> Presence:
    """The one ``Presence`` of ``model``, made on first use."""
    presence = getattr(model, "_nnmodes_presence", None)
    if presence is None:
        presence = model._nnmodes_presence = Presence(model)
        _watch_containers()
    return presence


def mark_displayed(widget: ipywidgets.Widget) -> None:
    """``widget`` is being displayed: it and every panel in it are on screen from now."""
    for part in (widget, *parts_of(widget)):
        presence = getattr(part, "_nnmodes_presence", None)
        if presence is not None:
            presence.mark_displayed()


class ShownOnDisplay:
    """Mixin (before the widget class): displaying the widget marks it and its parts on screen."""

    def _repr_mimebundle_(self, **kwargs):
        mark_displayed(self)
        return super()._repr_mimebundle_(**kwargs)


def _watch_containers() -> None:
    """In IPython, displaying any container (a VBox holding a dashboard, say) marks the panels
    in it on screen too: their own ``_repr_mimebundle_`` is not called then."""
    try:
        from IPython import get_ipython
    except ImportError:       # no IPython, no display
        return
    shell = get_ipython()
    formatter = getattr(getattr(shell, "display_formatter", None), "mimebundle_formatter", None)
    if formatter is not None and formatter.type_printers.get(ipywidgets.Box) is not _show_box:
        formatter.for_type(ipywidgets.Box, _show_box)


def _show_box(box: ipywidgets.Box):
    """The mime bundle IPython would make of ``box``, once its panels are marked on screen."""
    mark_displayed(box)
    method = getattr(box, "_repr_mimebundle_", None)    # None once the box is closed
    return method() if callable(method) else None
