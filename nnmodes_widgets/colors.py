"""Line colours of the exported figures (SPEC 16), the same as the live widgets' on JupyterLab's
light theme (js/palette.js makes those, for either theme): every layer its own colour; once the
layers are clustered by their RWC trends, each cluster is a family of hues and its layers are
shades of it, dark (input side) to light (output side). Colours are made in CIE LCh, so that
equal steps look equal."""

from __future__ import annotations

import math

FAMILIES = (255, 45, 135, 330, 195, 85, 295, 15)   # hue of each cluster's family
CHROMA = 55
TONES = (30, 60)              # lightness of the darkest and the lightest shade (3:1 on white)
CLASS_TONES = (48, 58)        # categorical: first round, then again
SWEEP = 250                   # degrees of hue the layers spread over when there is one family
FAMILY_WIDTH = 60             # ... at most, when there are several
OUTSIDE = "#8c8c8c"           # a layer outside the partition
FOREGROUND = "#333333"        # "*": all layers together

_WHITE = (0.95047, 1.0, 1.08883)   # D65


def _finv(t: float) -> float:
    return t ** 3 if t > 6 / 29 else 3 * (6 / 29) ** 2 * (t - 4 / 29)


def _gamma(c: float) -> float:
    return 12.92 * c if c <= 0.0031308 else 1.055 * c ** (1 / 2.4) - 0.055


def _linear_rgb(l: float, c: float, h: float) -> tuple[float, float, float]:
    rad = math.radians(h)
    fy = (l + 16) / 116
    fx, fz = fy + c * math.cos(rad) / 500, fy - c * math.sin(rad) / 200
    x, y, z = _finv(fx) * _WHITE[0], _finv(fy) * _WHITE[1], _finv(fz) * _WHITE[2]
    return (3.2404542 * x - 1.5371385 * y - 0.4985314 * z,
            -0.969266 * x + 1.8760108 * y + 0.041556 * z,
            0.0556434 * x - 0.2040259 * y + 1.0572252 * z)


def lch(l: float, c: float, h: float) -> str:
    """``"#rrggbb"`` of CIE L*, C*, h (degrees), the chroma lowered until it is inside sRGB."""
    rgb = _linear_rgb(l, c, h)
    while c > 0 and any(v < -1e-6 or v > 1 + 1e-6 for v in rgb):
        c = max(0, c - 1)
        rgb = _linear_rgb(l, c, h)
    return "#" + "".join(f"{round(255 * _gamma(min(1.0, max(0.0, v)))):02x}" for v in rgb)


def family_width(count: int) -> float:
    """Degrees of hue one family's shades spread over among ``count`` families: families stay
    apart."""
    if count <= 1:
        return SWEEP
    hues = FAMILIES[:count]
    gap = min(min(abs(a - b) % 360, 360 - abs(a - b) % 360)
              for i, a in enumerate(hues) for b in hues[i + 1:])
    return min(FAMILY_WIDTH, 0.8 * gap)


def layer_colors(keys, clusters: dict | None = None) -> dict[str, str]:
    """Colour of every key (RWC parameter names, input side first). ``clusters`` maps key ->
    cluster number (None before the layers are clustered: all in one family); a key the
    partition leaves out is grey."""
    lo, hi = TONES
    out: dict[str, str] = {}
    families: dict[int, list[str]] = {}
    for key in keys:
        c = clusters.get(key) if clusters else 0
        if c is None:
            out[key] = OUTSIDE
        else:
            families.setdefault(int(c), []).append(key)
    width = family_width(len(families))
    for c, members in families.items():
        base = FAMILIES[c % len(FAMILIES)]
        for j, key in enumerate(members):
            t = j / (len(members) - 1) if len(members) > 1 else 0.5
            out[key] = lch(lo + (hi - lo) * t, CHROMA, (base + width * (0.5 - t)) % 360)
    return {key: out[key] for key in keys}


def class_colors(n: int) -> list[str]:
    """``n`` categorical colours (classes, runs): one family's hue each, then again in another
    tone."""
    return [lch(CLASS_TONES[(i // len(FAMILIES)) % 2], CHROMA, FAMILIES[i % len(FAMILIES)])
            for i in range(n)]


def line_color(label: str, colors: dict[str, str]) -> str:
    """The colour of one line: its key's, or for a module name (the basins' keys) that of its
    first parameter; "*" (all layers) in the text colour."""
    if label == "*":
        return FOREGROUND
    if label in colors:
        return colors[label]
    owned = next((key for key in colors if key != label and _in_module(key, label)), None)
    return colors[owned] if owned else OUTSIDE


def _in_module(key: str, module: str) -> bool:
    """Whether ``key`` (a parameter or activation key) belongs to ``module`` (js/selection.js)."""
    return key == module or any(key.startswith(module + c) for c in ".:#")
