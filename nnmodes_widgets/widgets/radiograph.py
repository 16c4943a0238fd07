"""Radiographs of pathway subnetworks (and characteristic maps) on the package's own canvas."""

from __future__ import annotations

from collections.abc import Mapping

import anywidget
import numpy as np
import traitlets

from ._bundle import bundle
from .binary import encode_array
from .exportable import Exportable


class Radiograph(Exportable, anywidget.AnyWidget):
    """One band per layer, input side first: each layer's map [neurons, inputs] as a heat map, or
    as one tile per neuron when the inputs are images (``input_shape``, e.g. ``(8, 8)``).

    ``show(step, {layer: map})`` sends a frame as binary float32 buffers (``quantize=True``:
    uint8, a quarter of the bytes). The browser keeps the last ``history_size`` frames to scrub
    through, and applies the view (signed with a diverging map, or absolute), colour map and
    scale itself, also while the kernel is busy. Root element class ``nnmodes-radiograph``.
    """

    _esm = bundle("radiograph.js")
    _css = bundle("widgets.css")
    title = traitlets.Unicode("Radiographs").tag(sync=True)
    view = traitlets.Enum(("signed", "absolute"), "signed").tag(sync=True)
    history_size = traitlets.Int(50).tag(sync=True)
    frame_meta = traitlets.Dict().tag(sync=True)
    frame_data = traitlets.Bytes(b"").tag(sync=True)

    def __init__(self, *, title: str = "Radiographs", view: str = "signed", history_size: int = 50,
                 quantize: bool = False, **kwargs):
        if isinstance(history_size, bool) or not isinstance(history_size, int) or history_size < 1:
            raise ValueError(f"history_size must be a positive integer, got {history_size!r}")
        super().__init__(title=title, view=view, history_size=history_size, **kwargs)
        self.quantize = quantize
        self._latest: tuple[int, dict[str, np.ndarray], tuple | None] | None = None

    def show(self, step: int, bands: Mapping[str, object], *, input_shape=None) -> None:
        """Draw a new frame: ``bands`` maps layer -> 2-D map [neurons, inputs]."""
        maps = {}
        for layer, values in bands.items():
            a = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=np.float32)
            if a.ndim != 2:
                raise ValueError(f"map of layer {layer!r} must be 2-D [neurons, inputs], got shape {a.shape}")
            maps[str(layer)] = a
        if not maps:
            raise ValueError("show() needs at least one layer's map")
        if input_shape is not None:
            input_shape = tuple(int(d) for d in input_shape)
            for layer, a in maps.items():
                if int(np.prod(input_shape)) != a.shape[1]:
                    raise ValueError(f"input_shape {input_shape} does not fit layer {layer!r}: "
                                     f"{a.shape[1]} inputs")
        metas, payloads = [], []
        for layer, a in maps.items():
            meta, payload = encode_array(a, quantize=self.quantize)
            metas.append({"layer": layer, **meta})
            payloads.append(payload)
        self._latest = (int(step), maps, input_shape)
        with self.hold_sync():
            self.frame_meta = {"step": int(step), "bands": metas,
                               "input_shape": list(input_shape) if input_shape else None}
            self.frame_data = b"".join(payloads)

    @property
    def figsize(self):
        return (8, 1.6 + 1.8 * (len(self._latest[1]) if self._latest else 1))

    def draw(self, fig, step: int | None = None) -> None:
        """The frame on display (one panel per layer)."""
        if self._latest is None:
            raise ValueError("nothing to export yet: show() has not been called")
        shown_step, maps, input_shape = self._latest
        if step is not None and step != shown_step:
            raise ValueError(f"this widget keeps the frame of step {shown_step} only, not step {step}")
        axes = fig.subplots(len(maps), 1, squeeze=False)[:, 0]
        signed = self.view == "signed"
        for ax, (layer, a) in zip(axes, maps.items()):
            data = a if signed else np.abs(a)
            m = float(np.nanmax(np.abs(data))) if np.isfinite(data).any() else 1.0
            image = ax.imshow(data, aspect="auto", interpolation="nearest",
                              cmap="RdBu_r" if signed else "viridis",
                              vmin=-m if signed else 0, vmax=m or 1.0)
            ax.set_title(f"{layer} ({a.shape[0]} neurons x {a.shape[1]} inputs)", loc="left",
                         fontsize="small")
            ax.set_ylabel("neuron")
            fig.colorbar(image, ax=ax, shrink=0.8)
        axes[-1].set_xlabel("input")
        fig.suptitle(f"{self.title}, step {shown_step}", x=0.01, ha="left", fontsize="medium")
