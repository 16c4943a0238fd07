"""Radiographs of pathway subnetworks (and characteristic maps) on the package's own canvas."""

from __future__ import annotations

from collections.abc import Mapping

import anywidget
import numpy as np
import traitlets

from ..monitor import Monitor
from ._bundle import bundle
from .binary import encode_array
from .exportable import Exportable
from .live import LiveBinding


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
    def shown(self) -> bool:
        """Whether a frame has been shown (and so can be exported)."""
        return self._latest is not None

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


class LiveRadiograph(Radiograph):
    """The newest static radiographs of ``monitor.history`` ("radiograph"), as they land.

    Image-shaped probes ([B, H, W] or [B, 1, H, W]) give one H x W tile per neuron.
    """

    def __init__(self, monitor: Monitor, *, max_rate: float = 10.0, **kwargs):
        if not isinstance(monitor, Monitor):
            raise TypeError(f"LiveRadiograph expects a nnmodes_widgets.Monitor, got {type(monitor).__name__}")
        kwargs.setdefault("title", "Static radiographs: summed pathway values, input side first")
        super().__init__(**kwargs)
        self.monitor = monitor
        self._version = -1
        self._live = LiveBinding(monitor, self._push, name="radiograph", max_rate=max_rate)

    def _push(self) -> None:
        history = self.monitor.history
        if history.version == self._version:
            return
        self._version = history.version
        layers = history.layers("radiograph")
        if not layers:
            return
        newest = {layer: history.latest("radiograph", layer) for layer in layers}
        step = max(s for s, _ in newest.values())
        maps = {layer: value for layer, (s, value) in newest.items() if s == step}
        if self._latest is not None and self._latest[0] == step:
            return
        self.show(step, maps, input_shape=_image_shape(self.monitor.probe, maps))

    def close(self) -> None:
        if hasattr(self, "_live"):   # also called by __del__ after a failed __init__
            self._live.close()
        super().close()


def _image_shape(probe, maps) -> tuple[int, int] | None:
    x = probe[0] if isinstance(probe, tuple) else probe
    if x is None or x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[1] != 1):
        return None
    shape = tuple(int(d) for d in x.shape[-2:])
    return shape if all(m.shape[1] == shape[0] * shape[1] for m in maps.values()) else None
