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

// Stand-ins for the browser's observers, each kind keeping those made: the test says when the
// observed element comes into the viewport or leaves it (IntersectionObserver), or when an
// observed attribute changed (MutationObserver).
class FakeWatcher {
  constructor(callback) {
    this.callback = callback;
    this.observed = [];
    this.connected = true;
    this.constructor.made.push(this);
  }
  disconnect() { this.connected = false; }
}

class FakeObserver extends FakeWatcher {
  static made = [];
  observe(target) { this.observed.push(target); }
  show(isIntersecting) {
    this.callback(this.observed.map((target) => ({ target, isIntersecting })));
  }
}

class FakeMutations extends FakeWatcher {
  static made = [];
  observe(target, options) { this.observed.push([target, options.attributeFilter]); }
  changed() { this.callback([]); }
}

function element(parent = null) {
  const attrs = {};
  return {
    attrs,
    setAttribute: (k, v) => { attrs[k] = v; },
    removeAttribute: (k) => { delete attrs[k]; },
    hasAttribute: (k) => k in attrs,
    closest: (selector) => (selector === ".nnmodes-spectrum" ? parent : null),
  };
}

describe("reportView in a browser", () => {
  const changes = (model) => model.sent.map((m) => m.change);

  it("counts the view while its panel is in sight only, and says so on the panel", () => {
    FakeObserver.made = [];
    vi.stubGlobal("IntersectionObserver", FakeObserver);
    const model = fakeModel();
    const el = element();
    const gone = reportView(model, el);
    const [observer] = FakeObserver.made;
    expect(observer.observed).toEqual([el]);
    expect(changes(model)).toEqual([1]);          // in sight from its render
    observer.show(true);                           // the first report: still in sight
    expect(changes(model)).toEqual([1]);
    expect(el.attrs["data-in-sight"]).toBe("1");
    observer.show(false);                          // scrolled out of sight
    expect(changes(model)).toEqual([1, -1]);
    expect(el.attrs["data-in-sight"]).toBe("0");
    observer.show(false);
    expect(changes(model)).toEqual([1, -1]);
    observer.show(true);                           // back: the kernel draws it anew
    expect(changes(model)).toEqual([1, -1, 1]);
    gone();
    expect(changes(model)).toEqual([1, -1, 1, -1]);
    expect(observer.connected).toBe(false);
    vi.unstubAllGlobals();
  });

  it("says nothing more when a view out of sight goes", () => {
    FakeObserver.made = [];
    vi.stubGlobal("IntersectionObserver", FakeObserver);
    const model = fakeModel();
    const gone = reportView(model, element());
    FakeObserver.made[0].show(false);
    gone();
    expect(changes(model)).toEqual([1, -1]);
    gone();                                        // a cleanup run twice counts once
    expect(changes(model)).toEqual([1, -1]);
    vi.unstubAllGlobals();
  });

  it("counts an empty panel wherever it is, until its first data", () => {
    // an empty panel waits at the end of the grid: its first data brings it to its place
    FakeObserver.made = [];
    FakeMutations.made = [];
    vi.stubGlobal("IntersectionObserver", FakeObserver);
    vi.stubGlobal("MutationObserver", FakeMutations);
    const model = fakeModel();
    const el = element();
    el.setAttribute("data-empty", "");
    const gone = reportView(model, el);
    const [sight] = FakeObserver.made;
    const [emptiness] = FakeMutations.made;
    expect(emptiness.observed).toEqual([[el, ["data-empty"]]]);
    sight.show(false);                             // out of sight, but empty: still counted
    expect(changes(model)).toEqual([1]);
    expect(el.attrs["data-in-sight"]).toBe("0");
    el.removeAttribute("data-empty");              // its first data, out of sight
    emptiness.changed();
    expect(changes(model)).toEqual([1, -1]);
    el.setAttribute("data-empty", "");             // empty again (a new run): counted
    emptiness.changed();
    expect(changes(model)).toEqual([1, -1, 1]);
    emptiness.changed();                           // nothing new: nothing said
    expect(changes(model)).toEqual([1, -1, 1]);
    gone();
    expect(changes(model)).toEqual([1, -1, 1, -1]);
    expect(sight.connected || emptiness.connected).toBe(false);
    vi.unstubAllGlobals();
  });

  it("watches the panel's root, not the view's own element, where the panel has one", () => {
    FakeObserver.made = [];
    vi.stubGlobal("IntersectionObserver", FakeObserver);
    vi.stubGlobal("requestAnimationFrame", () => 0);
    const root = element();
    reportView(fakeModel(), element(root), "nnmodes-spectrum");
    expect(FakeObserver.made[0].observed).toEqual([root]);
    vi.unstubAllGlobals();
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
