import { countFrames, panelHeader } from "./header.js";
import { modelOf } from "./root.js";
import { highlightLines, layerPicker } from "./selection.js";

// Header of the spectrum panel; the plots are bqplot figures beside it. The selected layer's
// lines stand out in every plot (set in the browser, so it works while the kernel is busy).
export default {
  async render({ model, el }) {
    let marks = [];
    const highlight = () => {
      el.closest(".nnmodes-spectrum")?.setAttribute("data-selected", model.get("selected"));
      for (const mark of marks) highlightLines(mark, model.get("selected"));
    };
    const picker = layerPicker(model, highlight);
    const { onData } = panelHeader(model, el, "nnmodes-spectrum", [picker.el]);
    marks = await Promise.all(model.get("marks").map((ref) => modelOf(model, ref)));
    for (const mark of marks) mark.on("change:labels", highlight);
    highlight();
    const stopCounting = await countFrames(model, "mark", onData);
    return () => {
      for (const mark of marks) mark.off("change:labels", highlight);
      picker.dispose();
      stopCounting();
    };
  },
};
