"""The widgets a widget is made of: what displaying it shows, and what closing it must close."""

from __future__ import annotations

import ipywidgets


def parts_of(root: ipywidgets.Widget) -> list[ipywidgets.Widget]:
    """Every widget that ``root``'s synced traits reach (children, controls, figures, marks,
    scales, axes, layouts), parents before their parts, ``root`` left out."""
    seen, stack, parts = {id(root)}, [root], []
    while stack:
        widget = stack.pop()
        for name in widget.keys:
            for part in _widgets_in(getattr(widget, name, None)):
                if id(part) not in seen:
                    seen.add(id(part))
                    parts.append(part)
                    stack.append(part)
    return parts


def close_parts(root: ipywidgets.Widget) -> None:
    """Close every part of ``root``: ipywidgets keeps each open widget alive, and with it
    whatever it holds (a panel, its run, the model)."""
    for part in parts_of(root):
        part.close()


def _widgets_in(value):
    if isinstance(value, ipywidgets.Widget):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _widgets_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _widgets_in(item)
