"""``export(path)`` and ``snapshot()`` for every widget: its ``figure(step)`` rendered by matplotlib."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from .. import export


class Exportable:
    """Mixin: a widget draws what it shows into a matplotlib figure (or subfigure, so that the
    dashboard can compose its panels) with ``draw(fig, step)``; ``figsize`` is its own size."""

    figsize = (8, 3.6)

    def draw(self, fig, step: int | None = None) -> None:
        raise NotImplementedError

    def figure(self, step: int | None = None) -> Figure:
        """What the widget shows (up to ``step`` when given) as a matplotlib figure."""
        fig = Figure(figsize=self.figsize, layout="constrained")
        self.draw(fig, step)
        return fig

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
