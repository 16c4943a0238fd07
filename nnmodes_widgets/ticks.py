"""Axis ticks as people write numbers (SPEC 16), for the exported figures: the rules of the live
widgets' axes (js/ticks.js). Linear axes: round steps of 1, 2, 2.5 or 5 times a power of ten,
labelled 1k, 2.5k, 10k; log axes labelled at 1, 2 and 5 times a power of ten only."""

from __future__ import annotations

import math

from matplotlib.ticker import Formatter, Locator

_UNITS = ((1e9, "B"), (1e6, "M"), (1e3, "k"))
_STEPS = (1, 2, 2.5, 5)


def _js_str(x: float) -> str:
    """The shortest text of ``x`` as JavaScript's ``String(x)`` writes it: "10", "0.25", "1e-7"."""
    text = repr(float(x))
    if text.endswith(".0"):
        text = text[:-2]
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa.removesuffix('.0')}e{int(exponent):+d}".replace("e+", "e+" if int(exponent) > 0 else "e")
    return text


def _plain(x: float, digits: int = 3) -> str:
    """At most ``digits`` significant digits, no trailing zeros (JavaScript's ``String``)."""
    return _js_str(float(f"{x:.{digits}g}"))


def format_number(v: float) -> str:
    """One number as a label: 2500 -> "2.5k", 0.001 -> "0.001", 0.00002 -> "2e-5"."""
    if v == 0:
        return "0"
    if not math.isfinite(v):
        return str(v)
    a = abs(v)
    for size, suffix in _UNITS:
        if a >= size:
            return f"{_plain(v / size)}{suffix}"
    if a >= 1e-3:
        return _plain(v)
    mantissa, exponent = f"{v:.2e}".split("e")
    return f"{_plain(float(mantissa))}e{int(exponent)}"


def tick_labels(values) -> list[str]:
    """Labels of the ticks of a linear axis: each in its own unit (k, M, B; below 0.001 all in
    one power of ten), with the decimals the ticks need to differ."""
    values = [float(v) for v in values]
    largest = max([0.0, *map(abs, values)])
    tiny = math.floor(math.log10(largest)) if 0 < largest < 1e-3 else None
    # exact to a millionth of the spacing of the ticks (of a lone tick: to its own size)
    gaps = [abs(b - a) for a, b in zip(values, values[1:])]
    tolerance = 1e-6 * min(gaps) if gaps else 1e-9 * max(1.0, largest)
    labels = []
    for v in values:
        if v == 0:
            labels.append("0")
            continue
        size, suffix = ((10.0 ** tiny, f"e{tiny}") if tiny is not None
                        else next(((s, u) for s, u in _UNITS if abs(v) >= s), (1.0, "")))
        x = v / size
        decimals = 0
        while decimals < 15 and abs(round(x, decimals) - x) * size > tolerance:
            decimals += 1
        labels.append(f"{_js_str(round(x, decimals))}{suffix}")
    return labels


def linear_ticks(lo: float, hi: float, count: int = 5, integer: bool = False) -> list[float]:
    """At most ``count`` round values in [lo, hi] (whole numbers only when ``integer``)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi < lo or count < 1:
        return []
    if hi == lo:
        return [lo]
    base = 10.0 ** math.floor(math.log10((hi - lo) / count))
    while True:
        for m in _STEPS:
            step = m * base
            if integer and (step < 1 or (m == 2.5 and base < 10)):
                continue
            first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
            if last - first + 1 <= count:
                return [float(f"{k * step:.12g}") + 0.0 for k in range(first, last + 1)]
        base *= 10


def log_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """1, 2 and 5 times each power of ten in [lo, hi], thinned to the powers of ten, then to every
    n-th power, to stay within ``count``; round linear ticks for a range inside one decade that
    holds fewer than two of those."""
    if not (lo > 0 and hi >= lo and math.isfinite(hi)):
        return []
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))

    def inside(v):
        return lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9)

    def candidates(mantissas):
        return [v for k in range(first, last + 1) for m in mantissas
                if inside(v := float(f"{m * 10.0 ** k:.12g}"))]

    ticks = candidates((1, 2, 5))
    if len(ticks) < 2:
        return linear_ticks(lo, hi, min(count, 4))
    if len(ticks) <= count:
        return ticks
    ticks = candidates((1,))
    if len(ticks) <= count:
        return ticks
    every = math.ceil(len(ticks) / count)
    return [v for k in range(first, last + 1)
            if k % every == 0 and inside(v := float(f"{10.0 ** k:.12g}"))]


class ReadableTicks(Locator):
    """Ticks of a matplotlib axis by these rules (its scale decides linear or log)."""

    def __init__(self, count: int = 6, integer: bool = False):
        self.count, self.integer = count, integer

    def __call__(self):
        lo, hi = sorted(self.axis.get_view_interval())
        return self.tick_values(lo, hi)

    def tick_values(self, vmin, vmax):
        lo, hi = sorted((float(vmin), float(vmax)))
        if self.axis is not None and self.axis.get_scale() == "log":
            return log_ticks(lo, hi, self.count)
        return linear_ticks(lo, hi, self.count, self.integer)


class ReadableLabels(Formatter):
    """Labels by these rules: linear ticks together (one unit, enough decimals), log ticks each."""

    def __call__(self, x, pos=None):
        return format_number(float(x))

    def format_ticks(self, values):
        if self.axis is not None and self.axis.get_scale() == "log":
            return [format_number(float(v)) for v in values]
        return tick_labels(values)


def readable_axes(ax, *, x_count: int = 6, y_count: int | None = 5, step_x: bool = True) -> None:
    """Give ``ax`` these ticks and labels on x and, unless ``y_count`` is None, y (``step_x``:
    whole-number steps on x)."""
    axes = ((ax.xaxis, x_count, step_x), (ax.yaxis, y_count, False))
    for axis, count, integer in axes[: 1 if y_count is None else 2]:
        axis.set_major_locator(ReadableTicks(count, integer))
        axis.set_major_formatter(ReadableLabels())
        axis.set_minor_formatter(_Blank())   # a log axis would label its minor ticks too


class _Blank(Formatter):
    def __call__(self, x, pos=None):
        return ""
