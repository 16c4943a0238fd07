// Colour maps applied in the browser: 256-entry RGB lookup tables built from a few anchors.

function lut(anchors) {
  const table = new Uint8Array(256 * 3);
  const last = anchors.length - 1;
  for (let i = 0; i < 256; i++) {
    const pos = (i / 255) * last;
    const lo = Math.min(Math.floor(pos), last - 1);
    const t = pos - lo;
    for (let c = 0; c < 3; c++) {
      table[3 * i + c] = Math.round(anchors[lo][c] * (1 - t) + anchors[lo + 1][c] * t);
    }
  }
  return table;
}

export const COLORMAPS = {
  // sequential, for magnitudes (absolute radiographs, active fractions)
  viridis: lut([[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
    [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]]),
  // diverging, for signed values: blue < 0 < red, white at zero
  rdbu: lut([[5, 48, 97], [33, 102, 172], [67, 147, 195], [146, 197, 222], [247, 247, 247],
    [244, 165, 130], [214, 96, 77], [178, 24, 43], [103, 0, 31]]),
};

// Map values onto RGBA pixels: lo..hi spans the table; NaN/inf are transparent (gaps stay gaps).
export function colorize(values, table, lo, hi, out = new Uint8ClampedArray(values.length * 4)) {
  const span = hi > lo ? hi - lo : 1;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    const o = 4 * i;
    if (!Number.isFinite(v)) {
      out[o + 3] = 0;
      continue;
    }
    const k = 3 * Math.max(0, Math.min(255, Math.round(((v - lo) / span) * 255)));
    out[o] = table[k];
    out[o + 1] = table[k + 1];
    out[o + 2] = table[k + 2];
    out[o + 3] = 255;
  }
  return out;
}

// Colour range for a view: symmetric around zero for signed data, else min..max.
export function valueRange(values, signed) {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < values.length; i++) { // indexed: for...of over a typed array is slower
    const v = values[i];
    if (!Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (lo > hi) return [0, 1];
  if (signed) {
    const m = Math.max(Math.abs(lo), Math.abs(hi)) || 1;
    return [-m, m];
  }
  return lo === hi ? [lo, lo + 1] : [lo, hi];
}
