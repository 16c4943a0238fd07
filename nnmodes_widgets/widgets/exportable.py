"""``export(path)`` and ``snapshot()`` for every widget: its ``figure(step)`` rendered by matplotlib."""

from __future__ import annotations

from pathlib import Path

from .. import export


class Exportable:
    """Mixin: a widget provides ``figure(step=None) -> matplotlib Figure`` of what it shows."""

    def figure(self, step: int | None = None):
        raise NotImplementedError

    def export(self, path, *, step: int | None = None) -> Path:
        """Write the widget's current data (or its data up to ``step``) to a .png, .svg or .pdf."""
        export.figure_format(path)   # refuse an unknown format before rendering anything
        return export.save(self.figure(step), path)

    def snapshot(self, fmt: str = "png", *, step: int | None = None):
        """The figure as an IPython display object, so that it is kept in the notebook."""
        from IPython.display import SVG, Image

        if fmt not in ("png", "svg"):
            raise ValueError(f"snapshot shows png or svg inline, not {fmt!r}; use export() for {fmt}")
        data = export.to_bytes(self.figure(step), fmt)
        return Image(data=data, format="png") if fmt == "png" else SVG(data=data)
