import { describe, expect, it } from "vitest";
import { axisTicks, formatNumber, linearTicks, logTicks, tickLabels } from "../../js/ticks.js";

// A small seeded generator: the same ranges every run.
function random(seed) {
  let s = seed;
  return () => {
    s = (s * 1664525 + 1013904223) % 4294967296;
    return s / 4294967296;
  };
}

describe("tick labels read as people write numbers", () => {
  it("uses k, M and B, never e+", () => {
    expect(formatNumber(2500)).toBe("2.5k");
    expect(formatNumber(10000)).toBe("10k");
    expect(formatNumber(-2500)).toBe("-2.5k");
    expect(formatNumber(1.5e6)).toBe("1.5M");
    expect(formatNumber(2e9)).toBe("2B");
    expect(formatNumber(0)).toBe("0");
  });
  it("writes small numbers plainly down to 0.001, then as 2e-5", () => {
    expect(formatNumber(0.25)).toBe("0.25");
    expect(formatNumber(0.001)).toBe("0.001");
    expect(formatNumber(2.5e-5)).toBe("2.5e-5");
    expect(formatNumber(1e-7)).toBe("1e-7");
  });
  it("labels the rank trends' step axis 0, 2.5k, 5k, 7.5k, 10k (it read 2.5e+3 ... 1e+4)", () => {
    const { values, labels } = axisTicks(0, 10000, { integer: true, count: 5 });
    expect(values).toEqual([0, 2500, 5000, 7500, 10000]);
    expect(labels).toEqual(["0", "2.5k", "5k", "7.5k", "10k"]);
  });
  it("gives each tick its unit and the decimals the ticks need to differ", () => {
    expect(tickLabels([10000, 10250, 10500])).toEqual(["10k", "10.25k", "10.5k"]);
    expect(tickLabels([0, 200, 400, 600, 800, 1000])).toEqual(["0", "200", "400", "600", "800", "1k"]);
    expect(tickLabels([0, 0.25, 0.5, 0.75])).toEqual(["0", "0.25", "0.5", "0.75"]);
    expect(tickLabels([0, 0.0005, 0.001])).toEqual(["0", "0.0005", "0.001"]);
    expect(tickLabels([1e-5, 2e-5])).toEqual(["1e-5", "2e-5"]);
  });
  it("labels every tick of any range differently, short unless the range is a sliver", () => {
    const next = random(7);
    for (let i = 0; i < 500; i++) {
      const lo = (next() - 0.3) * 10 ** Math.floor(next() * 12 - 5);
      const hi = lo + next() * 10 ** Math.floor(next() * 12 - 5);
      const { values, labels } = axisTicks(lo, hi, { count: 6 });
      expect(new Set(labels).size).toBe(values.length);
      // a range of 1% of its values or more: "-2.25k", "-0.012325", "1.5e-5"
      if (hi - lo >= 0.01 * Math.max(Math.abs(lo), Math.abs(hi))) {
        for (const label of labels) expect(label.length).toBeLessThanOrEqual(9);
      }
    }
  });
});

describe("linear ticks", () => {
  it("are round multiples inside the range, at most as many as asked", () => {
    const next = random(1);
    for (let i = 0; i < 500; i++) {
      const lo = (next() - 0.5) * 10 ** Math.floor(next() * 8 - 3);
      const hi = lo + next() * 10 ** Math.floor(next() * 8 - 3);
      const count = 2 + Math.floor(next() * 8);
      const ticks = linearTicks(lo, hi, count);
      expect(ticks.length).toBeGreaterThanOrEqual(1);
      expect(ticks.length).toBeLessThanOrEqual(count);
      for (const t of ticks) expect(t >= lo - 1e-9 * Math.abs(lo) && t <= hi + 1e-9 * Math.abs(hi)).toBe(true);
      if (ticks.length > 1) {
        const step = ticks[1] - ticks[0];
        const mantissa = step / 10 ** Math.floor(Math.log10(step) + 1e-9);
        expect([1, 2, 2.5, 5, 10].some((m) => Math.abs(mantissa - m) < 1e-6)).toBe(true);
      }
    }
  });
  it("are whole numbers on a step axis", () => {
    expect(linearTicks(0, 7, 5, true)).toEqual([0, 2, 4, 6]);
    expect(linearTicks(0, 3, 10, true)).toEqual([0, 1, 2, 3]);
    expect(linearTicks(0, 100, 4, true)).toEqual([0, 50, 100]);
    expect(linearTicks(0, 75, 4, true)).toEqual([0, 20, 40, 60]);
    expect(linearTicks(0, 10, 5, true)).toEqual([0, 5, 10]);
  });
  it("of a single value is that value", () => {
    expect(linearTicks(3, 3)).toEqual([3]);
    expect(linearTicks(NaN, 3)).toEqual([]);
  });
});

describe("log ticks", () => {
  it("sit at 1, 2 and 5 times a power of ten only, thinned to fit", () => {
    expect(logTicks(0.01, 1, 8)).toEqual([0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1]);
    expect(logTicks(0.01, 1, 6)).toEqual([0.01, 0.1, 1]);
    expect(logTicks(1e-6, 10, 4)).toEqual([1e-6, 1e-4, 0.01, 1]);
    const next = random(3);
    for (let i = 0; i < 300; i++) {
      const lo = 10 ** (next() * 12 - 8);
      const hi = lo * 10 ** (1 + next() * 8);
      const ticks = logTicks(lo, hi, 6);
      expect(ticks.length).toBeGreaterThanOrEqual(2);
      expect(ticks.length).toBeLessThanOrEqual(6);
      for (const t of ticks) {
        const m = t / 10 ** Math.floor(Math.log10(t) + 1e-9);
        expect([1, 2, 5].some((k) => Math.abs(m - k) < 1e-6)).toBe(true);
      }
    }
  });
  it("never crowd a range inside one decade (the spectrum's 0.9 0.8 0.7 0.6 0.5 0.4)", () => {
    const { values, labels } = axisTicks(0.4, 0.9, { log: true, count: 5 });
    expect(values.length).toBeLessThanOrEqual(4);
    expect(values.length).toBeGreaterThanOrEqual(2);
    expect(labels).toEqual(values.map(formatNumber));
  });
});
