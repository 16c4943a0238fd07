"""The monitors attached now: one per training loop (SPEC 5), the loop being the optimizer a
monitor hooks or, without one, the model whose loop steps it.

Weak both ways: the map keeps neither a loop nor a monitor alive (an attached monitor is kept
alive by its hook on the optimizer, or by whoever holds it). Keyed by identity, so that a model
or optimizer that defines ``__eq__`` is still itself.
"""

from __future__ import annotations

import threading
import weakref

_lock = threading.Lock()
_by_loop: dict[int, tuple[weakref.ref, weakref.ref]] = {}   # id(loop) -> (loop, monitor)


def claim(loop, monitor):
    """Make ``monitor`` the one attached to ``loop``; the monitor it replaces, if one is still
    alive there, else None."""
    with _lock:
        _forget_the_dead()
        entry = _by_loop.get(id(loop))
        previous = entry[1]() if entry is not None and entry[0]() is loop else None
        _by_loop[id(loop)] = (weakref.ref(loop), weakref.ref(monitor))
    return previous


def release(loop, monitor) -> None:
    """``monitor`` is no longer attached to ``loop`` (nothing changes if another one is)."""
    with _lock:
        entry = _by_loop.get(id(loop))
        if entry is not None and entry[0]() is loop and entry[1]() is monitor:
            del _by_loop[id(loop)]


def monitors() -> list:
    """Every monitor attached now."""
    with _lock:
        _forget_the_dead()
        return [m for _, ref in _by_loop.values() if (m := ref()) is not None]


def _forget_the_dead() -> None:
    """Entries whose loop or monitor is gone (an id may then be reused by a new object)."""
    for key in [k for k, (loop, monitor) in _by_loop.items() if loop() is None or monitor() is None]:
        del _by_loop[key]
