import { describe, expect, it, vi } from "vitest";
import { unpack } from "../../js/decode.js";
import { COMPACT_ABOVE, blockOf, classLayer, frameLayers, stripGroups, stripsHeight } from "../../js/neurons.js";
import { highlightLines, highlightOnLabels, inSelection, legendEntries, moduleOf } from "../../js/selection.js";

// A model with the get/set of a widget model, enough for the helpers under test.
function fakeModel(state) {
  return { state, get: (k) => state[k], set: (k, v) => { state[k] = v; } };
}

describe("unpack", () => {
  it("splits one buffer into its arrays in meta order, keeping the other keys", () => {
    const a = new Float32Array([1, 2, 3, 4, 5, 6]);
    const b = new Uint8Array([0, 254, 255]);
    const bytes = new Uint8Array(a.byteLength + b.byteLength);
    bytes.set(new Uint8Array(a.buffer), 0);
    bytes.set(b, a.byteLength);
    const [first, second] = unpack([
      { layer: "0", dtype: "float32", shape: [2, 3] },
      { layer: "1", dtype: "uint8", shape: [3], scale: 2, offset: 1 },
    ], new DataView(bytes.buffer));
    expect(first.layer).toBe("0");
    expect(Array.from(first.data)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(second.layer).toBe("1");
    expect(Array.from(second.data.slice(0, 2))).toEqual([1, 509]);
    expect(Number.isNaN(second.data[2])).toBe(true);
  });

  it("refuses a buffer whose size does not match its arrays", () => {
    const metas = [{ dtype: "float32", shape: [3] }];
    expect(() => unpack(metas, new ArrayBuffer(8))).toThrow(/too short/);
    expect(() => unpack(metas, new ArrayBuffer(16))).toThrow(/16 bytes, but its arrays take 12/);
  });
});

describe("layer selection", () => {
  it("selects a module and its parameters, nothing else", () => {
    expect(inSelection("features.3", "features.3")).toBe(true);
    expect(inSelection("features.3.weight", "features.3")).toBe(true);
    expect(inSelection("features.30.weight", "features.3")).toBe(false);
    expect(inSelection("1.weight", "")).toBe(true); // no selection: every layer
  });

  it("dims the lines of other layers and restores them all when cleared", () => {
    const mark = fakeModel({ labels: ["0.weight", "2.weight", "4.weight"] });
    highlightLines(mark, "2");
    expect(mark.state.opacities).toEqual([0.15, 1, 0.15]);
    highlightLines(mark, "");
    expect(mark.state.opacities).toEqual([1, 1, 1]);
  });
});

// A model whose set() works as @jupyter-widgets/base's patched Backbone set (backbone-patch.ts):
// change:<attr> events, then one "change" event for the whole set(); its try/finally clears
// `_pending` and `_changing` also when a nested set() returns early, so a set() from inside a
// change:<attr> handler leaves the outer set() without its "change" event.
function widgetModel(attributes) {
  const handlers = {};
  const model = {
    attributes: { ...attributes },
    get: (k) => model.attributes[k],
    on: (event, fn) => { (handlers[event] ??= []).push(fn); },
    off: (event, fn) => { handlers[event] = (handlers[event] ?? []).filter((f) => f !== fn); },
    trigger: (event, ...args) => { for (const fn of [...(handlers[event] ?? [])]) fn(...args); },
    set(key, value) {
      const attrs = typeof key === "object" ? key : { [key]: value };
      const changing = model._changing;
      model._changing = true;
      try {
        const changes = Object.keys(attrs).filter((k) => model.attributes[k] !== attrs[k]);
        Object.assign(model.attributes, attrs);
        if (changes.length) model._pending = true;
        for (const k of changes) model.trigger(`change:${k}`, model, attrs[k]);
        if (changing) return model;
        while (model._pending) {
          model._pending = false;
          model.trigger("change", model);
        }
      } finally {
        model._pending = false;
        model._changing = false;
      }
      return model;
    },
  };
  return model;
}

describe("the lines' highlight when the kernel sends new labels", () => {
  it("a set() inside a change:<attr> handler loses the outer change event (why it waits)", () => {
    const mark = widgetModel({ labels: [], y: [] });
    const redraws = vi.fn();                 // bqplot's Lines: on "change" of x/y, update_data
    mark.on("change", redraws);
    mark.on("change:labels", () => highlightLines(mark, ""));
    mark.set({ labels: ["0.weight"], y: [1] });
    expect(redraws).not.toHaveBeenCalled(); // the frame that came with new labels: never drawn
  });

  it("highlights after the kernel's message is applied, and the lines are redrawn", async () => {
    const mark = widgetModel({ labels: [], y: [] });
    const redraws = vi.fn();
    mark.on("change", redraws);
    const lines = highlightOnLabels([mark], () => "2");
    mark.set({ labels: ["0.weight", "2.weight"], y: [1, 2] });
    expect(redraws).toHaveBeenCalledTimes(1);
    expect(mark.get("opacities")).toBeUndefined();
    await Promise.resolve();
    expect(mark.get("opacities")).toEqual([0.15, 1]);
    lines.update();                          // a choice in the picker: at once
    lines.dispose();
    mark.set({ labels: ["2.weight"], y: [3] });
    await Promise.resolve();
    expect(mark.get("opacities")).toEqual([0.15, 1]); // no longer watched
  });
});

describe("the trend's legend", () => {
  const layers = ["features.3", "features.30", "classifier"];

  it("finds the module a line belongs to", () => {
    expect(moduleOf("features.3.weight", layers)).toBe("features.3");
    expect(moduleOf("features.30.weight", layers)).toBe("features.30");
    expect(moduleOf("classifier.bias", layers)).toBe("classifier");
    expect(moduleOf("head.weight", layers)).toBe("");
    expect(moduleOf("a.b.weight", ["a", "a.b"])).toBe("a.b"); // the innermost module
  });

  it("has an entry per line in its colour, dims what the selection does not include", () => {
    const entries = legendEntries(["features.3.weight", "features.30.weight", "classifier.weight"],
      ["#111", "#222"], layers, "features.3");
    expect(entries).toEqual([
      { label: "features.3.weight", color: "#111", layer: "features.3", dim: false },
      { label: "features.30.weight", color: "#222", layer: "features.30", dim: true },
      { label: "classifier.weight", color: "#111", layer: "classifier", dim: true }, // colours cycle
    ]);
    expect(legendEntries(["x.weight"], [], [], "").map((e) => [e.color, e.dim])).toEqual([["currentColor", false]]);
  });
});

describe("neuron-modes frames", () => {
  const arrays = [
    { layer: "1", kind: "steps" }, { layer: "1", kind: "shares" },
    { layer: "3", kind: "steps" }, { layer: "3", kind: "shares" }, { layer: "3", kind: "classes" },
  ];

  it("group a frame's arrays by layer, in order", () => {
    const layers = frameLayers(arrays);
    expect(layers.map((l) => l.layer)).toEqual(["1", "3"]);
    expect(layers[1].classes).toBe(arrays[4]);
    expect(layers[0].classes).toBeUndefined();
  });

  it("show the selected layer's class map, else the first layer that has one", () => {
    const layers = frameLayers(arrays);
    expect(classLayer(layers, "3").layer).toBe("3");
    expect(classLayer(layers, "1").layer).toBe("3"); // layer 1 has no class map
    expect(classLayer(layers, "").layer).toBe("3");
    expect(classLayer(frameLayers(arrays.slice(0, 2)), "")).toBeNull();
  });
});

describe("neuron strips of many activations", () => {
  it("groups activation keys by block: the module path up to its first index", () => {
    expect(blockOf("layer1.0.conv1")).toBe("layer1.0");
    expect(blockOf("layer1.0.relu#1")).toBe("layer1.0");
    expect(blockOf("blocks.1:relu#0")).toBe("blocks.1");
    expect(blockOf("transformer.h.3.mlp.c_fc")).toBe("transformer.h.3");
    expect(blockOf("stem")).toBe("stem");
    expect(blockOf("relu#0")).toBe("relu");
    expect(blockOf("2")).toBe("2");
  });

  it("keeps the frame's order, starts a group at each new block and counts what it leaves out", () => {
    const layers = ["stem", "layer1.0.conv1", "layer1.0.relu#1", "layer1.1.conv1", "relu#0"]
      .map((layer) => ({ layer }));
    const { groups, hidden } = stripGroups(layers, 4);
    expect(groups.map((g) => [g.block, g.layers.map((l) => l.layer)])).toEqual([
      ["stem", ["stem"]], ["layer1.0", ["layer1.0.conv1", "layer1.0.relu#1"]],
      ["layer1.1", ["layer1.1.conv1"]]]);
    expect(hidden).toBe(1);
  });

  it("sizes the canvas for full strips up to COMPACT_ABOVE layers, thin grouped ones above", () => {
    const few = Array.from({ length: COMPACT_ABOVE }, (_, i) => ({ layer: `${i}` }));
    const many = Array.from({ length: 17 }, (_, i) => ({ layer: `layers.${Math.floor(i / 2)}.conv${i % 2}` }));
    expect(stripsHeight(few)).toBe(COMPACT_ABOVE * 56);
    expect(stripsHeight(many)).toBeLessThan(17 * 56 / 2);
  });

  it("selects a module's activation calls with it", () => {
    expect(inSelection("layer1.0:relu#0", "layer1.0")).toBe(true);
    expect(inSelection("layer1.0.relu#1", "layer1.0.relu")).toBe(true);
    expect(inSelection("layer1.0.relu#1", "layer1.0.r")).toBe(false);
    expect(inSelection("layer1.00.conv1", "layer1.0")).toBe(false);
  });
});
