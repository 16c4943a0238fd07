"""Where the built front-end lives: esbuild writes one ES module per widget, and the shared
stylesheet, into static/."""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).resolve().parent.parent / "static"


def bundle(filename: str) -> Path:
    """Path of a built file in ``static/``; a clear error if the front-end was never built."""
    path = STATIC / filename
    if not path.is_file():
        raise FileNotFoundError(
            f"front-end bundle {path} is missing: build it with `npm install && npm run build` "
            "in the source tree (wheels ship it built)"
        )
    return path
