import { coalesce } from "./root.js";

// One layer selection shared by the dashboard's panels. Each panel's model has `layers` (module
// names to choose from) and `selected` (a module name, "" for all layers); the dashboard links
// `selected` between the panels in the browser (jslink), so a layer chosen in one panel reaches
// the others at once, also while a training cell keeps the kernel busy.

// Whether a key of some analysis belongs to the selected module: "features.3" is selected by
// "features.3" itself, its parameters "features.3.weight", "features.3.bias", and the
// activation calls of its forward, "features.3:relu#0" or "features.3#1".
export function inSelection(key, selected) {
  return !selected || key === selected || [".", ":", "#"].some((c) => key.startsWith(`${selected}${c}`));
}

// Choose `layer` (a module name, "" for none) in this panel; the links carry it to the others.
export function choose(model, layer) {
  model.set("selected", layer);
  model.save_changes();
}

// A <select> of the panel's layers bound to `selected`; `onChange(selected)` runs on every change,
// wherever it was made. Returns the element and its cleanup.
export function layerPicker(model, onChange) {
  const el = document.createElement("select");
  el.className = "nnmodes-layer-select";
  el.title = "layer highlighted in every panel";
  const fill = () => {
    const layers = model.get("layers");
    el.replaceChildren(new Option("all layers", ""), ...layers.map((l) => new Option(l, l)));
    el.value = model.get("selected");
  };
  const sync = () => {
    el.value = model.get("selected");
    onChange(model.get("selected"));
  };
  el.addEventListener("change", () => choose(model, el.value));
  model.on("change:layers", fill);
  model.on("change:selected", sync);
  fill();
  return {
    el,
    dispose() {
      model.off("change:layers", fill);
      model.off("change:selected", sync);
    },
  };
}

// The module among `layers` (the panel's choices) that a line's label belongs to: the longest
// one that selects it ("features.3" for "features.3.weight"), "" when none does.
export function moduleOf(label, layers) {
  let best = "";
  for (const layer of layers) {
    if (layer && layer.length > best.length && inSelection(label, layer)) best = layer;
  }
  return best;
}

// What a legend shows for a Lines mark: each line's label, its colour (bqplot cycles the colour
// list), the module a click selects, and whether the selection dims it.
export function legendEntries(labels, colors, layers, selected) {
  return labels.map((label, i) => ({
    label,
    color: colors.length ? colors[i % colors.length] : "currentColor",
    layer: moduleOf(label, layers),
    dim: !inSelection(label, selected),
  }));
}

// Per-line opacities of a bqplot Lines mark that bring out the selected module's lines. Set on
// the browser's model only (view state, like the log switch): the kernel's copy stays as made.
export function highlightLines(mark, selected) {
  const labels = mark.get("labels") ?? [];
  const opacities = labels.map((label) => (inSelection(label, selected) ? 1 : 0.15));
  mark.set("opacities", opacities);
}

// Keep the lines of `marks` highlighted for `selected()`, also when the kernel sends new labels.
// Never inside the mark's own change event: a set() from a change:<attr> handler ends the outer
// set() of @jupyter-widgets/base early (its try/finally clears `_pending` and `_changing`), so the
// outer "change" event never fires and bqplot never recomputes the lines from the x and y that
// came in the same message (the panel stayed empty until the next message). Deferred to a
// microtask, the opacities are set after the kernel's message has been applied in full.
// Returns { update, dispose }: update() highlights now (outside any change event).
export function highlightOnLabels(marks, selected) {
  const update = () => {
    for (const mark of marks) highlightLines(mark, selected());
  };
  const later = coalesce(update);
  for (const mark of marks) mark.on("change:labels", later);
  return {
    update,
    dispose() {
      for (const mark of marks) mark.off("change:labels", later);
    },
  };
}
