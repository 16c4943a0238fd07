import { describe, expect, it, vi } from "vitest";
import { ageText, agesText, count, statusText } from "../../js/format.js";
import { panelName } from "../../js/status.js";
import { coalesce, rootCounter } from "../../js/root.js";

const base = {
  step: 1230, steps_per_second: 410.4, slowdown: 0.0123, budget: 0.05, samples: 123, every: 10,
  errors: 0, last_error: "", nonfinite: [], detached: false,
};

describe("statusText", () => {
  it("shows step, speed, the measured slowdown against the budget and samples", () => {
    expect(statusText(base)).toBe("step 1230 · 410 steps/s · slowdown 1.2% (budget 5%) · 123 samples, every 10 steps");
  });
  it("leaves out what is not measured yet", () => {
    const s = statusText({ ...base, steps_per_second: null, slowdown: null, samples: 0 });
    expect(s).toBe("step 1230 · 0 samples, every 10 steps");
    expect(statusText({ ...base, every: 1 })).toContain("123 samples, every step");
  });
  it("keeps small rates readable", () => {
    expect(statusText({ ...base, steps_per_second: 3.14159 })).toContain("3.1 steps/s");
    expect(statusText({ ...base, steps_per_second: 42.26 })).toContain("42.3 steps/s");
  });
  it("says when sampling alone takes over half the budget, and the every that would not", () => {
    const s = statusText({ ...base, every: 10, own_share: 0.048, every_within_budget: 20 });
    expect(s).toBe("step 1230 · 410 steps/s · slowdown 1.2% (budget 5%) · 123 samples, every 10 steps · "
      + "sampling every 10 steps takes 4.8%: every=20 leaves half the budget to the analyses");
    expect(statusText({ ...base, every: 10, own_share: 0.01, every_within_budget: null }))
      .not.toContain("sampling");
  });
  it("says nothing in the scheduler's words (dropped, deferred)", () => {
    const s = statusText({ ...base, dropped: 3, deferred: 2 });
    expect(s).not.toMatch(/dropped|deferred/);
  });
  it("says one sample, one error in the singular", () => {
    const s = statusText({ ...base, samples: 1, errors: 1, last_error: "x" });
    expect(s).toBe("step 1230 · 410 steps/s · slowdown 1.2% (budget 5%) · 1 sample, every 10 steps · "
      + "1 error, last: x");
    expect(count(0, "sample")).toBe("0 samples");
    expect(count(2, "analysis", "analyses")).toBe("2 analyses");
  });
  it("flags errors, non-finite weights and detachment", () => {
    const s = statusText({ ...base, errors: 2, last_error: "step 40: rwc: boom",
      nonfinite: ["0.weight", "2.weight"], detached: true });
    expect(s).toContain("non-finite weights: 0.weight, 2.weight");
    expect(s).toContain("2 errors, last: step 40: rwc: boom");
    expect(s.endsWith("detached")).toBe(true);
    expect(statusText({ ...base, errors: 1, last_error: "x" })).toContain("1 error, last: x");
  });
  it("says when a new monitor replaced this one, in place of detached", () => {
    const s = statusText({ ...base, detached: true, replaced_at: 120 });
    expect(s.endsWith("replaced at step 120 by a new monitor")).toBe(true);
    expect(s).not.toContain("detached");
    expect(statusText({ ...base, detached: true, replaced_at: null }).endsWith("detached")).toBe(true);
  });
});

describe("panel ages", () => {
  it("say how long ago in plain words", () => {
    expect(ageText(1.83)).toBe("1.8 s");
    expect(ageText(12.4)).toBe("12 s");
    expect(ageText(185)).toBe("3 min");
    expect(ageText(7300)).toBe("2 h");
    expect(agesText([["trend", 9600], ["spectra", 8200]], 10000)).toBe("trend 0.4 s ago · spectra 1.8 s ago");
  });
  it("name each panel by its root element, the characteristic maps apart from the radiographs", () => {
    const classes = (...names) => ({ contains: (c) => names.includes(c) });
    expect(panelName(classes("nnmodes-spectrum", "nnmodes-panel"))).toBe("spectra");
    expect(panelName(classes("nnmodes-radiograph", "nnmodes-characteristic-maps"))).toBe("maps");
    expect(panelName(classes("nnmodes-radiograph"))).toBe("radiographs");
    expect(panelName(classes("nnmodes-status"))).toBe(null);
  });
});

describe("coalesce", () => {
  it("runs once per burst of synchronous calls", async () => {
    const fn = vi.fn();
    const run = coalesce(fn);
    run(); run(); run();
    expect(fn).not.toHaveBeenCalled();
    await Promise.resolve();
    expect(fn).toHaveBeenCalledTimes(1);
    run();
    await Promise.resolve();
    expect(fn).toHaveBeenCalledTimes(2);
  });
});

describe("rootCounter", () => {
  function fakeTree() {
    const attrs = {};
    const root = { setAttribute: (k, v) => { attrs[k] = v; } };
    let attached = false;
    const el = { closest: (sel) => (attached && sel === ".nnmodes-trend" ? root : null) };
    return { el, attrs, attach: () => { attached = true; } };
  }

  it("counts frames and labels the step once the view is attached", () => {
    const frames = [];
    vi.stubGlobal("requestAnimationFrame", (cb) => frames.push(cb));
    const { el, attrs, attach } = fakeTree();
    const counter = rootCounter(el, "nnmodes-trend");
    counter.frame(10);
    expect(attrs).toEqual({});            // not attached yet: nothing to write on
    attach();
    frames.shift()();                     // the next animation frame finds the root
    expect(attrs).toEqual({ "data-frames": "1", "data-step": "10" });
    counter.frame(20);
    expect(attrs).toEqual({ "data-frames": "2", "data-step": "20" });
    expect(counter.frames).toBe(2);
    vi.unstubAllGlobals();
  });
});
