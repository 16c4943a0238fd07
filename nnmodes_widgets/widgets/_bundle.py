"""Where the built front-end lives: esbuild writes one ES module per widget, and the shared
stylesheet, into static/."""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).resolve().parent.parent / "static"


def bundle(filename: str) -> str:
    """The text of a built file in ``static/``; a clear error if the front-end was never built.

    Text, not a path: anywidget watches a path's file for hot reloading through a signal that
    holds every widget made from it, so that no closed widget (nor the run it draws) would ever
    be freed. Multi-line text (ending with a newline) is what anywidget takes as contents.
    """
    path = STATIC / filename
    if not path.is_file():
        raise FileNotFoundError(
            f"front-end bundle {path} is missing: build it with `npm install && npm run build` "
            "in the source tree (wheels ship it built)"
        )
    return path.read_text(encoding="utf-8").rstrip("\n") + "\n"
