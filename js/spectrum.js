import { guardBqplotOf } from "./bqplot_guard.js";
import { initializeFigures, markEvidence } from "./figures.js";
import { countFrames, panelHeader } from "./header.js";
import { reportView } from "./presence.js";
import { modelOf } from "./root.js";
import { highlightOnLabels, layerPicker } from "./selection.js";

// Header of a panel of bqplot figures (the spectra, the basins, a comparison's overlay: the
// panel's root class is the model's `root`). The selected layer's lines stand out in every plot
// (set in the browser, so it works while the kernel is busy).
export default {
  initialize({ model }) {
    guardBqplotOf(model, "mark").catch((e) => console.warn("nnmodes_widgets: bqplot redraw guard not installed:", e));
    return initializeFigures(model);
  },
  async render({ model, el }) {
    const gone = reportView(model, el, model.get("root"));
    let lines = null;
    const root = model.get("root");
    const highlight = () => {
      el.closest(`.${root}`)?.setAttribute("data-selected", model.get("selected"));
      lines?.update();
    };
    const picker = layerPicker(model, highlight);
    // a panel of no layers (a comparison's overlay of runs) has no picker
    const controls = model.get("layers").length ? [picker.el] : [];
    const header = panelHeader(model, root, controls, { onEvidence: (span) => markEvidence(model, span) });
    el.append(header.el);
    const marks = await Promise.all(model.get("marks").map((ref) => modelOf(model, ref)));
    lines = highlightOnLabels(marks, () => model.get("selected"));
    highlight();
    const stopCounting = await countFrames(model, "mark", header);
    return () => {
      lines.dispose();
      picker.dispose();
      header.dispose();
      stopCounting();
      gone();
    };
  },
};
