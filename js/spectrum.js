import { guardBqplotOf } from "./bqplot_guard.js";
import { countFrames, panelHeader } from "./header.js";
import { modelOf } from "./root.js";
import { highlightOnLabels, layerPicker } from "./selection.js";

// Header of the spectrum panel; the plots are bqplot figures beside it. The selected layer's
// lines stand out in every plot (set in the browser, so it works while the kernel is busy).
export default {
  initialize({ model }) {
    guardBqplotOf(model, "mark").catch((e) => console.warn("nnmodes_widgets: bqplot redraw guard not installed:", e));
  },
  async render({ model, el }) {
    let lines = null;
    const highlight = () => {
      el.closest(".nnmodes-spectrum")?.setAttribute("data-selected", model.get("selected"));
      lines?.update();
    };
    const picker = layerPicker(model, highlight);
    const { onData } = panelHeader(model, el, "nnmodes-spectrum", [picker.el]);
    const marks = await Promise.all(model.get("marks").map((ref) => modelOf(model, ref)));
    lines = highlightOnLabels(marks, () => model.get("selected"));
    highlight();
    const stopCounting = await countFrames(model, "mark", onData);
    return () => {
      lines.dispose();
      picker.dispose();
      stopCounting();
    };
  },
};
