"""Radiographs of pathway subnetworks (and characteristic maps) on the package's own canvas."""

from __future__ import annotations

import textwrap
import threading
import warnings
from collections.abc import Mapping

import anywidget
import numpy as np
import traitlets

from ..checks import check_int
from ..runs.run_view import ProbeFacts, RunView, check_view
from ._bundle import bundle
from .binary import pack
from .delivery import Delivery, Feed
from .exportable import Exportable
from .front import PanelFront
from .live import LivePanel
from .notes import panel_note


class Radiograph(Exportable, PanelFront, anywidget.AnyWidget):
    """One band per layer, input side first: each layer's map [neurons, inputs] as a heat map, or
    as one tile per neuron when the inputs are images (``input_shape``, e.g. ``(8, 8)``).

    ``show(step, {layer: map})`` sends a frame — at most ``max_rate`` per second, the newest one
    when frames come faster — as binary float32 buffers (``quantize=True``:
    uint8, a quarter of the bytes): the first ``max_neurons`` neurons of each band, the band's
    label saying how many it has (exports show the same neurons). The browser keeps the last
    ``history_size`` frames to scrub through, and applies the view (signed with a diverging map,
    or absolute), colour map and scale itself, also while the kernel is busy. ``selected`` (a
    layer, "" for none) brings out one band; clicking a band selects it. Root element class
    ``nnmodes-radiograph``.
    """

    _esm = bundle("radiograph.js")
    _css = bundle("widgets.css")
    view = traitlets.Enum(("signed", "absolute"), "signed").tag(sync=True)
    history_size = traitlets.Int(50).tag(sync=True)
    frame_meta = traitlets.Dict().tag(sync=True)
    frame_data = traitlets.Bytes(b"").tag(sync=True)

    def __init__(self, *, title: str = "Radiographs", view: str = "signed", history_size: int = 50,
                 quantize: bool = False, max_neurons: int = 64, max_rate: float = 10.0,
                 **kwargs):
        history_size = check_int(history_size, "history_size", minimum=1)
        max_neurons = check_int(max_neurons, "max_neurons", minimum=1)
        super().__init__(title=title, view=view, history_size=history_size, **kwargs)
        self.quantize = quantize
        self.max_neurons = max_neurons
        self._pending: tuple[dict, bytes] | None = None   # the newest frame not sent yet
        self._pending_lock = threading.Lock()   # show() and the sender's thread hand it over
        self._sender = Delivery()     # show()'s frames (its thread starts when one must wait)
        self._show_feed = self._sender.add(Feed(self._send_frame, max_rate=max_rate,
                                                   on_error=self._send_failed))
        self._latest: tuple[int, dict[str, np.ndarray], tuple | None] | None = None
        self.note = ""
        self._empty: dict[str, str] = {}     # band -> why it has no value

    def show(self, step: int, bands: Mapping[str, object], *, input_shape=None,
             note: str = "", empty: Mapping[str, str] | None = None) -> None:
        """Draw a new frame: ``bands`` maps layer -> 2-D map [neurons, inputs]; ``note``, a line
        shown under the title (what the maps leave out, say); ``empty``, for a band with no
        value at all, why ("no probe sample of class 1"). Checked and encoded at once; sent at
        once if the rate allows, else with the next send (a newer frame shown meanwhile
        replaces it)."""
        self._prepare(step, bands, input_shape, note, empty)
        self._sender.offer(self._show_feed)

    def _prepare(self, step: int, bands: Mapping[str, object], input_shape, note: str = "",
                 empty: Mapping[str, str] | None = None) -> None:
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
        empty = {layer: why for layer, why in (empty or {}).items()
                 if layer in maps and not np.isfinite(maps[layer]).any()}
        metas, payload = pack((({"layer": layer, "neurons": a.shape[0], "empty": empty.get(layer, "")},
                                self._shown(a)) for layer, a in maps.items()),
                              quantize=self.quantize)
        frame = ({"step": int(step), "bands": metas, "note": str(note),
                  "input_shape": list(input_shape) if input_shape else None}, payload)
        with self._pending_lock:
            self._latest = (int(step), maps, input_shape)
            self.note, self._empty = str(note), empty
            self._pending = frame

    def _shown(self, a: np.ndarray) -> np.ndarray:
        """The neurons of a map shown: the first ``max_neurons``, less those at the end with no
        value (a live analysis reduced to fewer units fills the others with NaN)."""
        shown = a[: self.max_neurons]
        measured = np.flatnonzero(np.isfinite(shown).any(axis=1))
        return shown[: measured[-1] + 1] if len(measured) else shown

    def _send_frame(self) -> bool:
        """Send the frame prepared last, if not sent yet; whether there was one."""
        with self._pending_lock:     # else a frame prepared between the read and the reset is lost
            frame, self._pending = self._pending, None
        if frame is None:
            return False
        with self.hold_sync():
            self.frame_meta, self.frame_data = frame
        return True

    @staticmethod
    def _send_failed(exc: Exception) -> None:
        warnings.warn(f"radiograph frame not sent: {type(exc).__name__}: {exc}", stacklevel=2)

    def close(self) -> None:
        if hasattr(self, "_sender"):   # also called by __del__ after a failed __init__
            self._sender.close()
        super().close()

    @property
    def selector(self) -> Radiograph:
        """The front-end model holding the layer selection (``selected``): this widget."""
        return self

    @property
    def shown(self) -> bool:
        """Whether a frame has been shown (and so can be exported)."""
        return self._latest is not None

    @property
    def figsize(self):
        if self._latest is None:
            return (8, 3.4)
        _, maps, input_shape = self._latest
        return (8, 0.8 + sum(_band_height(self._shown(a), input_shape) for a in maps.values()))

    def draw(self, fig, step: int | None = None) -> None:
        """The frame on display: one panel per layer (tiles for image inputs), the first
        ``max_neurons`` neurons of each, as in the browser."""
        if self._latest is None:
            raise ValueError("nothing to export yet: show() has not been called")
        shown_step, maps, input_shape = self._latest
        if step is not None and step != shown_step:
            raise ValueError(f"this widget keeps the frame of step {shown_step} only, not step {step}")
        heights = [_band_height(self._shown(a), input_shape) for a in maps.values()]
        axes = fig.subplots(len(maps), 1, squeeze=False, height_ratios=heights)[:, 0]
        signed = self.view == "signed"
        for ax, (layer, a) in zip(axes, maps.items()):
            shown = self._shown(a)
            data = shown if signed else np.abs(shown)
            m = float(np.nanmax(np.abs(data))) if np.isfinite(data).any() else 1.0
            tiled = input_shape is not None and len(input_shape) >= 2
            image = ax.imshow(tile_image(data, input_shape[-2:]) if tiled else data,
                              aspect="equal" if tiled else "auto", interpolation="nearest",
                              cmap="RdBu_r" if signed else "viridis",
                              vmin=-m if signed else 0, vmax=m or 1.0)
            count = f"first {len(shown)} of {len(a)}" if len(shown) < len(a) else f"{len(a)}"
            ax.set_title(f"{layer} ({count} neurons x {a.shape[1]} inputs)", loc="left",
                         fontsize="small")
            if layer in self._empty:
                ax.text(0.5, 0.5, self._empty[layer], ha="center", va="center",
                        transform=ax.transAxes, fontsize="small")
            if tiled:
                ax.set_axis_off()
            else:
                ax.set_ylabel("neuron")
            fig.colorbar(image, ax=ax, shrink=0.8)
        if not tiled:
            axes[-1].set_xlabel("input")
        note = f"\n{textwrap.fill(self.note, 100)}" if self.note else ""
        fig.suptitle(f"{self.title}, step {shown_step}{note}", x=0.01, ha="left", fontsize="medium")


TILES_PER_ROW = 16


def tile_image(maps: np.ndarray, shape: tuple[int, int], per_row: int = TILES_PER_ROW) -> np.ndarray:
    """Neurons' maps [n, h * w] as one image of h x w tiles, ``per_row`` to a row, separated
    (and padded) by NaN, which draws as background."""
    n = len(maps)
    h, w = shape
    cols = min(n, per_row)
    rows = -(-n // cols)
    out = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), np.nan, dtype=np.float32)
    for k, tile in enumerate(np.asarray(maps).reshape(n, h, w)):
        r, c = divmod(k, cols)
        out[r * (h + 1): r * (h + 1) + h, c * (w + 1): c * (w + 1) + w] = tile
    return out


def _band_height(a: np.ndarray, input_shape) -> float:
    """Inches for one band of the export: tile rows for image inputs, else a fixed heat map."""
    if input_shape is None or len(input_shape) < 2:
        return 1.8
    rows = -(-len(a) // min(len(a), TILES_PER_ROW))
    h, w = input_shape[-2:]
    return 0.4 + rows * (7.0 / min(len(a), TILES_PER_ROW)) * h / w


class _LiveMaps(LivePanel, Radiograph):
    """A Radiograph showing the newest frame of one analysis of a run view's history."""

    analysis = ""

    @property
    def panel(self) -> str:
        return self.analysis

    def __init__(self, run: RunView, *, max_rate: float = 10.0, delivery: Delivery | None = None,
                 **kwargs):
        check_view(run, type(self).__name__)
        super().__init__(**kwargs)
        self.add_class("nnmodes-panel")
        self._bind(run, name=self.analysis, max_rate=max_rate, delivery=delivery)

    def _frame(self, history) -> tuple[int, dict[str, np.ndarray]] | None:
        """``(step, bands)`` of the newest frame, None before the first."""
        raise NotImplementedError

    def _empty_bands(self, bands) -> dict[str, str]:
        """Why a band has no value at all, by band (none by default)."""
        return {}

    def _prepare_newest(self) -> None:
        """Prepare the history's newest frame, unless it is the one prepared."""
        frame = self._frame(self.run.history)
        if frame is None or (self._latest is not None and self._latest[0] == frame[0]):
            return
        step, bands = frame
        bands, shape = _image_bands(self.run.probe_facts, bands)
        self._prepare(step, bands, shape, panel_note(self.run, self.analysis),
                      self._empty_bands(bands))

    def _draw_live(self) -> None:
        self._prepare_newest()
        self._explain(self._latest is not None)
        self._send_frame()     # at once: the delivery already paces these updates

    @property
    def shown(self) -> bool:
        """Whether there is a frame to export (prepared now: a panel off screen drew none)."""
        self._prepare_newest()
        return self._latest is not None

    def draw(self, fig, step: int | None = None) -> None:
        self._prepare_newest()
        super().draw(fig, step)


class LiveRadiograph(_LiveMaps):
    """The newest static radiographs of a run's history ("radiograph"), as they land.

    Image probes ([B, H, W] or [B, C, H, W]) give one H x W tile per unit (the C input channels
    summed); token models a map of units x positions (pathway strength from each position).
    """

    analysis = "radiograph"
    analyses = (analysis,)
    what = "radiographs"

    def __init__(self, run: RunView, **kwargs):
        kwargs.setdefault("title", "Static radiographs, input side first")
        kwargs.setdefault("help", "Each unit's weight pathways from every input, summed: red inputs "
                          "excite it, blue inhibit it (signed view). Image inputs give one tile "
                          "per unit (colour channels summed); token inputs one value per position.")
        kwargs.setdefault("reference", "Feng, Zhang, Wang, Zhao (arXiv 2202.13829)")
        kwargs.setdefault("reference_url", "https://arxiv.org/abs/2202.13829")
        kwargs.setdefault("layers", getattr(run, "layers", []))   # the shared layer picker
        super().__init__(run, **kwargs)

    def _frame(self, history):
        layers = history.layers("radiograph")
        if not layers:
            return None
        # each layer's newest: a run at the smallest live sizes takes the layers in turns
        newest = {layer: history.latest("radiograph", layer) for layer in layers}
        return max(s for s, _ in newest.values()), {layer: v for layer, (_, v) in newest.items()}


class LiveCharacteristicMaps(_LiveMaps):
    """The newest class-averaged characteristic maps of the output layer from a run's history
    ("characteristic_maps"): one band per class, one map per output neuron (tiles for
    image-shaped probes). The classes are the probe's labels, or the model's own predictions
    when the probe has none."""

    analysis = "characteristic_maps"
    analyses = (analysis,)
    what = "characteristic maps"

    def __init__(self, run: RunView, **kwargs):
        facts = getattr(run, "probe_facts", None)
        kind = "labelled" if facts is not None and facts.labelled else "predicted"
        kwargs.setdefault("title", f"Characteristic maps per {kind} class")
        kwargs.setdefault("help", "Per class, what each input adds to each output neuron (the input "
                          "times its pathway value, averaged over the probe samples of the class): "
                          "where the network looks for that class.")
        kwargs.setdefault("reference", "Feng, Zhang, Wang, Zhao (arXiv 2202.13829)")
        kwargs.setdefault("reference_url", "https://arxiv.org/abs/2202.13829")
        self._cover = 0     # records that cover every class (and unit) in turns
        super().__init__(run, **kwargs)
        self.add_class("nnmodes-characteristic-maps")

    def _empty_bands(self, bands) -> dict[str, str]:
        # live, the runs take the classes (and their units) in turns, which cover every class in
        # ``_cover`` runs: before that, a class with no map may be one whose turn has not come
        if self.run.history.count("characteristic_maps") < self._cover:
            return {band: f"{band}: its turn has not come yet (the classes take turns)"
                    for band in bands}
        facts = self.run.probe_facts
        labelled = facts is not None and facts.labelled
        return {band: (f"no probe sample of {band}" if labelled
                       else f"no probe sample predicted as {band}") for band in bands}

    def _frame(self, history):
        layers = history.layers("characteristic_maps")
        if not layers:
            return None
        step, maps = history.latest("characteristic_maps", layers[-1])
        facts = self.run.probe_facts
        if facts is not None and facts.tokens:   # a language model: [1, T, T]
            if not self.title.startswith("Position map"):
                self.title = "Position map: what each input position adds to the next token"
            return step, {"predicted next token (rows: positions, columns: input positions)": maps[0]}
        # the newest record's units of a class: all of them, or the part a run takes in turns
        units = np.isfinite(maps.reshape(*maps.shape[:2], -1)).any(axis=2).sum(axis=1).max()
        self._cover = len(maps) * -(-maps.shape[1] // max(1, units))
        return step, {f"class {c}": m for c, m in enumerate(_newest_of_each_class(
            history, layers[-1], maps, self._cover))}


def _newest_of_each_class(history, layer: str, maps: np.ndarray, cover: int) -> np.ndarray:
    """The newest record's class maps ``maps`` [C, U, ...], each class's unit it left out (live,
    the classes and their units in turns: NaN) taken from the newest of the last ``cover``
    records (those that cover every class and unit once) that has it."""
    missing = ~np.isfinite(maps.reshape(*maps.shape[:2], -1)).any(axis=2)
    if not missing.any():
        return maps
    _, records = history.recent("characteristic_maps", layer, cover)
    for older in records[-2::-1]:
        found = missing & np.isfinite(older.reshape(*missing.shape, -1)).any(axis=2)
        maps[found] = older[found]
        missing &= ~found
    return maps


def _image_bands(facts: ProbeFacts | None, bands: dict) -> tuple[dict, tuple[int, int] | None]:
    """Bands as shown and their tile shape: for an image probe ([B, H, W] or [B, C, H, W]) every
    map [neurons, C * H * W] becomes H x W tiles, the C input channels summed (the pathways from
    each pixel, all colours); other inputs stay a heat map (token models: [units, positions])."""
    image = facts.image_shape if facts is not None else None
    if image is None:
        return bands, None
    c, h, w = image
    if not all(np.shape(m)[1] == c * h * w for m in bands.values()):
        return bands, None
    if c > 1:
        bands = {k: np.asarray(m).reshape(len(m), c, h * w).sum(axis=1) for k, m in bands.items()}
    return bands, (h, w)
