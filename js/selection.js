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

// Per-line opacities of a bqplot Lines mark that bring out the selected module's lines. Set on
// the browser's model only (view state, like the log switch): the kernel's copy stays as made.
export function highlightLines(mark, selected) {
  const labels = mark.get("labels") ?? [];
  const opacities = labels.map((label) => (inSelection(label, selected) ? 1 : 0.15));
  mark.set("opacities", opacities);
}
