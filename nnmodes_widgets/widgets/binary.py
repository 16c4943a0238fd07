"""Arrays for the browser as binary buffers with their dtype and shape (never JSON lists).

``float32`` travels as is; ``uint8`` quantises to 254 levels with a scale and offset (a quarter of
the bytes, for large maps), NaN as 255. The browser side is js/decode.js.
"""

from __future__ import annotations

import numpy as np


def encode_array(values, *, quantize: bool = False) -> tuple[dict, bytes]:
    """``(meta, payload)``: meta has ``dtype`` and ``shape`` (and ``scale``/``offset`` when
    quantised); payload is C-ordered bytes."""
    a = np.ascontiguousarray(np.asarray(values, dtype=np.float32))
    meta = {"shape": list(a.shape)}
    if not quantize:
        return {**meta, "dtype": "float32"}, a.tobytes()
    finite = np.isfinite(a)
    lo = float(a[finite].min()) if finite.any() else 0.0
    hi = float(a[finite].max()) if finite.any() else 0.0
    scale = (hi - lo) / 254 if hi > lo else 1.0
    q = np.full(a.shape, 255, dtype=np.uint8)
    q[finite] = np.rint((a[finite] - lo) / scale).astype(np.uint8)
    return {**meta, "dtype": "uint8", "scale": scale, "offset": lo}, q.tobytes()


def pack(items, *, quantize: bool = False) -> tuple[list[dict], bytes]:
    """Several arrays in one binary buffer: ``items`` is a sequence of ``(labels, values)``;
    returns one meta per array (its ``labels`` dict plus dtype and shape) and the payloads
    concatenated in order (js/decode.js ``unpack`` splits them again)."""
    metas, payloads = [], []
    for labels, values in items:
        meta, payload = encode_array(values, quantize=quantize)
        metas.append({**labels, **meta})
        payloads.append(payload)
    return metas, b"".join(payloads)
