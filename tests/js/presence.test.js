import { describe, expect, it, vi } from "vitest";
import { VIEWS_EVENT, reportView } from "../../js/presence.js";
import status from "../../js/status.js";

// The custom messages a model sends to the kernel, and its change handlers.
function fakeModel(state = {}) {
  const sent = [];
  const handlers = new Map();
  return {
    sent,
    handlers,
    get: (k) => state[k],
    send: (content) => sent.push(content),
    on: (event, fn) => handlers.set(event, fn),
    off: (event) => handlers.delete(event),
  };
}

describe("reportView", () => {
  it("tells the kernel a view came, and that it went when its cleanup runs", () => {
    const model = fakeModel();
    const gone = reportView(model);
    expect(model.sent).toEqual([{ event: VIEWS_EVENT, change: 1 }]);
    gone();
    expect(model.sent).toEqual([{ event: VIEWS_EVENT, change: 1 }, { event: VIEWS_EVENT, change: -1 }]);
  });

  it("says nothing, and throws nothing, once the kernel closed the widget", () => {
    const model = fakeModel();
    const gone = reportView(model);
    model.send = () => { throw new Error("Cannot send on a closed comm"); };
    expect(() => gone()).not.toThrow();
  });
});

describe("a panel's view", () => {
  it("reports itself when rendered and when removed, and stops listening", () => {
    vi.stubGlobal("requestAnimationFrame", () => 0);
    vi.stubGlobal("document", { createElement: () => ({ textContent: "" }) });
    const model = fakeModel({ step: 3, budget: 0.05, samples: 1, every: 1, nonfinite: [], errors: 0 });
    const el = { classList: { add() {}, toggle() {} }, closest: () => null, append() {} };
    const cleanup = status.render({ model, el });
    expect(model.sent).toEqual([{ event: VIEWS_EVENT, change: 1 }]);
    expect(model.handlers.size).toBeGreaterThan(0);
    cleanup();
    expect(model.sent.at(-1)).toEqual({ event: VIEWS_EVENT, change: -1 });
    expect(model.handlers.size).toBe(0);
    vi.unstubAllGlobals();
  });
});
