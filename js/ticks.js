// Axis ticks as people write numbers (SPEC 16): 1k, 2.5k, 10k on linear axes, round steps of 1,
// 2, 2.5 or 5 times a power of ten; log axes labelled at 1, 2 and 5 times a power of ten only.
// nnmodes_widgets/export.py labels the exported figures by the same rules.

const UNITS = [[1e9, "B"], [1e6, "M"], [1e3, "k"]];
const STEPS = [1, 2, 2.5, 5];

// "0.25", "12.5": at most `digits` significant digits, no trailing zeros.
function plain(x, digits = 3) {
  return String(Number(x.toPrecision(digits)));
}

// One number as a label: 2500 -> "2.5k", 0.001 -> "0.001", 0.00002 -> "2e-5".
export function formatNumber(v) {
  if (v === 0) return "0";
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  for (const [size, suffix] of UNITS) if (a >= size) return `${plain(v / size)}${suffix}`;
  if (a >= 1e-3) return plain(v);
  const [mantissa, exponent] = v.toExponential(2).split("e");
  return `${plain(Number(mantissa))}e${Number(exponent)}`;
}

// The labels of ticks `values` of a linear axis: each in its own unit (k, M, B; below 0.001 all
// in one power of ten), with the decimals the ticks need to differ: 0, 2.5k, 5k, 7.5k, 10k;
// 0, 200, 400, 600, 800, 1k; 10k, 10.25k, 10.5k; 5.18e-4, 5.185e-4.
export function tickLabels(values) {
  const largest = Math.max(0, ...values.map(Math.abs));
  const tiny = largest > 0 && largest < 1e-3 ? Math.floor(Math.log10(largest)) : null;
  // exact to a millionth of the spacing of the ticks (of a lone tick: to its own size)
  const gaps = values.slice(1).map((v, i) => Math.abs(v - values[i]));
  const tolerance = gaps.length ? 1e-6 * Math.min(...gaps) : 1e-9 * Math.max(1, largest);
  return values.map((v) => {
    if (v === 0) return "0";
    const [size, suffix] = tiny !== null ? [10 ** tiny, `e${tiny}`]
      : UNITS.find(([s]) => Math.abs(v) >= s) ?? [1, ""];
    const x = v / size;
    let decimals = 0;
    while (decimals < 15 && Math.abs(Number(x.toFixed(decimals)) - x) * size > tolerance) decimals += 1;
    return `${String(Number(x.toFixed(decimals)))}${suffix}`;
  });
}

// At most `count` round values in [lo, hi]: multiples of 1, 2, 2.5 or 5 times a power of ten
// (whole numbers only when `integer`, for steps).
export function linearTicks(lo, hi, count = 5, integer = false) {
  if (!(Number.isFinite(lo) && Number.isFinite(hi)) || hi < lo || count < 1) return [];
  if (hi === lo) return [lo];
  let base = 10 ** Math.floor(Math.log10((hi - lo) / count));
  for (;;) {
    for (const m of STEPS) {
      const step = m * base;
      if (integer && step < 1) continue;
      if (integer && m === 2.5 && base < 10) continue; // 2.5 steps of whole numbers need base >= 10
      const first = Math.ceil(lo / step - 1e-9);
      const last = Math.floor(hi / step + 1e-9);
      if (last - first + 1 <= count) {
        const out = [];
        for (let k = first; k <= last; k++) out.push(Number((k * step).toPrecision(12)) + 0);
        return out;
      }
    }
    base *= 10;
  }
}

// Ticks of a log axis over [lo, hi] (both > 0): 1, 2 and 5 times each power of ten, thinned to
// the powers of ten, then to every n-th power, to stay within `count`. A range that holds fewer
// than two of those (0.12-0.13; 0.075-0.15, across 0.1) gets round linear ticks instead (no axis
// of one label).
export function logTicks(lo, hi, count = 6) {
  if (!(lo > 0 && hi >= lo && Number.isFinite(hi))) return [];
  const inside = (v) => v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9);
  const first = Math.floor(Math.log10(lo));
  const last = Math.ceil(Math.log10(hi));
  const decade = (k) => Number((10 ** k).toPrecision(12));
  const candidates = (mantissas) => {
    const out = [];
    for (let k = first; k <= last; k++) {
      for (const m of mantissas) {
        const v = Number((m * 10 ** k).toPrecision(12));
        if (inside(v)) out.push(v);
      }
    }
    return out;
  };
  let ticks = candidates([1, 2, 5]);
  if (ticks.length < 2) return linearTicks(lo, hi, Math.min(count, 4));
  if (ticks.length <= count) return ticks;
  ticks = candidates([1]);
  if (ticks.length <= count) return ticks;
  const every = Math.ceil(ticks.length / count);
  const powers = [];
  for (let k = first; k <= last; k++) if (k % every === 0 && inside(decade(k))) powers.push(decade(k));
  return powers;
}

// Ticks and labels for an axis of scale domain [lo, hi].
export function axisTicks(lo, hi, { log = false, count = 5, integer = false } = {}) {
  const a = Math.min(lo, hi);
  const b = Math.max(lo, hi);
  const values = log ? logTicks(a, b, count) : linearTicks(a, b, count, integer);
  return { values, labels: log ? values.map(formatNumber) : tickLabels(values) };
}

// Keep a bqplot Axis model's ticks readable as its scale's domain changes: tick_values and
// tick_labels set on the browser's models only (view state, like the log switch; the kernel
// sends neither), deferred out of the mark's change event that moved the domain. `count`: the
// axis's num_ticks (the most ticks it shows), else 5. Returns the cleanup.
export function bindAxisTicks(axis) {
  const scale = axis.get("scale");
  if (!scale || typeof scale.on !== "function") return () => {};
  const log = String(scale.get("_model_name")).startsWith("Log");
  const integer = axis.get("label") === "step";
  let queued = false;
  const apply = () => {
    queued = false;
    const domain = scale.domain;
    if (!domain || domain.length < 2) return;
    const { values, labels } = axisTicks(Number(domain[0]), Number(domain[domain.length - 1]),
      { log, integer, count: axis.get("num_ticks") || 5 });
    if (!values.length) return;
    const same = (a, b) => a && a.length === b.length && a.every((v, i) => v === b[i]);
    if (same(axis.get("tick_values"), values)) return;
    // bqplot looks a label up by the tick value, as a property name: String(value)
    axis.set({ tick_labels: Object.fromEntries(values.map((v, i) => [String(v), labels[i]])),
      tick_values: values });
  };
  const later = () => {
    if (queued) return;
    queued = true;
    queueMicrotask(apply);
  };
  scale.on("domain_changed", later);
  apply();
  return () => scale.off("domain_changed", later);
}
